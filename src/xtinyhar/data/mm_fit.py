"""MM-Fit loader: each labelled exercise set of a workout becomes one :class:`Trial`.

Layout (one folder per workout, ``<root>/wNN/``), as in the released dataset:

- ``wNN_labels.csv``: rows ``start_frame,end_frame,reps,exercise``, no header. Frames are
  on the 30 Hz clock of the left RGB-D camera, which every other file also carries.
- ``wNN_{sw,sp,eb}_{l,r}_{acc,gyr}.npy``: rows ``frame, timestamp, x, y, z`` (about
  100 Hz for the smartwatch ``sw``).
- ``wNN_pose_3d.npy``: shape (3, frames, 18); axis 0 is x, y, z, column 0 of the last
  axis holds the frame number and columns 1..17 the 17 Human3.6M joints.

Assumptions (the sensor and pose files were not available when this was written; they
are stated here so a wrong one is a one-constant fix):

- Accelerometer values are in m/s^2 and are divided by 9.80665 so ``Trial.imu`` holds g.
- Gyroscope values are in rad/s and are converted to deg/s.
- ``pose_3d`` coordinates are in millimetres and are converted to metres.
- Timestamps: their unit is not assumed. The starter code divides timestamp differences
  by 1000 (milliseconds), but the unit is detected per file by comparing how far the
  timestamps advance with how far the 30 Hz frame column advances, and picking the
  nearest of s, ms, us and ns (a file matching none is a ``DataError``). ``imu_hz`` is
  ``1 / median(diff(timestamps in s))`` over the whole accelerometer file, so every set
  of a workout shares one rate. Timestamps are kept in float64: epoch milliseconds lose
  whole seconds in float32.
- Accelerometer and gyroscope streams have their own timestamps; the gyroscope is
  linearly interpolated (per axis) onto the accelerometer timestamps, so ``imu`` is
  (T, 6) = acc x, y, z (g) then gyro x, y, z (deg/s) at the accelerometer's rate.
- A set keeps the IMU samples and pose frames whose frame number lies in
  ``[start_frame, end_frame]`` (both ends included).
- ``subject`` is the workout number by default (the unit the official split uses). The
  starter code also lists which participant did each workout (several participants did
  several workouts); ``subject_from="participant"`` uses that instead, which is the
  right group for subject-independent k-fold.
- Frames between sets (``non_activity``) are not a class; rows labelled
  ``non_activity`` in a label file are accepted and ignored.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xtinyhar.data.trial import LoadReport, Trial, check_array, warn_if_silent
from xtinyhar.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

MM_FIT_CLASSES: tuple[str, ...] = (
    "bicep_curls",
    "dumbbell_rows",
    "dumbbell_shoulder_press",
    "jumping_jacks",
    "lateral_shoulder_raises",
    "lunges",
    "pushups",
    "situps",
    "squats",
    "tricep_extensions",
)
"""The 10 exercises of the label files, sorted; a Trial's label indexes this tuple."""

NON_ACTIVITY = "non_activity"

# Official split of the starter code; "test" is its cross-subject "unseen_test" set
# (w09-w11, its same-subject "test" set, are left out).
MM_FIT_SPLIT: dict[str, tuple[int, ...]] = {
    "train": (1, 2, 3, 4, 6, 7, 8, 16, 17, 18),
    "val": (14, 15, 19),
    "test": (0, 5, 12, 13, 20),
}

# Workout -> participant, from the MM-Fit starter code's EDA notebook.
MM_FIT_PARTICIPANT: dict[int, int] = {
    0: 2, 1: 0, 2: 1, 3: 0, 4: 1, 5: 2, 6: 0, 7: 1, 8: 0, 9: 1, 10: 0,
    11: 1, 12: 3, 13: 4, 14: 0, 15: 1, 16: 5, 17: 6, 18: 7, 19: 8, 20: 9,
}

POSE_HZ = 30.0
POSE_JOINTS = 17
STANDARD_GRAVITY = 9.80665  # m/s^2 per g
ACC_SCALE = 1.0 / STANDARD_GRAVITY  # m/s^2 -> g
GYRO_SCALE = 180.0 / math.pi  # rad/s -> deg/s
POSE_SCALE = 1e-3  # mm -> m

DEVICES = ("sw", "sp", "eb")
SIDES = ("l", "r")
_PLACEMENT = {"sw": "wrist", "sp": "pocket", "eb": "ear"}
_SIDE_NAME = {"l": "left", "r": "right"}
_SECONDS_PER_TICK = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}
_WORKOUT_DIR = re.compile(r"^w(\d+)$")


