"""Benchmark: the edge table. Trains nothing: takes the checkpoints of finished runs and
measures every model side by side in one process.

    .venv/bin/python benchmarks/bench_edge.py [--runs runs/bench] [--out exports/bench]
        [--latency-runs 1000]

Models: the student of ``<runs>/standard_seed42`` (distilled) and the baselines of
``<runs>/baseline_<arch>_seed42`` (both made by ``benchmarks/bench_accuracy.py``), plus MiniRocket from
``<runs>/baseline_minirocket`` and, on whole trials resampled to 128 samples,
``<runs>/baseline_minirocket_trial_seed42`` (both refitted on the same training subjects for
timing; the whole-trial one is timed per trial).
For each: trial accuracy on the held-out subjects (from the run), parameters, ONNX file size
fp32 and int8, MFLOPs per window, batch-1 latency on 1 thread (median and p95 over
``--latency-runs`` calls after warm-up) in PyTorch eager, ONNX Runtime fp32, ONNX Runtime
int8, TFLite fp32 and TFLite dynamic-range int8 (when the tflite extra is installed), and the
ratio of each model's ORT fp32 latency to the student's. The input is a raw
window in physical units; normalisation and dynamic patching are inside every graph.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
import yaml

from xtinyhar.config import cache_hash, config_from_dict
from xtinyhar.data import load_dataset
from xtinyhar.evaluate.profile import count_flops, count_parameters, measure_latency
from xtinyhar.export.to_onnx import Int8Guard, export_checkpoint, onnx_session

# The benchmark reports what int8 gives every model (its accuracy column); it does not
# refuse a file as `xtinyhar export --int8` would.
REPORT_ONLY = Int8Guard(min_agreement=0.0, max_accuracy_drop=1.0)
from xtinyhar.io import write_json
from xtinyhar.preprocess.tokens import build_token_cache
from xtinyhar.train.checkpoints import load_model

REPO = Path(__file__).resolve().parents[1]
BASELINES = ("cnn1d", "tinyhar", "deepconvlstm")


def ort_latency(path: Path, window: np.ndarray, runs: int) -> dict:
    session = onnx_session(path, threads=1)
    feed = {"imu": window}
    return measure_latency(lambda: session.run(None, feed), runs=runs, threads=1)


def tflite_latency(model, payload, cache, out: Path, window: np.ndarray, runs: int) -> dict:
    """TFLite fp32 and dynamic-range int8 batch-1 latency (with the int8 file's held-out
    trial accuracy), when the optional extra is installed; ``{}`` otherwise."""
    try:
        from xtinyhar.export.to_tflite import export_checkpoint_tflite
    except ImportError:
        return {}
    try:
        reports = export_checkpoint_tflite(model, payload, cache, out, int8=True, guard=REPORT_ONLY)
    except Exception as exc:  # missing extra or a conversion failure: report, keep going
        print(f"TFLite skipped for {out.name}: {exc}", file=sys.stderr)
        return {}
    from xtinyhar.export.device_timing import graph_call
    from xtinyhar.export.runtime import HarModel

    timed = {}
    for precision in ("fp32", "int8"):
        call = graph_call(HarModel(reports[precision]["file"], threads=1), window[0])
        timed[precision] = {**measure_latency(call, runs=runs, threads=1),
                            "file": str(reports[precision]["file"]),
                            "trial_acc": reports[precision]["accuracy"]["trial"]}
    return timed


def runtime_latency(path: str | Path, window: np.ndarray, runs: int) -> dict:
    """What a device script pays per window through ``HarModel.predict`` (input checks,
    the graph, softmax, label) rather than the bare session call of the table."""
    from xtinyhar.export.runtime import HarModel

    model = HarModel(path, threads=1)
    one = np.ascontiguousarray(window[0], dtype=np.float32)
    return measure_latency(lambda: model.predict(one), runs=runs, threads=1)


def torch_latency(model, window: np.ndarray, runs: int) -> dict:
    x = torch.from_numpy(window)

    def call():
        with torch.inference_mode():
            model(x)
    return measure_latency(call, runs=runs, threads=1)


def check_run(run: Path, summary: dict, payload: dict, *, distilled: bool) -> None:
    """The table compares single standard-split models: refuse a run of another protocol
    (its mean over folds would sit beside fold 0's model), and a student without KD or a
    baseline with it."""
    if summary.get("protocol") != "standard":
        raise SystemExit(f"{run}: protocol {summary.get('protocol')!r}, bench_edge needs "
                         "`--protocol standard` runs")
    if bool(payload.get("distilled")) != distilled:
        want = "with KD" if distilled else "without KD (--no-kd)"
        raise SystemExit(f"{run}: its model was trained {'with' if payload.get('distilled') else 'without'} "
                         f"KD; this row needs one trained {want}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default=str(REPO / "runs" / "bench"))
    parser.add_argument("--out", default=str(REPO / "exports" / "bench"))
    parser.add_argument("--latency-runs", type=int, default=1000)
    args = parser.parse_args()
    runs, out = Path(args.runs), Path(args.out)

    entries = [("student (KD)", runs / "standard_seed42")]
    entries += [(arch, runs / f"baseline_{arch}_seed42") for arch in BASELINES]
    caches: dict[str, object] = {}   # one token cache per preprocessing config (cache hash)

    def cache_for(config: dict):
        cfg = config_from_dict(config)
        key = cache_hash(cfg)
        if key not in caches:
            report = load_dataset(cfg)
            caches[key] = build_token_cache(cfg, report.trials, report.class_names)
        return caches[key]

    rows = []
    for name, run in entries:
        ckpt = run / "folds" / "0" / "student.pt"
        if not ckpt.exists():
            print(f"skip {name}: {ckpt} not found", file=sys.stderr)
            continue
        model, payload = load_model(ckpt, "student")
        summary = json.loads((run / "summary.json").read_text())
        check_run(run, summary, payload, distilled=name.startswith("student"))
        cache = cache_for(payload["config"])   # the windows this model was trained on
        if cache.meta["config_hash"] != payload["cache_hash"]:
            raise SystemExit(f"{ckpt}: trained on windows of another preprocessing config than "
                             "this code builds from its config; rerun it")
        reports = export_checkpoint(model, payload, cache, out / f"{name.split()[0]}.onnx", int8=True,
                                    guard=REPORT_ONLY)
        window = np.ascontiguousarray(cache.imu[np.flatnonzero(~np.isin(cache.subject, payload["train_subjects"]))[:1]])
        if name.startswith("student"):
            student_window = window
        rows.append({
            "model": name, "trial_acc": summary["student_trial"]["accuracy"]["mean"],
            "int8_trial_acc": reports["int8"]["accuracy"]["trial"],
            "fp32_trial_acc": reports["fp32"]["accuracy"]["trial"],
            "params": count_parameters(model),
            "fp32_kb": reports["fp32"]["bytes"] / 1024, "int8_kb": reports["int8"]["bytes"] / 1024,
            "mflops": count_flops(model, torch.from_numpy(window)) / 1e6,
            "torch_ms": torch_latency(model, window, args.latency_runs),
            "ort_ms": ort_latency(Path(reports["fp32"]["file"]), window, args.latency_runs),
            "ort_file": str(reports["fp32"]["file"]),
            "ort_int8_ms": ort_latency(Path(reports["int8"]["file"]), window, args.latency_runs),
        })
        tflite = tflite_latency(model, payload, cache, out / f"{name.split()[0]}.tflite", window,
                                args.latency_runs)
        rows[-1]["tflite_ms"], rows[-1]["tflite_int8_ms"] = tflite.get("fp32"), tflite.get("int8")
    for name, run_name in (("minirocket + ridge", "baseline_minirocket"),
                           ("minirocket (trial)", "baseline_minirocket_trial_seed42")):
        mr_run = runs / run_name
        if not (mr_run / "summary.json").exists():
            continue
        from xtinyhar.models.minirocket import fit_minirocket, trial_series

        cache = cache_for(yaml.safe_load((mr_run / "config.yaml").read_text())["config"])
        metrics = json.loads((mr_run / "folds" / "0" / "metrics.json").read_text())
        train = np.flatnonzero(np.isin(cache.subject, metrics["train_subjects"]))
        held_out = np.flatnonzero(~np.isin(cache.subject, metrics["train_subjects"]))
        if run_name.endswith("seed42"):   # whole trials, resampled: one series per trial
            trials = np.unique(cache.trial_index[train])
            model = fit_minirocket(trial_series(cache, trials), cache.trial_label[trials], seed=42)
            window = trial_series(cache, cache.trial_index[held_out[:1]])
        else:
            model = fit_minirocket(cache.imu[train], cache.label[train], seed=42)
            window = cache.imu[held_out[:1]]
        summary = json.loads((mr_run / "summary.json").read_text())
        rows.append({"model": name, "trial_acc": summary["student_trial"]["accuracy"]["mean"],
                     "int8_trial_acc": None, "fp32_trial_acc": None, "params": None,
                     "fp32_kb": None, "int8_kb": None,
                     "mflops": None, "torch_ms": None,
                     "ort_ms": measure_latency(lambda: model.scores(window), warmup=20,
                                               runs=min(args.latency_runs, 300), threads=1),
                     "ort_int8_ms": None, "tflite_ms": None, "tflite_int8_ms": None})
    student = next((r for r in rows if r["model"].startswith("student")), None)
    if student:
        student["runtime_ms"] = runtime_latency(student["ort_file"], student_window, args.latency_runs)
        if student["tflite_ms"]:
            student["runtime_tflite_ms"] = runtime_latency(student["tflite_ms"]["file"], student_window,
                                                           args.latency_runs)

    def ms(value):
        return f"{value['median_ms']:.3f}/{value['p95_ms']:.3f}" if value else "-"

    def num(value, fmt):
        return format(value, fmt) if value is not None else "-"

    header = (f"{'model':<20} {'trial acc':>9} {'int8 acc':>8} {'params':>9} {'fp32 KB':>8} {'int8 KB':>8} "
              f"{'MFLOPs':>7} {'torch ms':>13} {'ORT ms':>13} {'ORT int8 ms':>13} {'TFLite ms':>13} "
              f"{'TFLite int8':>13} {'x student':>9}")
    print(f"\nbatch 1, 1 thread, median/p95 over {args.latency_runs} runs; runs from {runs}")
    print(header)
    print("-" * len(header))
    for r in rows:
        ratio = (r["ort_ms"]["median_ms"] / student["ort_ms"]["median_ms"]) if student else None
        print(f"{r['model']:<20} {r['trial_acc']:>9.3f} {num(r['int8_trial_acc'], '.3f'):>8} "
              f"{num(r['params'], ','):>9} {num(r['fp32_kb'], '.1f'):>8} {num(r['int8_kb'], '.1f'):>8} "
              f"{num(r['mflops'], '.2f'):>7} {ms(r['torch_ms']):>13} {ms(r['ort_ms']):>13} "
              f"{ms(r['ort_int8_ms']):>13} {ms(r['tflite_ms']):>13} {ms(r['tflite_int8_ms']):>13} "
              f"{num(ratio, '.2f'):>9}")
    print("MiniRocket's 'ORT ms' column is its transform + ridge in numpy/numba (no ONNX graph). "
          "TFLite int8: dynamic-range (int8 weights, float activations); its held-out trial accuracy: "
          + ", ".join(f"{r['model']} {r['tflite_int8_ms']['trial_acc']:.3f}" for r in rows
                      if r.get("tflite_int8_ms")))
    if student:
        print(f"\nstudent through the device runtime (HarModel.predict: input checks, graph, softmax, "
              f"label), median/p95 ms:\n  ONNX Runtime fp32 {ms(student['runtime_ms'])} "
              f"(bare session {ms(student['ort_ms'])})")
        if student.get("runtime_tflite_ms"):
            print(f"  LiteRT fp32       {ms(student['runtime_tflite_ms'])} "
                  f"(bare interpreter {ms(student['tflite_ms'])})")
        print()
        print(targets_table(student, rows))
    write_json(out / "bench_edge.json", rows)
    return 0


def targets_table(student: dict, rows: list[dict]) -> str:
    """The edge targets (student latency, speed-up, int8 size and accuracy, the student against
    each baseline), each with the number measured in this run and whether it is met."""
    ort, eager = student["ort_ms"]["median_ms"], student["torch_ms"]["median_ms"]
    lines = [("student ONNX fp32 median latency (ms), raw window in", f"{ort:.3f}", "<= 0.08", ort <= 0.08),
             ("ONNX Runtime speed-up over PyTorch eager (student)", f"{eager / ort:.2f}x", ">= 4x",
              eager / ort >= 4),
             ("student int8 ONNX file (MB = 10^6 bytes)", f"{student['int8_kb'] * 1024 / 1e6:.3f}",
              "<= 0.30", student["int8_kb"] * 1024 <= 0.30e6)]
    drop = student["fp32_trial_acc"] - student["int8_trial_acc"]
    lines.append(("student int8 trial accuracy change vs fp32 (points)", f"{-100 * drop:+.1f}",
                  "within 1", abs(drop) <= 0.01))
    for r in rows:
        if r is student:
            continue
        faster = r["ort_ms"]["median_ms"] > ort
        as_good = student["trial_acc"] >= r["trial_acc"]
        lines.append((f"student vs {r['model']}: faster / at least as accurate",
                      f"{'yes' if faster else 'no'} / {'yes' if as_good else 'no'}", "yes / yes",
                      faster and as_good))
    width = max(len(what) for what, *_ in lines)
    out = [f"{'target':<{width}}  {'measured':>10}  {'target':>9}  met", "-" * (width + 30)]
    out += [f"{what:<{width}}  {value:>10}  {goal:>9}  {'MET' if ok else 'MISSED'}"
            for what, value, goal, ok in lines]
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
