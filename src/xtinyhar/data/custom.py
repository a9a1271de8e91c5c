"""Your own recordings (``data.dataset: custom``), in one of three formats told by ``data.root``:

- a folder of CSV files, one recording per file, plus a manifest (``data.custom.manifest``,
  ``manifest.csv`` by default; ``data.root`` may also name the manifest itself). A recording
  has a header row naming its channels; a time column (``time``, ``t``, ``timestamp``,
  ``timestamps``, ``time_s``, ``seconds``) is dropped; ``data.custom.channels`` picks and
  orders columns by name (empty: every other column, in file order). The manifest has one
  row per recording with columns ``file`` and ``label``, and optionally ``subject`` and
  ``split`` (``train`` / ``test``);
- a NumPy ``.npz`` with ``X`` (N, T, C) or an object array of N (T_i, C) recordings, ``y``
  (N,), and optionally ``subject`` (N,) and ``split`` (N,);
- the UEA/UCR ``.ts`` format (read with aeon): ``NAME_TRAIN.ts`` with ``NAME_TEST.ts``
  beside it is a predefined train/test split (``data.root`` names either file or their
  folder); a lone ``NAME.ts`` is data without a split. ``.ts`` files carry no subjects.

Every recording is sampled at ``data.imu_sr``; acceleration and angular rate are converted
to g and deg/s from ``data.custom.acc_unit`` / ``gyro_unit`` on the channels
``data.custom.layout`` names (none for layout ``other``). No skeleton: the teacher and
distillation are off for such data.

Labels may be strings or integers. Class names are the labels' string forms in **sorted**
order (integers numerically: 1, 2, 10), so they do not depend on the order of the files.
Subjects may be integers or names (names are numbered 1.. in sorted order). Without subjects
every recording is its own group (``Trial.subject_known`` False): windows of one recording
never straddle a split, but a split cannot keep a person's recordings on one side.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import numpy as np

from xtinyhar.config import DataConfig
from xtinyhar.data.trial import LoadReport, Trial, check_array, warn_if_silent
from xtinyhar.errors import DataError
from xtinyhar.preprocess.arrays import TIME_COLUMNS

log = logging.getLogger(__name__)

SPLITS = ("train", "test")
STANDARD_GRAVITY = 9.80665


# --------------------------------------------------------------------------- shared

def _is_int(value) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return False
    if isinstance(value, (int, np.integer)):
        return True
    if isinstance(value, (float, np.floating)):
        return bool(np.isfinite(value) and float(value).is_integer())
    try:
        int(str(value).strip())
        return True
    except ValueError:
        return False


def _as_key(value) -> str:
    """A label or subject as text: 3, 3.0 and "3" are all "3"; names are stripped."""
    if isinstance(value, (float, np.floating)) and _is_int(value):
        return str(int(value))
    if isinstance(value, bytes):
        value = value.decode()
    return str(value).strip()


def class_names_of(labels: list[str]) -> list[str]:
    """Sorted distinct labels: numerically when every label is an integer, else as text."""
    distinct = set(labels)
    if all(_is_int(v) for v in distinct):
        return [str(v) for v in sorted(distinct, key=lambda v: int(v))]
    return sorted(distinct)


def _subject_ids(subjects: list[str] | None, source: str) -> tuple[list[int], bool]:
    """Integer subject ids and whether they are real: integer subjects keep their number,
    named ones are numbered 1.. in sorted order; no subjects: each recording its own group."""
    if subjects is None:
        return [], False
    if any(s == "" for s in subjects):
        raise DataError(f"{source}: {sum(s == '' for s in subjects)} recording(s) have no subject; "
                        "give every recording one, or leave the subject out entirely")
    if all(_is_int(s) for s in subjects):
        return [int(s) for s in subjects], True
    numbers = {name: i + 1 for i, name in enumerate(sorted(set(subjects)))}
    log.debug("%s: subjects are names; numbered %s", source,
             ", ".join(f"{k}={v}" for k, v in list(numbers.items())[:10]))
    return [numbers[s] for s in subjects], True


def _check_split(values: list[str], source: str) -> list[str]:
    out = [v.lower() for v in values]
    bad = sorted(set(out) - set(SPLITS))
    if bad:
        raise DataError(f"{source}: split must be train or test, got {', '.join(map(repr, bad[:5]))}")
    if set(out) != set(SPLITS):
        raise DataError(f"{source}: the split column marks every recording {out[0]!r}; a "
                        "predefined split needs both train and test recordings (or drop the column)")
    return out


def convert_units(imu: np.ndarray, cfg: DataConfig) -> np.ndarray:
    """Acceleration to g and angular rate to deg/s on the channels ``layout`` names."""
    c = cfg.custom
    imu = imu.astype(np.float32, copy=True)
    if c.layout in ("acc_gyro", "acc") and c.acc_unit == "m/s2":
        imu[:, :3] /= STANDARD_GRAVITY
    if c.layout == "acc_gyro" and c.gyro_unit == "rad/s":
        imu[:, 3:6] = np.degrees(imu[:, 3:6])
    return imu


def _recording(imu, source: str, cfg: DataConfig) -> np.ndarray:
    imu = check_array(imu, name="recording", source=source, ndim=2)
    if imu.shape[1] != cfg.imu_channels:
        raise DataError(f"{source}: {imu.shape[1]} channel(s), config data.imu_channels is "
                        f"{cfg.imu_channels}")
    return warn_if_silent(convert_units(imu, cfg), source)


def _assemble(recordings: list[tuple[str, np.ndarray, str]], subjects: list[str] | None,
              splits: list[str] | None, cfg: DataConfig, source: str,
              skipped: list[str] | None = None) -> LoadReport:
    """Trials from (trial_id, imu, label) triples with optional subjects and splits."""
    if not recordings:
        raise DataError(f"{source}: no usable recordings")
    labels = [label for _, _, label in recordings]
    if any(label == "" for label in labels):
        raise DataError(f"{source}: {labels.count('')} recording(s) have an empty label")
    names = class_names_of(labels)
    if len(names) < 2:
        raise DataError(f"{source}: every recording has the label {names[0]!r}; a classifier "
                        "needs at least 2 classes")
    index = {name: i for i, name in enumerate(names)}
    ids, known = _subject_ids(subjects, source)
    if splits is not None:
        splits = _check_split(splits, source)
    trials = []
    for i, (trial_id, imu, label) in enumerate(recordings):
        trials.append(Trial(imu=imu, imu_hz=float(cfg.imu_sr), skeleton=None, skeleton_hz=None,
                            label=index[label], subject=ids[i] if known else i + 1,
                            trial_id=trial_id, dataset="custom",
                            split=splits[i] if splits is not None else None,
                            subject_known=known))
    return LoadReport(trials, names, skipped or [])


# --------------------------------------------------------------------------- CSV folder

def _header_index(header: list[str]) -> dict[str, int]:
    return {name.strip().lower(): i for i, name in enumerate(header)}


def _csv_rows(path: Path) -> list[tuple[int, list[str]]]:
    """(line number, cells) of every non-blank row of a CSV file, or a one-line error."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            return [(n, row) for n, row in enumerate(csv.reader(handle), start=1)
                    if any(cell.strip() for cell in row)]
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a text CSV (undecodable bytes)") from None
    except (OSError, csv.Error) as exc:
        raise DataError(f"{path}: cannot read ({exc})") from None


