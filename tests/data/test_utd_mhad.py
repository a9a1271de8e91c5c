"""UTD-MHAD loader on the real files in ../shared/data, and its bad-input errors."""

import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from xtinyhar.data.utd_mhad import (UTD_MHAD_CLASSES, UTD_MHAD_JOINTS, load_utd_mhad,
                                    load_utd_mhad_report, placement)
from xtinyhar.errors import DataError

ABSENT = {"a8_s1_t4", "a23_s6_t4", "a27_s8_t4"}


# ----------------------------------------------------------------------------- real data

def test_real_counts_classes_subjects(utd_trials):
    trials, classes = utd_trials
    assert len(trials) == 861
    assert len(classes) == 27 and classes == list(UTD_MHAD_CLASSES)
    assert sorted({t.subject for t in trials}) == list(range(1, 9))
    assert sorted({t.label for t in trials}) == list(range(27))
    ids = {t.trial_id for t in trials}
    assert len(ids) == 861
    every = {f"a{a}_s{s}_t{n}" for a in range(1, 28) for s in range(1, 9) for n in range(1, 5)}
    assert every - ids == ABSENT


def test_real_shapes_rates_and_units(utd_trials):
    trials, _ = utd_trials
    lengths = [t.imu.shape[0] for t in trials]
    frames = [t.skeleton.shape[0] for t in trials]
    assert min(lengths) == 107 and max(lengths) == 326
    assert min(frames) == 41 and max(frames) == 125
    for t in trials[::37]:
        assert t.imu.dtype == np.float32 and t.imu.shape[1] == 6
        assert t.skeleton.shape[1:] == (len(UTD_MHAD_JOINTS), 3)
        assert (t.imu_hz, t.skeleton_hz) == (50.0, 30.0)
    imu = np.concatenate([t.imu for t in trials])
    acc_norm = np.linalg.norm(imu[:, :3], axis=1)
    assert 0.8 < np.median(acc_norm) < 1.2          # acc in g: gravity is about 1
    assert np.abs(imu[:, 3:]).max() > 100           # gyro in deg/s, not rad/s
    skel = np.concatenate([t.skeleton for t in trials])
    assert 1.5 < np.median(skel[:, :, 2]) < 4.5     # Kinect depth in metres
    head_above_hip = skel[:, 0, 1] - skel[:, 3, 1]
    assert np.median(head_above_hip) > 0.3


def test_real_pairing_is_by_key_and_placement(utd_trials, utd_root):
    trials, classes = utd_trials
    by_id = {t.trial_id: t for t in trials}
    t = by_id["a27_s8_t3"]
    assert classes[t.label] == "squat_two_arms_stretch_out" and t.subject == 8
    raw = scipy.io.loadmat(utd_root / "inertial" / "a27_s8_t3_inertial.mat")["d_iner"]
    np.testing.assert_allclose(t.imu, raw.astype(np.float32))
    skel = scipy.io.loadmat(utd_root / "skeleton" / "a27_s8_t3_skeleton.mat")["d_skel"]
    np.testing.assert_allclose(t.skeleton, np.transpose(skel, (2, 0, 1)).astype(np.float32))
    counts = Counter(tr.placement for tr in trials)
    assert counts["right_thigh"] == 6 * 32 - 2 and counts["right_wrist"] == 21 * 32 - 1
    assert placement(21) == "right_wrist" and placement(22) == "right_thigh"


def test_imu_only_and_subject_filter(utd_root):
    trials, _ = load_utd_mhad(utd_root, with_skeleton=False, subjects={2})
    assert len(trials) == 108 and all(t.skeleton is None and t.subject == 2 for t in trials)


# ---------------------------------------------------------------------------- bad input

@pytest.fixture
def small_copy(utd_root, tmp_path) -> Path:
    """A copy of the trials of action 1, subject 1 (4 trials), for breaking things."""
    root = tmp_path / "utd"
    for sub, suffix in (("inertial", "inertial"), ("skeleton", "skeleton")):
        (root / sub).mkdir(parents=True)
        for n in (1, 2, 3, 4):
            name = f"a1_s1_t{n}_{suffix}.mat"
            shutil.copy(utd_root / sub / name, root / sub / name)
    return root


def one_line_error(root, fragment, **kwargs):
    with pytest.raises(DataError) as err:
        load_utd_mhad(root, **kwargs)
    message = str(err.value)
    assert "\n" not in message
    assert fragment in message, message
    return message


def test_small_copy_loads(small_copy):
    trials, _ = load_utd_mhad(small_copy)
    assert [t.trial_id for t in trials] == [f"a1_s1_t{n}" for n in (1, 2, 3, 4)]


def test_official_capitalised_folder_names(small_copy):
    (small_copy / "inertial").rename(small_copy / "Inertial")
    (small_copy / "skeleton").rename(small_copy / "Skeleton")
    assert len(load_utd_mhad(small_copy)[0]) == 4


def test_missing_root(tmp_path):
    one_line_error(tmp_path / "nowhere", "UTD-MHAD folder not found")


def test_missing_modality_folder(small_copy):
    shutil.rmtree(small_copy / "skeleton")
    one_line_error(small_copy, "no 'skeleton/'")


def test_unpaired_trial(small_copy):
    (small_copy / "skeleton" / "a1_s1_t3_skeleton.mat").unlink()
    msg = one_line_error(small_copy, "no matching skeleton file a1_s1_t3_skeleton.mat")
    assert "a1_s1_t3_inertial.mat" in msg
    report = load_utd_mhad_report(small_copy, skip_bad=True)
    assert len(report.trials) == 3 and len(report.skipped) == 1


