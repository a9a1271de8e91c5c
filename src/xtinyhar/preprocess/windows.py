"""Sliding windows over resampled trials, keeping each window's trial index.

Rule for where windows start (tested in tests/preprocess/test_windows.py):
- a trial of at least W samples gets windows at 0, stride, 2*stride, ... that fit, plus one
  window ending at the trial's last sample when the tail would otherwise be left out, so
  every sample is covered;
- a trial shorter than W gets exactly one window, padded at the end by repeating its last
  sample; ``n_valid`` records how many samples are real.

``trial_windows`` is the other segmentation (``data.segmentation: trial``): one window per
trial, the whole trial stretched onto W samples (and its skeleton onto W * ratio frames),
for data that comes already segmented into one action per recording, as UTD-MHAD does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from xtinyhar.preprocess.arrays import align_to_length, pad_end, window_starts


@dataclass
class Windows:
    """Windows of many trials. ``imu`` (N, W, C) physical units; ``skeleton`` (N, W_s, J, 3)
    on the same time span, or None; ``trial_index`` (N,) points into the trial list."""
    imu: np.ndarray
    skeleton: np.ndarray | None
    label: np.ndarray
    subject: np.ndarray
    trial_index: np.ndarray
    start: np.ndarray
    n_valid: np.ndarray

    def __len__(self) -> int:
        return len(self.imu)


def make_windows(imus: list[np.ndarray], skeletons: list[np.ndarray] | None,
                 labels: list[int], subjects: list[int], *, window: int, stride: int,
                 skeleton_ratio: float = 1.0) -> Windows:
    """Cut every trial into windows; the skeleton window covers the IMU window's span.

    ``skeleton_ratio`` = skeleton samples per IMU sample (skeleton_hz / resample_hz);
    ``window * skeleton_ratio`` must be whole (the config checks); a skeleton window starts
    at the nearest skeleton sample to its IMU window's start.
    """
    skel_window = int(round(window * skeleton_ratio))
    parts: dict[str, list] = {k: [] for k in ("imu", "skel", "label", "subject", "trial", "start", "valid")}
    for index, imu in enumerate(imus):
        starts = window_starts(len(imu), window, stride)
        padded = pad_end(imu, window)
        parts["imu"].append(np.stack([padded[s:s + window] for s in starts]))
        if skeletons is not None:
            skel = pad_end(skeletons[index], skel_window)
            skel_starts = np.minimum(np.round(starts * skeleton_ratio).astype(np.int64),
                                     len(skel) - skel_window)
            parts["skel"].append(np.stack([skel[s:s + skel_window] for s in skel_starts]))
        parts["label"].append(np.full(len(starts), labels[index], dtype=np.int64))
        parts["subject"].append(np.full(len(starts), subjects[index], dtype=np.int64))
        parts["trial"].append(np.full(len(starts), index, dtype=np.int64))
        parts["start"].append(starts)
        parts["valid"].append(np.minimum(len(imu) - starts, window))
    return Windows(
        imu=np.concatenate(parts["imu"]).astype(np.float32),
        skeleton=np.concatenate(parts["skel"]).astype(np.float32) if skeletons is not None else None,
        label=np.concatenate(parts["label"]), subject=np.concatenate(parts["subject"]),
        trial_index=np.concatenate(parts["trial"]), start=np.concatenate(parts["start"]),
        n_valid=np.concatenate(parts["valid"]))


def trial_windows(imus: list[np.ndarray], skeletons: list[np.ndarray] | None,
                  labels: list[int], subjects: list[int], *, window: int,
                  skeleton_ratio: float = 1.0) -> Windows:
    """One window per trial: the whole trial linearly resampled onto ``window`` samples
    (its skeleton onto ``window * skeleton_ratio`` frames over the same span). Every sample
    of a window is real (``n_valid`` = ``window``, ``start`` = 0). Removes the padding and
    the cut-off that sliding windows give trials shorter or longer than a window, and
    normalises each action's duration."""
    skel_window = int(round(window * skeleton_ratio))
    n = len(imus)
    return Windows(
        imu=np.stack([align_to_length(imu, window) for imu in imus]).astype(np.float32),
        skeleton=(np.stack([align_to_length(s, skel_window) for s in skeletons]).astype(np.float32)
                  if skeletons is not None else None),
        label=np.asarray(labels, dtype=np.int64), subject=np.asarray(subjects, dtype=np.int64),
        trial_index=np.arange(n, dtype=np.int64), start=np.zeros(n, dtype=np.int64),
        n_valid=np.full(n, window, dtype=np.int64))
