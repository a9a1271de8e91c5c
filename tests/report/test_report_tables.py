"""Report helpers: LaTeX escaping, mean +- std cells, per-class scores from a confusion
matrix (against scikit-learn on the labels behind it), and bad run folders."""

import json

import numpy as np
import pytest
from sklearn.metrics import precision_recall_fscore_support

from xtinyhar.errors import DataError, XTinyHARError
from xtinyhar.report import write_report
from xtinyhar.report.runs import load_run
from xtinyhar.report.tables import escape, mean_std, per_class_scores


def test_escape_and_mean_std():
    assert escape("kfold_kd 5% & #1") == r"kfold\_kd 5\% \& \#1"
    assert mean_std({"mean": 0.9061, "std": 0.0249, "values": [0.88, 0.93]}) == r"0.906 $\pm$ 0.025"
    assert mean_std({"mean": 0.9, "std": 0.0, "values": [0.9]}) == "0.900"     # one fold: no spread
    assert mean_std({"mean": float("nan"), "std": 0.0, "values": [1, 2]}) == "--"


def test_per_class_scores_match_sklearn_on_the_labels_behind_the_matrix():
    rng = np.random.default_rng(0)
    true = rng.integers(0, 4, 200)
    pred = np.where(rng.random(200) < 0.7, true, rng.integers(0, 4, 200))
    pred[pred == 3] = 2                                   # class 3 never predicted: precision 0
    confusion = np.zeros((4, 4), np.int64)
    np.add.at(confusion, (true, pred), 1)
    expected = precision_recall_fscore_support(true, pred, labels=np.arange(4), average=None,
                                               zero_division=0)
    for got, want in zip(per_class_scores(confusion), expected):
        np.testing.assert_allclose(got, want)


def _run(folder, folds=2):
    folder.mkdir(parents=True)
    per_class = {"a": {}, "b": {}}
    metrics = {"trial": {"per_class": per_class, "confusion": [[3, 1], [0, 4]], "accuracy": 0.875},
               "window": {"per_class": per_class, "confusion": [[3, 1], [0, 4]], "accuracy": 0.875}}
    for k in range(folds):
        (folder / "folds" / str(k)).mkdir(parents=True)
        (folder / "folds" / str(k) / "metrics.json").write_text(json.dumps({"student": metrics}))
    (folder / "summary.json").write_text(json.dumps({"protocol": "kfold", "folds": folds}))
    return folder


def test_bad_run_folders_are_one_line_errors(tmp_path):
    with pytest.raises(DataError, match="run folder not found"):
        load_run(tmp_path / "nowhere")
    run = _run(tmp_path / "r")
    assert load_run(run).confusion().tolist() == [[6, 2], [0, 8]]          # summed over folds
    (run / "folds" / "1" / "metrics.json").write_text("{not json")
    with pytest.raises(DataError, match=r"folds/1/metrics.json: not readable JSON"):
        load_run(run)
    (run / "folds" / "1" / "metrics.json").unlink()
    with pytest.raises(DataError, match=r"folds/1/metrics.json: not found"):
        load_run(run)
    (run / "summary.json").unlink()
    with pytest.raises(DataError, match="summary.json: not found"):
        load_run(run)


def test_report_arguments_are_checked(tmp_path):
    a, b = _run(tmp_path / "a"), _run(tmp_path / "x" / "a")
    with pytest.raises(XTinyHARError, match="share a name"):
        write_report([a, b], tmp_path / "out")
    with pytest.raises(XTinyHARError, match="2 --label for 1 --run"):
        write_report([a], tmp_path / "out", labels=["one", "two"])
    (tmp_path / "file").write_text("")
    with pytest.raises(XTinyHARError, match="must be a folder"):
        write_report([a], tmp_path / "file")
    written = write_report([a, b], tmp_path / "out", labels=["first", "second"])
    assert {p.name for p in written} >= {"summary.tex", "folds.png", "first_student_confusion.png"}