def read_recording_csv(path: Path, cfg: DataConfig) -> np.ndarray:
    """One recording: header row of channel names, one sample per row; time column dropped."""
    if not path.is_file():
        raise DataError(f"{path}: recording not found")
    rows = _csv_rows(path)
    if not rows:
        raise DataError(f"{path}: empty file; expected a header row of channel names")
    header = [cell.strip() for cell in rows[0][1]]
    if all(_numeric(cell) for cell in header):
        raise DataError(f"{path}: the first row holds numbers; a header row naming the channels "
                        "must come first")
    columns = _header_index(header)
    wanted = cfg.custom.channels
    if wanted:
        missing = [name for name in wanted if name.strip().lower() not in columns]
        if missing:
            raise DataError(f"{path}: no column {', '.join(map(repr, missing))} (data.custom.channels); "
                            f"the header has {', '.join(header)}")
        picks = [columns[name.strip().lower()] for name in wanted]
    else:
        picks = [i for i, name in enumerate(header) if name.lower() not in TIME_COLUMNS]
    values = np.empty((len(rows) - 1, len(picks)), dtype=np.float64)
    for r, (number, row) in enumerate(rows[1:]):
        if len(row) != len(header):
            raise DataError(f"{path}: line {number} has {len(row)} cell(s), the header has "
                            f"{len(header)} (a ragged CSV)")
        for c, column in enumerate(picks):
            cell = row[column].strip()
            try:
                values[r, c] = float(cell) if cell else np.nan
            except ValueError:
                raise DataError(f"{path}: line {number}, column {header[column]!r} is not a number: "
                                f"{cell[:40]!r}") from None
    if np.isnan(values).any():
        r, c = np.argwhere(np.isnan(values))[0]
        raise DataError(f"{path}: {int(np.isnan(values).sum())} empty or NaN value(s) (first: line "
                        f"{rows[r + 1][0]}, column {header[picks[c]]!r})")
    return values


