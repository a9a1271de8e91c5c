"""Tests of the synthetic dataset: records, determinism, physics, and learnability.

The physics tests check the IMU against hand-solvable motions (still, free fall, spinning,
circling) and against the skeleton it was derived from; the learnability tests prove that
both modalities alone carry the class, across subjects, which is what a teacher/student
distillation experiment needs.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from xtinyhar.data.synthetic import (
    JOINT_INDEX,
    JOINT_NAMES,
    SYNTHETIC_CLASSES,
    generate_synthetic,
    imu_from_trajectory,
)
from xtinyhar.data.trial import Trial
from xtinyhar.errors import ConfigError

ARM_CLASSES = ("arm_raise", "arm_circle", "wave", "punch")


@pytest.fixture(scope="module")
def default_set() -> tuple[list[Trial], list[str], float]:
    """The default dataset (8 subjects x 6 classes x 4 trials) and its generation time."""
    start = time.perf_counter()
    trials, names = generate_synthetic()
    return trials, names, time.perf_counter() - start


def _by_class(trials: list[Trial], names: list[str], name: str) -> list[Trial]:
    return [t for t in trials if t.label == names.index(name)]


def _forearm_direction(trial: Trial) -> np.ndarray:
    """Unit vectors (F, 3) from the right elbow to the right wrist, from the skeleton."""
    skeleton = trial.skeleton
    forearm = skeleton[:, JOINT_INDEX["right_wrist"]] - skeleton[:, JOINT_INDEX["right_elbow"]]
    return forearm / np.linalg.norm(forearm, axis=1, keepdims=True)


# --------------------------------------------------------------------------- records

def test_records_have_the_documented_shapes_units_and_counts(default_set):
    trials, names, _ = default_set
    assert names == list(SYNTHETIC_CLASSES) and len(names) >= 6
    assert len(trials) == 8 * len(names) * 4
    assert len(JOINT_NAMES) == 20
    for trial in trials:
        assert trial.imu.dtype == np.float32 and trial.imu.ndim == 2 and trial.imu.shape[1] == 6
        assert trial.skeleton.dtype == np.float32 and trial.skeleton.shape[1:] == (20, 3)
        assert np.isfinite(trial.imu).all() and np.isfinite(trial.skeleton).all()
        assert (trial.imu_hz, trial.skeleton_hz) == (50.0, 30.0)
        assert trial.dataset == "synthetic" and trial.placement == "right_wrist"
        # Both streams cover the same duration, 4 s * U(0.8, 1.2).
        imu_seconds = len(trial.imu) / trial.imu_hz
        skeleton_seconds = len(trial.skeleton) / trial.skeleton_hz
        assert 3.2 - 0.05 <= imu_seconds <= 4.8 and abs(imu_seconds - skeleton_seconds) < 0.05
    assert len({t.trial_id for t in trials}) == len(trials)
    assert trials[0].trial_id == "c1_s1_t1"


def test_every_subject_performs_every_class(default_set):
    trials, names, _ = default_set
    subjects = sorted({t.subject for t in trials})
    assert subjects == list(range(1, 9))
    for subject in subjects:
        counts = np.bincount([t.label for t in trials if t.subject == subject],
                             minlength=len(names))
        assert counts.tolist() == [4] * len(names)


def test_trials_differ_in_length_and_subjects_in_body_size(default_set):
    trials, _, _ = default_set
    assert len({len(t.imu) for t in trials}) > 20
    # Forearm length (elbow -> wrist) is constant within a trial (a rigid bone, up to the
    # 5 mm joint noise) but differs between subjects (body scale).
    forearm_by_subject = {}
    for trial in trials:
        skeleton = trial.skeleton
        lengths = np.linalg.norm(skeleton[:, JOINT_INDEX["right_wrist"]]
                                 - skeleton[:, JOINT_INDEX["right_elbow"]], axis=1)
        assert lengths.std() < 0.02
        forearm_by_subject.setdefault(trial.subject, []).append(np.median(lengths))
    per_subject = np.array([np.mean(v) for v in forearm_by_subject.values()])
    assert 0.2 < per_subject.min() and per_subject.max() < 0.32
    assert per_subject.std() > 0.005


def test_skeleton_stands_in_kinect_space(default_set):
    trials, names, _ = default_set
    for trial in _by_class(trials, names, "arm_raise"):
        skeleton = trial.skeleton
        height = skeleton[:, JOINT_INDEX["head"], 1] - skeleton[:, JOINT_INDEX["left_foot"], 1]
        assert 1.3 < np.median(height) < 1.9
        assert 2.0 < np.median(skeleton[:, JOINT_INDEX["hip_center"], 2]) < 3.5


# --------------------------------------------------------------------------- determinism

def test_same_seed_gives_identical_arrays_and_other_seeds_differ():
    first, _ = generate_synthetic(subjects=2, trials_per_class=1, seconds=2.0, seed=3)
    again, _ = generate_synthetic(subjects=2, trials_per_class=1, seconds=2.0, seed=3)
    other, _ = generate_synthetic(subjects=2, trials_per_class=1, seconds=2.0, seed=4)
    for a, b in zip(first, again):
        assert a.trial_id == b.trial_id
        np.testing.assert_array_equal(a.imu, b.imu)
        np.testing.assert_array_equal(a.skeleton, b.skeleton)
    assert all(a.imu.shape != c.imu.shape or not np.array_equal(a.imu, c.imu)
               for a, c in zip(first, other))


def test_a_subject_does_not_depend_on_how_many_subjects_are_asked_for():
    few, _ = generate_synthetic(subjects=2, trials_per_class=1, seconds=2.0)
    more, _ = generate_synthetic(subjects=3, trials_per_class=1, seconds=2.0)
    for a, b in zip(few, more):
        np.testing.assert_array_equal(a.imu, b.imu)


@pytest.mark.parametrize("kwargs", [{"subjects": 0}, {"trials_per_class": 0},
                                    {"seconds": -1.0}, {"imu_hz": 0.0},
                                    {"seconds": 0.01}, {"seed": -1}, {"subjects": 2.5}])
def test_bad_arguments_raise_a_config_error_naming_them(kwargs):
    with pytest.raises(ConfigError, match="synthetic"):
        generate_synthetic(**kwargs)


# --------------------------------------------------------------------------- physics

def _fixed_rotation() -> np.ndarray:
    """An arbitrary sensor orientation (columns = sensor axes in the world)."""
    q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(3, 3)))
    return q * np.sign(np.linalg.det(q))


def test_still_sensor_reads_one_g_up_and_no_rotation():
    times = np.arange(100) / 100.0
    rotation = np.repeat(_fixed_rotation()[None], 100, axis=0)
    acc, gyro = imu_from_trajectory(times, np.ones((100, 3)), rotation)
    np.testing.assert_allclose(acc, np.tile(rotation[0].T @ [0.0, 1.0, 0.0], (100, 1)),
                               atol=1e-9)
    np.testing.assert_allclose(np.linalg.norm(acc, axis=1), 1.0, atol=1e-9)
    np.testing.assert_allclose(gyro, 0.0, atol=1e-9)


def test_free_fall_reads_zero_acceleration():
    times = np.arange(100) / 100.0
    position = np.zeros((100, 3))
    position[:, 1] = -0.5 * 9.81 * times ** 2
    rotation = np.repeat(_fixed_rotation()[None], 100, axis=0)
    acc, _ = imu_from_trajectory(times, position, rotation)
    np.testing.assert_allclose(acc, 0.0, atol=1e-6)


def test_spinning_about_the_vertical_reads_its_rate_on_the_sensor_axis():
    rate_dps = 90.0
    times = np.arange(400) / 200.0
    angle = np.radians(rate_dps) * times
    c, s = np.cos(angle), np.sin(angle)
    rotation = np.zeros((400, 3, 3))                       # R_y(angle): sensor y = world y
    rotation[:, 0, 0], rotation[:, 0, 2], rotation[:, 1, 1] = c, s, 1.0
    rotation[:, 2, 0], rotation[:, 2, 2] = -s, c
    _, gyro = imu_from_trajectory(times, np.zeros((400, 3)), rotation)
    np.testing.assert_allclose(gyro[2:-2], np.tile([0.0, rate_dps, 0.0], (396, 1)), atol=0.05)


def test_circling_sensor_feels_centripetal_acceleration():
    radius, omega = 0.5, 2 * np.pi          # 0.5 m circle in a horizontal plane, 1 rev/s
    times = np.arange(800) / 400.0
    position = radius * np.stack([np.cos(omega * times), 0 * times, np.sin(omega * times)], 1)
    rotation = np.repeat(np.eye(3)[None], 800, axis=0)
    acc, _ = imu_from_trajectory(times, position, rotation)
    centripetal_g = radius * omega ** 2 / 9.81
    inner = slice(2, -2)
    np.testing.assert_allclose(np.hypot(acc[inner, 0], acc[inner, 2]), centripetal_g, rtol=1e-3)
    np.testing.assert_allclose(acc[inner, 1], 1.0, atol=1e-9)


def test_trial_accelerometers_average_about_one_g(default_set):
    trials, names, _ = default_set
    for name in names:
        means = [np.linalg.norm(t.imu[:, :3], axis=1).mean() for t in _by_class(trials, names, name)]
        assert abs(np.median(means) - 1.0) < 0.3, name
        assert 0.85 < min(means) and max(means) < 2.0, name
    # A squat barely turns the forearm and moves slowly: each trial stays close to 1 g.
    for trial in _by_class(trials, names, "squat"):
        assert abs(np.linalg.norm(trial.imu[:, :3], axis=1).mean() - 1.0) < 0.1


def test_gyro_turns_more_in_arm_classes_than_in_squats(default_set):
    trials, names, _ = default_set

    def turned_rad(trial: Trial) -> float:
        return float(np.radians(np.linalg.norm(trial.imu[:, 3:], axis=1)).sum() / trial.imu_hz)

    squat = max(turned_rad(t) for t in _by_class(trials, names, "squat"))
    arms = min(turned_rad(t) for name in ARM_CLASSES for t in _by_class(trials, names, name))
    assert arms > 1.3 * squat


def test_gyro_agrees_with_the_skeleton_forearm(default_set):
    """The angle the forearm sweeps in the skeleton cannot exceed the integral of |omega|.

    For a rigid forearm, a fixed axis ``u`` turns at ``|du/dt| = |omega x u| <= |omega|``.
    The skeleton arc is measured between frames 1/6 s apart (chords underestimate arcs,
    and the spacing keeps the 5 mm joint noise small).
    """
    trials, _, _ = default_set
    gyro_turn, skeleton_arc = [], []
    for trial in trials:
        direction = _forearm_direction(trial)[::5]
        cosines = np.clip(np.sum(direction[1:] * direction[:-1], axis=1), -1.0, 1.0)
        skeleton_arc.append(np.arccos(cosines).sum())
        gyro_turn.append(np.radians(np.linalg.norm(trial.imu[:, 3:], axis=1)).sum()
                         / trial.imu_hz)
    gyro_turn, skeleton_arc = np.array(gyro_turn), np.array(skeleton_arc)
    moving = skeleton_arc > 3.0
    assert moving.sum() > len(trials) // 2
    assert np.all(gyro_turn[moving] > 0.9 * skeleton_arc[moving])
    assert np.corrcoef(gyro_turn, skeleton_arc)[0, 1] > 0.9


def test_accelerometer_gravity_matches_the_skeleton_forearm_tilt(default_set):
    """Sensor x runs along the forearm, so on average acc_x ~ the forearm's upward tilt."""
    trials, _, _ = default_set
    mean_acc_x = [t.imu[:, 0].mean() for t in trials]
    mean_tilt = [_forearm_direction(t)[:, 1].mean() for t in trials]
    assert np.corrcoef(mean_acc_x, mean_tilt)[0, 1] > 0.9


