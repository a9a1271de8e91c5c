"""Per-channel z-score (xtinyhar.preprocess.normalize)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from xtinyhar.preprocess.normalize import (NormStats, apply_zscore, fit_zscore,
                                           invert_zscore)


def _windows(seed=0, n=40, t=50):
    """Acc-like (g, ~1) and gyro-like (deg/s, ~100) channels with distinct offsets."""
    rng = np.random.default_rng(seed)
    scale = np.array([0.3, 0.5, 0.2, 80.0, 120.0, 60.0])
    offset = np.array([0.0, 0.1, 1.0, -5.0, 3.0, 10.0])
    return (rng.normal(size=(n, t, 6)) * scale + offset).astype(np.float32)


def test_fit_then_apply_gives_zero_mean_unit_std_per_channel():
    train = _windows()
    stats = fit_zscore(train)
    assert stats.mean.shape == (6,) and stats.std.shape == (6,)
    z = apply_zscore(train, stats)
    assert z.dtype == np.float32 and z.shape == train.shape
    flat = z.reshape(-1, 6).astype(np.float64)
    np.testing.assert_allclose(flat.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(flat.std(axis=0), 1.0, atol=1e-5)


def test_fit_zscore_matches_numpy_over_all_samples_of_all_windows():
    train = _windows(1, n=7, t=13)
    stats = fit_zscore(train)
    flat = train.reshape(-1, 6).astype(np.float64)
    np.testing.assert_allclose(stats.mean, flat.mean(axis=0), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(stats.std, flat.std(axis=0), rtol=1e-6)


def test_stats_fitted_on_train_differ_from_stats_on_all_data():
    train = _windows(2)
    test = _windows(3) * 2.0 + 5.0                 # a shifted, wider test subject
    on_train = fit_zscore(train)
    on_all = fit_zscore(np.concatenate([train, test]))
    assert not np.allclose(on_train.mean, on_all.mean, atol=0.1)
    assert not np.allclose(on_train.std, on_all.std, rtol=0.1)
    # used right (train stats applied to test), the test set is *not* standardised:
    z_test = apply_zscore(test, on_train).reshape(-1, 6)
    np.testing.assert_allclose(z_test.std(axis=0), 2.0, rtol=0.1)  # test is twice as wide
    assert np.abs(z_test.mean(axis=0)[:3]).min() > 5.0             # +5 g offset on acc shows
    # applying train stats to train is unaffected by the test data
    np.testing.assert_array_equal(apply_zscore(train, on_train),
                                  apply_zscore(train, fit_zscore(train)))


def test_constant_channel_is_centred_not_blown_up():
    train = _windows(4)
    train[:, :, 2] = 1.0                            # acc z stuck at 1 g
    stats = fit_zscore(train)
    assert stats.std[2] == 1.0
    assert stats.mean[2] == pytest.approx(1.0)
    z = apply_zscore(train, stats)
    assert np.all(np.isfinite(z))
    np.testing.assert_array_equal(z[:, :, 2], 0.0)
    # a new window that departs from the constant stays finite and in physical scale
    probe = np.zeros((1, 3, 6), np.float32)
    probe[0, :, 2] = [1.0, 1.5, 0.5]
    np.testing.assert_allclose(apply_zscore(probe, stats)[0, :, 2], [0.0, 0.5, -0.5], atol=1e-6)


def test_norm_stats_dict_round_trip_through_json():
    stats = fit_zscore(_windows(5))
    data = json.loads(json.dumps(stats.to_dict()))
    assert set(data) == {"mean", "std"} and len(data["mean"]) == 6
    back = NormStats.from_dict(data)
    assert back.mean.dtype == np.float32 and back.std.dtype == np.float32
    np.testing.assert_array_equal(back.mean, stats.mean)
    np.testing.assert_array_equal(back.std, stats.std)


def test_invert_zscore_inverts_apply():
    x = _windows(6)
    stats = fit_zscore(x[:10])
    back = invert_zscore(apply_zscore(x, stats), stats)
    assert back.dtype == np.float32
    np.testing.assert_allclose(back, x, rtol=1e-5, atol=1e-3)   # gyro ~100 deg/s, float32


def test_identity_stats_leave_data_unchanged():
    x = _windows(7, n=3, t=5)
    stats = NormStats.identity(6)
    np.testing.assert_array_equal(apply_zscore(x, stats), x)
    np.testing.assert_array_equal(invert_zscore(x, stats), x)


def test_apply_broadcasts_over_leading_axes():
    stats = NormStats(np.array([1.0, -2.0], np.float32), np.array([2.0, 4.0], np.float32))
    x = np.array([[[3.0, 2.0]], [[1.0, -2.0]]], np.float32)   # (2, 1, 2)
    np.testing.assert_array_equal(apply_zscore(x, stats), [[[1.0, 1.0]], [[0.0, 0.0]]])
