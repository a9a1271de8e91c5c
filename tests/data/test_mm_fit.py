"""MM-Fit loader: the real label files, small files in the real layout, and bad input."""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

import numpy as np
import pytest

from xtinyhar.data.mm_fit import (
    MM_FIT_CLASSES,
    MM_FIT_SPLIT,
    load_mm_fit,
    load_mm_fit_labels,
    load_mm_fit_report,
)
from xtinyhar.errors import ConfigError, DataError

REAL_ROOT = (Path(__file__).parents[2] / ".." / "shared" / "data" / "mm_fit").resolve()
G = 9.80665
SECONDS = 12.0  # length of a synthetic workout
EPOCH_S = 1.6e9  # timestamps start at a Unix epoch, as recorded ones do
SETS = [(30, 90, 10, "squats"), (150, 240, 8, "pushups"), (300, 330, 5, "bicep_curls")]


def _stream(t: np.ndarray, xyz: np.ndarray, tick: float) -> np.ndarray:
    """Rows ``frame, timestamp, x, y, z`` for sample times ``t`` (s from workout start)."""
    frames = np.floor(t * 30.0)
    return np.column_stack([frames, (EPOCH_S + t) / tick, xyz])


def write_workout(root: Path, number: int, sets=SETS, *, tick: float = 1e-3,
                  hz: float = 100.0) -> Path:
    """Write one workout in the real MM-Fit layout; signals are simple functions of time.

    acc (m/s^2): x = 1 g, y = t g, z = 0. gyro (rad/s), on its own grid shifted by 4 ms:
    x = pi, y = t, z = 2t + 1 (linear, so interpolation onto acc times is exact).
    pose (mm): joint j (1..17), axis a -> 1000 * (a + 1) + j.
    """
    folder = root / f"w{number:02d}"
    folder.mkdir(parents=True)
    name = f"w{number:02d}"
    (folder / f"{name}_labels.csv").write_text("".join(f"{s},{e},{r},{x}\n" for s, e, r, x in sets))
    t_acc = np.arange(0.0, SECONDS, 1.0 / hz)
    acc = np.column_stack([np.full_like(t_acc, G), G * t_acc, np.zeros_like(t_acc)])
    np.save(folder / f"{name}_sw_l_acc.npy", _stream(t_acc, acc, tick))
    t_gyr = np.arange(0.004, SECONDS, 1.0 / hz)
    gyr = np.column_stack([np.full_like(t_gyr, math.pi), t_gyr, 2 * t_gyr + 1])
    np.save(folder / f"{name}_sw_l_gyr.npy", _stream(t_gyr, gyr, tick))
    n_frames = int(SECONDS * 30)
    pose = np.zeros((3, n_frames, 18))
    pose[:, :, 0] = np.arange(n_frames)
    pose[:, :, 1:] = 1000.0 * (np.arange(3)[:, None, None] + 1) + np.arange(1, 18)
    np.save(folder / f"{name}_pose_3d.npy", pose)
    return folder


@pytest.fixture
def root(tmp_path: Path) -> Path:
    write_workout(tmp_path, 0)
    return tmp_path


# ---------------------------------------------------------------- real label files


def test_real_label_files():
    if not REAL_ROOT.is_dir():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{REAL_ROOT} missing on CI")
        pytest.skip(f"{REAL_ROOT} not present")
    labels = load_mm_fit_labels(REAL_ROOT)
    assert sorted(labels) == list(range(21))
    rows = [row for rs in labels.values() for row in rs]
    assert len(rows) == 616
    assert tuple(sorted({row.exercise for row in rows})) == MM_FIT_CLASSES
    assert len(MM_FIT_CLASSES) == 10
    split = [n for part in MM_FIT_SPLIT.values() for n in part]
    assert len(split) == len(set(split)) and set(split) <= set(labels)
    # The sensor files are absent here: loading names the first missing file on one line.
    with pytest.raises(DataError, match="w00_sw_l_acc.npy") as info:
        load_mm_fit(REAL_ROOT, workouts=[0])
    assert "\n" not in str(info.value)


# ---------------------------------------------------------------- good synthetic data


