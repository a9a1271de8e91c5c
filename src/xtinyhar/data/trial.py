"""The ``Trial`` record: one recording of one activity by one subject.

Every loader (UTD-MHAD, MM-Fit, synthetic) returns ``list[Trial]`` plus the class names,
and every later stage reads only these records. Arrays keep physical units: acceleration
in g, angular rate in deg/s, joint positions in metres.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from xtinyhar.errors import DataError

log = logging.getLogger(__name__)


@dataclass
class Trial:
    """One trial.

    imu: float32 (T, C) in physical units, sampled at ``imu_hz``.
    skeleton: float32 (F, J, 3) joint positions in metres at ``skeleton_hz``, or None.
    label: class index into the loader's class names.
    subject: subject (or other independence group) id; splits never put one subject on
        both sides.
    trial_id: a name unique within the dataset, e.g. ``a1_s1_t1``.
    placement: where the IMU was worn (``right_wrist``, ``right_thigh``, ...).
    split: the recording's side of a split that came with the data (``train``/``test``), or None.
    subject_known: whether ``subject`` is a real person; without one every recording is its own
        group, so windows of one recording still never straddle a split.
    """

    imu: np.ndarray
    imu_hz: float
    skeleton: np.ndarray | None
    skeleton_hz: float | None
    label: int
    subject: int
    trial_id: str
    dataset: str
    placement: str = "unknown"
    split: str | None = None      # "train" / "test" when the data comes with its own split
    subject_known: bool = True    # False: ``subject`` only numbers the recording (own data
                                  # without subjects), so splits cannot be subject-independent


@dataclass
class LoadReport:
    """What a loader returned and what it skipped (only non-empty with ``skip_bad``)."""
    trials: list[Trial]
    class_names: list[str]
    skipped: list[str] = field(default_factory=list)  # "file: reason", one per skipped trial


def check_array(array: np.ndarray, *, name: str, source: str, ndim: int,
                trailing: tuple[int, ...] = ()) -> np.ndarray:
    """Return ``array`` as float32 after checking rank, trailing shape and finiteness.

    ``source`` (a file path or trial id) starts every error message, so a user learns
    which file is bad without reading a traceback.
    """
    array = np.asarray(array)
    if array.ndim != ndim or tuple(array.shape[ndim - len(trailing):]) != trailing:
        want = "(" + ", ".join(["N"] * (ndim - len(trailing)) + [str(t) for t in trailing]) + ")"
        raise DataError(f"{source}: {name} has shape {array.shape}, expected {want}")
    if not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array):
        raise DataError(f"{source}: {name} has non-real dtype {array.dtype}")
    if array.shape[0] < 2:   # one sample has no duration: nothing to resample or align
        raise DataError(f"{source}: {name} holds {array.shape[0]} sample(s); a recording needs at least 2")
    bad = ~np.isfinite(array)
    if bad.any():
        kind = "NaN" if np.isnan(array).any() else "inf"
        raise DataError(f"{source}: {name} holds {int(bad.sum())} {kind} value(s)")
    with np.errstate(over="ignore"):
        out = array.astype(np.float32, copy=False)
    huge = ~np.isfinite(out)
    if huge.any():
        raise DataError(f"{source}: {name} holds {int(huge.sum())} value(s) too large for float32")
    return out


def warn_if_silent(imu: np.ndarray, source: str) -> np.ndarray:
    """Warn, naming ``source``, when an IMU recording is all zeros: a disconnected or failed
    sensor records nothing, and such a trial would train on a flat line without a word."""
    if imu.size and not np.any(imu):
        log.warning("%s: the IMU recording is all zeros (a disconnected or failed sensor?); "
                    "it is kept, but it carries no motion", source)
    return imu