def test_truncated_mat(small_copy):
    path = small_copy / "inertial" / "a1_s1_t2_inertial.mat"
    path.write_bytes(path.read_bytes()[:300])
    one_line_error(small_copy, "a1_s1_t2_inertial.mat: cannot read MATLAB file")


def test_corrupt_mat(small_copy):
    (small_copy / "skeleton" / "a1_s1_t1_skeleton.mat").write_bytes(b"not a mat file at all" * 20)
    one_line_error(small_copy, "a1_s1_t1_skeleton.mat: cannot read MATLAB file")


def test_wrong_variable_name(small_copy):
    scipy.io.savemat(small_copy / "inertial" / "a1_s1_t1_inertial.mat", {"x": np.zeros((100, 6))})
    one_line_error(small_copy, "no variable 'd_iner'")


@pytest.mark.parametrize("array, fragment", [
    (np.zeros((100, 5)), "d_iner has shape (100, 5), expected (N, 6)"),
    (np.zeros((100,)), "expected (N, 6)"),
    (np.zeros((0, 6)), "d_iner holds 0 sample(s); a recording needs at least 2"),
    (np.zeros((1, 6)), "d_iner holds 1 sample(s); a recording needs at least 2"),
])
def test_wrong_inertial_shape(small_copy, array, fragment):
    scipy.io.savemat(small_copy / "inertial" / "a1_s1_t4_inertial.mat", {"d_iner": array})
    msg = one_line_error(small_copy, fragment)
    assert "a1_s1_t4_inertial.mat" in msg


def test_wrong_skeleton_shape(small_copy):
    scipy.io.savemat(small_copy / "skeleton" / "a1_s1_t4_skeleton.mat", {"d_skel": np.zeros((25, 3, 40))})
    one_line_error(small_copy, "a1_s1_t4_skeleton.mat: d_skel has shape (25, 3, 40), expected (20, 3, F)")


@pytest.mark.parametrize("bad, kind", [(np.nan, "NaN"), (np.inf, "inf")])
def test_nan_and_inf(small_copy, bad, kind):
    path = small_copy / "inertial" / "a1_s1_t2_inertial.mat"
    data = scipy.io.loadmat(path)["d_iner"]
    data[10, 3] = bad
    scipy.io.savemat(path, {"d_iner": data})
    one_line_error(small_copy, f"a1_s1_t2_inertial.mat: d_iner holds 1 {kind} value(s)")


def test_value_too_large_for_float32(small_copy):
    """Finite in the file's float64 but inf once stored as float32: refused, not passed on."""
    path = small_copy / "inertial" / "a1_s1_t2_inertial.mat"
    data = scipy.io.loadmat(path)["d_iner"]
    data[10, 3] = 1e300
    scipy.io.savemat(path, {"d_iner": data})
    one_line_error(small_copy, "a1_s1_t2_inertial.mat: d_iner holds 1 value(s) too large for float32")


def test_unknown_action_label(small_copy):
    for sub in ("inertial", "skeleton"):
        shutil.copy(small_copy / sub / f"a1_s1_t1_{sub}.mat", small_copy / sub / f"a28_s1_t1_{sub}.mat")
    one_line_error(small_copy, "a28_s1_t1_inertial.mat: unknown action a28")


def test_unexpected_file_name(small_copy):
    shutil.copy(small_copy / "inertial" / "a1_s1_t1_inertial.mat", small_copy / "inertial" / "trial1.mat")
    one_line_error(small_copy, "trial1.mat: unexpected file name")


def test_skip_bad_counts_and_keeps_good_trials(small_copy):
    (small_copy / "inertial" / "a1_s1_t2_inertial.mat").write_bytes(b"junk")
    (small_copy / "skeleton" / "a1_s1_t4_skeleton.mat").unlink()
    report = load_utd_mhad_report(small_copy, skip_bad=True)
    assert [t.trial_id for t in report.trials] == ["a1_s1_t1", "a1_s1_t3"]
    assert len(report.skipped) == 2
    assert "a1_s1_t2_inertial.mat" in report.skipped[0]


def test_two_files_of_one_trial(small_copy):
    """a01_s1_t1 and a1_s1_t1 name the same trial: refused, not one silently dropped."""
    src = small_copy / "inertial" / "a1_s1_t1_inertial.mat"
    shutil.copy(src, small_copy / "inertial" / "a01_s1_t1_inertial.mat")
    msg = one_line_error(small_copy, "the same trial as")
    assert "a01_s1_t1_inertial.mat" in msg and "a1_s1_t1_inertial.mat" in msg


def test_complex_values_refused(small_copy):
    path = small_copy / "inertial" / "a1_s1_t2_inertial.mat"
    data = scipy.io.loadmat(path)["d_iner"].astype(np.complex128)
    scipy.io.savemat(path, {"d_iner": data + 1j})
    one_line_error(small_copy, "a1_s1_t2_inertial.mat: d_iner has non-real dtype complex128")


def test_an_all_zero_recording_is_kept_with_a_warning_naming_it(small_copy, caplog):
    """A disconnected sensor records zeros; such a trial was accepted without a word."""
    path = small_copy / "inertial" / "a1_s1_t3_inertial.mat"
    scipy.io.savemat(path, {"d_iner": np.zeros((120, 6))})
    with caplog.at_level("WARNING"):
        trials, _ = load_utd_mhad(small_copy)
    assert len(trials) == 4
    warned = [r.getMessage() for r in caplog.records if "all zeros" in r.getMessage()]
    assert len(warned) == 1 and warned[0].startswith(str(path))
