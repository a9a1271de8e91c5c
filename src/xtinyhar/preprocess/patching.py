"""Dynamic patching: the patch length of each window follows how much the wearer moves.

1. ``motion_energy``: the mean magnitude of the change of acceleration between successive
   samples, in g per 20 ms (the seed's 50 Hz sample period; at other rates it is rescaled
   so the number does not depend on the rate). Computed in physical units, before
   normalisation. On UTD-MHAD (wrist/thigh sensor, W=100 at 50 Hz) its 5/50/95th
   percentiles are about 0.05/0.17/0.50 g, so the seed's thresholds 0.08 and 0.20 g split
   windows into still, intermediate and lively ones.
2. ``patch_lengths``: energy <= tau_low -> p_max (still: coarse tokens), energy >= tau_high
   -> p_min (lively: fine tokens), linear in between, rounded to whole samples.
3. ``token_positions`` + ``gather_tokens``: static shapes for export. Every window gets
   ``n_max = ceil(W / p_min)`` tokens of ``p_default`` points each. Token k covers samples
   [k*p, min((k+1)*p, W)) and is resampled onto ``p_default`` points by linear
   interpolation (an identity when the span is exactly ``p_default`` long); tokens past
   the window's end are masked; each token carries its centre time so tokens of any width
   share one time axis.

Fixed patching is the same code with a constant p (``fixed_patch_lengths``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

REFERENCE_HZ = 50.0
ACC = slice(0, 3)


def motion_energy(windows: np.ndarray, rate_hz: float,
                  n_valid: np.ndarray | None = None) -> np.ndarray:
    """(N, W, C) physical-unit windows -> (N,) energy in g per 20 ms (see module doc).

    ``n_valid`` (N,) limits the mean to real samples, so the repeated samples that pad a
    short trial do not make it look still.
    """
    acc = windows[:, :, ACC].astype(np.float64)
    step = np.linalg.norm(np.diff(acc, axis=1), axis=-1)  # (N, W-1) g per sample
    if n_valid is None:
        mean_step = step.mean(axis=1)
    else:
        real = np.arange(step.shape[1])[None, :] < (np.asarray(n_valid)[:, None] - 1)
        mean_step = (step * real).sum(axis=1) / np.maximum(real.sum(axis=1), 1)
    return (mean_step * rate_hz / REFERENCE_HZ).astype(np.float32)


def patch_lengths(energy: np.ndarray, *, p_min: int, p_max: int, tau_low: float,
                  tau_high: float) -> np.ndarray:
    """Map energy to an integer patch length in [p_min, p_max] (still -> p_max)."""
    lively = np.clip((np.asarray(energy, np.float64) - tau_low) / (tau_high - tau_low), 0.0, 1.0)
    return np.rint(p_max - lively * (p_max - p_min)).astype(np.int64)


def fixed_patch_lengths(n_windows: int, p: int) -> np.ndarray:
    """Fixed patching: every window uses patch length ``p``."""
    return np.full(n_windows, p, dtype=np.int64)


def max_tokens(window: int, p_min: int) -> int:
    """Token slots per window: enough for the finest patching."""
    return math.ceil(window / p_min)


@dataclass
class TokenGrid:
    """Where each token samples its window. positions (N, n_max, p_default) fractional
    sample indices; mask (N, n_max) True for real tokens; centre/width (N, n_max) in
    samples (0 for masked tokens)."""
    positions: np.ndarray
    mask: np.ndarray
    centre: np.ndarray
    width: np.ndarray


def token_positions(patch_len: np.ndarray, *, window: int, n_max: int,
                    p_default: int) -> TokenGrid:
    """Sampling grid of every token for per-window patch lengths (N,)."""
    patch_len = np.asarray(patch_len, np.float64)[:, None]           # (N, 1)
    k = np.arange(n_max, dtype=np.float64)[None, :]                   # (1, n_max)
    start = k * patch_len                                             # (N, n_max)
    end = np.minimum(start + patch_len, window)
    mask = start < window
    width = np.where(mask, end - start, 0.0)
    # p_default points spread evenly over [start, end): point j sits at the centre of
    # sub-interval j, minus 0.5 to convert a continuous coordinate to a sample index.
    j = (np.arange(p_default, dtype=np.float64) + 0.5) / p_default    # (p_default,)
    positions = start[..., None] + j * width[..., None] - 0.5         # (N, n_max, p_default)
    positions = np.clip(positions, 0.0, window - 1)
    centre = np.where(mask, start + width / 2.0, 0.0)
    return TokenGrid(positions.astype(np.float32), mask, centre.astype(np.float32),
                     width.astype(np.float32))


def gather_tokens(windows: np.ndarray, positions: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(N, W, C) windows sampled at (N, n_max, p) positions -> (N, n_max, p, C) tokens.

    Linear interpolation between the two neighbouring samples; masked tokens are zero.
    """
    n, w, c = windows.shape
    flat = positions.reshape(n, -1).astype(np.float64)                # (N, n_max*p)
    left = np.floor(flat).astype(np.int64)
    right = np.minimum(left + 1, w - 1)
    weight = (flat - left)[..., None]                                 # (N, n_max*p, 1)
    lo = np.take_along_axis(windows, left[..., None], axis=1)
    hi = np.take_along_axis(windows, right[..., None], axis=1)
    tokens = (lo * (1.0 - weight) + hi * weight).reshape(*positions.shape, c)
    tokens[~mask] = 0.0
    return tokens.astype(np.float32)
