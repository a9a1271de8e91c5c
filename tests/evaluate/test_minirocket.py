"""MiniRocket + ridge baseline through the same cv code path as the student."""

import json

import numpy as np
import yaml

from xtinyhar.config import load_config
from xtinyhar.data import load_dataset
from xtinyhar.evaluate.cv import run_cv
from xtinyhar.preprocess.tokens import build_token_cache

from conftest import CONFIGS


def test_minirocket_cv_on_synthetic_data(tmp_path):
    cfg = load_config(CONFIGS / "synthetic.yaml", {
        "model.student.arch": "minirocket", "eval.folds": 3, "train.threads": 1,
        "data.synthetic.subjects": 6, "data.synthetic.trials_per_class": 2})
    report = load_dataset(cfg)
    cache = build_token_cache(cfg, report.trials, report.class_names)
    summary = run_cv(cfg, cache, protocol="kfold", run_dir=tmp_path / "run", kd=True)
    assert summary["student_trial"]["accuracy"]["mean"] > 3 / len(cache.class_names)
    assert "teacher_trial" not in summary      # no teacher for a non-neural baseline
    fold = tmp_path / "run" / "folds" / "0"
    metrics = json.loads((fold / "metrics.json").read_text())
    assert metrics["student_fit"]["model"] == "minirocket" and not (fold / "student.pt").exists()
    pred = np.load(fold / "predictions.npz")
    np.testing.assert_allclose(pred["student_window_probs"].sum(1), 1.0, rtol=1e-5)
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["config"]["model"]["student"]["arch"] == "minirocket"
