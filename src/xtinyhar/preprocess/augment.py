"""Training-time augmentation of IMU windows in physical units (never on test windows).

Channels are acc x,y,z then gyro x,y,z. A rotation is applied to both triples with the same
matrix, as a slightly re-mounted sensor would see it; scaling uses one factor per sensor so
vectors keep their direction. Every function takes a NumPy ``Generator`` so a seed fixes it.
"""

from __future__ import annotations

import numpy as np

from xtinyhar.config import AugmentConfig
from xtinyhar.preprocess.arrays import interpolate

ACC, GYRO = slice(0, 3), slice(3, 6)


def jitter(windows: np.ndarray, sigma: float, channel_std: np.ndarray,
           rng: np.random.Generator) -> np.ndarray:
    """Add Gaussian noise of ``sigma`` times each channel's std (from training stats)."""
    return windows + rng.normal(size=windows.shape) * sigma * channel_std


def scale(windows: np.ndarray, amount: float, rng: np.random.Generator) -> np.ndarray:
    """Multiply acc and gyro of each window by their own factor in [1-amount, 1+amount]."""
    out = windows.copy()
    factors = rng.uniform(1 - amount, 1 + amount, size=(len(windows), 2))
    out[:, :, ACC] *= factors[:, None, 0:1]
    out[:, :, GYRO] *= factors[:, None, 1:2]
    return out


def rotation_matrices(n: int, max_deg: float, rng: np.random.Generator) -> np.ndarray:
    """(n, 3, 3) rotations about random axes by angles uniform in [-max_deg, max_deg]."""
    axis = rng.normal(size=(n, 3))
    axis /= np.linalg.norm(axis, axis=1, keepdims=True)
    angle = np.deg2rad(rng.uniform(-max_deg, max_deg, size=n))
    x, y, z = axis.T
    skew = np.zeros((n, 3, 3))
    skew[:, 0, 1], skew[:, 0, 2], skew[:, 1, 2] = -z, y, -x
    skew[:, 1, 0], skew[:, 2, 0], skew[:, 2, 1] = z, -y, x
    sin, cos = np.sin(angle)[:, None, None], np.cos(angle)[:, None, None]
    return np.eye(3) + sin * skew + (1 - cos) * skew @ skew  # Rodrigues' formula


def rotate(windows: np.ndarray, max_deg: float, rng: np.random.Generator) -> np.ndarray:
    """Rotate acc and gyro of each window by the same small random 3-D rotation."""
    rot = rotation_matrices(len(windows), max_deg, rng)       # (N, 3, 3)
    out = windows.copy()
    out[:, :, ACC] = np.einsum("nij,ntj->nti", rot, windows[:, :, ACC])
    out[:, :, GYRO] = np.einsum("nij,ntj->nti", rot, windows[:, :, GYRO])
    return out


def warp_clocks(n: int, w: int, strength: float, rng: np.random.Generator) -> np.ndarray:
    """(n, w) time maps for ``time_warp``: for each output sample, where to read the window
    (as a fraction of it), playing it at a smoothly varying speed (1 +- strength)."""
    t = np.linspace(0.0, 1.0, w)
    clocks = np.empty((n, w))
    for i in range(n):
        freq = rng.uniform(0.5, 2.0)
        speed = 1.0 + strength * np.sin(2 * np.pi * (freq * t + rng.uniform()))  # > 0
        clock = np.concatenate([[0.0], np.cumsum(speed[1:] + speed[:-1]) / 2])
        clocks[i] = clock / clock[-1]
    return clocks


def time_warp(windows: np.ndarray, strength: float, rng: np.random.Generator,
              clocks: np.ndarray | None = None) -> np.ndarray:
    """Play each window at a smoothly varying speed (1 +- strength), same start and end.
    ``clocks`` (from ``warp_clocks``, any length) gives the warp when another stream must
    get the same one (a skeleton window of another frame rate over the same span)."""
    n, w = windows.shape[:2]
    if clocks is None:
        clocks = warp_clocks(n, w, strength, rng)
    grid, own = np.linspace(0.0, 1.0, clocks.shape[1]), np.linspace(0.0, 1.0, w)
    out = np.empty_like(windows)
    for i in range(n):
        out[i] = interpolate(windows[i], np.interp(own, grid, clocks[i]) * (w - 1))
    return out


def crop_spans(n: int, amount: float, rng: np.random.Generator) -> np.ndarray:
    """(n, 2) spans [start, end] as fractions of a window: up to ``amount`` trimmed at each end."""
    trim = rng.uniform(0.0, amount, (n, 2))
    return np.stack([trim[:, 0], 1.0 - trim[:, 1]], axis=1)


def stretch_spans(windows: np.ndarray, spans: np.ndarray) -> np.ndarray:
    """Each (w, ...) window's span ``[start, end]`` (fractions) stretched back onto w
    samples: the same crop applied to IMU and skeleton windows keeps them aligned."""
    w = windows.shape[1]
    out = np.empty(windows.shape, dtype=np.float64)
    for i, (start, end) in enumerate(spans):
        out[i] = interpolate(windows[i].astype(np.float64), np.linspace(start, end, w) * (w - 1))
    return out


def augment(windows: np.ndarray, cfg: AugmentConfig, channel_std: np.ndarray,
            rng: np.random.Generator, spans: np.ndarray | None = None,
            clocks: np.ndarray | None = None) -> np.ndarray:
    """Apply the transforms that ``cfg`` turns on, in the order crop, warp, rotate, scale,
    jitter. ``spans`` (from ``crop_spans``) and ``clocks`` (from ``warp_clocks``) give the
    crop and the warp when another stream must get the same ones; otherwise they are drawn
    here."""
    out = windows.astype(np.float64)
    if cfg.crop > 0:
        out = stretch_spans(out, crop_spans(len(out), cfg.crop, rng) if spans is None else spans)
    if cfg.time_warp > 0:
        out = time_warp(out, cfg.time_warp, rng, clocks)
    if cfg.rotation_deg > 0:
        out = rotate(out, cfg.rotation_deg, rng)
    if cfg.scale > 0:
        out = scale(out, cfg.scale, rng)
    if cfg.jitter > 0:
        out = jitter(out, cfg.jitter, channel_std, rng)
    return out.astype(np.float32)