@pytest.mark.parametrize("tick", [1.0, 1e-3, 1e-9], ids=["s", "ms", "ns"])
def test_load_shapes_units_alignment(tmp_path: Path, tick: float):
    write_workout(tmp_path, 0, tick=tick)
    trials, classes = load_mm_fit(tmp_path)
    assert classes == list(MM_FIT_CLASSES)
    assert [t.trial_id for t in trials] == ["w00_set01", "w00_set02", "w00_set03"]
    assert [classes[t.label] for t in trials] == ["squats", "pushups", "bicep_curls"]
    t_acc = np.arange(0.0, SECONDS, 0.01)
    frames = np.floor(t_acc * 30.0)
    for trial, (start, end, _, _) in zip(trials, SETS):
        in_set = (frames >= start) & (frames <= end)
        t = t_acc[in_set]
        assert trial.imu.shape == (in_set.sum(), 6) and trial.imu.dtype == np.float32
        assert trial.imu_hz == pytest.approx(100.0, rel=1e-4)
        assert (trial.subject, trial.dataset, trial.placement) == (0, "mm_fit", "left_wrist")
        np.testing.assert_allclose(trial.imu[:, 0], 1.0, atol=1e-5)  # 1 g
        np.testing.assert_allclose(trial.imu[:, 1], t, atol=1e-4)  # t g
        np.testing.assert_allclose(trial.imu[:, 3], 180.0, atol=1e-3)  # pi rad/s
        np.testing.assert_allclose(trial.imu[:, 4], np.degrees(t), atol=1e-2)
        np.testing.assert_allclose(trial.imu[:, 5], np.degrees(2 * t + 1), atol=1e-2)
        assert trial.skeleton.shape == (end - start + 1, 17, 3)
        assert trial.skeleton.dtype == np.float32 and trial.skeleton_hz == 30.0
        expect = (np.arange(3) + 1)[None, :] + np.arange(1, 18)[:, None] / 1000.0  # (17, 3) m
        np.testing.assert_allclose(trial.skeleton[0], expect, atol=1e-6)


def test_subjects_workout_filter_and_no_skeleton(tmp_path: Path):
    write_workout(tmp_path, 0)
    write_workout(tmp_path, 5, sets=SETS[:1])
    trials, _ = load_mm_fit(tmp_path)
    assert [t.subject for t in trials] == [0, 0, 0, 5]
    assert [t.trial_id for t in trials][-1] == "w05_set01"
    trials, _ = load_mm_fit(tmp_path, workouts=[5], skeleton=False)
    assert len(trials) == 1 and trials[0].skeleton is None and trials[0].skeleton_hz is None
    trials, _ = load_mm_fit(tmp_path, subject_from="participant")
    assert {t.subject for t in trials} == {2}  # w00 and w05 are the same participant


def test_non_activity_rows_are_ignored(tmp_path: Path):
    write_workout(tmp_path, 0, sets=[(0, 29, 0, "non_activity"), *SETS])
    trials, _ = load_mm_fit(tmp_path)
    assert [t.trial_id for t in trials] == ["w00_set02", "w00_set03", "w00_set04"]


def test_bad_arguments_raise_config_error(root: Path):
    with pytest.raises(ConfigError, match="device"):
        load_mm_fit(root, device="xx")
    with pytest.raises(ConfigError, match="side"):
        load_mm_fit(root, side="x")
    with pytest.raises(ConfigError, match="workouts"):
        load_mm_fit(root, workouts=[-1])


# ---------------------------------------------------------------- bad input


def _save(name: str, array_fn):
    def mutate(folder: Path) -> None:
        path = folder / name
        np.save(path, array_fn(np.load(path)))
    return mutate


def _labels(text: str):
    def mutate(folder: Path) -> None:
        (folder / "w00_labels.csv").write_text(text)
    return mutate


def _with(a: np.ndarray, index, value) -> np.ndarray:
    a = a.copy()
    a[index] = value
    return a


