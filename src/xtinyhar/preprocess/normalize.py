"""Per-channel z-score normalisation with statistics passed in explicitly.

Fit on training windows only (never on validation or test subjects), store the statistics
with the model, apply everywhere else. Acc (g) and gyro (deg/s) differ in scale ~100x, so
per-channel scaling matters for every model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MIN_STD = 1e-6  # a constant channel is centred, not blown up


@dataclass(frozen=True)
class NormStats:
    """Per-channel mean and std, shape (C,)."""
    mean: np.ndarray
    std: np.ndarray

    def to_dict(self) -> dict[str, list[float]]:
        return {"mean": [float(v) for v in self.mean], "std": [float(v) for v in self.std]}

    @classmethod
    def from_dict(cls, data: dict) -> "NormStats":
        return cls(np.asarray(data["mean"], np.float32), np.asarray(data["std"], np.float32))

    @classmethod
    def identity(cls, channels: int) -> "NormStats":
        """Statistics that leave data unchanged (``preproc.norm: none``)."""
        return cls(np.zeros(channels, np.float32), np.ones(channels, np.float32))


def fit_zscore(windows: np.ndarray) -> NormStats:
    """Mean and std of each channel over all samples of (N, T, C) training windows."""
    flat = windows.reshape(-1, windows.shape[-1]).astype(np.float64)
    std = flat.std(axis=0)
    std[std < MIN_STD] = 1.0
    return NormStats(flat.mean(axis=0).astype(np.float32), std.astype(np.float32))


def apply_zscore(windows: np.ndarray, stats: NormStats) -> np.ndarray:
    """(x - mean) / std along the last axis."""
    return ((windows - stats.mean) / stats.std).astype(np.float32)


def invert_zscore(windows: np.ndarray, stats: NormStats) -> np.ndarray:
    """Back to physical units."""
    return (windows * stats.std + stats.mean).astype(np.float32)