@dataclass(frozen=True)
class LabelRow:
    """One labelled set: frames ``[start_frame, end_frame]`` on the 30 Hz clock.

    ``row`` is the 1-based line number in the CSV, kept so errors and trial ids point
    back to the file.
    """

    start_frame: int
    end_frame: int
    reps: int
    exercise: str
    row: int


@dataclass
class _Workout:
    """The validated files of one workout, timestamps already in seconds (float64)."""

    number: int
    labels: list[LabelRow]
    acc_path: Path
    acc: np.ndarray  # (N, 5) frame, timestamp, x, y, z
    acc_s: np.ndarray  # (N,) seconds
    gyr_path: Path
    gyr: np.ndarray  # (M, 5)
    gyr_s: np.ndarray  # (M,) seconds
    imu_hz: float
    pose_path: Path | None
    pose: np.ndarray | None  # (3, F, 18)


def workout_name(number: int) -> str:
    """``3 -> "w03"``, the folder and file prefix of a workout."""
    return f"w{number:02d}"


def load_mm_fit_labels(root: str | Path, *,
                       workouts: Sequence[int] | None = None) -> dict[int, list[LabelRow]]:
    """Read only the label CSVs: ``{workout number: [LabelRow, ...]}`` in file order.

    Works without the sensor files; every row is validated (field count, integers,
    ``start <= end``, known exercise) and a bad row raises a ``DataError`` naming the
    file and the row.
    """
    root = _check_root(root)
    return {n: _read_labels(_labels_path(root, n)) for n in _workout_numbers(root, workouts)}


def load_mm_fit(root: str | Path, *, device: str = "sw", side: str = "l",
                workouts: Sequence[int] | None = None, skip_bad: bool = False,
                skeleton: bool = True,
                subject_from: str = "workout") -> tuple[list[Trial], list[str]]:
    """Load MM-Fit sets as ``(trials, class_names)``.

    ``device``/``side`` pick the IMU (``sw``/``l`` is the left smartwatch); ``workouts``
    limits the workouts read (default: every ``wNN`` folder); ``skeleton=False`` skips the
    pose files. With ``skip_bad`` a bad workout or set is logged and skipped instead of
    raising; :func:`load_mm_fit_report` also returns what was skipped.
    """
    report = load_mm_fit_report(root, device=device, side=side, workouts=workouts,
                                skip_bad=skip_bad, skeleton=skeleton,
                                subject_from=subject_from)
    return report.trials, report.class_names


def load_mm_fit_report(root: str | Path, *, device: str = "sw", side: str = "l",
                       workouts: Sequence[int] | None = None, skip_bad: bool = False,
                       skeleton: bool = True, subject_from: str = "workout") -> LoadReport:
    """Like :func:`load_mm_fit`, returning a :class:`LoadReport` with the skipped items."""
    if device not in DEVICES:
        raise ConfigError(f"mm_fit: device must be one of {', '.join(DEVICES)}, got {device!r}")
    if side not in SIDES:
        raise ConfigError(f"mm_fit: side must be one of {', '.join(SIDES)}, got {side!r}")
    if subject_from not in ("workout", "participant"):
        raise ConfigError("mm_fit: subject_from must be 'workout' or 'participant', "
                          f"got {subject_from!r}")
    root = _check_root(root)
    placement = f"{_SIDE_NAME[side]}_{_PLACEMENT[device]}"
    trials: list[Trial] = []
    skipped: list[str] = []

    def skip(error: DataError) -> None:
        if not skip_bad:
            raise error
        logger.warning("skipping: %s", error)
        skipped.append(str(error))

    for number in _workout_numbers(root, workouts):
        try:
            workout = _read_workout(root, number, device, side, skeleton)
            subject = _subject(number, subject_from, root)
        except DataError as error:
            skip(error)
            continue
        for row in workout.labels:
            if row.exercise == NON_ACTIVITY:
                continue
            try:
                trials.append(_make_trial(workout, row, subject, placement))
            except DataError as error:
                skip(error)
    if skipped:
        logger.warning("mm_fit: skipped %d bad workout(s)/set(s) under %s", len(skipped), root)
    if not trials:
        detail = f" ({len(skipped)} skipped; first: {skipped[0]})" if skipped else ""
        raise DataError(f"{root}: no MM-Fit sets loaded{detail}")
    return LoadReport(trials, list(MM_FIT_CLASSES), skipped)


# ---------------------------------------------------------------- pure helpers


