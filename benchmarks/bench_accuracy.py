"""Benchmark: every model on UTD-MHAD's held-out subjects, with its cost, as one table.

    .venv/bin/python benchmarks/bench_accuracy.py [--config configs/utd_mhad.yaml]
        [--seeds 42 43 44] [--runs runs/bench] [--models student cnn1d ...] [--skip-kfold]
        [--kfold-models student ...]
        [--set KEY=VALUE ...] [--jobs 2] [--latency-runs 1000]

Models: the distilled student, the same student without KD, the teacher (skeleton + IMU,
trained in the student's KD runs), the 1D-CNN, TinyHAR, DeepConvLSTM (``model.student.arch``)
and MiniRocket on whole trials (``minirocket_trial``). Each is run through the same code as
``xtinyhar cv``: on the standard cross-subject split (subjects 1, 3, 5, 7 train / 2, 4, 6, 8
test) once per seed and, unless ``--skip-kfold``, in subject-independent 5-fold CV (the
config's seed; ``--kfold-models`` names a subset), all as one grid of folds on ``--jobs`` workers (the scheduler of ``cv`` and
``ablate``: each worker trains on ``train.threads // jobs`` threads). Runs go to ``<runs>/standard_seed<N>`` and ``<runs>/kfold_kd`` (the student with KD),
``standard_nokd_seed<N>`` and ``kfold_nokd``, ``baseline_<arch>_seed<N>`` and ``kfold_<arch>``,
and are resumed, so an interrupted benchmark continues where it stopped and a finished one
only prints. ``--set`` overrides the config for every model (e.g. sliding windows:
``--set data.segmentation=sliding --set data.window=100 --set data.stride=50 --runs
runs/bench_w100``); then the window-level columns are the ones a stream sees.

Cost columns, measured at the end in this process, one model after another, on the seed-``seeds[0]``
standard-split checkpoint: parameters, MFLOPs per window, the int8 ONNX file's size and
ONNX Runtime fp32 batch-1 single-thread latency (median over ``--latency-runs`` calls).
Test subjects are only ever used for these numbers; hyper-parameters come from the config.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from xtinyhar.cli import parse_overrides
from xtinyhar.config import load_config
from xtinyhar.data import load_dataset
from xtinyhar.errors import XTinyHARError
from xtinyhar.evaluate.cv import plan_cv, run_plans
from xtinyhar.evaluate.profile import count_flops, count_parameters, measure_latency
from xtinyhar.export.to_onnx import Int8Guard, export_checkpoint, onnx_session
from xtinyhar.io import write_json
from xtinyhar.preprocess.tokens import build_token_cache
from xtinyhar.train.checkpoints import load_model

REPO = Path(__file__).resolve().parents[1]
# The benchmark reports each model's int8 file; it does not refuse one as `export --int8` would.
REPORT_ONLY = Int8Guard(min_agreement=0.0, max_accuracy_drop=1.0)


@dataclass(frozen=True)
class Entry:
    """One row: a name, the run-folder stem, the architecture and whether KD is on."""
    name: str
    stem: str
    arch: str
    kd: bool
    summary_key: str = "student"   # "teacher": the teacher of the KD runs

    def standard_run(self, seed: int) -> str:
        return {"student": f"standard_seed{seed}", "student_nokd": f"standard_nokd_seed{seed}"}.get(
            self.stem, f"baseline_{self.stem}_seed{seed}")

    def kfold_run(self) -> str:
        return {"student": "kfold_kd", "student_nokd": "kfold_nokd"}.get(self.stem, f"kfold_{self.stem}")


ENTRIES = {
    "student": Entry("student (KD)", "student", "transformer", True),
    "student_nokd": Entry("student, no KD", "student_nokd", "transformer", False),
    "teacher": Entry("teacher (skeleton + IMU)", "student", "transformer", True, "teacher"),
    "cnn1d": Entry("1D-CNN", "cnn1d", "cnn1d", False),
    "tinyhar": Entry("TinyHAR", "tinyhar", "tinyhar", False),
    "deepconvlstm": Entry("DeepConvLSTM", "deepconvlstm", "deepconvlstm", False),
    "minirocket_trial": Entry("MiniRocket, whole trials", "minirocket_trial", "minirocket_trial", False),
}


def mean_std(values: list[float]) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.fmean(values):.3f} ± {statistics.stdev(values):.3f}"


def scores(summary: dict, key: str, level: str) -> tuple[list[float], list[float]]:
    """Per-fold accuracy and macro-F1 of ``key`` (student/teacher) at ``level`` (trial/window)."""
    block = summary.get(f"{key}_{level}")
    if block is None:
        return [], []
    return block["accuracy"]["values"], block["f1_macro"]["values"]


def cost(entry: Entry, run_dir: Path, cache, out: Path, latency_runs: int) -> dict:
    """Parameters, MFLOPs, int8 ONNX KB and ORT fp32 latency of a run's fold-0 model."""
    if entry.arch.startswith("minirocket") or entry.summary_key == "teacher":
        return {}
    model, payload = load_model(run_dir / "folds" / "0" / "student.pt", "student")
    held_out = np.flatnonzero(~np.isin(cache.subject, payload["train_subjects"]))
    window = np.ascontiguousarray(cache.imu[held_out[:1]])
    reports = export_checkpoint(model, payload, cache, out / f"{entry.stem}.onnx", int8=True,
                                guard=REPORT_ONLY)
    session = onnx_session(reports["fp32"]["file"], threads=1)
    latency = measure_latency(lambda: session.run(None, {"imu": window}), runs=latency_runs, threads=1)
    return {"params": count_parameters(model), "mflops": count_flops(model, torch.from_numpy(window)) / 1e6,
            "int8_kb": reports["int8"]["bytes"] / 1024, "int8_trial": reports["int8"]["accuracy"]["trial"],
            "ort_ms": latency["median_ms"]}


