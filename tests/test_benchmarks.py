"""Helpers of the model-selection scripts in benchmarks/ (file and fold logic only; the runs
themselves are `xtinyhar cv` and the fit loop, tested elsewhere)."""

import importlib.util
import sys
from pathlib import Path

import pytest

from xtinyhar.errors import XTinyHARError

ROOT = Path(__file__).resolve().parents[1]


def _benchmark(name: str):
    """Import benchmarks/<name>.py (a script folder, not a package)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module        # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _teachers(root: Path, tag: str) -> None:
    for fold in range(4):
        (root / "folds" / str(fold)).mkdir(parents=True)
        (root / "folds" / str(fold) / "teacher.pt").write_text(f"{tag} {fold}")


def test_copy_teachers_uses_the_seed_folder_when_there_is_one(tmp_path):
    bench = _benchmark("bench_validation")
    reference = tmp_path / "ref"
    _teachers(reference / "seed43", "seed43")
    _teachers(reference / "seed42", "seed42")
    run = tmp_path / "new" / "seed43"
    assert bench.copy_teachers(reference, 43, run) == 4
    assert (run / "folds" / "2" / "teacher.pt").read_text() == "seed43 2"
    assert bench.copy_teachers(reference, 43, run) == 0          # a resumed run keeps its copies


def test_copy_teachers_falls_back_to_a_single_run_and_names_a_missing_file(tmp_path):
    bench = _benchmark("bench_validation")
    reference = tmp_path / "ref"
    _teachers(reference, "single")
    run = tmp_path / "new" / "seed44"
    bench.copy_teachers(reference, 44, run)
    assert (run / "folds" / "0" / "teacher.pt").read_text() == "single 0"
    (reference / "folds" / "3" / "teacher.pt").unlink()
    with pytest.raises(XTinyHARError, match=r"folds/3/teacher.pt: no teacher checkpoint"):
        bench.copy_teachers(reference, 45, tmp_path / "other")
    assert not (tmp_path / "other").exists()                    # nothing half-copied


def test_learning_curve_folds_drop_every_subject_once_and_never_train_on_the_held_out_one():
    bench = _benchmark("bench_subjects")
    folds = {held: bench.training_subjects(held, 2) for held in bench.ORDER}
    assert folds == {7: [5, 3], 5: [3, 1], 3: [1, 7], 1: [7, 5]}
    assert all(held not in train for held, train in folds.items())
    assert all(sorted(bench.training_subjects(held, 3)) == sorted(set(bench.ORDER) - {held})
               for held in bench.ORDER)
    with pytest.raises(XTinyHARError, match="--subjects 4"):
        bench.training_subjects(7, 4)


def test_latency_parts_graphs_compute_what_the_student_computes():
    """bench_latency_parts times prefixes of the student and a graph cut to the real tokens:
    the full prefix and the cut graph give the student's logits (a window of each patch
    length, alone and in one batch), and the stage prefixes return the tokenizer's pieces."""
    import torch

    from xtinyhar.models.student import InertialTransformer, StudentModelConfig

    bench = _benchmark("bench_latency_parts")
    torch.manual_seed(0)
    student = InertialTransformer(StudentModelConfig(n_classes=5, window=150, dim=32, heads=4)).eval()
    still = torch.randn(1, 150, 6) * 0.001                     # coarse patches: few real tokens
    lively = torch.randn(1, 150, 6)                            # fine patches: every slot real
    batch = torch.cat([still, lively])
    rows = student.tokenizer.patcher.row(batch)
    assert rows[0] != rows[1]
    with torch.no_grad():
        expected = student(batch)
        trimmed = bench.RealTokensOnly(student).eval()
        torch.testing.assert_close(trimmed(batch), expected, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(trimmed(still), expected[:1], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(bench.Prefix(student, "transformer + head")(batch), expected)
        torch.testing.assert_close(bench.FusedAttention(student)(batch), expected, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(bench.Prefix(student, "time embedding")(batch), student.tokenizer(batch)[0])
        n_max = student.tokenizer.patcher.n_max
        assert bench.Prefix(student, "dynamic patching")(batch).shape == (2, n_max, 20 * 16)


def test_latency_parts_refuses_a_graph_whose_logits_are_nan(monkeypatch, tmp_path):
    """The check before timing must fail for a graph giving NaN logits (NaN compares false
    with everything, so a plain max() of the differences would drop it)."""
    from types import SimpleNamespace

    import numpy as np
    import torch

    from xtinyhar.models.student import InertialTransformer, StudentModelConfig

    bench = _benchmark("bench_latency_parts")
    torch.manual_seed(0)
    student = InertialTransformer(StudentModelConfig(n_classes=5, window=150, dim=32, heads=4)).eval()

    class Session:   # stands in for ONNX Runtime: the model's logits, or NaN for one graph
        def __init__(self, path, threads=1):
            self.broken = Path(path).name == "deployed.onnx"

        def run(self, _, feed):
            with torch.no_grad():
                logits = student(torch.from_numpy(feed["x"])).numpy()
            return [np.full_like(logits, np.nan) if self.broken else logits]

    monkeypatch.setattr(bench, "export", lambda module, example, path, opset=None: path)
    monkeypatch.setattr(bench, "transformer_optimized", lambda path, student, out: out)
    monkeypatch.setattr(bench, "ort_median", lambda path, x, runs: 0.1)
    monkeypatch.setattr(bench, "onnx_session", Session)
    monkeypatch.setattr(bench, "cycle", lambda paths, windows: {})
    windows = np.random.default_rng(0).normal(size=(3, 150, 6)).astype(np.float32)
    args = SimpleNamespace(model="student.pt", runs=1)
    assert bench.report_parts(student, windows, tmp_path, args) == 1
    monkeypatch.setattr(bench, "onnx_session", lambda path, threads=1: Session("fine.onnx"))
    assert bench.report_parts(student, windows, tmp_path, args) == 0


def test_edge_table_takes_standard_runs_with_the_right_kd_only(tmp_path):
    bench = _benchmark("bench_edge")
    standard = {"protocol": "standard"}
    bench.check_run(tmp_path, standard, {"distilled": True}, distilled=True)
    bench.check_run(tmp_path, standard, {"distilled": False}, distilled=False)
    with pytest.raises(SystemExit, match="protocol 'kfold'"):
        bench.check_run(tmp_path, {"protocol": "kfold"}, {"distilled": True}, distilled=True)
    with pytest.raises(SystemExit, match="trained with KD"):
        bench.check_run(tmp_path, standard, {"distilled": True}, distilled=False)
    with pytest.raises(SystemExit, match="trained without KD"):
        bench.check_run(tmp_path, standard, {"distilled": False}, distilled=True)


def test_edge_runtime_row_times_the_device_path(tmp_path):
    """The runtime row goes through HarModel.predict on an exported file (metadata and all)."""
    import numpy as np
    import torch

    from xtinyhar.export.to_onnx import export_onnx
    from xtinyhar.models.student import InertialTransformer, StudentModelConfig

    bench = _benchmark("bench_edge")
    torch.manual_seed(0)
    student = InertialTransformer(StudentModelConfig(n_classes=3, window=150, dim=32, heads=4)).eval()
    meta = {"window": 150, "channels": 6, "class_names": ["a", "b", "c"], "imu_hz": 50.0, "stride": 25,
            "segmentation": "sliding"}
    path = export_onnx(student, tmp_path / "s.onnx", meta)
    window = np.random.default_rng(0).normal(size=(1, 150, 6)).astype(np.float32)
    timed = bench.runtime_latency(path, window, runs=5)
    assert timed["runs"] == 5 and 0 < timed["median_ms"] <= timed["p95_ms"]
    export_onnx(student, tmp_path / "bare.onnx", {"window": 150, "channels": 6})
    with pytest.raises(XTinyHARError, match="metadata lacks"):
        bench.runtime_latency(tmp_path / "bare.onnx", window, runs=1)


def test_int8_benchmark_settings_and_node_overhead():
    """The int8 comparison covers what `--int8` writes, and the per-node timing runs."""
    bench = _benchmark("bench_int8")
    names = list(bench.settings())
    assert names[0].startswith("--int8") and len(names) == 7
    one, chain = bench.node_overhead(nodes=5, rounds=1)
    assert 0 < one and 0 < chain


def test_accuracy_benchmark_runs_one_grid_and_resumes_it(tmp_path, monkeypatch, capsys):
    """bench_accuracy: every (model, seed) standard run and the --kfold-models' 5-fold runs
    as one grid; a second call finds every run finished and trains nothing."""
    import json

    bench = _benchmark("bench_accuracy")
    runs = tmp_path / "runs"
    argv = ["bench_accuracy.py", "--runs", str(runs), "--seeds", "42", "43", "--jobs", "1",
            "--models", "student_nokd", "minirocket_trial", "--kfold-models", "minirocket_trial",
            "--set", "train.epochs=1", "--set", "train.threads=1", "--latency-runs", "3"]
    monkeypatch.setattr(sys, "argv", argv)
    assert bench.main() == 0
    first = capsys.readouterr()
    assert sorted(p.name for p in runs.iterdir()) == [
        "baseline_minirocket_trial_seed42", "baseline_minirocket_trial_seed43", "bench_accuracy.json",
        "kfold_minirocket_trial", "standard_nokd_seed42", "standard_nokd_seed43"]
    assert "9 fold(s) trained" in first.err                    # 4 standard runs + 5 folds
    rows = {r["key"]: r for r in json.loads((runs / "bench_accuracy.json").read_text())["rows"]}
    assert len(rows["minirocket_trial"]["kfold_trial"]) == 5 and rows["student_nokd"]["kfold_trial"] == []
    assert len(rows["student_nokd"]["standard_trial"]) == 2 and rows["student_nokd"]["params"] > 0
    assert "KD gain" not in first.out                          # no KD run in this grid
    assert bench.main() == 0
    second = capsys.readouterr()
    assert "0 fold(s) trained" in second.err
    table = lambda out: [line for line in out.splitlines() if line.startswith(("student", "MiniRocket"))]  # noqa: E731
    strip_ms = lambda lines: [line.rsplit(None, 1)[0] for line in lines]   # latency differs  # noqa: E731
    assert strip_ms(table(second.out)) == strip_ms(table(first.out))
