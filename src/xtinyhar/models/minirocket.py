"""MiniRocket + ridge (Dempster et al., KDD 2021; aeon's implementation): the strongest
non-deep baseline for short multichannel series, evaluated on the same folds and windows as
the student (``model.student.arch: minirocket`` in ``xtinyhar cv``).

The window is z-scored per channel with training-fold statistics (kernels sum over channels,
and acc in g and gyro in deg/s differ ~100x in scale), transformed by MiniRocket (10,000
kernels by default), and classified by a ridge classifier whose regularisation is chosen by
efficient leave-one-out CV on the training windows only. Trial scores are the mean of the
windows' softmax-normalised ridge scores, as for the neural models.

``trial_series`` gives the other input MiniRocket is measured on (about 0.91 on the
standard split): each whole trial, rebuilt from its windows, resampled to 128 samples
(``model.student.arch: minirocket_trial``). A device would then classify a segmented
trial, not a stream of windows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from xtinyhar.preprocess.normalize import NormStats, fit_zscore
from xtinyhar.preprocess.arrays import align_to_length

TRIAL_LENGTH = 128


@dataclass
class MiniRocketModel:
    norm: NormStats
    transform: object          # aeon MiniRocket, fitted
    scaler: object             # sklearn StandardScaler on the features
    ridge: object              # sklearn RidgeClassifierCV
    n_classes: int | None = None   # K; None: the classes seen in training

    def scores(self, imu: np.ndarray) -> np.ndarray:
        """(N, W, C) raw windows -> (N, K) ridge decision scores; column k is class k, and a
        class absent from the training windows scores -inf (softmax probability 0)."""
        features = self.transform.transform(_to_aeon(imu, self.norm))
        scores = np.asarray(self.ridge.decision_function(self.scaler.transform(features)))
        scores = np.stack([-scores, scores], axis=1) if scores.ndim == 1 else scores   # 2 classes
        if self.n_classes is None:
            return scores
        full = np.full((len(scores), self.n_classes), -np.inf)
        full[:, self.ridge.classes_] = scores        # ridge columns follow its sorted classes_
        return full


def _to_aeon(imu: np.ndarray, norm: NormStats) -> np.ndarray:
    """aeon wants (n_cases, n_channels, n_timepoints) float64."""
    return np.ascontiguousarray(((imu - norm.mean) / norm.std).transpose(0, 2, 1), dtype=np.float64)


def fit_minirocket(imu: np.ndarray, label: np.ndarray, *, seed: int, n_kernels: int = 10_000,
                   threads: int = 1, n_classes: int | None = None) -> MiniRocketModel:
    from aeon.transformations.collection.convolution_based import MiniRocket
    from sklearn.linear_model import RidgeClassifierCV
    from sklearn.preprocessing import StandardScaler

    norm = fit_zscore(imu)
    transform = MiniRocket(n_kernels=n_kernels, random_state=seed, n_jobs=threads)
    features = transform.fit_transform(_to_aeon(imu, norm))
    scaler = StandardScaler().fit(features)
    ridge = RidgeClassifierCV(alphas=np.logspace(-3, 3, 10)).fit(scaler.transform(features), label)
    return MiniRocketModel(norm, transform, scaler, ridge, n_classes)


def trial_series(cache, trials: np.ndarray, length: int = TRIAL_LENGTH) -> np.ndarray:
    """Whole trials (indices into the cache's trial arrays) rebuilt from their windows, which
    cover every sample of a trial (``start`` and ``n_valid`` say where), each linearly
    resampled to ``length`` samples: (T, length, C) in physical units."""
    out = np.empty((len(trials), length, cache.imu.shape[2]), np.float32)
    for i, trial in enumerate(np.asarray(trials)):
        rows = np.flatnonzero(cache.trial_index == trial)
        if len(rows) == 0:
            raise ValueError(f"trial {trial} has no windows in the cache")
        n = int((cache.start[rows] + cache.n_valid[rows]).max())
        signal = np.empty((n, cache.imu.shape[2]), np.float64)
        for row in rows:
            start, valid = int(cache.start[row]), int(cache.n_valid[row])
            signal[start:start + valid] = cache.imu[row, :valid]
        out[i] = align_to_length(signal, length)
    return out