# --------------------------------------------------------------------------- learnability

def _summary(values: np.ndarray) -> np.ndarray:
    """Per-channel mean, std, min and max of (T, C) values."""
    return np.concatenate([values.mean(0), values.std(0), values.min(0), values.max(0)])


def _imu_features(trial: Trial) -> np.ndarray:
    return _summary(trial.imu)


_FEATURE_JOINTS = ("head", "left_elbow", "left_wrist", "right_elbow", "right_wrist",
                   "left_hip", "right_hip", "left_knee", "right_knee")


def _skeleton_features(trial: Trial) -> np.ndarray:
    joints = trial.skeleton[:, [JOINT_INDEX[j] for j in _FEATURE_JOINTS]]
    relative = joints - trial.skeleton[:, [JOINT_INDEX["hip_center"]]]
    return _summary(relative.reshape(len(relative), -1))


def _cross_subject_accuracy(trials: list[Trial], features) -> float:
    """Logistic regression on subjects 1-5, accuracy on subjects 6-8."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = np.stack([features(t) for t in trials])
    y = np.array([t.label for t in trials])
    train = np.array([t.subject <= 5 for t in trials])
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))
    model.fit(x[train], y[train])
    return float((model.predict(x[~train]) == y[~train]).mean())


def _best_single_feature_accuracy(trials: list[Trial], features) -> float:
    """Nearest class mean on one feature at a time, subjects 1-5 -> 6-8; the best one."""
    x = np.stack([features(t) for t in trials])
    y = np.array([t.label for t in trials])
    train = np.array([t.subject <= 5 for t in trials])
    centres = np.stack([x[train & (y == c)].mean(0) for c in range(y.max() + 1)])  # (K, D)
    guess = np.argmin(np.abs(x[~train][:, None, :] - centres[None]), axis=1)      # (N, D)
    return float((guess == y[~train][:, None]).mean(0).max())


@pytest.mark.parametrize("features", [_imu_features, _skeleton_features],
                         ids=["imu", "skeleton"])
def test_each_modality_alone_predicts_the_class_across_subjects(default_set, features):
    trials, names, _ = default_set
    assert _cross_subject_accuracy(trials, features) >= 0.8
    # ...but no single feature gives the answer away: classes overlap one feature at a time.
    assert _best_single_feature_accuracy(trials, features) < 0.98


def test_subjects_make_the_imu_harder_across_subjects_than_the_skeleton(default_set):
    """Sensor placement, offsets and noise differ per subject and reach only the IMU: across
    subjects it is clearly less separable than the skeleton, and not separable outright."""
    trials, _, _ = default_set
    imu = _cross_subject_accuracy(trials, _imu_features)
    skeleton = _cross_subject_accuracy(trials, _skeleton_features)
    assert imu < 0.97 and skeleton - imu > 0.04


def test_subjects_wear_the_band_turned_differently():
    """The placement rotates acc and gyro together: a hanging, still forearm reads gravity
    along -x on every subject, but its y/z split (the roll about the forearm) differs."""
    from xtinyhar.data.synthetic import _draw_subject

    hanging = np.array([-1.0, 0.0, 0.0])                  # gravity in the unturned sensor frame
    rolls = []
    for subject in range(1, 9):
        mount = _draw_subject(np.random.default_rng([0, subject])).mount
        felt = mount.T @ hanging
        assert felt[0] < -0.95                              # the tilt is a few degrees only
        axis = mount.T @ np.array([0.0, 1.0, 0.0])          # the unturned sensor y axis
        rolls.append(np.degrees(np.arctan2(axis[2], axis[1])))
    assert np.ptp(rolls) > 30


def test_write_recording_gives_a_csv_that_predict_reads(tmp_path, capsys):
    from xtinyhar.cli import read_predict_input
    from xtinyhar.data.synthetic import main, write_recording

    path = tmp_path / "wave.csv"
    trial = write_recording(path, "wave", subject=9)
    assert trial.subject == 9 and trial.label == SYNTHETIC_CLASSES.index("wave")
    assert path.read_text().splitlines()[0].startswith("time_s,acc_x_g")
    np.testing.assert_allclose(read_predict_input(path), trial.imu, rtol=1e-5, atol=1e-4)
    assert main(["--out", str(tmp_path / "jog.csv"), "--activity", "jog"]) == 0
    assert "wrote" in capsys.readouterr().out and (tmp_path / "jog.csv").is_file()
    with pytest.raises(ConfigError, match="unknown activity 'fly'"):
        write_recording(tmp_path / "x.csv", "fly")
