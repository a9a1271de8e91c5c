"""Model cost (xtinyhar.evaluate.profile): FLOPs against a hand count, params, size, latency."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from xtinyhar.evaluate.profile import (
    ModelProfile,
    count_flops,
    count_parameters,
    measure_latency,
    peak_memory_bytes,
    profile_model,
    state_dict_bytes,
)

B, N, D, H = 2, 8, 16, 4  # batch, tokens, width, heads
HD = D // H               # head width


class TinyAttention(nn.Module):
    """One self-attention layer; ``sdpa=True`` uses F.scaled_dot_product_attention."""

    def __init__(self, sdpa: bool = False):
        super().__init__()
        self.qkv = nn.Linear(D, 3 * D)
        self.proj = nn.Linear(D, D)
        self.sdpa = sdpa

    def forward(self, x):                                            # (B, N, D)
        q, k, v = self.qkv(x).view(B, N, 3, H, HD).permute(2, 0, 3, 1, 4)  # 3 x (B, H, N, HD)
        if self.sdpa:
            y = F.scaled_dot_product_attention(q, k, v)
        else:
            attn = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(HD), dim=-1)  # (B,H,N,N)
            y = attn @ v                                                       # (B,H,N,HD)
        return self.proj(y.transpose(1, 2).reshape(B, N, D))


LINEAR_FLOPS = 2 * B * N * D * (3 * D) + 2 * B * N * D * D  # qkv + proj
ATTENTION_FLOPS = 2 * (2 * B * H * N * N * HD)               # q k^T and attn v


def test_count_flops_matches_hand_count_with_explicit_attention():
    x = torch.randn(B, N, D)
    assert count_flops(TinyAttention(), x) == LINEAR_FLOPS + ATTENTION_FLOPS


def test_sdpa_on_cpu_is_not_counted_so_models_use_explicit_matmuls():
    # torch 2.13: the CPU SDPA kernel has no FLOP formula, so only the Linear layers count.
    x = torch.randn(B, N, D)
    explicit, sdpa = TinyAttention(), TinyAttention(sdpa=True)
    sdpa.load_state_dict(explicit.state_dict())
    torch.testing.assert_close(sdpa.eval()(x), explicit.eval()(x))  # same function
    assert count_flops(sdpa, x) == LINEAR_FLOPS < count_flops(explicit, x)


def test_count_flops_restores_training_mode():
    model = TinyAttention().train()
    count_flops(model, torch.randn(B, N, D))
    assert model.training


def test_count_parameters_linear():
    lin = nn.Linear(10, 5)
    assert count_parameters(lin) == 55
    lin.bias.requires_grad_(False)
    assert count_parameters(lin, trainable_only=True) == 50
    assert count_parameters(lin) == 55


def test_state_dict_bytes_grows_with_params():
    small, big = state_dict_bytes(nn.Linear(10, 5)), state_dict_bytes(nn.Linear(100, 50))
    assert 55 * 4 < small < big  # float32 values plus the zip archive's headers
    assert big >= 5050 * 4


def test_profile_model():
    p = profile_model("attn", TinyAttention(), torch.randn(B, N, D))
    assert isinstance(p, ModelProfile)
    assert p.to_dict() == {"name": "attn", "params": 4 * D * D + 4 * D,
                           "size_bytes": state_dict_bytes(TinyAttention()),
                           "flops": LINEAR_FLOPS + ATTENTION_FLOPS}


def test_measure_latency_positive_and_restores_threads():
    before = torch.get_num_threads()
    model, x = nn.Linear(10, 5), torch.randn(1, 10)
    seen = []

    def fn():
        seen.append(torch.get_num_threads())
        with torch.inference_mode():
            return model(x)

    out = measure_latency(fn, warmup=2, runs=20, threads=1)
    assert set(seen) == {1} and len(seen) == 22
    assert torch.get_num_threads() == before
    assert out["runs"] == 20
    assert 0 < out["median_ms"] <= out["p95_ms"]
    assert out["mean_ms"] > 0


def test_measure_latency_restores_threads_when_fn_raises():
    before = torch.get_num_threads()

    def boom():
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        measure_latency(boom, warmup=0, runs=1, threads=1)
    assert torch.get_num_threads() == before


def test_peak_memory_bytes_sees_simultaneous_not_sequential_tensors():
    mb4 = 1_000_000  # float32 elements in 4 MB

    def together():
        a = torch.ones(mb4)
        b = a * 2                  # a and b alive together: 8 MB
        return float(b.sum())

    def one_after_another():
        float(torch.ones(mb4).sum())  # freed before the next one
        return float(torch.ones(mb4).sum())

    assert 8_000_000 <= peak_memory_bytes(together) < 8_100_000
    assert 4_000_000 <= peak_memory_bytes(one_after_another) < 4_100_000
