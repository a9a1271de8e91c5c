"""Benchmark: where the student's batch-1 ONNX Runtime latency goes.

    .venv/bin/python benchmarks/bench_latency_parts.py
        [--model runs/bench/standard_seed42/folds/0/student.pt] [--runs 2000]

Trains nothing. Exports growing prefixes of the student's forward pass (raw window ->
normalisation -> conv stem -> dynamic patching -> patch embedding -> time embedding ->
transformer + head) with the exporter and opset of ``xtinyhar export`` and times each in
ONNX Runtime (batch 1, 1 thread, median over ``--runs`` calls after warm-up); the table
shows each stage's share as the difference to the previous prefix. Then:

- the transformer blocks + head alone on N = n_max, ..., 5 tokens: what a graph that only
  computed the real tokens of a coarsely patched (still) window would pay for them;
- such a graph, "real tokens only" (each batch cut to its longest real token count, a
  data-dependent shape), checked against the model (same logits within 1e-4) and timed
  against the static graph on every held-out window in turn (median and p95 over all).

Latencies move by 10-20 % between runs on a shared machine: compare rows of one run.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from xtinyhar.config import config_from_dict
from xtinyhar.data import load_dataset
from xtinyhar.evaluate.profile import measure_latency
from xtinyhar.export.to_onnx import OPSET, onnx_session, quiet_exporter
from xtinyhar.models.layers import attention_bias, lookup, masked_mean
from xtinyhar.preprocess.tokens import build_token_cache
from xtinyhar.train.tasks import load_model

REPO = Path(__file__).resolve().parents[1]


class Prefix(nn.Module):
    """The student's forward pass up to ``stage`` (the names of ``STAGES``)."""

    def __init__(self, student: nn.Module, stage: str):
        super().__init__()
        self.student, self.stage = student, stage

    def forward(self, imu: torch.Tensor) -> torch.Tensor:
        tokenizer = self.student.tokenizer
        patcher = tokenizer.patcher
        x = (imu - tokenizer.norm_mean) / tokenizer.norm_std
        if self.stage == "normalise":
            return x
        x = tokenizer.stem(x)
        if self.stage == "conv stem":
            return x
        row = patcher.row(imu)
        tokens = patcher.tokens(x, row)
        if self.stage == "dynamic patching":
            return tokens
        embedded = tokenizer.embed(tokens, lookup(tokenizer.width_fraction, row))
        if self.stage == "patch embedding":
            return embedded
        if self.stage == "time embedding":
            return tokenizer(imu)[0]
        return self.student(imu)


STAGES = ("normalise", "conv stem", "dynamic patching", "patch embedding", "time embedding",
          "transformer + head")


class Body(nn.Module):
    """Transformer blocks, final norm, mean pooling and head on (B, N, D) tokens, no mask."""

    def __init__(self, student: nn.Module):
        super().__init__()
        self.student = student

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        for block in self.student.blocks:
            tokens, _ = block(tokens, None)
        return self.student.head(self.student.norm(tokens).mean(dim=1))


class RealTokensOnly(nn.Module):
    """The student computing only the real tokens: the batch is cut to the longest real
    token count of its windows (all of them for a finely patched window, a third for the
    coarsest). Same weights, same logits up to float rounding."""

    def __init__(self, student: nn.Module):
        super().__init__()
        self.student = student
        self.register_buffer("real_count", student.tokenizer.patcher.token_mask.sum(dim=1).long())

    def forward(self, imu: torch.Tensor) -> torch.Tensor:
        tokenizer, student = self.student.tokenizer, self.student
        patcher = tokenizer.patcher
        row = patcher.row(imu)
        n = self.real_count.index_select(0, row).max().item()   # data-dependent: an unbacked size
        torch._check(n >= 1)
        torch._check(n <= patcher.n_max)
        points = n * patcher.p_default
        x = tokenizer.stem((imu - tokenizer.norm_mean) / tokenizer.norm_std)
        left = lookup(patcher.sample_left[:, :points], row).long()[..., None].expand(-1, -1, x.shape[-1])
        low, high = torch.gather(x, 1, left), torch.gather(x, 1, left + 1)
        mixed = low + (high - low) * lookup(patcher.sample_weight[:, :points], row)
        tokens = mixed.reshape(imu.shape[0], n, -1) * lookup(patcher.token_real[:, :n], row)
        x = tokenizer.embed(tokens, lookup(tokenizer.width_fraction[:, :n], row))
        x = x + tokenizer.pos.mix(lookup(tokenizer.pos_rows, row), lookup(tokenizer.pos_weight, row))[:, :n]
        mask = lookup(patcher.token_mask[:, :n], row)
        bias = attention_bias(mask)
        for block in student.blocks:
            x, _ = block(x, bias)
        return student.head(masked_mean(student.norm(x), mask))


