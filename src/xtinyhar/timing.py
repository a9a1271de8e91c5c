"""Wall-clock timing of a call, with numpy only (the device runtime uses it without torch).

``time_calls(fn)`` makes ``warmup`` untimed calls, then times each of ``runs`` calls with
``time.perf_counter_ns`` and returns median, p95 and mean in milliseconds. Thread counts
are the caller's business (``evaluate.profile.measure_latency`` pins torch's; an ONNX
Runtime session or LiteRT interpreter gets its own at creation).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np


def time_calls(fn: Callable[[], object], *, warmup: int = 50, runs: int = 1000) -> dict:
    """``{"median_ms", "p95_ms", "mean_ms", "runs"}`` over ``runs`` timed calls of ``fn()``."""
    if runs < 1 or warmup < 0:
        raise ValueError(f"need runs >= 1 and warmup >= 0 (got runs={runs}, warmup={warmup})")
    for _ in range(warmup):
        fn()
    times = np.empty(runs, dtype=np.int64)
    for i in range(runs):
        start = time.perf_counter_ns()
        fn()
        times[i] = time.perf_counter_ns() - start
    ms = times / 1e6
    return {"median_ms": float(np.median(ms)), "p95_ms": float(np.percentile(ms, 95)),
            "mean_ms": float(ms.mean()), "runs": int(runs)}