def _check_root(root: str | Path) -> Path:
    """Return ``root`` as a Path, or raise if it is not a folder."""
    path = Path(root).expanduser()
    if not path.is_dir():
        raise DataError(f"{path}: MM-Fit root folder not found")
    return path


def _workout_numbers(root: Path, workouts: Sequence[int] | None) -> list[int]:
    """The workout numbers to read: the requested ones (each folder must exist) or all."""
    if workouts is None:
        found = sorted(int(m.group(1)) for p in root.iterdir()
                       if p.is_dir() and (m := _WORKOUT_DIR.match(p.name)))
        if not found:
            raise DataError(f"{root}: no MM-Fit workout folders (w00, w01, ...) found")
        return found
    numbers = []
    for n in workouts:
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise ConfigError(f"mm_fit: workouts must be non-negative integers, got {n!r}")
        numbers.append(int(n))
    # A missing folder is reported per workout (skippable), not here.
    return sorted(set(numbers))


def _labels_path(root: Path, number: int) -> Path:
    name = workout_name(number)
    folder = root / name
    if not folder.is_dir():
        raise DataError(f"{folder}: MM-Fit workout folder not found")
    return folder / f"{name}_labels.csv"


def _read_labels(path: Path) -> list[LabelRow]:
    """Parse and validate one label CSV (no header, 4 fields a row, blank lines ignored)."""
    if not path.is_file():
        raise DataError(f"{path}: label file not found")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: cannot read label file ({type(error).__name__})") from None
    known = set(MM_FIT_CLASSES) | {NON_ACTIVITY}
    rows = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = [f.strip() for f in line.split(",")]
        shown = line.strip()[:60]
        if len(fields) != 4:
            raise DataError(f"{path}: row {lineno}: expected 4 fields "
                            f"start_frame,end_frame,reps,exercise, got {len(fields)} in {shown!r}")
        try:
            start, end, reps = (int(f) for f in fields[:3])
        except ValueError:
            raise DataError(f"{path}: row {lineno}: start_frame, end_frame and reps must be "
                            f"integers, got {shown!r}") from None
        if start < 0 or end < start or reps < 0:
            raise DataError(f"{path}: row {lineno}: need 0 <= start_frame <= end_frame and "
                            f"reps >= 0, got {shown!r}")
        if fields[3] not in known:
            raise DataError(f"{path}: row {lineno}: unknown exercise {fields[3]!r}; "
                            f"expected one of {', '.join(MM_FIT_CLASSES)} or {NON_ACTIVITY}")
        rows.append(LabelRow(start, end, reps, fields[3], lineno))
    if not rows:
        raise DataError(f"{path}: label file holds no sets")
    return rows


def _load_npy(path: Path) -> np.ndarray:
    """``np.load`` without pickles; a missing or unreadable file becomes a DataError."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        raise DataError(f"{path}: cannot read .npy ({type(error).__name__})") from None
    if not isinstance(array, np.ndarray):  # an .npz archive under a .npy name
        array.close()
        raise DataError(f"{path}: is not a single .npy array")
    return array


def _read_stream(path: Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Load a ``frame, timestamp, x, y, z`` file: (rows as float64, timestamps in s)."""
    raw = _load_npy(path)
    check_array(raw, name=name, source=str(path), ndim=2, trailing=(5,))
    data = np.asarray(raw, dtype=np.float64)  # float64: epoch timestamps need it
    if np.any(np.diff(data[:, 1]) < 0):
        raise DataError(f"{path}: {name} timestamps are not in increasing order")
    seconds = data[:, 1] * _seconds_per_tick(data[:, 1], data[:, 0], path)
    return data, seconds


def _seconds_per_tick(timestamps: np.ndarray, frames: np.ndarray, path: Path) -> float:
    """Detect the timestamp unit (s, ms, us or ns) against the 30 Hz frame column."""
    frame_span_s = (float(frames.max()) - float(frames.min())) / POSE_HZ
    tick_span = float(timestamps[-1]) - float(timestamps[0])
    if frame_span_s <= 0 or tick_span <= 0:
        raise DataError(f"{path}: cannot infer timestamp units: frame or timestamp column "
                        "does not advance")
    ticks_per_second = tick_span / frame_span_s
    unit = min(_SECONDS_PER_TICK,
               key=lambda u: abs(math.log10(ticks_per_second * _SECONDS_PER_TICK[u])))
    if abs(math.log10(ticks_per_second * _SECONDS_PER_TICK[unit])) > 0.5:
        raise DataError(f"{path}: timestamps advance {ticks_per_second:.3g} per second of the "
                        "30 Hz frame clock; expected seconds, ms, us or ns")
    return _SECONDS_PER_TICK[unit]