BAD_CASES = {
    "missing acc": ("w00_sw_l_acc.npy", lambda f: (f / "w00_sw_l_acc.npy").unlink()),
    "missing gyr": ("w00_sw_l_gyr.npy", lambda f: (f / "w00_sw_l_gyr.npy").unlink()),
    "missing pose": ("w00_pose_3d.npy", lambda f: (f / "w00_pose_3d.npy").unlink()),
    "missing labels": ("w00_labels.csv", lambda f: (f / "w00_labels.csv").unlink()),
    "corrupt npy": ("w00_sw_l_acc.npy", lambda f: (f / "w00_sw_l_acc.npy").write_bytes(b"junk")),
    "acc 4 columns": ("w00_sw_l_acc.npy", _save("w00_sw_l_acc.npy", lambda a: a[:, :4])),
    "acc 1-d": ("w00_sw_l_acc.npy", _save("w00_sw_l_acc.npy", lambda a: a[:, 2])),
    "pose 17 columns": ("w00_pose_3d.npy", _save("w00_pose_3d.npy", lambda a: a[:, :, :17])),
    "pose 2 axes": ("w00_pose_3d.npy", _save("w00_pose_3d.npy", lambda a: a[:2])),
    "gyr NaN": ("w00_sw_l_gyr.npy", _save("w00_sw_l_gyr.npy", lambda a: _with(a, (7, 3), np.nan))),
    "acc inf": ("w00_sw_l_acc.npy", _save("w00_sw_l_acc.npy", lambda a: _with(a, (9, 2), np.inf))),
    "pose NaN": ("w00_pose_3d.npy",
                 _save("w00_pose_3d.npy", lambda a: _with(a, (1, 5, 4), np.nan))),
    "timestamps backwards": ("w00_sw_l_gyr.npy",
                             _save("w00_sw_l_gyr.npy", lambda a: a[::-1])),
    "timestamps in unknown unit": ("w00_sw_l_acc.npy", _save(
        "w00_sw_l_acc.npy", lambda a: _with(a, (slice(None), 1), a[:, 1] / 10.0))),
    "unknown exercise": ("w00_labels.csv", _labels("30,90,10,squats\n150,240,8,yoga\n")),
    "three fields": ("w00_labels.csv", _labels("30,90,10\n")),
    "not an integer": ("w00_labels.csv", _labels("30,ninety,10,squats\n")),
    "end before start": ("w00_labels.csv", _labels("90,30,10,squats\n")),
    "empty labels": ("w00_labels.csv", _labels("\n")),
    "set outside the data": ("w00_sw_l_acc.npy", _labels("30,90,10,squats\n5000,5100,3,lunges\n")),
}


@pytest.mark.parametrize("case", list(BAD_CASES))
def test_bad_input_names_the_file(root: Path, case: str):
    filename, mutate = BAD_CASES[case]
    mutate(root / "w00")
    with pytest.raises(DataError) as info:
        load_mm_fit(root)
    message = str(info.value)
    assert filename in message and "\n" not in message
    if case == "unknown exercise":
        assert "row 2" in message and "yoga" in message


def test_missing_root_and_workout_folder(tmp_path: Path):
    with pytest.raises(DataError, match="nowhere"):
        load_mm_fit(tmp_path / "nowhere")
    with pytest.raises(DataError, match="no MM-Fit workout folders"):
        load_mm_fit(tmp_path)
    write_workout(tmp_path, 0)
    with pytest.raises(DataError, match="w03"):
        load_mm_fit(tmp_path, workouts=[0, 3])
    with pytest.raises(DataError, match="w03"):
        load_mm_fit_labels(tmp_path, workouts=[3])


def test_skip_bad_skips_workouts_and_sets(tmp_path: Path, caplog):
    write_workout(tmp_path, 0, sets=[*SETS, (5000, 5100, 3, "lunges")])
    write_workout(tmp_path, 1)
    (tmp_path / "w01" / "w01_sw_l_gyr.npy").unlink()
    with pytest.raises(DataError):
        load_mm_fit(tmp_path)
    with caplog.at_level(logging.WARNING, logger="xtinyhar.data.mm_fit"):
        report = load_mm_fit_report(tmp_path, skip_bad=True)
    assert [t.trial_id for t in report.trials] == ["w00_set01", "w00_set02", "w00_set03"]
    assert len(report.skipped) == 2
    assert "w00_set04" in report.skipped[0] and "w01_sw_l_gyr.npy" in report.skipped[1]
    assert "skipped 2" in caplog.text
    trials, classes = load_mm_fit(tmp_path, skip_bad=True)
    assert len(trials) == 3 and classes == list(MM_FIT_CLASSES)


def test_skip_bad_with_nothing_left_raises(tmp_path: Path):
    write_workout(tmp_path, 0)
    (tmp_path / "w00" / "w00_sw_l_acc.npy").unlink()
    with pytest.raises(DataError, match="no MM-Fit sets loaded.*w00_sw_l_acc.npy"):
        load_mm_fit(tmp_path, skip_bad=True)


def test_an_all_zero_recording_is_kept_with_a_warning_naming_it(root, caplog):
    """A dead sensor records zeros; every set cut from it is kept, each with a warning."""
    for stream in ("acc", "gyr"):
        path = root / "w00" / f"w00_sw_l_{stream}.npy"
        rows = np.load(path)
        rows[:, 2:] = 0.0
        np.save(path, rows)
    with caplog.at_level(logging.WARNING):
        trials, _ = load_mm_fit(root)
    assert len(trials) == len(SETS)
    warned = [r.getMessage() for r in caplog.records if "all zeros" in r.getMessage()]
    assert len(warned) == len(SETS)
    assert all(m.startswith(str(root / "w00" / "w00_sw_l_acc.npy")) for m in warned)
    assert "w00_set01" in warned[0]
