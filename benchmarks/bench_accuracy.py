"""Benchmark: the accuracy targets (student, teacher, KD, CV wall time) on UTD-MHAD, one table.

    .venv/bin/python benchmarks/bench_accuracy.py [--config configs/utd_mhad.yaml]
        [--seeds 42 43 44] [--runs runs/bench] [--skip-kfold] [--jobs 2]

Runs the same code as ``xtinyhar cv`` (teacher + distilled student per fold) for:
- the standard cross-subject split (subjects 1,3,5,7 train / 2,4,6,8 test) once per seed;
- subject-independent 5-fold CV with KD, and the same folds without KD (``--no-kd``).
Runs go to ``<runs>/...`` and are resumed, so an interrupted benchmark continues where it
stopped and a finished one only prints. Hyper-parameters come from the config (chosen on
validation subjects); the test subjects are only ever used for these numbers.
``--jobs 2`` (default) trains two models at once on one thread each (``xtinyhar cv --jobs``).
The wall time is that of the 5-fold KD run when one call ran all its folds from scratch
(kept in its summary.json); a resumed run prints n/a (the fold-time sum is printed beside it).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from xtinyhar.config import load_config
from xtinyhar.data import load_dataset
from xtinyhar.evaluate.cv import run_cv
from xtinyhar.io import write_json
from xtinyhar.preprocess.tokens import build_token_cache

REPO = Path(__file__).resolve().parents[1]


def cv(cfg, cache, protocol: str, run_dir: Path, kd: bool = True, jobs: int = 1) -> dict:
    started = time.perf_counter()
    summary = run_cv(cfg, cache, protocol=protocol, run_dir=run_dir, resume=True, kd=kd, jobs=jobs)
    print(f"  {run_dir}: {time.perf_counter() - started:.0f} s this call", file=sys.stderr)
    return summary


def mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(REPO / "configs" / "utd_mhad.yaml"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    parser.add_argument("--runs", default=str(REPO / "runs" / "bench"))
    parser.add_argument("--skip-kfold", action="store_true", help="only the standard split")
    parser.add_argument("--jobs", type=int, default=2, help="folds trained at once (default 2)")
    args = parser.parse_args()
    runs = Path(args.runs)

    base = load_config(args.config)
    report = load_dataset(base)
    cache = build_token_cache(base, report.trials, report.class_names)

    rows = []
    std_student, std_f1, std_teacher, std_seconds = [], [], [], []
    for seed in args.seeds:
        cfg = load_config(args.config, {"train.seed": seed})
        s = cv(cfg, cache, "standard", runs / f"standard_seed{seed}")
        std_student.append(s["student_trial"]["accuracy"]["mean"])
        std_f1.append(s["student_trial"]["f1_macro"]["mean"])
        std_teacher.append(s["teacher_trial"]["accuracy"]["mean"])
        std_seconds.append(s["seconds"])
    n = len(args.seeds)
    rows += [
        (f"standard split, student trial accuracy (mean ± std of {n} seeds)", mean_std(std_student), ">= 0.92"),
        (f"standard split, student trial macro-F1 (mean ± std of {n} seeds)", mean_std(std_f1), ">= 0.91"),
        (f"standard split, teacher trial accuracy (mean ± std of {n} seeds)", mean_std(std_teacher), ">= 0.93"),
    ]
    if not args.skip_kfold:
        kd = cv(base, cache, "kfold", runs / "kfold_kd", jobs=args.jobs)
        plain = cv(base, cache, "kfold", runs / "kfold_nokd", kd=False, jobs=args.jobs)
        acc = kd["student_trial"]["accuracy"]
        acc_plain = plain["student_trial"]["accuracy"]
        wins = sum(a > b for a, b in zip(acc["values"], acc_plain["values"]))
        rows += [
            (f"{kd['folds']}-fold subject-independent, student trial accuracy",
             f"{acc['mean']:.3f} ± {acc['std']:.3f}", "mean >= 0.90"),
            (f"{kd['folds']}-fold, teacher trial accuracy",
             f"{kd['teacher_trial']['accuracy']['mean']:.3f} ± {kd['teacher_trial']['accuracy']['std']:.3f}", "-"),
            ("same folds, student without KD, trial accuracy",
             f"{acc_plain['mean']:.3f} ± {acc_plain['std']:.3f}", "below KD"),
            ("KD better than no KD (folds won)", f"{wins}/{kd['folds']}, "
             f"{acc['mean'] - acc_plain['mean']:+.3f} mean", "KD better"),
            (f"{kd['folds']}-fold teacher + student CV wall time (s, {kd['jobs']} job(s), "
             f"{base.train.threads} threads; fold-time sum {kd['seconds']:.0f} s)",
             "n/a (resumed)" if kd["wall_seconds"] is None else f"{kd['wall_seconds']:.0f}", "<= 600"),
        ]
    width = max(len(r[0]) for r in rows)
    print(f"\nUTD-MHAD, config {args.config}, runs in {runs}")
    print(f"{'what':<{width}}  {'measured':>15}  target")
    print(f"{'-' * width}  {'-' * 15}  ------")
    for what, value, target in rows:
        print(f"{what:<{width}}  {value:>15}  {target}")
    write_json(runs / "bench_accuracy.json", {"config": str(args.config), "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
