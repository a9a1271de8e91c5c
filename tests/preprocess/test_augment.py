"""Training-time augmentation (xtinyhar.preprocess.augment)."""

from __future__ import annotations

import numpy as np
import pytest

from xtinyhar.config import AugmentConfig
from xtinyhar.preprocess.augment import (augment, jitter, rotate, rotation_matrices, scale,
                                         time_warp)

CHANNEL_STD = np.array([0.3, 0.3, 0.3, 50.0, 50.0, 50.0])


def _windows(n=8, w=64, seed=0):
    """Acc (g) and gyro (deg/s) with independent random directions per sample."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, w, 6))
    x[:, :, 2] += 1.0
    x[:, :, 3:] *= 60.0
    return x.astype(np.float32)


def _angle_deg(R):
    return np.rad2deg(np.arccos(np.clip((np.trace(R, axis1=-2, axis2=-1) - 1) / 2, -1, 1)))


# ----------------------------------------------------------------------------- determinism

@pytest.mark.parametrize("name,fn", [
    ("jitter", lambda x, rng: jitter(x, 0.1, CHANNEL_STD, rng)),
    ("scale", lambda x, rng: scale(x, 0.2, rng)),
    ("rotate", lambda x, rng: rotate(x, 15.0, rng)),
    ("time_warp", lambda x, rng: time_warp(x, 0.2, rng)),
    ("augment", lambda x, rng: augment(x, AugmentConfig(), CHANNEL_STD, rng)),
])
def test_transform_is_deterministic_under_seeded_generator(name, fn):
    x = _windows()
    a = fn(x, np.random.default_rng(123))
    b = fn(x, np.random.default_rng(123))
    c = fn(x, np.random.default_rng(124))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c), name
    assert not np.allclose(a, x), name                # it actually changed something


def test_transforms_do_not_modify_input_in_place():
    x = _windows()
    before = x.copy()
    rng = np.random.default_rng(0)
    for fn in (lambda: jitter(x, 0.1, CHANNEL_STD, rng), lambda: scale(x, 0.2, rng),
               lambda: rotate(x, 15.0, rng), lambda: time_warp(x, 0.2, rng),
               lambda: augment(x, AugmentConfig(), CHANNEL_STD, rng)):
        fn()
        np.testing.assert_array_equal(x, before)


# ----------------------------------------------------------------------------- rotation

def test_rotation_matrices_are_proper_rotations_within_max_angle():
    R = rotation_matrices(500, 10.0, np.random.default_rng(0))
    assert R.shape == (500, 3, 3)
    eye = np.broadcast_to(np.eye(3), R.shape)
    np.testing.assert_allclose(R @ np.swapaxes(R, 1, 2), eye, atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(R), 1.0, atol=1e-12)
    angles = _angle_deg(R)
    assert angles.max() <= 10.0 + 1e-6
    assert angles.max() > 9.0                         # the range is actually used
    assert angles.mean() == pytest.approx(5.0, abs=0.5)  # |uniform(-10, 10)| has mean 5


def test_rotation_matrix_rotates_about_its_axis():
    # the axis is the eigenvector with eigenvalue 1: R a = a
    R = rotation_matrices(20, 45.0, np.random.default_rng(3))
    for r in R:
        w, v = np.linalg.eig(r)
        axis = np.real(v[:, np.argmin(np.abs(w - 1))])
        np.testing.assert_allclose(r @ axis, axis, atol=1e-10)


def test_rotate_preserves_norms_of_acc_and_gyro_per_sample():
    x = _windows().astype(np.float64)
    out = rotate(x, 30.0, np.random.default_rng(5))
    for sl in (slice(0, 3), slice(3, 6)):
        np.testing.assert_allclose(np.linalg.norm(out[:, :, sl], axis=-1),
                                   np.linalg.norm(x[:, :, sl], axis=-1), rtol=1e-10)
    assert not np.allclose(out, x)


def test_rotate_applies_one_rotation_to_acc_and_gyro():
    x = _windows(n=4, w=32).astype(np.float64)
    rng_seed = 9
    out = rotate(x, 30.0, np.random.default_rng(rng_seed))
    expected_R = rotation_matrices(4, 30.0, np.random.default_rng(rng_seed))
    for i in range(4):
        # recover the map on each sensor by least squares: out = x @ R^T
        R_acc = np.linalg.lstsq(x[i, :, :3], out[i, :, :3], rcond=None)[0].T
        R_gyro = np.linalg.lstsq(x[i, :, 3:], out[i, :, 3:], rcond=None)[0].T
        np.testing.assert_allclose(R_acc, R_gyro, atol=1e-8)
        np.testing.assert_allclose(R_acc, expected_R[i], atol=1e-8)
        # same rotation on both sensors: the angle between acc and gyro vectors is kept
        def cos(a, g):
            return np.sum(a * g, -1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(g, axis=-1)
        np.testing.assert_allclose(cos(out[i, :, :3], out[i, :, 3:]),
                                   cos(x[i, :, :3], x[i, :, 3:]), atol=1e-10)


# ----------------------------------------------------------------------------- scale

def test_scale_keeps_vector_directions_with_one_factor_per_sensor():
    x = _windows().astype(np.float64)
    out = scale(x, 0.3, np.random.default_rng(7))
    for sl in (slice(0, 3), slice(3, 6)):
        ratio = out[:, :, sl] / x[:, :, sl]          # (N, W, 3): one factor per window+sensor
        factor = ratio[:, :1, :1]
        np.testing.assert_allclose(ratio, np.broadcast_to(factor, ratio.shape), rtol=1e-10)
        assert np.all((factor >= 0.7) & (factor <= 1.3))
    # acc and gyro factors are drawn separately
    assert not np.allclose(out[:, 0, 0] / x[:, 0, 0], out[:, 0, 3] / x[:, 0, 3])


# ----------------------------------------------------------------------------- jitter

def test_jitter_noise_std_is_sigma_times_channel_std():
    x = np.zeros((200, 100, 6))
    out = jitter(x, 0.05, CHANNEL_STD, np.random.default_rng(11))
    noise = (out - x).reshape(-1, 6)
    np.testing.assert_allclose(noise.std(axis=0), 0.05 * CHANNEL_STD, rtol=0.03)
    assert np.all(np.abs(noise.mean(axis=0)) < 0.01 * CHANNEL_STD)


# ----------------------------------------------------------------------------- time_warp

def test_time_warp_keeps_first_and_last_samples():
    x = _windows()
    out = time_warp(x, 0.4, np.random.default_rng(2))
    assert out.shape == x.shape and out.dtype == x.dtype
    np.testing.assert_allclose(out[:, 0], x[:, 0], atol=1e-6)
    np.testing.assert_allclose(out[:, -1], x[:, -1], atol=1e-6)
    assert not np.allclose(out, x, atol=1e-3)


def test_time_warp_with_zero_strength_is_identity():
    x = _windows()
    out = time_warp(x, 0.0, np.random.default_rng(2))
    np.testing.assert_allclose(out, x, atol=1e-5)


def test_time_warp_is_monotone_resampling_of_a_ramp():
    # a ramp warped stays a non-decreasing ramp inside the original range, with local speed
    # within 1 +- strength (up to the renormalisation of the total duration)
    w = 200
    ramp = np.tile(np.arange(w, dtype=np.float64)[None, :, None], (5, 1, 6))
    out = time_warp(ramp, 0.3, np.random.default_rng(4))
    steps = np.diff(out[:, :, 0], axis=1)
    assert np.all(steps > 0)
    assert steps.min() > (1 - 0.3) / (1 + 0.3) - 1e-9
    assert steps.max() < (1 + 0.3) / (1 - 0.3) + 1e-9
    np.testing.assert_allclose(out[:, :, 0], out[:, :, 5])  # every channel warped alike


# ----------------------------------------------------------------------------- augment

def test_augment_with_all_strengths_zero_returns_input_unchanged():
    x = _windows()
    cfg = AugmentConfig(jitter=0.0, scale=0.0, rotation_deg=0.0, time_warp=0.0)
    out = augment(x, cfg, CHANNEL_STD, np.random.default_rng(0))
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, x)


def test_augment_only_enabled_transform_runs():
    x = _windows().astype(np.float64)
    cfg = AugmentConfig(jitter=0.0, scale=0.0, rotation_deg=20.0, time_warp=0.0)
    out = augment(x, cfg, CHANNEL_STD, np.random.default_rng(8))
    np.testing.assert_allclose(out, rotate(x, 20.0, np.random.default_rng(8)), rtol=1e-5,
                               atol=1e-4)


# ----------------------------------------------------------------------------- crop

def test_crop_trims_at_most_the_amount_and_stretches_back():
    from xtinyhar.preprocess.augment import crop_spans, stretch_spans

    rng = np.random.default_rng(0)
    spans = crop_spans(500, 0.1, rng)
    assert (spans[:, 0] >= 0).all() and (spans[:, 0] <= 0.1).all()
    assert (spans[:, 1] >= 0.9).all() and (spans[:, 1] <= 1.0).all()
    ramp = np.tile(np.linspace(0.0, 1.0, 101)[None, :, None], (3, 1, 6))   # value = time
    np.testing.assert_allclose(stretch_spans(ramp, np.array([[0.0, 1.0]] * 3)), ramp, atol=1e-12)
    cropped = stretch_spans(ramp, np.array([[0.1, 0.8]] * 3))
    np.testing.assert_allclose(cropped[0, :, 0], np.linspace(0.1, 0.8, 101), atol=1e-12)
    assert AugmentConfig().crop == 0.0                                      # off by default


T_IMU, T_SKELETON = np.linspace(0, 3, 150), np.linspace(0, 3, 75)


def _teacher_batch_augmented(crop: float, time_warp: float) -> tuple[np.ndarray, np.ndarray]:
    """Time-coded IMU (150 samples) and skeleton (75 frames) windows over the same 3 s,
    through the teacher's augmentation with only crop and warp on: each stream's time
    channel after it, (4, 150) and (4, 75)."""
    from xtinyhar.config import load_config
    from xtinyhar.train.augmentation import make_augment

    from conftest import CONFIGS

    cfg = load_config(CONFIGS / "synthetic.yaml", {
        "preproc.augment.crop": crop, "preproc.augment.time_warp": time_warp,
        "preproc.augment.rotation_deg": 0.0, "preproc.augment.scale": 0.0, "preproc.augment.jitter": 0.0})
    batch = {"imu": np.tile(T_IMU[None, :, None], (4, 1, 6)).astype(np.float32),
             "skeleton": np.tile(T_SKELETON[None, :, None, None], (4, 1, 20, 3)).astype(np.float32),
             "label": np.zeros(4, dtype=np.int64)}
    out = make_augment(cfg, np.ones(6))(batch, np.random.default_rng(1))
    return out["imu"][:, :, 0], out["skeleton"][:, :, 0, 0]


def test_teacher_crop_keeps_imu_and_skeleton_aligned():
    """The teacher's batches get one crop for both streams: time-coded IMU and skeleton
    windows still agree on the time of each sample afterwards."""
    imu_time, skeleton_time = _teacher_batch_augmented(crop=0.2, time_warp=0.0)
    assert not np.allclose(imu_time, T_IMU[None])                         # it did crop
    expected = np.linspace(imu_time[:, 0], imu_time[:, -1], 75, axis=1)   # same span, 75 frames
    np.testing.assert_allclose(skeleton_time, expected, atol=1e-5)


def test_teacher_time_warp_keeps_imu_and_skeleton_aligned():
    """One time map for both streams: after crop and warp, the time-coded skeleton equals
    the time-coded IMU read at the skeleton's frames (75 frames over the same span)."""
    imu_time, skeleton_time = _teacher_batch_augmented(crop=0.2, time_warp=0.3)
    warped = np.diff(imu_time, axis=1)
    assert warped.std(axis=1).min() > 1e-3                                 # a real warp, not a stretch
    at_frames = np.stack([np.interp(T_SKELETON, T_IMU, row) for row in imu_time])
    np.testing.assert_allclose(skeleton_time, at_frames, atol=2e-3)