def kfold_models(args) -> list[str]:
    """The models of ``--models`` that also run in 5-fold."""
    return [key for key in args.models if args.kfold_models is None or key in args.kfold_models]


def run_grid(args, overrides: dict, cache) -> tuple[dict[str, list[dict]], dict[str, dict]]:
    """Every model's runs (standard split per seed, then 5-fold) as one grid of folds through
    the scheduler of ``cv`` and ``ablate`` on ``--jobs`` workers; finished runs are resumed.
    Returns the standard-split summaries per model (one per seed) and the 5-fold summaries."""
    wanted = []   # (model key, protocol, run folder, config, kd); the teacher shares the student's runs
    for protocol in ("standard",) if args.skip_kfold else ("standard", "kfold"):
        for key in args.models if protocol == "standard" else kfold_models(args):
            entry = ENTRIES[key]
            for seed in args.seeds if protocol == "standard" else [None]:
                extra = {"model.student.arch": entry.arch} | ({"train.seed": seed} if seed else {})
                folder = Path(args.runs) / (entry.standard_run(seed) if seed else entry.kfold_run())
                wanted.append((key, protocol, folder, load_config(args.config, {**overrides, **extra}),
                               entry.kd))
    plans = {}
    for _, protocol, folder, cfg, kd in wanted:
        if folder not in plans:
            plans[folder] = plan_cv(cfg, cache, protocol=protocol, run_dir=folder, resume=True, kd=kd)
    summaries: dict[Path, dict] = {}

    def finished(folder: Path, plan, summary: dict) -> None:
        summaries[folder] = summary
        print(f"  {folder}: finished", file=sys.stderr)

    started = time.perf_counter()
    run_plans(plans, {"cache": cache}, dict.fromkeys(plans, "cache"), jobs=args.jobs,
              on_finished=finished)
    trained = sum(len(plan.todo) for plan in plans.values())
    print(f"  {trained} fold(s) trained in {time.perf_counter() - started:.0f} s "
          f"on {args.jobs} worker(s)", file=sys.stderr)
    standard: dict[str, list[dict]] = {}
    kfold: dict[str, dict] = {}
    for key, protocol, folder, _, _ in wanted:
        if protocol == "standard":
            standard.setdefault(key, []).append(summaries[folder])
        else:
            kfold[key] = summaries[folder]
    return standard, kfold


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(REPO / "configs" / "utd_mhad.yaml"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    parser.add_argument("--runs", default=str(REPO / "runs" / "bench"))
    parser.add_argument("--models", nargs="+", choices=list(ENTRIES), default=list(ENTRIES))
    parser.add_argument("--skip-kfold", action="store_true", help="only the standard split")
    parser.add_argument("--kfold-models", nargs="+", choices=list(ENTRIES), default=None,
                        help="the models also run in 5-fold (default: every one of --models)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key for every model (repeatable)")
    parser.add_argument("--jobs", type=int, default=2,
                        help="folds trained at once, across every model and seed (default 2)")
    parser.add_argument("--latency-runs", type=int, default=1000)
    args = parser.parse_args()
    runs = Path(args.runs)
    try:
        overrides = parse_overrides(args.set)
        base = load_config(args.config, overrides)
        report = load_dataset(base)
        cache = build_token_cache(base, report.trials, report.class_names)
        standard, kfold = run_grid(args, overrides, cache)
        rows = []
        for key in args.models:   # costs last, one model after another in this process
            entry = ENTRIES[key]
            row = {"key": key, "model": entry.name}
            for level in ("trial", "window"):
                per_seed = [scores(s, entry.summary_key, level) for s in standard[key]]
                row[f"standard_{level}"] = [acc[0] for acc, _ in per_seed if acc]
                row[f"standard_{level}_f1"] = [f1[0] for _, f1 in per_seed if f1]
                row[f"kfold_{level}"], row[f"kfold_{level}_f1"] = (
                    scores(kfold[key], entry.summary_key, level) if key in kfold else ([], []))
            with tempfile.TemporaryDirectory() as out:
                row.update(cost(entry, runs / entry.standard_run(args.seeds[0]), cache,
                                Path(out), args.latency_runs))
            rows.append(row)
    except XTinyHARError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    if {"student", "student_nokd"} <= set(kfold_models(args)) and not args.skip_kfold:
        kd, plain = (next(r for r in rows if r["key"] == k)["kfold_trial"] for k in ("student", "student_nokd"))
        gains = [a - b for a, b in zip(kd, plain)]
        print(f"\nKD gain per fold (5-fold, trial accuracy, KD minus no KD): "
              f"{' '.join(f'{g:+.3f}' for g in gains)}; mean {statistics.fmean(gains):+.3f}, "
              f"std {statistics.stdev(gains):.3f}, KD ahead on {sum(g > 0 for g in gains)}/{len(gains)}")

    levels = ("trial", "window") if base.data.segmentation == "sliding" else ("trial",)
    num = lambda value, fmt: "-" if value is None else format(value, fmt)   # noqa: E731
    header = f"{'model':<26}"
    for level in levels:
        header += f" {'standard ' + level + ' acc':>19} {'macro-F1':>13}"
        if not args.skip_kfold:
            header += f" {'5-fold ' + level + ' acc':>17} {'macro-F1':>13}"
    header += f" {'params':>8} {'MFLOPs':>6} {'int8 KB':>7} {'int8 acc':>8} {'ORT ms':>6}"
    shown = Path(args.config).resolve()
    shown = shown.relative_to(REPO) if shown.is_relative_to(REPO) else shown
    print(f"\n{base.data.dataset}, {shown} {' '.join(args.set)}; standard split: mean ± std of seeds "
          f"{', '.join(map(str, args.seeds))}; 5-fold: mean ± std of folds; cost of the seed-"
          f"{args.seeds[0]} model, batch 1, 1 thread, ORT fp32 median of {args.latency_runs} calls")
    print(header)
    print("-" * len(header))
    for r in rows:
        line = f"{r['model']:<26}"
        for level in levels:
            line += f" {mean_std(r[f'standard_{level}']):>19} {mean_std(r[f'standard_{level}_f1']):>13}"
            if not args.skip_kfold:
                line += f" {mean_std(r[f'kfold_{level}']):>17} {mean_std(r[f'kfold_{level}_f1']):>13}"
        line += (f" {num(r.get('params'), ','):>8} {num(r.get('mflops'), '.2f'):>6} "
                 f"{num(r.get('int8_kb'), '.1f'):>7} {num(r.get('int8_trial'), '.3f'):>8} "
                 f"{num(r.get('ort_ms'), '.3f'):>6}")
        print(line)
    write_json(runs / "bench_accuracy.json", {"config": str(args.config), "overrides": args.set,
                                             "seeds": args.seeds, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
