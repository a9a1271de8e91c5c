"""Bad input to ``xtinyhar report``: a one-line XTinyHARError naming the file and what is
wrong, checked before anything is written, so ``--out`` is left as it was."""

import json
import logging

import pytest

from xtinyhar.cli import main
from xtinyhar.errors import XTinyHARError
from xtinyhar.report import write_report

HISTORY = ("model,epoch,train_loss,train_acc,val_loss,val_acc\n"
           "teacher,1,1.2,0.5,1.1,0.55\n"
           "student,1,0.9,0.6,0.8,0.62\n")


def _scores():
    level = {"per_class": {"a": {}, "b": {}}, "confusion": [[3, 1], [0, 4]], "accuracy": 0.875}
    return {"trial": dict(level), "window": dict(level)}


def _run(folder, folds=2):
    """A finished two-class cv run with a teacher, a summary and fold 0's history."""
    entry = {"mean": 0.875, "std": 0.0, "values": [0.875] * folds}
    summary = {"protocol": "kfold", "folds": folds,
               **{f"{m}_{lv}": {"accuracy": entry, "f1_macro": entry, "kappa": entry}
                  for m in ("student", "teacher") for lv in ("trial", "window")}}
    for k in range(folds):
        (folder / "folds" / str(k)).mkdir(parents=True)
        (folder / "folds" / str(k) / "metrics.json").write_text(json.dumps(
            {"student": _scores(), "teacher": _scores(), "student_fit": {"distilled": True}}))
    (folder / "folds" / "0" / "history.csv").write_text(HISTORY)
    (folder / "summary.json").write_text(json.dumps(summary))
    return folder


def _edit_json(path, change):
    content = json.loads(path.read_text())
    change(content)
    path.write_text(json.dumps(content))


def _fails(match, out, **inputs):
    """``write_report`` raises a one-line XTinyHARError matching ``match`` and writes nothing."""
    with pytest.raises(XTinyHARError, match=match) as caught:
        write_report(inputs.pop("runs", []), out, **inputs)
    assert "\n" not in str(caught.value)
    assert not out.exists() or list(out.iterdir()) == []


def test_a_good_run_writes_every_output(tmp_path):
    written = write_report([_run(tmp_path / "r")], tmp_path / "out")
    assert {p.name for p in written} == {
        "summary.tex", "folds.png", "r_history.png", "r_student_per_class.tex",
        "r_student_confusion.png", "r_teacher_per_class.tex", "r_teacher_confusion.png"}


def test_a_history_cell_that_is_not_a_number(tmp_path):
    run = _run(tmp_path / "r")
    (run / "folds" / "0" / "history.csv").write_text(HISTORY.replace("0.62", "abc"))
    _fails(r"^\S*r/folds/0/history\.csv: column 'val_acc' row 2 is not a number \('abc'\)$",
           tmp_path / "out", runs=[run])
    (run / "folds" / "0" / "history.csv").write_text(HISTORY + "student,2,0.8\n")
    _fails(r"^\S*r/folds/0/history\.csv: row 3 does not have 6 cells like the header$",
           tmp_path / "out", runs=[run])


def test_a_ragged_confusion_matrix(tmp_path):
    run = _run(tmp_path / "r")
    _edit_json(run / "folds" / "1" / "metrics.json",
               lambda m: m["student"]["trial"].update(confusion=[[3, 1], [0]]))
    _fails(r"^\S*r/folds/1/metrics\.json: 'student\.trial\.confusion' is not a 2 x 2 matrix of "
           r"counts \(one row and column per class\)$", tmp_path / "out", runs=[run])
    _edit_json(run / "folds" / "1" / "metrics.json",
               lambda m: m["teacher"]["window"].update(confusion=[[3, 1, 0], [0, 4, 0], [0, 0, 1]]))
    _edit_json(run / "folds" / "1" / "metrics.json",
               lambda m: m["student"]["trial"].update(confusion=[[3, 1], [0, 4]]))
    _fails(r"^\S*r/folds/1/metrics\.json: 'teacher\.window\.confusion' is not a 2 x 2 matrix",
           tmp_path / "out", runs=[run])
    _edit_json(run / "folds" / "1" / "metrics.json",
               lambda m: m["teacher"]["window"].update(confusion=[[3, 1], [0, 4]], accuracy="high"))
    _fails(r"^\S*r/folds/1/metrics\.json: 'teacher\.window\.accuracy' is not a number \('high'\)$",
           tmp_path / "out", runs=[run])


