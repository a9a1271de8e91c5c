"""Dynamic patching (xtinyhar.preprocess.patching)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from xtinyhar.preprocess.patching import (fixed_patch_lengths, gather_tokens, max_tokens,
                                          motion_energy, patch_lengths, token_positions)

W = 100
P_MIN, P_MAX, P_DEFAULT = 10, 30, 20
TAU_LOW, TAU_HIGH = 0.08, 0.20
PATCH = dict(p_min=P_MIN, p_max=P_MAX, tau_low=TAU_LOW, tau_high=TAU_HIGH)


def _still_window(w=W):
    x = np.zeros((1, w, 6), np.float32)
    x[0, :, 2] = 1.0                                  # 1 g on z, no rotation
    return x


def _vigorous_window(w=W):
    x = np.zeros((1, w, 6), np.float32)
    x[0, :, 0] = np.where(np.arange(w) % 2 == 0, 2.0, -2.0)   # +-2 g every sample
    x[0, :, 3] = 300.0
    return x


# ----------------------------------------------------------------------------- motion_energy

def test_still_window_has_zero_energy_and_gets_p_max():
    e = motion_energy(_still_window(), 50.0)
    assert e.shape == (1,) and e.dtype == np.float32
    assert e[0] == 0.0
    assert patch_lengths(e, **PATCH)[0] == P_MAX


def test_vigorous_window_energy_above_tau_high_gets_p_min():
    e = motion_energy(_vigorous_window(), 50.0)
    assert e[0] == pytest.approx(4.0)                 # |+2 - -2| g per 20 ms sample
    assert e[0] >= TAU_HIGH
    assert patch_lengths(e, **PATCH)[0] == P_MIN


def test_motion_energy_ignores_gyro_channels():
    x = _still_window()
    x[0, :, 3:] = np.random.default_rng(0).normal(size=(W, 3)) * 200.0
    assert motion_energy(x, 50.0)[0] == 0.0


def test_motion_energy_is_mean_step_norm_in_g_per_20ms():
    # acc steps of (0.03, 0.04, 0) per sample: norm 0.05 g per sample
    x = np.zeros((1, 11, 6))
    x[0, :, 0] = 0.03 * np.arange(11)
    x[0, :, 1] = 0.04 * np.arange(11)
    assert motion_energy(x, 50.0)[0] == pytest.approx(0.05, rel=1e-6)
    assert motion_energy(x, 100.0)[0] == pytest.approx(0.10, rel=1e-6)   # same step, half the time


def test_motion_energy_does_not_depend_on_sample_rate():
    # the same 1.5 Hz, 0.5 g wrist swing over 2 s seen at 50 Hz and at 100 Hz
    def swing(rate):
        t = np.arange(int(2 * rate)) / rate
        x = np.zeros((1, len(t), 6))
        x[0, :, 0] = 0.5 * np.sin(2 * np.pi * 1.5 * t)
        x[0, :, 1] = 0.3 * np.cos(2 * np.pi * 1.5 * t)
        return x
    e50 = motion_energy(swing(50.0), 50.0)[0]
    e100 = motion_energy(swing(100.0), 100.0)[0]
    assert e50 > 0.05
    assert e100 == pytest.approx(e50, rel=0.05)


# ----------------------------------------------------------------------------- patch_lengths

def test_patch_lengths_linear_between_thresholds():
    energy = np.array([0.0, 0.08, 0.11, 0.14, 0.17, 0.20, 1.0])
    np.testing.assert_array_equal(patch_lengths(energy, **PATCH), [30, 30, 25, 20, 15, 10, 10])


def test_patch_lengths_monotone_non_increasing_and_in_range():
    energy = np.linspace(0.0, 0.4, 401)
    p = patch_lengths(energy, **PATCH)
    assert p.dtype == np.int64
    assert np.all(np.diff(p) <= 0)
    assert p.min() == P_MIN and p.max() == P_MAX
    assert set(np.unique(p)) == set(range(P_MIN, P_MAX + 1))   # every length is reachable
    # linear: rounding error at most half a sample from the exact line
    exact = P_MAX - np.clip((energy - TAU_LOW) / (TAU_HIGH - TAU_LOW), 0, 1) * (P_MAX - P_MIN)
    assert np.abs(p - exact).max() <= 0.5 + 1e-9


def test_fixed_patch_lengths():
    np.testing.assert_array_equal(fixed_patch_lengths(4, 20), [20, 20, 20, 20])


def test_max_tokens():
    assert max_tokens(100, 10) == 10
    assert max_tokens(100, 30) == 4
    assert max_tokens(100, 7) == 15


# ----------------------------------------------------------------------------- token grid

def _ramp_windows(n=3, w=W, c=6):
    """Channel c holds (sample index) * (c + 1): linear in time."""
    idx = np.arange(w, dtype=np.float32)[None, :, None]
    return np.broadcast_to(idx * np.arange(1, c + 1, dtype=np.float32), (n, w, c)).copy()


def test_patch_equal_to_p_default_is_identity_sampling():
    n_max = max_tokens(W, P_MIN)                      # 10 slots
    windows = np.random.default_rng(0).normal(size=(2, W, 6)).astype(np.float32)
    grid = token_positions(np.array([20, 20]), window=W, n_max=n_max, p_default=20)
    real = math.ceil(W / 20)                          # 5 tokens
    np.testing.assert_array_equal(grid.mask, np.tile(np.arange(n_max) < real, (2, 1)))
    np.testing.assert_array_equal(grid.positions[0, :real].ravel(), np.arange(W))
    tokens = gather_tokens(windows, grid.positions, grid.mask)
    assert tokens.shape == (2, n_max, 20, 6)
    np.testing.assert_array_equal(tokens[:, :real].reshape(2, W, 6), windows)
    np.testing.assert_array_equal(tokens[:, real:], 0.0)
    np.testing.assert_array_equal(grid.width[0], [20] * 5 + [0] * 5)
    np.testing.assert_array_equal(grid.centre[0], [10, 30, 50, 70, 90] + [0] * 5)


def test_patch_30_window_100_gives_four_tokens_last_one_short():
    n_max = max_tokens(W, P_MIN)
    grid = token_positions(np.array([30]), window=W, n_max=n_max, p_default=P_DEFAULT)
    np.testing.assert_array_equal(grid.mask[0], [True] * 4 + [False] * 6)
    np.testing.assert_allclose(grid.width[0, :4], [30, 30, 30, 10])
    np.testing.assert_allclose(grid.centre[0, :4], [15, 45, 75, 95])
    assert np.all(np.diff(grid.centre[0, :4]) > 0)
    # the last token samples only inside [90, 100): 20 points evenly spread over 10 samples
    last = grid.positions[0, 3]
    assert last.min() >= 89.5 and last.max() <= 99.0
    # sub-interval centres 90.25, 90.75, ..., 99.75 in continuous time are sample indices
    # 89.75 ... 99.25; the last is clipped to the final sample, 99.
    np.testing.assert_allclose(last, np.minimum(89.75 + 0.5 * np.arange(20), 99.0), atol=1e-5)
    # the first full token spreads 20 points over 30 samples, 1.5 apart
    np.testing.assert_allclose(np.diff(grid.positions[0, 0]), 1.5, atol=1e-5)
    np.testing.assert_allclose(grid.positions[0, 0, 0], 0.25, atol=1e-6)


@pytest.mark.parametrize("p", [10, 13, 20, 25, 30])
def test_token_centres_increasing_and_widths_tile_window(p):
    n_max = max_tokens(W, P_MIN)
    grid = token_positions(np.array([p]), window=W, n_max=n_max, p_default=P_DEFAULT)
    real = grid.mask[0]
    assert real.sum() == math.ceil(W / p)
    assert np.all(real[:real.sum()]) and not np.any(real[real.sum():])   # real tokens first
    assert grid.width[0, real].sum() == pytest.approx(W)                 # spans tile [0, W)
    assert np.all(np.diff(grid.centre[0, real]) > 0)
    assert np.all(grid.width[0, ~real] == 0) and np.all(grid.centre[0, ~real] == 0)
    assert np.all((grid.positions >= 0) & (grid.positions <= W - 1))


def test_gather_tokens_on_linear_ramp_returns_positions():
    n_max = max_tokens(W, P_MIN)
    windows = _ramp_windows(n=4)
    lengths = np.array([10, 17, 24, 30])
    grid = token_positions(lengths, window=W, n_max=n_max, p_default=P_DEFAULT)
    tokens = gather_tokens(windows, grid.positions, grid.mask)
    for i in range(4):
        real = grid.mask[i]
        for c in range(6):
            np.testing.assert_allclose(tokens[i, real, :, c], grid.positions[i, real] * (c + 1),
                                       rtol=1e-6, atol=1e-4)
        np.testing.assert_array_equal(tokens[i, ~real], 0.0)


def test_token_shapes_static_for_dynamic_lengths():
    n, c = 5, 6
    n_max = max_tokens(W, P_MIN)
    windows = np.random.default_rng(1).normal(size=(n, W, c)).astype(np.float32)
    lengths = np.array([10, 15, 20, 25, 30])
    grid = token_positions(lengths, window=W, n_max=n_max, p_default=P_DEFAULT)
    tokens = gather_tokens(windows, grid.positions, grid.mask)
    assert n_max == math.ceil(W / P_MIN) == 10
    assert tokens.shape == (n, n_max, P_DEFAULT, c) and tokens.dtype == np.float32
    assert grid.positions.shape == (n, n_max, P_DEFAULT)
    assert grid.mask.shape == grid.centre.shape == grid.width.shape == (n, n_max)
    np.testing.assert_array_equal(grid.mask.sum(axis=1), [10, 7, 5, 4, 4])


def test_fixed_patching_equals_dynamic_patching_with_constant_length():
    n_max = max_tokens(W, P_MIN)
    windows = np.concatenate([_vigorous_window(), _vigorous_window() * 0.5,
                              np.random.default_rng(2).normal(size=(1, W, 6))]).astype(np.float32)
    energy = motion_energy(windows, 50.0)
    assert np.all(energy >= TAU_HIGH)                 # every window lively -> all p_min
    dynamic = patch_lengths(energy, **PATCH)
    fixed = fixed_patch_lengths(len(windows), P_MIN)
    np.testing.assert_array_equal(dynamic, fixed)
    g_dyn = token_positions(dynamic, window=W, n_max=n_max, p_default=P_DEFAULT)
    g_fix = token_positions(fixed, window=W, n_max=n_max, p_default=P_DEFAULT)
    for name in ("positions", "mask", "centre", "width"):
        np.testing.assert_array_equal(getattr(g_dyn, name), getattr(g_fix, name))
    np.testing.assert_array_equal(gather_tokens(windows, g_dyn.positions, g_dyn.mask),
                                  gather_tokens(windows, g_fix.positions, g_fix.mask))
    # and p_min == p_max makes patch_lengths constant whatever the energy
    flat = patch_lengths(np.array([0.0, 0.1, 5.0]), p_min=20, p_max=20, tau_low=TAU_LOW,
                         tau_high=TAU_HIGH)
    np.testing.assert_array_equal(flat, fixed_patch_lengths(3, 20))


def test_constant_window_gives_constant_tokens():
    windows = np.full((1, W, 6), 3.5, np.float32)
    grid = token_positions(np.array([13]), window=W, n_max=max_tokens(W, P_MIN),
                           p_default=P_DEFAULT)
    tokens = gather_tokens(windows, grid.positions, grid.mask)
    np.testing.assert_array_equal(tokens[0, grid.mask[0]], 3.5)


def test_motion_energy_ignores_padding_of_short_trials():
    from xtinyhar.preprocess.arrays import pad_end
    rng = np.random.default_rng(0)
    short = rng.normal(scale=0.2, size=(60, 6)).astype(np.float32)
    padded = pad_end(short, 100)[None]
    full = motion_energy(short[None], 50.0)
    assert motion_energy(padded, 50.0, np.array([60]))[0] == pytest.approx(full[0], rel=1e-5)
    assert motion_energy(padded, 50.0)[0] < 0.7 * full[0]  # what padding alone would do
