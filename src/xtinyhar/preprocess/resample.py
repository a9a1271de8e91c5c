"""Resampling, cross-modal alignment and low-pass filtering of whole trials.

IMU and skeleton streams of one trial share no timestamps and need not span exactly the
same time (UTD-MHAD's IMU/skeleton duration ratio ranges from 1.4 to 2.7 at the nominal
rates). We therefore align them on each trial's *normalised* time axis: the first sample of
each stream is t=0, the last is t=1, and the skeleton is linearly interpolated onto a grid
of that axis at ``skeleton_hz`` relative to the resampled IMU. All functions are pure.
"""

from __future__ import annotations

import numpy as np
from scipy import signal as sps

from xtinyhar.preprocess.arrays import align_to_length, interpolate


def lowpass(series: np.ndarray, cutoff_hz: float, rate_hz: float, order: int = 4) -> np.ndarray:
    """Zero-phase Butterworth low-pass along axis 0 (no delay, so no misalignment)."""
    if cutoff_hz >= rate_hz / 2:
        return series
    sos = sps.butter(order, cutoff_hz, fs=rate_hz, output="sos")
    padlen = min(3 * (2 * len(sos) + 1), len(series) - 1)
    return sps.sosfiltfilt(sos, series, axis=0, padlen=padlen).astype(series.dtype, copy=False)


def resample_rate(series: np.ndarray, from_hz: float, to_hz: float) -> np.ndarray:
    """Resample (T, ...) from ``from_hz`` to ``to_hz`` over the same time span.

    Downsampling low-passes at 0.45 * to_hz first, so fast motion does not alias.
    """
    if np.isclose(from_hz, to_hz):
        return series
    if to_hz < from_hz and len(series) > 15:
        series = lowpass(series, 0.45 * to_hz, from_hz)
    n_out = max(1, int(round((len(series) - 1) * to_hz / from_hz)) + 1)
    return interpolate(series, np.arange(n_out) * (from_hz / to_hz))


def resample_trial(imu: np.ndarray, imu_hz: float, skeleton: np.ndarray | None, *,
                   resample_hz: float, skeleton_hz: float,
                   lowpass_hz: float | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Resample a trial's IMU to ``resample_hz`` and align its skeleton to it.

    Returns ``imu`` (T', C) and ``skeleton`` (round((T'-1) * skeleton_hz / resample_hz) + 1,
    J, 3): the skeleton's first and last frames land on the IMU's first and last samples,
    so skeleton frame j sits at IMU sample j * resample_hz / skeleton_hz.
    """
    if lowpass_hz is not None:
        imu = lowpass(imu, lowpass_hz, imu_hz)
    imu = resample_rate(imu, imu_hz, resample_hz)
    if skeleton is None:
        return imu, None
    n_frames = int(round((len(imu) - 1) * skeleton_hz / resample_hz)) + 1
    return imu, align_to_length(skeleton, n_frames)
