"""Model selection on validation subjects only, over several seeds, as one table.

    .venv/bin/python benchmarks/bench_validation.py --run runs/val/NAME
        [--config configs/utd_mhad.yaml] [--set KEY=VALUE ...] [--seeds 42 43 44]
        [--teachers runs/val/REF] [--no-kd] [--jobs 2]

Runs ``xtinyhar cv --protocol validation`` (the standard split's training subjects 7, 5, 3, 1
held out in turn; the test subjects 2, 4, 6, 8 are never loaded into a fold) once per seed,
into ``<run>/seed<N>``, and prints each seed's student trial accuracy and macro-F1 and their
mean ± std. One seed is not enough to choose by: the default student's validation accuracy
was 0.891, 0.854 and 0.877 with seeds 42, 43 and 44, so differences of a few points between
single runs are noise.

``--teachers REF`` copies ``REF/seed<N>/folds/<k>/teacher.pt`` (or, when REF has no seed
folders, ``REF/folds/<k>/teacher.pt`` for every seed) into the new run before it starts, so
a student-only change does not retrain the teachers; only pass a reference whose teachers
were trained with the config you are testing (the run refuses a teacher trained on other
windows, not one trained with other hyper-parameters). Runs are resumed: an interrupted
call continues and a finished one only prints.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
from pathlib import Path

from xtinyhar.cli import parse_overrides
from xtinyhar.config import load_config
from xtinyhar.data import load_dataset
from xtinyhar.errors import XTinyHARError
from xtinyhar.evaluate.cv import run_cv
from xtinyhar.io import write_json
from xtinyhar.preprocess.tokens import build_token_cache

REPO = Path(__file__).resolve().parents[1]
FOLDS = 4   # one per training subject of the standard split


def copy_teachers(reference: Path, seed: int, run_dir: Path) -> int:
    """Copy a reference run's teachers into ``run_dir``; returns how many were copied."""
    source = reference / f"seed{seed}" if (reference / f"seed{seed}").is_dir() else reference
    teachers = [source / "folds" / str(fold) / "teacher.pt" for fold in range(FOLDS)]
    for teacher in teachers:   # all present before anything is copied
        if not teacher.is_file():
            raise XTinyHARError(f"{teacher}: no teacher checkpoint to reuse (--teachers {reference})")
    copied = 0
    for fold, teacher in enumerate(teachers):
        target = run_dir / "folds" / str(fold) / "teacher.pt"
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(teacher, target)
            copied += 1
    return copied


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="run folder; one sub-folder per seed")
    parser.add_argument("--config", default=str(REPO / "configs" / "utd_mhad.yaml"))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key (repeatable), as in `xtinyhar cv`")
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    parser.add_argument("--teachers", help="reference run whose teachers to reuse")
    parser.add_argument("--no-kd", action="store_true", help="students without a teacher")
    parser.add_argument("--jobs", type=int, default=2, help="models trained at once (default 2)")
    args = parser.parse_args()
    try:
        overrides = parse_overrides(args.set)
        base = load_config(args.config, overrides)
        report = load_dataset(base)
        cache = build_token_cache(base, report.trials, report.class_names)
        rows = []
        for seed in args.seeds:
            cfg = load_config(args.config, {**overrides, "train.seed": seed})
            run_dir = Path(args.run) / f"seed{seed}"
            if args.teachers and not args.no_kd:
                copy_teachers(Path(args.teachers), seed, run_dir)
            s = run_cv(cfg, cache, protocol="validation", run_dir=run_dir, resume=True,
                       kd=not args.no_kd, jobs=args.jobs)
            rows.append((seed, s["student_trial"]["accuracy"]["mean"],
                         s["student_trial"]["f1_macro"]["mean"],
                         s["teacher_trial"]["accuracy"]["mean"] if "teacher_trial" in s else None))
    except XTinyHARError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    def mean_std(values: list[float]) -> str:
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{statistics.fmean(values):.3f} ± {std:.3f}"

    print(f"\nvalidation protocol (subjects 7, 5, 3, 1 held out in turn), run {args.run}, "
          f"overrides {' '.join(args.set) or 'none'}{', no KD' if args.no_kd else ''}")
    print(f"{'seed':>6}  {'student acc':>11}  {'macro-F1':>8}  {'teacher acc':>11}")
    for seed, acc, f1, teacher in rows:
        print(f"{seed:>6}  {acc:>11.3f}  {f1:>8.3f}  {'-' if teacher is None else f'{teacher:.3f}':>11}")
    teachers = [r[3] for r in rows if r[3] is not None]
    print(f"{'mean':>6}  {mean_std([r[1] for r in rows]):>11}  {mean_std([r[2] for r in rows]):>8}  "
          f"{mean_std(teachers) if teachers else '-':>11}")
    write_json(Path(args.run) / "bench_validation.json",
               {"config": str(args.config), "overrides": args.set, "kd": not args.no_kd,
                "rows": [dict(zip(("seed", "student_accuracy", "student_f1_macro", "teacher_accuracy"), r))
                         for r in rows]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