def export(module: nn.Module, example: torch.Tensor, path: Path, dynamic_batch: bool = False) -> Path:
    quiet_exporter()
    shapes = ({0: torch.export.Dim("batch", min=1, max=4096)},) if dynamic_batch else None
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(module.eval(), (example,), dynamo=True, opset_version=OPSET,
                                    input_names=["x"], dynamic_shapes=shapes, verbose=False)
    program.save(str(path))
    return path


def ort_median(path: Path, x: np.ndarray, runs: int) -> float:
    session = onnx_session(path, threads=1)
    feed = {"x": np.ascontiguousarray(x, dtype=np.float32)}
    return measure_latency(lambda: session.run(None, feed), warmup=200, runs=runs)["median_ms"]


def cycle(path: Path, windows: np.ndarray, rounds: int = 3) -> tuple[float, float]:
    """Median and p95 (ms) of batch-1 calls over every window in turn, ``rounds`` times."""
    session = onnx_session(path, threads=1)
    feeds = [{"x": windows[i:i + 1]} for i in range(len(windows))]
    for feed in feeds[:200]:
        session.run(None, feed)
    times = []
    for _ in range(rounds):
        for feed in feeds:
            start = time.perf_counter_ns()
            session.run(None, feed)
            times.append((time.perf_counter_ns() - start) / 1e6)
    return float(np.median(times)), float(np.percentile(times, 95))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(REPO / "runs" / "bench" / "standard_seed42" / "folds" / "0" / "student.pt"))
    parser.add_argument("--runs", type=int, default=2000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    student, payload = load_model(args.model, "student")
    student.eval()
    cfg = config_from_dict(payload["config"])
    report = load_dataset(cfg)
    cache = build_token_cache(cfg, report.trials, report.class_names)
    held_out = ~np.isin(cache.subject, payload["train_subjects"])
    windows = np.ascontiguousarray(cache.imu[held_out], dtype=np.float32)
    example = torch.from_numpy(windows[:1])
    work = Path(tempfile.mkdtemp(prefix="xtinyhar_parts_"))

    print(f"{args.model}: batch 1, 1 thread, ONNX Runtime median over {args.runs} calls")
    print(f"{'graph: raw window ->':32s} {'ms':>7s} {'stage':>7s}")
    previous = 0.0
    for stage in STAGES:
        ms = ort_median(export(Prefix(student, stage), example, work / "prefix.onnx"), windows[:1], args.runs)
        print(f"{stage:32s} {ms:7.3f} {ms - previous:+7.3f}")
        previous = ms

    n_max, dim = student.tokenizer.patcher.n_max, student.cfg.dim
    print(f"\ntransformer + head alone (blocks, norm, pooling, head; no mask)")
    for n in sorted({n_max, 10, 8, 5}, reverse=True):
        tokens = torch.randn(1, n, dim)
        ms = ort_median(export(Body(student), tokens, work / "body.onnx"), tokens.numpy(), args.runs)
        print(f"{f'N = {n} tokens':32s} {ms:7.3f}")

    trimmed = RealTokensOnly(student).eval()
    with torch.no_grad():
        reference = student(torch.from_numpy(windows)).numpy()
        difference = float(np.abs(trimmed(torch.from_numpy(windows)).numpy() - reference).max())
    if difference > 1e-4:
        print(f"real-tokens-only graph disagrees with the model: max |logit diff| {difference:.2e}",
              file=sys.stderr)
        return 1
    static = export(student, example, work / "static.onnx", dynamic_batch=True)
    dynamic = export(trimmed, torch.from_numpy(windows[:2]), work / "dynamic.onnx", dynamic_batch=True)
    counts = student.tokenizer.patcher.token_mask[student.tokenizer.patcher.row(torch.from_numpy(windows))].sum(1)
    print(f"\nevery held-out window in turn ({len(windows)} windows, real tokens per window: "
          f"median {int(counts.median())}, {float((counts == n_max).float().mean()):.0%} with all {n_max}); "
          f"median / p95 ms")
    for name, path in (("static graph (all token slots)", static), ("real tokens only", dynamic)):
        median, p95 = cycle(path, windows)
        print(f"{name:32s} {median:7.3f} / {p95:.3f}")
    print(f"(real-tokens-only logits within {difference:.1e} of the model's)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