def _numeric(cell: str) -> bool:
    try:
        float(cell)
        return True
    except ValueError:
        return False


def load_csv_folder(manifest: Path, cfg: DataConfig, skip_bad: bool = False) -> LoadReport:
    folder = manifest.parent
    rows = _csv_rows(manifest)
    if not rows:
        raise DataError(f"{manifest}: empty manifest; expected a header row file,label[,subject,split]")
    header = [cell.strip() for cell in rows[0][1]]
    columns = _header_index(header)
    for needed in ("file", "label"):
        if needed not in columns:
            raise DataError(f"{manifest}: no {needed!r} column (the header has "
                            f"{', '.join(header) or 'nothing'}); needs file,label and optionally "
                            "subject,split")
    unknown = [h for h in header if h.lower() not in ("file", "label", "subject", "split")]
    if unknown:
        raise DataError(f"{manifest}: unknown column(s) {', '.join(map(repr, unknown))}; the "
                        "manifest takes file, label, subject and split")
    recordings, subjects, splits, skipped, seen = [], [], [], [], {}
    for number, row in rows[1:]:
        if len(row) != len(header):
            raise DataError(f"{manifest}: line {number} has {len(row)} cell(s), the header has "
                            f"{len(header)}")
        cell = {name: row[i].strip() for name, i in columns.items()}
        name = cell["file"]
        if not name:
            raise DataError(f"{manifest}: line {number} names no file")
        if name in seen:
            raise DataError(f"{manifest}: line {number} lists {name} again (first on line {seen[name]})")
        seen[name] = number
        path = folder / name
        try:
            if not path.is_file():
                raise DataError(f"{path}: named on line {number} of {manifest.name}, not found")
            imu = _recording(read_recording_csv(path, cfg), str(path), cfg)
        except DataError as exc:
            if not skip_bad:
                raise
            log.warning("skipping recording: %s", exc)
            skipped.append(str(exc))
            continue
        recordings.append((Path(name).with_suffix("").as_posix(), imu, cell["label"]))
        subjects.append(cell.get("subject", ""))
        splits.append(cell.get("split", ""))
    if skipped:
        log.warning("skipped %d bad recording(s) listed in %s", len(skipped), manifest)
    return _assemble(recordings, subjects if "subject" in columns else None,
                     splits if "split" in columns else None, cfg, str(manifest), skipped)


# --------------------------------------------------------------------------- .npz

def load_npz(path: Path, cfg: DataConfig) -> LoadReport:
    try:
        content = np.load(path, allow_pickle=True)   # an object array of ragged recordings
        if not isinstance(content, np.lib.npyio.NpzFile):
            raise ValueError("a single array, not an .npz archive")
        with content:
            arrays = {name: content[name] for name in content.files}
    except Exception as exc:   # numpy raises many types for a corrupt archive
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{path}: cannot read .npz ({reason[:160]})") from None
    for needed in ("X", "y"):
        if needed not in arrays:
            raise DataError(f"{path}: no array {needed!r} (it holds {', '.join(arrays) or 'nothing'}); "
                            "needs X, y and optionally subject, split")
    unknown = sorted(set(arrays) - {"X", "y", "subject", "split"})
    if unknown:
        raise DataError(f"{path}: unknown array(s) {', '.join(unknown)}; the file takes X, y, "
                        "subject and split")
    x = arrays["X"]
    if x.dtype == object:
        series = list(x.reshape(-1)) if x.ndim == 1 else None
    elif x.ndim == 3:
        series = list(x)
    else:
        series = None
    if series is None:
        raise DataError(f"{path}: X has shape {x.shape} ({x.dtype}); expected (N, T, C) or an "
                        "object array of N (T_i, C) recordings")
    n = len(series)
    for name in ("y", "subject", "split"):
        if name in arrays and (arrays[name].ndim != 1 or len(arrays[name]) != n):
            raise DataError(f"{path}: {name} has shape {arrays[name].shape}, X holds {n} "
                            f"recording(s); expected ({n},)")
    recordings = []
    for i, imu in enumerate(series):
        source = f"{path}: X[{i}]"
        try:
            imu = np.asarray(imu, dtype=float) if not isinstance(imu, np.ndarray) else imu
        except (TypeError, ValueError):
            raise DataError(f"{source} is not a numeric (T, C) array") from None
        recordings.append((f"{path.stem}_{i}", _recording(imu, source, cfg), _as_key(arrays["y"][i])))
    subjects = [_as_key(s) for s in arrays["subject"]] if "subject" in arrays else None
    splits = [_as_key(s) for s in arrays["split"]] if "split" in arrays else None
    return _assemble(recordings, subjects, splits, cfg, str(path))


