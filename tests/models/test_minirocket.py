"""MiniRocket + ridge baseline through the same cv code path as the student."""

import json

import numpy as np
import yaml

from xtinyhar.config import load_config
from xtinyhar.data import load_dataset
from xtinyhar.evaluate.cv import run_cv
from xtinyhar.preprocess.tokens import build_token_cache

from conftest import CONFIGS


def synthetic_cv(arch: str, run_dir):
    """3-fold CV of a MiniRocket variant on a small synthetic set: (summary, cache)."""
    cfg = load_config(CONFIGS / "synthetic.yaml", {
        "model.student.arch": arch, "eval.folds": 3, "train.threads": 1,
        "data.synthetic.subjects": 6, "data.synthetic.trials_per_class": 2})
    report = load_dataset(cfg)
    cache = build_token_cache(cfg, report.trials, report.class_names)
    return run_cv(cfg, cache, protocol="kfold", run_dir=run_dir, kd=True), cache


def test_minirocket_cv_on_synthetic_data(tmp_path):
    summary, cache = synthetic_cv("minirocket", tmp_path / "run")
    assert summary["student_trial"]["accuracy"]["mean"] > 3 / len(cache.class_names)
    assert "teacher_trial" not in summary      # no teacher for a non-neural baseline
    fold = tmp_path / "run" / "folds" / "0"
    metrics = json.loads((fold / "metrics.json").read_text())
    assert metrics["student_fit"]["model"] == "minirocket" and not (fold / "student.pt").exists()
    pred = np.load(fold / "predictions.npz")
    np.testing.assert_allclose(pred["student_window_probs"].sum(1), 1.0, rtol=1e-5)
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["config"]["model"]["student"]["arch"] == "minirocket"


def test_trial_series_rebuilds_each_trial_from_its_windows(utd_trials, utd_cache):
    """The windows of a real UTD-MHAD trial put back together are the trial itself (here
    checked at the trial's own length), and every trial comes out at 128 samples."""
    from xtinyhar.models.minirocket import trial_series

    trials, _ = utd_trials
    for index in (0, 5, 400):
        imu = trials[index].imu
        rebuilt = trial_series(utd_cache, np.array([index]), length=len(imu))[0]
        np.testing.assert_allclose(rebuilt, imu, rtol=1e-5, atol=1e-5)
    assert trial_series(utd_cache, np.arange(3)).shape == (3, 128, 6)


def test_whole_trial_minirocket_gives_each_window_its_trial_scores(tmp_path):
    summary, cache = synthetic_cv("minirocket_trial", tmp_path / "run")
    assert summary["student_trial"]["accuracy"]["mean"] > 3 / len(cache.class_names)
    fold = tmp_path / "run" / "folds" / "0"
    assert json.loads((fold / "metrics.json").read_text())["student_fit"]["trial_length"] == 128
    pred = np.load(fold / "predictions.npz")
    for trial in np.unique(pred["trial_index"]):
        rows = pred["student_window_probs"][pred["trial_index"] == trial]
        np.testing.assert_array_equal(rows, np.repeat(rows[:1], len(rows), axis=0))


def test_scores_have_one_column_per_class_when_a_class_is_absent_from_training():
    """A fold whose training windows lack some classes (ridge.classes_ = [0, 2, 3] of 4):
    column k of the scores must still be class k, or argmax names the wrong class; an absent
    class gets probability 0 after softmax."""
    from xtinyhar.evaluate.cv import softmax
    from xtinyhar.models.minirocket import fit_minirocket

    rng = np.random.default_rng(0)
    for present, n_classes in (([0, 2, 3], 4), ([0, 2], 3)):
        label = np.repeat(present, 8)
        t = np.arange(40) / 40
        imu = (np.sin(2 * np.pi * (1 + label)[:, None, None] * t[None, :, None])
               + 0.1 * rng.normal(size=(len(label), 40, 6))).astype(np.float32)
        model = fit_minirocket(imu, label, seed=0, n_kernels=84, n_classes=n_classes)
        scores = model.scores(imu)
        assert scores.shape == (len(label), n_classes)
        np.testing.assert_array_equal(scores.argmax(1), model.ridge.predict(
            model.scaler.transform(model.transform.transform(
                ((imu - model.norm.mean) / model.norm.std).transpose(0, 2, 1).astype(np.float64)))))
        probs = softmax(scores)
        absent = sorted(set(range(n_classes)) - set(present))
        assert np.all(probs[:, absent] == 0) and np.allclose(probs.sum(1), 1.0)
