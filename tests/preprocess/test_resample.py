"""Resampling, alignment and low-pass filtering (xtinyhar.preprocess.resample)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import find_peaks

from xtinyhar.preprocess.arrays import align_to_length, interpolate
from xtinyhar.preprocess.resample import lowpass, resample_rate, resample_trial


# ----------------------------------------------------------------------------- interpolate

def test_interpolate_is_exact_on_linear_signal():
    t = np.arange(10, dtype=np.float64)
    series = np.stack([3.0 * t + 1.0, -2.0 * t], axis=1)              # (10, 2)
    positions = np.array([0.0, 0.25, 1.5, 4.75, 8.999, 9.0])
    out = interpolate(series, positions)
    assert out.shape == (6, 2)
    np.testing.assert_allclose(out[:, 0], 3.0 * positions + 1.0, atol=1e-12)
    np.testing.assert_allclose(out[:, 1], -2.0 * positions, atol=1e-12)


def test_interpolate_hits_samples_exactly_at_integer_positions():
    series = np.array([5.0, -1.0, 7.0, 2.0])
    np.testing.assert_array_equal(interpolate(series, np.array([0, 1, 2, 3])), series)


def test_interpolate_clips_outside_range_to_edge_values():
    series = np.array([[10.0], [20.0], [30.0]])
    out = interpolate(series, np.array([-5.0, -0.5, 2.5, 100.0]))
    np.testing.assert_array_equal(out[:, 0], [10.0, 10.0, 30.0, 30.0])


def test_interpolate_keeps_trailing_dims_and_dtype():
    series = np.arange(4 * 2 * 3, dtype=np.float32).reshape(4, 2, 3)
    out = interpolate(series, np.array([0.5, 2.0]))
    assert out.shape == (2, 2, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out[0], (series[0] + series[1]) / 2)
    np.testing.assert_array_equal(out[1], series[2])


# ----------------------------------------------------------------------------- resample_rate

def test_resample_rate_downsample_keeps_duration_and_values():
    # 2 s of a 2 Hz sine at 100 Hz: 201 samples from t=0 to t=2 s inclusive.
    t_in = np.arange(201) / 100.0
    series = np.sin(2 * np.pi * 2.0 * t_in)[:, None]
    out = resample_rate(series, 100.0, 50.0)
    assert out.shape == (101, 1)
    t_out = np.arange(101) / 50.0
    assert t_out[-1] == pytest.approx(2.0)                            # same time span
    expected = np.sin(2 * np.pi * 2.0 * t_out)
    np.testing.assert_allclose(out[:, 0], expected, atol=1e-3)


def test_resample_rate_is_identity_when_rates_equal():
    series = np.random.default_rng(0).normal(size=(37, 3))
    out = resample_rate(series, 50.0, 50.0)
    np.testing.assert_array_equal(out, series)


def test_resample_rate_upsampling_linear_ramp_is_exact():
    series = np.stack([np.arange(20.0), 5.0 - 0.5 * np.arange(20.0)], axis=1)  # 50 Hz
    out = resample_rate(series, 50.0, 100.0)
    assert out.shape == (39, 2)                                       # (20-1)*2 + 1
    pos = np.arange(39) / 2.0
    np.testing.assert_allclose(out[:, 0], pos, atol=1e-12)
    np.testing.assert_allclose(out[:, 1], 5.0 - 0.5 * pos, atol=1e-12)


def test_resample_rate_downsampling_suppresses_aliasing():
    # A 40 Hz tone at 100 Hz is above the 25 Hz Nyquist of 50 Hz; plain decimation would
    # alias it to 10 Hz at full amplitude. The anti-alias low-pass must remove it.
    t = np.arange(1001) / 100.0
    series = np.sin(2 * np.pi * 40.0 * t)[:, None]
    out = resample_rate(series, 100.0, 50.0)
    interior = out[50:-50, 0]
    assert np.abs(interior).max() < 1e-3


# ----------------------------------------------------------------------------- align_to_length

def test_align_to_length_maps_endpoints_and_is_linear_between():
    frames = np.stack([np.arange(7.0) ** 2, np.arange(7.0)], axis=1)   # (7, 2)
    out = align_to_length(frames, 13)
    assert out.shape == (13, 2)
    np.testing.assert_array_equal(out[0], frames[0])
    np.testing.assert_array_equal(out[-1], frames[-1])
    # second column is linear in the frame index, so it must be linear in the output index
    np.testing.assert_allclose(out[:, 1], np.linspace(0.0, 6.0, 13), atol=1e-12)
    # 13 points on 7 frames: every other output lands exactly on a frame
    np.testing.assert_allclose(out[::2, 0], frames[:, 0], atol=1e-12)
    # and the ones between are midpoints of neighbouring frames
    np.testing.assert_allclose(out[1::2, 0], (frames[:-1, 0] + frames[1:, 0]) / 2, atol=1e-12)


def test_align_to_length_shrinks_too():
    frames = np.linspace(-1.0, 3.0, 41)[:, None]
    out = align_to_length(frames, 5)
    np.testing.assert_allclose(out[:, 0], [-1.0, 0.0, 1.0, 2.0, 3.0], atol=1e-12)


# ----------------------------------------------------------------------------- resample_trial

@pytest.mark.parametrize("n_imu,n_skel", [(101, 61), (163, 67), (256, 80), (40, 30)])
def test_resample_trial_skeleton_length_and_endpoints(n_imu, n_skel):
    rng = np.random.default_rng(n_imu)
    imu = rng.normal(size=(n_imu, 6)).astype(np.float32)
    skeleton = rng.normal(size=(n_skel, 20, 3)).astype(np.float32)
    out_imu, out_skel = resample_trial(imu, 50.0, skeleton, resample_hz=50.0, skeleton_hz=25.0)
    assert out_imu.shape == (n_imu, 6)
    expected_frames = int(round((n_imu - 1) * 25.0 / 50.0)) + 1
    assert out_skel.shape == (expected_frames, 20, 3)
    np.testing.assert_allclose(out_skel[0], skeleton[0], atol=1e-6)
    np.testing.assert_allclose(out_skel[-1], skeleton[-1], atol=1e-6)


def test_resample_trial_changes_imu_rate_and_aligns_skeleton_to_new_length():
    imu = np.tile(np.arange(201, dtype=np.float32)[:, None] / 100.0, (1, 6))   # 2 s at 100 Hz
    skel_time = np.linspace(0.0, 1.0, 31, dtype=np.float32)                    # normalised time
    skeleton = np.broadcast_to(skel_time[:, None, None], (31, 4, 3)).copy()
    out_imu, out_skel = resample_trial(imu, 100.0, skeleton, resample_hz=50.0, skeleton_hz=25.0)
    assert out_imu.shape == (101, 6)
    np.testing.assert_allclose(out_imu[:, 0], np.arange(101) / 50.0, atol=1e-3)
    assert out_skel.shape == (51, 4, 3)    # frame j at IMU sample 2j: exactly 25 Hz
    # skeleton encodes normalised time: linear from 0 to 1 across its new frames
    np.testing.assert_allclose(out_skel[:, 0, 0], np.linspace(0.0, 1.0, len(out_skel)),
                               atol=1e-6)


def test_resample_trial_without_skeleton_returns_none():
    imu = np.zeros((30, 6), np.float32)
    out_imu, out_skel = resample_trial(imu, 50.0, None, resample_hz=50.0, skeleton_hz=25.0)
    assert out_skel is None and out_imu.shape == (30, 6)


# ----------------------------------------------------------------------------- lowpass

def _two_tone(n=1000, rate=100.0):
    t = np.arange(n) / rate
    slow = np.sin(2 * np.pi * 1.0 * t)
    fast = 0.5 * np.sin(2 * np.pi * 20.0 * t)
    return t, slow, fast


def test_lowpass_removes_20hz_and_keeps_1hz():
    _, slow, fast = _two_tone()
    out = lowpass((slow + fast)[:, None], cutoff_hz=5.0, rate_hz=100.0)[:, 0]
    interior = slice(100, -100)                                       # away from edge effects
    residual = out[interior] - slow[interior]
    assert np.abs(residual).max() < 1e-3                              # 20 Hz (amp 0.5) gone
    assert np.std(out[interior]) == pytest.approx(np.std(slow[interior]), rel=0.01)


def test_lowpass_has_no_phase_delay():
    t, slow, fast = _two_tone()
    out = lowpass((slow + fast)[:, None], cutoff_hz=5.0, rate_hz=100.0)[:, 0]
    peaks_clean, _ = find_peaks(slow, height=0.5)
    peaks_out, _ = find_peaks(out, height=0.5)
    # 1 Hz peaks at t = 0.25, 1.25, ... s; a causal 4th-order Butterworth would shift them
    # by ~10 samples; zero-phase filtering must not move them at all.
    np.testing.assert_array_equal(peaks_out, peaks_clean)
    np.testing.assert_allclose(t[peaks_out], 0.25 + np.arange(len(peaks_out)), atol=1e-9)


def test_lowpass_is_noop_when_cutoff_at_or_above_nyquist():
    x = np.random.default_rng(1).normal(size=(50, 2))
    np.testing.assert_array_equal(lowpass(x, 50.0, 100.0), x)


def test_lowpass_filters_each_column_independently_and_keeps_dtype():
    _, slow, fast = _two_tone()
    x = np.stack([slow + fast, 2.0 * slow], axis=1).astype(np.float32)
    out = lowpass(x, 5.0, 100.0)
    assert out.dtype == np.float32 and out.shape == x.shape
    np.testing.assert_allclose(out[100:-100, 0], slow[100:-100], atol=0.01)
    np.testing.assert_allclose(out[100:-100, 1], 2.0 * slow[100:-100], atol=0.01)