def test_folds_in_summary_json_that_is_not_a_number(tmp_path):
    run = _run(tmp_path / "r")
    _edit_json(run / "summary.json", lambda s: s.update(folds="two"))
    _fails(r"^\S*r/summary\.json: 'folds' is not a whole number \('two'\)$", tmp_path / "out",
           runs=[run])
    _edit_json(run / "summary.json", lambda s: s.update(folds=2))
    _edit_json(run / "summary.json", lambda s: s["student_trial"]["kappa"].update(mean="0.9"))
    _fails(r"^\S*r/summary\.json: 'student_trial\.kappa\.mean' is not a number \('0\.9'\)$",
           tmp_path / "out", runs=[run])


def test_a_string_where_edge_accuracy_or_validation_json_has_a_number(tmp_path):
    edge = tmp_path / "bench_edge.json"
    edge.write_text(json.dumps([{"model": "student", "trial_acc": "abc"}]))
    _fails(r"^\S*bench_edge\.json: row 1 \('student'\) 'trial_acc' is not a number \('abc'\)$",
           tmp_path / "out", edge=edge)
    edge.write_text(json.dumps([{"model": "student", "ort_ms": {"median_ms": "0.2"}}]))
    _fails(r"^\S*bench_edge\.json: row 1 \('student'\) 'ort_ms\.median_ms' is not a number",
           tmp_path / "out", edge=edge)
    accuracy = tmp_path / "bench_accuracy.json"
    accuracy.write_text(json.dumps({"rows": [["student accuracy", 0.9, ">= 0.92"]]}))
    _fails(r"^\S*bench_accuracy\.json: not a bench_accuracy\.json", tmp_path / "out",
           accuracy=accuracy)
    validation = tmp_path / "val" / "bench_validation.json"
    validation.parent.mkdir()
    row = {"seed": 42, "student_accuracy": 0.8, "student_f1_macro": 0.7, "teacher_accuracy": "n/a"}
    validation.write_text(json.dumps({"rows": [row]}))
    _fails(r"^\S*val/bench_validation\.json: row 1 'teacher_accuracy' is not a number \('n/a'\)$",
           tmp_path / "out", validation=[validation.parent])
    validation.write_text(json.dumps({"overrides": "model.student.L=1",
                                      "rows": [{**row, "teacher_accuracy": 0.9}]}))
    _fails(r"^\S*val/bench_validation\.json: 'overrides' is not a list of KEY=VALUE strings",
           tmp_path / "out", validation=[validation.parent])


def test_a_bad_input_leaves_out_as_it_was(tmp_path):
    good, bad = _run(tmp_path / "good"), _run(tmp_path / "bad")
    (bad / "folds" / "0" / "history.csv").write_text(HISTORY.replace("0.5", "abc"))
    edge = tmp_path / "bench_edge.json"
    edge.write_text(json.dumps([{"model": "student", "trial_acc": 0.9}]))
    out = tmp_path / "out"
    _fails(r"bad/folds/0/history\.csv: column 'train_acc' row 1", out, runs=[good, bad], edge=edge)
    assert not out.exists()                               # not even created
    out.mkdir()
    (out / "summary.tex").write_text("an earlier report")
    with pytest.raises(XTinyHARError, match=r"bad/folds/0/history\.csv"):
        write_report([good, bad], out, edge=edge)
    assert [p.name for p in out.iterdir()] == ["summary.tex"]
    assert (out / "summary.tex").read_text() == "an earlier report"


def test_the_cli_prints_one_line_and_exits_2(tmp_path, capsys):
    run = _run(tmp_path / "r")
    _edit_json(run / "summary.json", lambda s: s.update(folds="two"))
    assert main(["report", "--run", str(run), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.endswith("summary.json: 'folds' is not a whole number ('two')\n")
    assert err.count("\n") == 1 and err.startswith("error: ")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("text, why", [("", "empty"),
                                       ("a,b,c\n1,2,3\n", "the header lacks 'epoch', 'train_loss', 'train_acc'"),
                                       (HISTORY.splitlines()[0] + "\n", "no rows")])
def test_an_unplottable_history_is_a_warning_not_a_silent_gap(tmp_path, caplog, text, why):
    run = _run(tmp_path / "r")
    (run / "folds" / "0" / "history.csv").write_text(text)
    with caplog.at_level(logging.WARNING, logger="xtinyhar"):
        written = write_report([run], tmp_path / "out")
    assert "r_history.png" not in {p.name for p in written}
    assert "summary.tex" in {p.name for p in written}
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "\n" not in warnings[0]
    assert warnings[0].endswith(f"r/folds/0/history.csv: {why}, so no training-curves figure for this run")


def test_no_history_file_is_no_figure_and_no_warning(tmp_path, caplog):
    run = _run(tmp_path / "r")
    (run / "folds" / "0" / "history.csv").unlink()       # a fold that fitted no epochs
    with caplog.at_level(logging.WARNING, logger="xtinyhar"):
        written = write_report([run], tmp_path / "out")
    assert "r_history.png" not in {p.name for p in written}
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
