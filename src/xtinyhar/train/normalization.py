"""Statistics fitted on a training fold only and stored inside the model: the IMU z-score,
the skeleton features' z-score, and the per-channel scale augmentation's jitter uses."""

from __future__ import annotations

import numpy as np
import torch

from xtinyhar.config import Config
from xtinyhar.models.teacher import skeleton_features
from xtinyhar.preprocess.normalize import NormStats, fit_zscore


def imu_stats(cfg: Config, imu: np.ndarray) -> NormStats:
    return fit_zscore(imu) if cfg.preproc.norm == "zscore" else NormStats.identity(imu.shape[-1])


def jitter_scale(imu: np.ndarray) -> np.ndarray:
    """Per-channel std of the training windows: augmentation's jitter is a fraction of it,
    whether or not the model normalises its input (``preproc.norm: none``)."""
    return fit_zscore(imu).std


def skeleton_stats(skeleton: np.ndarray, hip_joint: int) -> NormStats:
    features = skeleton_features(torch.from_numpy(skeleton), hip_joint).numpy()
    return fit_zscore(features.reshape(*features.shape[:2], -1))
