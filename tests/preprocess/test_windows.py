"""Sliding windows (xtinyhar.preprocess.windows): where windows start, padding, alignment."""

from __future__ import annotations

import numpy as np
import pytest

from xtinyhar.preprocess.resample import resample_trial
from xtinyhar.preprocess.arrays import pad_end, window_starts
from xtinyhar.preprocess.windows import make_windows, trial_windows

W, STRIDE = 100, 50
IMU_HZ, SKEL_HZ = 50.0, 25.0
RATIO = SKEL_HZ / IMU_HZ


# ----------------------------------------------------------------------------- window_starts

def test_window_starts_trial_exactly_one_window_long():
    np.testing.assert_array_equal(window_starts(100, W, STRIDE), [0])


@pytest.mark.parametrize("n", [1, 37, 99])
def test_window_starts_short_trial_gets_one_window(n):
    np.testing.assert_array_equal(window_starts(n, W, STRIDE), [0])


def test_window_starts_tail_fits_stride_exactly():
    np.testing.assert_array_equal(window_starts(250, W, STRIDE), [0, 50, 100, 150])


def test_window_starts_adds_end_aligned_window_for_leftover_tail():
    np.testing.assert_array_equal(window_starts(260, W, STRIDE), [0, 50, 100, 150, 160])


@pytest.mark.parametrize("window,stride", [(100, 50), (100, 100), (64, 16), (10, 7)])
def test_window_starts_cover_every_sample_and_stay_inside(window, stride):
    for n in range(window, 4 * window + 3):
        starts = window_starts(n, window, stride)
        assert starts.dtype == np.int64
        assert starts[0] == 0
        assert np.all(np.diff(starts) > 0), (n, starts)                # strictly increasing
        assert np.all(np.diff(starts) <= stride), (n, starts)          # no gap beyond stride
        assert starts[-1] + window == n or starts[-1] + window + stride > n, (n, starts)
        assert starts[-1] + window <= n                                 # no window past the end
        covered = np.zeros(n, bool)
        for s in starts:
            covered[s:s + window] = True
        assert covered.all(), (n, starts)
        # the regular grid is kept; at most one extra window, ending on the last sample
        regular = list(range(0, n - window + 1, stride))
        assert list(starts[:len(regular)]) == regular
        assert len(starts) - len(regular) in (0, 1)
        if len(starts) > len(regular):
            assert starts[-1] == n - window


# ----------------------------------------------------------------------------- pad_end

def test_pad_end_repeats_last_sample():
    x = np.array([[1.0, 2.0], [3.0, 4.0]])
    out = pad_end(x, 5)
    np.testing.assert_array_equal(out, [[1, 2], [3, 4], [3, 4], [3, 4], [3, 4]])
    assert pad_end(x, 2) is x


# ----------------------------------------------------------------------------- make_windows

def _time_trial(n, channels=6, offset=0.0):
    """IMU whose every channel holds the sample's time in seconds (plus ``offset``)."""
    t = np.arange(n, dtype=np.float32) / IMU_HZ + offset
    return np.tile(t[:, None], (1, channels))


def _time_skeleton(n_frames, joints=3, offset=0.0):
    t = np.arange(n_frames, dtype=np.float32) / SKEL_HZ + offset
    return np.broadcast_to(t[:, None, None], (n_frames, joints, 3)).copy()


def test_make_windows_metadata_per_window():
    lengths = [250, 260, 60, 100]
    imus = [_time_trial(n) for n in lengths]
    out = make_windows(imus, None, labels=[3, 1, 4, 1], subjects=[7, 8, 7, 9],
                       window=W, stride=STRIDE)
    # windows per trial: 4, 5, 1, 1
    np.testing.assert_array_equal(out.trial_index, [0] * 4 + [1] * 5 + [2] + [3])
    np.testing.assert_array_equal(out.label, [3] * 4 + [1] * 5 + [4] + [1])
    np.testing.assert_array_equal(out.subject, [7] * 4 + [8] * 5 + [7] + [9])
    np.testing.assert_array_equal(out.start, [0, 50, 100, 150, 0, 50, 100, 150, 160, 0, 0])
    np.testing.assert_array_equal(out.n_valid, [100] * 9 + [60, 100])
    assert out.imu.shape == (11, W, 6) and out.imu.dtype == np.float32
    assert out.skeleton is None
    assert len(out) == 11
    # IMU content is the trial's samples from ``start``
    for i in range(len(out)):
        trial = imus[out.trial_index[i]]
        s = out.start[i]
        n = min(W, len(trial) - s)
        np.testing.assert_array_equal(out.imu[i, :n], trial[s:s + n])


def test_make_windows_short_trial_padded_with_last_sample():
    imu = _time_trial(60)
    out = make_windows([imu], None, [0], [1], window=W, stride=STRIDE)
    assert out.imu.shape == (1, W, 6)
    assert out.n_valid[0] == 60
    np.testing.assert_array_equal(out.imu[0, :60], imu)
    np.testing.assert_array_equal(out.imu[0, 60:], np.repeat(imu[-1:], 40, axis=0))


