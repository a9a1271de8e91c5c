"""Own data end to end with tiny models: cv and train-student without a skeleton (KD off,
said once), export, predict on a file and a folder, and the HarClassifier API."""

from __future__ import annotations

import csv

import numpy as np
import pytest

import xtinyhar
from xtinyhar.cli import main
from xtinyhar.errors import XTinyHARError

from tests.data.test_custom import write_csv_folder

TINY = {"train.epochs": 2, "train.warmup_epochs": 0, "train.lr": 1e-3, "model.student.D": 16,
        "model.student.heads": 2, "model.student.L": 1, "model.student.p_default": 10,
        "data.window": 50, "data.stride": 25}


def _config(tmp_path, folder, protocol="auto"):
    path = tmp_path / "own.yaml"
    path.write_text(
        f"data: {{dataset: custom, root: {folder}, imu_sr: 50, window: 50, stride: 25}}\n"
        "model: {student: {L: 1, D: 16, heads: 2, p_default: 10}}\n"
        "train: {epochs: 2, warmup_epochs: 0, lr: 1e-3}\n"
        f"eval: {{folds: 2, protocol: {protocol}, val_subjects: 1}}\n")
    return path


def test_cv_train_export_predict_without_skeleton(tmp_path, capsys):
    folder = write_csv_folder(tmp_path / "rec", labels=("walk", "sit", "run") * 4,
                              subjects=(1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4))
    config = _config(tmp_path, folder)
    assert main(["cv", "--config", str(config), "--out", str(tmp_path / "run"), "--max-folds", "1"]) == 0
    out = capsys.readouterr().out
    assert out.count("KD off: the data has no skeleton") == 1 and "kfold: 1 fold(s)" in out

    student = tmp_path / "s.pt"
    assert main(["train-student", "--config", str(config), "--out", str(student)]) == 0
    assert "KD off" in capsys.readouterr().out
    onnx = tmp_path / "s.onnx"
    assert main(["export", "--checkpoint", str(student), "--out", str(onnx)]) == 0
    capsys.readouterr()

    assert main(["predict", "--model", str(onnx), "--input", str(folder / "r0.csv")]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[1].startswith("r0.csv: ") and "  window 0 t=" in out
    preds = tmp_path / "preds.csv"
    assert main(["predict", "--model", str(onnx), "--input", str(folder), "--out", str(preds)]) == 0
    rows = list(csv.DictReader(preds.open()))
    whole = [r for r in rows if r["window"] == "all"]
    assert len(whole) == 12 and {r["label"] for r in rows} <= {"run", "sit", "walk"}
    probs = np.array([[float(r[f"p_{c}"]) for c in ("run", "sit", "walk")] for r in whole])
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)


def test_predefined_split_and_missing_input(tmp_path, capsys):
    folder = write_csv_folder(tmp_path / "rec", labels=("walk", "sit", "run") * 2, subjects=None,
                              splits=("train",) * 3 + ("test",) * 3)
    config = _config(tmp_path, folder, protocol="standard")   # own data: standard = its split
    assert main(["cv", "--config", str(config), "--out", str(tmp_path / "run")]) == 0
    assert "predefined: 1 fold(s)" in capsys.readouterr().out
    assert main(["predict", "--model", str(tmp_path / "none.onnx"), "--input", str(tmp_path / "x")]) == 2
    assert "--input not found" in capsys.readouterr().err


def test_har_classifier_fit_predict_score_export(tmp_path):
    rng = np.random.default_rng(0)
    t = np.arange(150) / 50

    def rec(label):
        wave = np.sin(2 * np.pi * (0.5 + 1.5 * label) * t)[:, None] * np.ones(6)
        return (wave + 0.05 * rng.normal(size=(150, 6))).astype(np.float32)

    y = [1, 2, 3] * 6
    X = [rec(v - 1) for v in y]
    clf = xtinyhar.HarClassifier({**TINY, "train.epochs": 3})
    with pytest.raises(XTinyHARError, match="not fitted"):
        clf.predict(X)
    assert clf.fit(X[:12], y[:12]) is clf
    assert clf.classes_.tolist() == [1, 2, 3]
    probs = clf.predict_proba(X[12:])
    assert probs.shape == (6, 3)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)
    assert set(clf.predict(X[12:]).tolist()) <= {1, 2, 3}
    assert 0.0 <= clf.score(X[12:], y[12:]) <= 1.0
    reports = clf.export(tmp_path / "m.onnx", X=X[12:], y=y[12:])
    assert reports["fp32"]["parity_max_abs"] < 1e-4 and reports["fp32"]["accuracy"]["trials"] == 6
    from xtinyhar.export.runtime import HarModel
    model = HarModel(tmp_path / "m.onnx")
    assert model.class_names == ["1", "2", "3"]
    label, _ = model.predict_trial(X[0])
    assert label in {"1", "2", "3"}

    stacked = xtinyhar.HarClassifier(**{**TINY, "train.epochs": 1}).fit(
        np.stack(X[:12]), ["a", "b", "c"] * 4, subjects=[1, 2, 3, 4] * 3)
    assert stacked.classes_.tolist() == ["a", "b", "c"]
    assert stacked.export(tmp_path / "v.onnx")["fp32"]["parity_max_abs"] < 1e-4   # on validation
    with pytest.raises(XTinyHARError, match="data.custom.layout"):
        xtinyhar.HarClassifier(TINY).fit([x[:, :3] for x in X], y)
