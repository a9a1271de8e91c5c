"""The preprocessing steps that training and the device runtime share, in NumPy only.

One implementation of each: the token cache (``preprocess/windows.py``,
``preprocess/resample.py``), evaluation and the numpy-only device runtime
(``export/runtime.py``) all call these, so a window on a device is cut, padded and
stretched exactly as in training. Nothing here imports more than NumPy.
"""

from __future__ import annotations

import numpy as np

# Header names of a CSV recording's time column (any case): it carries no signal, so the
# training loader and the device reader both leave it out.
TIME_COLUMNS = ("time", "t", "timestamp", "timestamps", "time_s", "seconds")


def interpolate(series: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Linearly interpolate ``series`` (T, ...) at fractional sample ``positions`` (M,).

    Positions outside [0, T-1] take the edge value; the result keeps ``series``' dtype.
    """
    positions = np.clip(np.asarray(positions, dtype=np.float64), 0, len(series) - 1)
    left = np.floor(positions).astype(np.int64)
    right = np.minimum(left + 1, len(series) - 1)
    weight = (positions - left).reshape((-1,) + (1,) * (series.ndim - 1))
    out = series[left] * (1.0 - weight) + series[right] * weight
    return out.astype(series.dtype, copy=False)


def align_to_length(series: np.ndarray, n_out: int) -> np.ndarray:
    """Stretch (F, ...) onto ``n_out`` evenly spaced samples from its first sample to its
    last (the normalised time axis [0, 1])."""
    return interpolate(series, np.linspace(0.0, len(series) - 1, n_out))


def window_starts(n_samples: int, window: int, stride: int) -> np.ndarray:
    """Start indices of the sliding windows of a trial of ``n_samples``: 0, stride,
    2*stride, ... that fit, plus one ending at the last sample when the tail would otherwise
    be left out; a trial of at most ``window`` samples gets the one window at 0."""
    if n_samples <= window:
        return np.zeros(1, dtype=np.int64)
    starts = list(range(0, n_samples - window + 1, stride))
    if starts[-1] + window < n_samples:
        starts.append(n_samples - window)
    return np.asarray(starts, dtype=np.int64)


def pad_end(series: np.ndarray, length: int) -> np.ndarray:
    """Pad (T, ...) to ``length`` samples by repeating the last sample (unchanged if longer)."""
    if len(series) >= length:
        return series
    pad = np.repeat(series[-1:], length - len(series), axis=0)
    return np.concatenate([series, pad], axis=0)


def sliding_windows(series: np.ndarray, window: int, stride: int) -> np.ndarray:
    """(T, C) -> (B, window, C): a short trial padded by ``pad_end``, then cut at
    ``window_starts``."""
    padded = pad_end(series, window)
    return np.stack([padded[s:s + window] for s in window_starts(len(series), window, stride)])


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax over the last axis, in one new float array (at least float32)."""
    probs = np.subtract(logits, logits.max(axis=-1, keepdims=True),
                        dtype=np.result_type(logits, np.float32))      # a new float array
    np.exp(probs, out=probs)
    probs /= probs.sum(axis=-1, keepdims=True)
    return probs
