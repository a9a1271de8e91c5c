"""Reading IMU recordings on a device, with NumPy only: any array-like checked into a real
array, and a CSV of samples (one row per sample: acc x,y,z in g, gyro x,y,z in deg/s, with
an optional header row and time column)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from xtinyhar.errors import DataError
from xtinyhar.preprocess.arrays import TIME_COLUMNS


def as_numeric(values, source: str) -> np.ndarray:
    """Any array-like -> a real-valued ndarray, or a one-line error (ragged nesting, text,
    complex numbers) instead of NumPy's exception."""
    try:
        array = np.asarray(values)
    except (ValueError, TypeError):
        raise DataError(f"{source}: not a rectangular array of numbers (ragged rows?)") from None
    if array.dtype == object or not (np.issubdtype(array.dtype, np.integer)
                                     or np.issubdtype(array.dtype, np.floating)):
        raise DataError(f"{source}: values are not real numbers (dtype {array.dtype})")
    return array


def read_imu_csv(path: str | Path, channels: int | None = None) -> np.ndarray:
    """A CSV of IMU samples, one row per sample (acc x,y,z in g, gyro x,y,z in deg/s); a
    header row of names is allowed, and a column it names as time (``preprocess.arrays.TIME_COLUMNS``) is
    left out. Returns float32 (T, C)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a text CSV (undecodable bytes); expected comma-separated "
                        "numbers, one sample per row") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
    lines = [(number, line) for number, line in enumerate(text.splitlines(), start=1)
             if line.strip()]                                  # (line number in the file, text)
    time_columns: list[int] = []
    if lines and _is_header(lines[0][1]):
        header = [cell.strip().lower() for cell in lines[0][1].lstrip("\ufeff").split(",")]
        time_columns = [i for i, name in enumerate(header) if name in TIME_COLUMNS]
        lines = lines[1:]
    if not lines:
        raise DataError(f"{path}: no samples")
    rows = []
    for number, line in lines:
        try:
            rows.append([float(c) for c in line.split(",")])
        except ValueError:
            raise DataError(f"{path}: line {number} is not numeric: {line[:60]!r}") from None
    widths = {len(r) for r in rows}
    if len(widths) != 1:
        raise DataError(f"{path}: rows have different numbers of columns {sorted(widths)}")
    imu = np.delete(np.asarray(rows, dtype=np.float32), time_columns, axis=1)
    if channels is not None and imu.shape[1] != channels:
        raise DataError(f"{path}: {imu.shape[1]} columns, the model expects {channels} "
                        "(acc x,y,z in g, gyro x,y,z in deg/s)")
    if not np.isfinite(imu).all():
        raise DataError(f"{path}: {int((~np.isfinite(imu)).sum())} NaN or infinite value(s)")
    return imu


def _is_header(line: str) -> bool:
    """A row of names: no cell is a number (a row with some numbers is a corrupt sample,
    reported as such, not dropped as a header)."""
    for cell in line.split(","):
        try:
            float(cell)
            return False
        except ValueError:
            pass
    return True
