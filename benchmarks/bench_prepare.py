"""Benchmark: load + prepare time and peak memory for a dataset (default UTD-MHAD).

    .venv/bin/python benchmarks/bench_prepare.py [--config configs/utd_mhad.yaml] [--repeat 3]

Prints a table: the median wall time of each stage over ``--repeat`` runs and the peak
resident memory of the process (ru_maxrss) and the peak traced Python allocations of the
prepare stage (tracemalloc, numpy arrays included).
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

from xtinyhar.config import load_config
from xtinyhar.data import load_dataset
from xtinyhar.preprocess.tokens import build_token_cache, save_token_cache

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(REPO / "configs" / "utd_mhad.yaml"))
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    cfg = load_config(args.config)

    load_s, build_s, write_s = [], [], []
    peak_traced = 0
    for run in range(args.repeat):
        start = time.perf_counter()
        report = load_dataset(cfg)
        loaded = time.perf_counter()
        if run == 0:
            tracemalloc.start()
        built_at = time.perf_counter()
        cache = build_token_cache(cfg, report.trials, report.class_names)
        built = time.perf_counter()
        if run == 0:
            peak_traced = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
        with tempfile.TemporaryDirectory() as folder:
            out = Path(folder) / "cache.npz"
            save_token_cache(out, cache)
            written = time.perf_counter()
            size_mb = out.stat().st_size / 2**20
        load_s.append(loaded - start)
        build_s.append(built - built_at)
        write_s.append(written - built)

    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rows = [
        ("dataset", cfg.data.dataset),
        ("trials / windows", f"{len(report.trials)} / {len(cache)}"),
        ("load (s, median)", f"{statistics.median(load_s):.2f}"),
        ("prepare (s, median)", f"{statistics.median(build_s):.2f}"),
        ("write .npz (s, median)", f"{statistics.median(write_s):.2f}"),
        ("cache size (MB)", f"{size_mb:.1f}"),
        ("peak traced alloc, prepare (MB)", f"{peak_traced / 2**20:.0f}"),
        ("peak RSS, process (MB)", f"{peak_rss_mb:.0f}"),
    ]
    width = max(len(name) for name, _ in rows)
    print(f"{'what':<{width}}  value\n{'-' * width}  -----")
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
