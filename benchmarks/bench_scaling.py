"""Benchmark: wall time of one small ablation study on 1 and 2 workers, side by side.

    .venv/bin/python benchmarks/bench_scaling.py [--epochs 4] [--folds 3] [--no-ray]

The study is the synthetic set (configs/synthetic.yaml) with two variants, the full model
and the student without KD, one seed, ``--folds`` folds: 3 x ``--folds`` tasks (a teacher
per fold of the full model, a student per fold of each variant). It runs through the one
fold scheduler on each executor in turn: this process (1 worker), a local process pool of
2, and, with the ray extra, a private Ray instance on this machine (``--address local``)
with 1 and 2 CPUs (the same path as a cluster: inputs through the object store, the fold
files written by the driver). Prints a table: executor, workers, wall seconds, the runs'
summed fold seconds and their ratio to the wall time (how many models trained at once on
average), the speed-up over 1 worker of the same kind, and whether the ablation table
equals the first row's (it must: training is deterministic per seed, one thread per model
throughout), with the machine's load average before and after.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import yaml

from xtinyhar.evaluate.ablate import load_study, run_study, study_caches, study_configs
from xtinyhar.evaluate.executors import InlineExecutor, ProcessExecutor, RayExecutor

REPO = Path(__file__).resolve().parents[1]
STUDY = {"base": "full", "protocol": "kfold", "seeds": [42],
         "variants": {"full": [], "no_kd": {"kd": False}}}


def numbers(table: dict) -> list:
    """The table's scores and differences, without paths or times."""
    return [(row["name"], row["accuracy"], row["f1_macro"], row["difference"]) for row in table["variants"]]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(REPO / "configs" / "synthetic.yaml"))
    parser.add_argument("--epochs", type=int, default=4, help="train.epochs of every model (default 4)")
    parser.add_argument("--folds", type=int, default=3, help="eval.folds (default 3)")
    parser.add_argument("--no-ray", action="store_true", help="leave out the Ray rows")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    overrides = {"train.epochs": args.epochs, "train.teacher_epochs": args.epochs,
                 "train.threads": 1, "eval.folds": args.folds}
    executors = [("this process", 1, InlineExecutor), ("process pool", 2, lambda: ProcessExecutor(2))]
    if not args.no_ray and importlib.util.find_spec("ray") is not None:
        executors += [("Ray (local)", 1, lambda: RayExecutor("local", jobs=1)),
                      ("Ray (local)", 2, lambda: RayExecutor("local", jobs=2))]
    elif not args.no_ray:
        print("ray is not installed (pip install -e '.[ray]'): Ray rows left out", file=sys.stderr)

    with tempfile.TemporaryDirectory(prefix="bench-scaling-") as folder:
        folder = Path(folder)
        study_file = folder / "study.yaml"
        study_file.write_text(yaml.safe_dump(STUDY, sort_keys=False))
        study = load_study(study_file)
        cfgs = study_configs(study, args.config, study.seeds, overrides)
        caches = study_caches(cfgs)
        tasks = 3 * args.folds
        rows, first, base = [], None, {}
        load_before = os.getloadavg()[0]
        for i, (name, workers, make) in enumerate(executors):
            run_dir = folder / f"run{i}"
            started = time.perf_counter()
            table = run_study(study, cfgs, caches, run_dir=run_dir, protocol="kfold",
                              seeds=study.seeds, config=args.config, jobs=workers, executor=make())
            wall = time.perf_counter() - started
            fold_s = sum(json.loads(path.read_text())["seconds"] for path in run_dir.glob("*/seed_*/summary.json"))
            first = numbers(table) if first is None else first
            group = "ray" if name.startswith("Ray") else "local"   # 1 worker of the same kind
            base.setdefault(group, wall)
            rows.append((name, workers, round(wall, 1), round(fold_s, 1), round(fold_s / wall, 2),
                         round(base[group] / wall, 2), numbers(table) == first))
            print(f"{name}, {workers} worker(s): {wall:.1f} s", file=sys.stderr)
        load_after = os.getloadavg()[0]

    print(f"study: synthetic, variants full + no_kd, 1 seed, {args.folds} folds, {args.epochs} epochs "
          f"per model, one thread per model: {tasks} tasks; {os.cpu_count()} CPU(s), load average "
          f"{load_before:.1f} before, {load_after:.1f} after")
    print(f"{'executor':<14} {'workers':>7} {'wall s':>7} {'fold s':>7} {'in flight':>9} {'speed-up':>8}  same table")
    for name, workers, wall, fold_s, busy, speedup, same in rows:
        print(f"{name:<14} {workers:>7} {wall:>7.1f} {fold_s:>7.1f} {busy:>9.2f} {speedup:>7.2f}x  "
              f"{'yes' if same else 'NO'}")
    print("fold s: the runs' summed fold times (teacher + student); in flight: fold s / wall s; "
          "speed-up: over 1 worker of the same kind (this process for the pool)")
    keys = ("executor", "workers", "wall_s", "fold_s", "in_flight", "speedup", "same_table")
    print(json.dumps({"rows": [dict(zip(keys, r)) for r in rows]}))
    return 0 if all(r[-1] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
