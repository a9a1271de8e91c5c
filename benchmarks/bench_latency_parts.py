"""Benchmark: where the student's batch-1 ONNX Runtime latency goes.

    .venv/bin/python benchmarks/bench_latency_parts.py
        [--model runs/bench/standard_seed42/folds/0/student.pt] [--runs 2000]

Trains nothing. Exports growing prefixes of the student's forward pass (raw window ->
normalisation -> conv stem -> dynamic patching -> patch embedding -> time embedding ->
transformer + head) with the exporter and opset of ``xtinyhar export`` and times each in
ONNX Runtime (batch 1, 1 thread, median over ``--runs`` calls after warm-up); the table
shows each stage's share as the difference to the previous prefix. Then:

- the transformer blocks + head alone on N = n_max, ..., 5 tokens (no padding mask, so a
  little less work than the model's blocks): what a graph that only computed the real
  tokens of a coarsely patched (still) window would pay for them;
- the training form exported as it is (all token slots, every step of the forward pass)
  against: the deployed form that ``xtinyhar export`` writes (:mod:`xtinyhar.export.fold`:
  what depends only on the patch length computed once at export), a graph "real tokens
  only" (each batch cut to its longest real token count, a data-dependent shape), attention
  as ONNX's fused ``Attention`` operator (opset 23), and the training form after ONNX
  Runtime's offline transformer optimizer; each checked against the model window by window
  (logits within 1e-4; the real-tokens module in PyTorch too) and timed on every held-out
  window in turn, the graphs alternating round by round (median and p95 over all calls).

Every graph has the deployed graph's dynamic batch axis and is fed one window.

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

from xtinyhar.evaluate.profile import measure_latency
from xtinyhar.io import quiet_output
from xtinyhar.export.fold import DeployStudent
from xtinyhar.export.to_onnx import OPSET, held_out_and_training, onnx_session, quiet_exporter
from xtinyhar.models.layers import attention_bias, lookup, masked_mean
from xtinyhar.train.checkpoints import load_with_windows

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
        if tokenizer.pos.mode == "learned":       # the model's own per-row tables
            x = x + tokenizer.pos.mix(lookup(tokenizer.pos_rows, row), lookup(tokenizer.pos_weight, row))[:, :n]
        elif tokenizer.pos.mode == "sinusoidal":
            x = x + tokenizer.pos(lookup(patcher.token_centre[:, :n], row))
        mask = lookup(patcher.token_mask[:, :n], row)
        bias = attention_bias(mask)
        for block in student.blocks:
            x, _ = block(x, bias)
        return student.head(masked_mean(student.norm(x), mask))


class FusedAttention(nn.Module):
    """The student with each attention as one ``F.scaled_dot_product_attention`` call, which
    the exporter writes as ONNX's ``Attention`` operator from opset 23 (no maps returned)."""

    def __init__(self, student: nn.Module):
        super().__init__()
        self.student = student

    def forward(self, imu: torch.Tensor) -> torch.Tensor:
        student = self.student
        x, mask, _ = student.tokenizer(imu)
        n, dim = x.shape[1], x.shape[2]
        bias = attention_bias(mask).expand(-1, -1, n, -1)   # ONNX Runtime wants (B, 1, N, N)
        for block in student.blocks:
            attn = block.attn
            qkv = attn.qkv(block.norm1(x)).reshape(-1, n, 3, attn.heads, attn.head_dim).permute(2, 0, 3, 1, 4)
            mixed = torch.nn.functional.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], attn_mask=bias)
            x = x + attn.proj(mixed.transpose(1, 2).reshape(-1, n, dim))
            x = x + block.mlp(block.norm2(x))
        return student.head(masked_mean(student.norm(x), mask))


def transformer_optimized(path: Path, student: nn.Module, out: Path) -> Path:
    """ONNX Runtime's offline transformer optimizer (BERT fusions) applied to ``path``."""
    from onnxruntime.transformers import optimizer

    with warnings.catch_warnings(), quiet_output():    # its shape-inference chatter
        warnings.simplefilter("ignore")
        model = optimizer.optimize_model(str(path), model_type="bert", num_heads=student.cfg.heads,
                                         hidden_size=student.cfg.dim, opt_level=0)
    fused = {k: v for k, v in model.get_fused_operator_statistics().items() if v}
    print(f"transformer optimizer fused: {fused}")
    model.save_model_to_file(str(out))
    return out


def export(module: nn.Module, example: torch.Tensor, path: Path, opset: int = OPSET) -> Path:
    """``module`` to ONNX with a dynamic batch axis, as ``xtinyhar export`` writes it."""
    quiet_exporter()
    shapes = ({0: torch.export.Dim("batch", min=1, max=4096)},)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(module.eval(), (example,), dynamo=True, opset_version=opset,
                                    input_names=["x"], dynamic_shapes=shapes, verbose=False)
    program.save(str(path))
    return path


def batch_of(x: np.ndarray, size: int = 2) -> torch.Tensor:
    """An export example with a batch of ``size`` (a batch of 1 would be specialised)."""
    return torch.from_numpy(np.repeat(x[:1], size, axis=0))


