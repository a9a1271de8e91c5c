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


def test_edge_table_from_bench_edge_json(tmp_path):
    rows = [{"model": "student (KD)", "trial_acc": 0.9, "int8_trial_acc": 0.9023, "params": 124859,
             "fp32_kb": 656.34, "int8_kb": 190.06, "mflops": 3.7559,
             "torch_ms": {"median_ms": 1.1143, "p95_ms": 1.4}, "ort_ms": {"median_ms": 0.1572},
             "ort_int8_ms": {"median_ms": 0.1801}, "tflite_ms": None,
             "tflite_int8_ms": {"median_ms": 0.0651, "trial_acc": 0.9}},
            {"model": "minirocket + ridge", "trial_acc": 0.893, "ort_ms": {"median_ms": 2.263}}]
    (tmp_path / "bench_edge.json").write_text(json.dumps(rows))
    written = write_report([], tmp_path / "out", edge=tmp_path / "bench_edge.json")
    assert [p.name for p in written] == ["edge.tex"]
    table = (tmp_path / "out" / "edge.tex").read_text()
    assert r"student (KD) & 0.900 & 0.902 & 124,859 & 656.3 & 190.1 & 3.76 & 1.114 & 0.157 & 0.180 & -- & 0.065 \\" in table
    assert r"minirocket + ridge & 0.893 & -- & -- & -- & -- & -- & -- & 2.263 & -- & -- & -- \\" in table
    (tmp_path / "bad.json").write_text(json.dumps({"rows": []}))
    with pytest.raises(DataError, match="bad.json: not a bench_edge.json"):
        write_report([], tmp_path / "out", edge=tmp_path / "bad.json")
    with pytest.raises(XTinyHARError, match="at least one --run, --edge, --accuracy or --validation"):
        write_report([], tmp_path / "out")


def test_accuracy_targets_table_from_bench_accuracy_json(tmp_path):
    rows = [["standard split, student trial accuracy (mean ± std of 3 seeds)", "0.886 ± 0.013", ">= 0.92"],
            ["5-fold wall time (s)", "401", "<= 600"]]
    (tmp_path / "bench_accuracy.json").write_text(json.dumps({"config": "c.yaml", "rows": rows}))
    write_report([], tmp_path / "out", accuracy=tmp_path / "bench_accuracy.json")
    table = (tmp_path / "out" / "accuracy.tex").read_text()
    assert (r"standard split, student trial accuracy (mean $\pm$ std of 3 seeds) & 0.886 $\pm$ 0.013 "
            r"& $\geq$ 0.92 \\") in table
    assert r"5-fold wall time (s) & 401 & $\leq$ 600 \\" in table
    (tmp_path / "bad.json").write_text(json.dumps({"rows": [["only two", "cells"]]}))
    with pytest.raises(DataError, match="bad.json: not a bench_accuracy.json"):
        write_report([], tmp_path / "out", accuracy=tmp_path / "bad.json")


def _validation_run(folder, overrides, accuracies, kd=True):
    folder.mkdir(parents=True)
    rows = [{"seed": seed, "student_accuracy": acc, "student_f1_macro": acc - 0.02,
             "teacher_accuracy": 0.93} for seed, acc in zip((44, 42, 43), accuracies)]
    (folder / "bench_validation.json").write_text(json.dumps(
        {"config": "configs/utd_mhad.yaml", "overrides": overrides, "kd": kd, "rows": rows}))
    return folder


def test_validation_table_from_bench_validation_runs(tmp_path):
    default = _validation_run(tmp_path / "default", [], [0.852, 0.882, 0.882])
    heads = _validation_run(tmp_path / "L1_h2", ["model.student.heads=2"], [0.842, 0.831, 0.845], kd=False)
    written = write_report([], tmp_path / "out", validation=[default, heads / "bench_validation.json"])
    assert [p.name for p in written] == ["validation.tex"]
    table = (tmp_path / "out" / "validation.tex").read_text()
    # seeds sorted; mean +- sample std (ddof 1), as bench_validation.py prints them
    assert (r"default & config as is & yes & 42 / 43 / 44 & 0.882 / 0.882 / 0.852 & 0.872 $\pm$ 0.017 & "
            r"0.852 $\pm$ 0.017 & 0.930 $\pm$ 0.000 \\") in table
    assert r"L1\_h2 & model.student.heads=2 & no & 42 / 43 / 44 & 0.831 / 0.845 / 0.842 & 0.839 $\pm$ 0.007" in table
    from xtinyhar.cli import main

    assert main(["report", "--validation", str(default), "--validation", str(heads),
                 "--out", str(tmp_path / "cli")]) == 0
    assert (tmp_path / "cli" / "validation.tex").read_text() == table


def test_validation_inputs_that_are_not_bench_validation_runs(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty/bench_validation.json: not found"):
        write_report([], tmp_path / "out", validation=[tmp_path / "empty"])
    (tmp_path / "bad.json").write_text(json.dumps({"rows": [{"seed": 42}]}))
    with pytest.raises(DataError, match="bad.json: not a bench_validation.json"):
        write_report([], tmp_path / "out", validation=[tmp_path / "bad.json"])
    with pytest.raises(XTinyHARError, match="--edge, --accuracy or --validation"):
        write_report([], tmp_path / "out")
