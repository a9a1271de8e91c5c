"""Learning curve over training subjects, inside the standard split's training side only.

    .venv/bin/python benchmarks/bench_subjects.py [--archs transformer cnn1d] [--seeds 42]
        [--subjects 2 3] [--config configs/utd_mhad.yaml] [--tokens data_cache/utd_tokens.npz]
        [--set KEY=VALUE ...]

Does one model gain more than another from each extra training subject? Subjects 7, 5, 3, 1
are held out in turn (as in ``cv --protocol validation``); each fold trains on N of the
other three (N = 3: all of them; N = 2: the held-out subject's successors in 7, 5, 3, 1,
wrapping around, so every subject is dropped once), without KD, and the table prints the
mean held-out trial accuracy per model, N and seed. The test subjects 2, 4, 6, 8 are
never loaded into a fold. Each model trains on ``train.threads`` threads, one fit at a time.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np

from xtinyhar.cli import parse_overrides
from xtinyhar.config import load_config
from xtinyhar.data import load_dataset
from xtinyhar.errors import XTinyHARError
from xtinyhar.preprocess.tokens import build_token_cache, load_token_cache
from xtinyhar.train.loop import predict_logits
from xtinyhar.train.tasks import arrays, fit_student, student_forward

REPO = Path(__file__).resolve().parents[1]
ORDER = [7, 5, 3, 1]   # the validation protocol's order


def training_subjects(held_out: int, n: int) -> list[int]:
    """The ``n`` training subjects of the fold that holds out ``held_out``."""
    if not 1 <= n <= len(ORDER) - 1:
        raise XTinyHARError(f"--subjects {n}: must be between 1 and {len(ORDER) - 1}")
    start = ORDER.index(held_out)
    return [ORDER[(start + k) % len(ORDER)] for k in range(1, n + 1)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(REPO / "configs" / "utd_mhad.yaml"))
    parser.add_argument("--tokens", help="token cache from `xtinyhar prepare` (default: build in memory)")
    parser.add_argument("--archs", nargs="+", default=["transformer", "cnn1d"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[42])
    parser.add_argument("--subjects", type=int, nargs="+", default=[2, 3])
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key (repeatable), e.g. train.threads=1")
    args = parser.parse_args()
    rows = []
    try:
        overrides = parse_overrides(args.set)
        base = load_config(args.config, overrides)
        if args.tokens:
            cache = load_token_cache(args.tokens, base)
        else:
            report = load_dataset(base)
            cache = build_token_cache(base, report.trials, report.class_names)
        for arch in args.archs:
            for n in args.subjects:
                for seed in args.seeds:
                    cfg = load_config(args.config, {**overrides, "model.student.arch": arch,
                                                     "train.seed": seed})
                    accuracies = []
                    for held_out in ORDER:
                        train = np.flatnonzero(np.isin(cache.subject, training_subjects(held_out, n)))
                        test = np.flatnonzero(cache.subject == held_out)
                        model = fit_student(cfg, cache, train, np.array([], dtype=int),
                                            desc=f"{arch} n={n} held-out {held_out}").model
                        logits = predict_logits(model, arrays(cache, test, False), student_forward)
                        accuracies.append(float((logits.argmax(1) == cache.label[test]).mean()))
                    rows.append((arch, n, seed, statistics.fmean(accuracies), accuracies))
    except XTinyHARError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if base.data.segmentation != "trial":
        print("note: sliding windows; accuracies below are window-level", file=sys.stderr)
    print(f"\ntraining subjects vs held-out accuracy (no KD; held out {', '.join(map(str, ORDER))} in turn)")
    print(f"{'model':<12} {'subjects':>8} {'seed':>5} {'mean acc':>8}  per held-out subject")
    for arch, n, seed, mean, per_fold in rows:
        print(f"{arch:<12} {n:>8} {seed:>5} {mean:>8.3f}  {' '.join(f'{a:.3f}' for a in per_fold)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