def ort_median(path: Path, x: np.ndarray, runs: int) -> float:
    session = onnx_session(path, threads=1)
    feed = {"x": np.ascontiguousarray(x, dtype=np.float32)}
    return measure_latency(lambda: session.run(None, feed), warmup=200, runs=runs)["median_ms"]


def cycle(paths: dict[str, Path], windows: np.ndarray, rounds: int = 4) -> dict[str, tuple[float, float]]:
    """Median and p95 (ms) of batch-1 calls over every window in turn, per graph; the
    graphs take turns round by round, so drifts of a shared machine hit them alike."""
    sessions = {name: onnx_session(path, threads=1) for name, path in paths.items()}
    feeds = [{"x": windows[i:i + 1]} for i in range(len(windows))]
    times: dict[str, list[float]] = {name: [] for name in paths}
    for session in sessions.values():
        for feed in feeds[:200]:
            session.run(None, feed)
    for _ in range(rounds):
        for name, session in sessions.items():
            for feed in feeds:
                start = time.perf_counter_ns()
                session.run(None, feed)
                times[name].append((time.perf_counter_ns() - start) / 1e6)
    return {name: (float(np.median(t)), float(np.percentile(t, 95))) for name, t in times.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(REPO / "runs" / "bench" / "standard_seed42" / "folds" / "0" / "student.pt"))
    parser.add_argument("--runs", type=int, default=2000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    student, payload, cache = load_with_windows(args.model)
    held_out, _ = held_out_and_training(cache, payload["train_subjects"], payload.get("val_subjects", []),
                                        payload.get("test_subjects"))
    windows = np.ascontiguousarray(cache.imu[held_out], dtype=np.float32)
    with tempfile.TemporaryDirectory(prefix="xtinyhar_parts_") as folder:
        return report_parts(student, windows, Path(folder), args)


def report_parts(student: nn.Module, windows: np.ndarray, work: Path, args) -> int:
    print(f"{args.model}: batch 1, 1 thread, ONNX Runtime median over {args.runs} calls")
    print(f"{'graph: raw window ->':32s} {'ms':>7s} {'stage':>7s}")
    previous = 0.0
    for stage in STAGES:
        ms = ort_median(export(Prefix(student, stage), batch_of(windows), work / "prefix.onnx"),
                        windows[:1], args.runs)
        print(f"{stage:32s} {ms:7.3f} {ms - previous:+7.3f}")
        previous = ms

    n_max, dim = student.tokenizer.patcher.n_max, student.cfg.dim
    print("\ntransformer + head alone (blocks, norm, pooling, head; no mask)")
    for n in sorted({n_max, 10, 8, 5}, reverse=True):
        tokens = np.random.default_rng(0).normal(size=(1, n, dim)).astype(np.float32)
        ms = ort_median(export(Body(student), batch_of(tokens), work / "body.onnx"), tokens, args.runs)
        print(f"{f'N = {n} tokens':32s} {ms:7.3f}")

    trimmed = RealTokensOnly(student).eval()
    static = export(student, batch_of(windows), work / "static.onnx")
    graphs = {"training form (all token slots)": static,
              "deployed form (xtinyhar export)": export(DeployStudent(student), batch_of(windows),
                                                        work / "deployed.onnx"),
              "real tokens only": export(trimmed, batch_of(windows), work / "dynamic.onnx"),
              "Attention operator (opset 23)": export(FusedAttention(student), batch_of(windows),
                                                       work / "fused.onnx", opset=23),
              "transformer optimizer": transformer_optimized(static, student, work / "optimized.onnx")}
    with torch.no_grad():   # one window at a time, so each is cut to its own real tokens
        reference = np.concatenate([student(torch.from_numpy(windows[i:i + 1])).numpy()
                                    for i in range(len(windows))])
        in_torch = np.concatenate([trimmed(torch.from_numpy(windows[i:i + 1])).numpy()
                                   for i in range(len(windows))])
    difference = float(np.abs(in_torch - reference).max())
    for name, path in graphs.items():
        session = onnx_session(path, threads=1)
        logits = np.concatenate([session.run(None, {"x": windows[i:i + 1]})[0] for i in range(len(windows))])
        difference = float(np.max([difference, np.abs(logits - reference).max()]))   # NaN stays NaN
    if not difference <= 1e-4:
        print(f"a timed graph disagrees with the model: max |logit diff| {difference:.2e}", file=sys.stderr)
        return 1
    patcher = student.tokenizer.patcher
    counts = patcher.token_mask[patcher.row(torch.from_numpy(windows))].sum(1)
    print(f"\nevery held-out window in turn ({len(windows)} windows, real tokens per window: "
          f"median {int(counts.median())}, {float((counts == n_max).float().mean()):.0%} with all {n_max}); "
          f"median / p95 ms")
    timed = cycle(graphs, windows)
    for name, (median, p95) in timed.items():
        print(f"{name:32s} {median:7.3f} / {p95:.3f}")
    print(f"(every graph's logits, one window at a time, within {difference:.1e} of the model's)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