@pytest.mark.parametrize("n", [100, 137, 250, 260, 301, 60])
def test_make_windows_skeleton_covers_same_time_span(n):
    imu = _time_trial(n)
    skel = _time_skeleton(int(round(n * RATIO)))
    out = make_windows([imu], [skel], [0], [0], window=W, stride=STRIDE, skeleton_ratio=RATIO)
    assert out.skeleton.shape == (len(out), int(W * RATIO), 3, 3)
    period = 1.0 / SKEL_HZ
    for i in range(len(out)):
        imu_first = out.imu[i, 0, 0]
        skel_first = out.skeleton[i, 0, 0, 0]
        assert abs(skel_first - imu_first) <= period + 1e-6, (i, imu_first, skel_first)
        valid = out.n_valid[i]
        imu_last = out.imu[i, valid - 1, 0]
        skel_last = out.skeleton[i, -1, 0, 0]
        if valid == W:
            assert abs(skel_last - imu_last) <= period + 1e-6, (i, imu_last, skel_last)
        # skeleton frames are consecutive (no resampling inside make_windows)
        diffs = np.diff(out.skeleton[i, :, 0, 0])
        assert np.all((np.isclose(diffs, period, atol=1e-5)) | (np.isclose(diffs, 0.0)))


def test_make_windows_skeleton_from_resample_trial_stays_in_time():
    """End to end: raw IMU at 100 Hz and skeleton at 30 Hz spanning the same 5.3 s, both
    encoding time in seconds; after resample_trial + make_windows the skeleton window must
    start within one skeleton period of its IMU window."""
    duration = 5.3
    raw_imu_t = np.arange(int(duration * 100) + 1) / 100.0
    raw_imu = np.tile(raw_imu_t[:, None], (1, 6)).astype(np.float32)
    raw_skel_t = np.linspace(0.0, raw_imu_t[-1], 160)
    raw_skel = np.broadcast_to(raw_skel_t[:, None, None], (160, 2, 3)).astype(np.float32)
    imu, skel = resample_trial(raw_imu, 100.0, raw_skel, resample_hz=IMU_HZ, skeleton_hz=SKEL_HZ)
    out = make_windows([imu], [skel], [2], [5], window=W, stride=STRIDE, skeleton_ratio=RATIO)
    assert len(out) == len(window_starts(len(imu), W, STRIDE)) == 5
    period = 1.0 / SKEL_HZ
    for i in range(len(out)):
        np.testing.assert_allclose(out.imu[i, 0, 0], out.start[i] / IMU_HZ, atol=1e-3)
        assert abs(out.skeleton[i, 0, 0, 0] - out.imu[i, 0, 0]) <= period
        assert abs(out.skeleton[i, -1, 0, 0] - out.imu[i, -1, 0]) <= period


def test_make_windows_skeleton_ratio_one():
    imu = _time_trial(180)
    skel = np.broadcast_to(imu[:, :1, None], (180, 1, 3)).copy()     # same time base
    out = make_windows([imu], [skel], [0], [0], window=W, stride=STRIDE, skeleton_ratio=1.0)
    np.testing.assert_array_equal(out.skeleton[:, :, 0, 0], out.imu[:, :, 0])


# ----------------------------------------------------------------------------- trial_windows

def test_trial_windows_stretch_each_whole_trial_onto_one_window():
    """One window per trial, first and last samples kept, time evenly stretched; the
    skeleton covers the same span; every sample counts as real."""
    lengths = [251, 61, 101]   # (n - 1) * ratio whole: last skeleton frame at the last IMU sample
    imus = [_time_trial(n) for n in lengths]
    skeletons = [_time_skeleton(round((n - 1) * SKEL_HZ / IMU_HZ) + 1) for n in lengths]
    w = trial_windows(imus, skeletons, [0, 1, 2], [7, 7, 8], window=100,
                      skeleton_ratio=SKEL_HZ / IMU_HZ)
    assert w.imu.shape == (3, 100, 6) and w.skeleton.shape == (3, 50, 3, 3)
    np.testing.assert_array_equal(w.trial_index, [0, 1, 2])
    np.testing.assert_array_equal(w.subject, [7, 7, 8])
    np.testing.assert_array_equal(w.n_valid, [100, 100, 100])
    np.testing.assert_array_equal(w.start, [0, 0, 0])
    for i, n in enumerate(lengths):
        expected = np.linspace(0.0, (n - 1) / IMU_HZ, 100)
        np.testing.assert_allclose(w.imu[i, :, 0], expected, atol=1e-5)
        # skeleton frame times span the same first..last instant as the IMU window
        np.testing.assert_allclose(w.skeleton[i, [0, -1], 0, 0], expected[[0, -1]], atol=1e-4)
    assert trial_windows(imus, None, [0, 1, 2], [1, 1, 1], window=100).skeleton is None


def test_trial_segmentation_in_the_cache_and_its_hash():
    """data.segmentation trial: one window per trial in the cache, under another cache hash."""
    from xtinyhar.config import cache_hash, load_config
    from xtinyhar.data import load_dataset
    from xtinyhar.preprocess.tokens import build_token_cache

    from conftest import CONFIGS

    sliding = load_config(CONFIGS / "synthetic.yaml")
    trial = load_config(CONFIGS / "synthetic.yaml", {"data.segmentation": "trial"})
    assert cache_hash(sliding) != cache_hash(trial)
    report = load_dataset(trial)
    trials = report.trials
    cache = build_token_cache(trial, trials, report.class_names)
    assert len(cache.label) == len(trials) == len(cache.trial_id)
    np.testing.assert_array_equal(cache.trial_index, np.arange(len(trials)))
    assert cache.meta["segmentation"] == "trial"
    from xtinyhar.preprocess.tokens import summarize
    assert f"{len(trials)}, one per trial" in summarize(cache)