def _read_pose(path: Path) -> np.ndarray:
    """Load ``pose_3d`` (3, F, 18) as float64 after checking shape and finiteness."""
    raw = _load_npy(path)
    want = f"(3, frames, {POSE_JOINTS + 1})"
    if raw.ndim != 3 or raw.shape[0] != 3 or raw.shape[2] != POSE_JOINTS + 1:
        raise DataError(f"{path}: pose_3d has shape {raw.shape}, expected {want}")
    if raw.shape[1] == 0:
        raise DataError(f"{path}: pose_3d is empty (0 frames)")
    # check_array wants samples first: validate the (F, 3, 18) view.
    check_array(np.moveaxis(raw, 1, 0), name="pose_3d", source=str(path), ndim=3,
                trailing=(3, POSE_JOINTS + 1))
    return np.asarray(raw, dtype=np.float64)


def _read_workout(root: Path, number: int, device: str, side: str,
                  skeleton: bool) -> _Workout:
    """Read and validate every file a workout needs; any problem is a DataError."""
    labels = _read_labels(_labels_path(root, number))
    folder = root / workout_name(number)
    prefix = f"{workout_name(number)}_{device}_{side}"
    acc_path = folder / f"{prefix}_acc.npy"
    gyr_path = folder / f"{prefix}_gyr.npy"
    acc, acc_s = _read_stream(acc_path, "accelerometer")
    gyr, gyr_s = _read_stream(gyr_path, "gyroscope")
    steps = np.diff(acc_s)
    step = float(np.median(steps)) if steps.size else 0.0
    if step <= 0:
        raise DataError(f"{acc_path}: cannot estimate the sampling rate (median time step "
                        f"is {step:g} s)")
    pose_path, pose = None, None
    if skeleton:
        pose_path = folder / f"{workout_name(number)}_pose_3d.npy"
        pose = _read_pose(pose_path)
    return _Workout(number, labels, acc_path, acc, acc_s, gyr_path, gyr, gyr_s,
                    1.0 / step, pose_path, pose)


def _subject(number: int, subject_from: str, root: Path) -> int:
    if subject_from == "workout":
        return number
    if number not in MM_FIT_PARTICIPANT:
        raise DataError(f"{root / workout_name(number)}: no known participant for this "
                        "workout; use subject_from='workout'")
    return MM_FIT_PARTICIPANT[number]


def _make_trial(w: _Workout, row: LabelRow, subject: int, placement: str) -> Trial:
    """Cut one set out of a workout's streams and convert it to the Trial's units."""
    trial_id = f"{workout_name(w.number)}_set{row.row:02d}"
    span = f"frames {row.start_frame}-{row.end_frame} ({trial_id}, label row {row.row})"
    in_acc = (w.acc[:, 0] >= row.start_frame) & (w.acc[:, 0] <= row.end_frame)
    if not in_acc.any():
        raise DataError(f"{w.acc_path}: no accelerometer samples in {span}")
    in_gyr = (w.gyr[:, 0] >= row.start_frame) & (w.gyr[:, 0] <= row.end_frame)
    if not in_gyr.any():
        raise DataError(f"{w.gyr_path}: no gyroscope samples in {span}")
    t = w.acc_s[in_acc]
    acc = w.acc[in_acc, 2:5] * ACC_SCALE  # (T, 3) g
    # Whole gyro stream as the interpolation grid so the set's edges interpolate too.
    gyr = np.stack([np.interp(t, w.gyr_s, w.gyr[:, k]) for k in (2, 3, 4)], axis=1)
    imu = np.concatenate([acc, gyr * GYRO_SCALE], axis=1).astype(np.float32)  # (T, 6)
    warn_if_silent(imu, f"{w.acc_path}, {span}")

    skeleton = None
    if w.pose is not None:
        frames = w.pose[0, :, 0]
        in_pose = (frames >= row.start_frame) & (frames <= row.end_frame)
        if not in_pose.any():
            raise DataError(f"{w.pose_path}: no pose frames in {span}")
        joints = w.pose[:, in_pose, 1:]  # (3, F, 17) mm
        skeleton = (np.transpose(joints, (1, 2, 0)) * POSE_SCALE).astype(np.float32)  # (F, 17, 3)

    return Trial(imu=imu, imu_hz=w.imu_hz, skeleton=skeleton,
                 skeleton_hz=POSE_HZ if skeleton is not None else None,
                 label=MM_FIT_CLASSES.index(row.exercise), subject=subject,
                 trial_id=trial_id, dataset="mm_fit", placement=placement)