# --------------------------------------------------------------------------- .ts

def _read_ts(path: Path, cfg: DataConfig) -> tuple[list[np.ndarray], list[str]]:
    from aeon.datasets import load_from_ts_file

    if not path.is_file():
        raise DataError(f"{path}: .ts file not found")
    try:
        x, y = load_from_ts_file(str(path))
    except Exception as exc:   # aeon raises IOError, ValueError and others for a bad file
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{path}: cannot read UEA/UCR .ts file ({reason[:160]})") from None
    series = [np.asarray(case, dtype=np.float64).T for case in x]   # (C, T) -> (T, C)
    if y is None or len(y) != len(series):
        raise DataError(f"{path}: needs a class label per case (@classLabel true)")
    return [_recording(imu, f"{path}: case {i}", cfg) for i, imu in enumerate(series)], \
        [_as_key(v) for v in y]


def ts_pair(path: Path) -> tuple[Path, Path | None]:
    """(train or lone file, test file or None) for a .ts path or a folder holding a pair."""
    if path.is_dir():
        trains = sorted(path.glob("*_TRAIN.ts"))
        if len(trains) != 1:
            raise DataError(f"{path}: expected one NAME_TRAIN.ts here, found {len(trains)}")
        path = trains[0]
    stem = path.stem
    if stem.upper().endswith("_TEST"):
        train = path.with_name(stem[:-5] + "_TRAIN.ts")
        if not train.is_file():
            raise DataError(f"{path}: no {train.name} beside it for the training side")
        return train, path
    if stem.upper().endswith("_TRAIN"):
        test = path.with_name(stem[:-6] + "_TEST.ts")
        if not test.is_file():
            raise DataError(f"{path}: no {test.name} beside it; a predefined split needs both "
                            "(or rename the file NAME.ts for data without a split)")
        return path, test
    return path, None


def load_ts(path: Path, cfg: DataConfig) -> LoadReport:
    train, test = ts_pair(path)
    recordings, splits = [], []
    for side, file in (("train", train), ("test", test)):
        if file is None:
            continue
        series, labels = _read_ts(file, cfg)
        recordings += [(f"{file.stem}_{i}", imu, label) for i, (imu, label) in enumerate(zip(series, labels))]
        splits += [side] * len(series)
    return _assemble(recordings, None, splits if test is not None else None, cfg, str(train))


# --------------------------------------------------------------------------- entry point

def load_custom_report(cfg: DataConfig, *, skip_bad: bool = False) -> LoadReport:
    """Load ``data.root`` in the format its path tells (see the module doc)."""
    root = Path(cfg.root)
    if root.is_dir():
        manifest = root / cfg.custom.manifest
        if manifest.is_file():
            return load_csv_folder(manifest, cfg, skip_bad)
        if any(root.glob("*_TRAIN.ts")):
            return load_ts(root, cfg)
        raise DataError(f"{root}: no {cfg.custom.manifest} (data.custom.manifest) and no "
                        "NAME_TRAIN.ts; data.root must be a CSV folder with its manifest, an "
                        ".npz file or a .ts file")
    if not root.exists():
        raise DataError(f"{root}: not found (data.root of a custom dataset: a CSV folder, an "
                        ".npz or a .ts file)")
    suffix = root.suffix.lower()
    if suffix == ".npz":
        return load_npz(root, cfg)
    if suffix == ".ts":
        return load_ts(root, cfg)
    if suffix == ".csv":
        return load_csv_folder(root, cfg, skip_bad)
    raise DataError(f"{root}: unknown format {suffix or '(no suffix)'}; expected a CSV folder "
                    "(or its manifest .csv), an .npz or a .ts file")
