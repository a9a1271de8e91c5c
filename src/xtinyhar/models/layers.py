"""Reusable layers: attention that returns its maps, MLP, pre-norm block, dynamic patching
in torch, patch embedding, time positional embeddings, masked pooling.

Attention is computed explicitly as softmax(QK^T / sqrt(d)) V. It returns the attention
maps (needed for rollout and teacher-student similarity) and its matmuls are counted by
``torch.utils.flop_counter`` (the fused SDPA kernel has no FLOP formula on CPU). With the
10-20 tokens our models see, the explicit path costs nothing measurable.

Shapes: B batch, W samples in a window, C channels, N tokens, D model width, h heads.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from xtinyhar.preprocess.patching import REFERENCE_HZ


class Attention(nn.Module):
    """Multi-head self-attention with an optional padding mask (True = real token)."""

    def __init__(self, dim: int, heads: int, dropout: float = 0.0):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.heads, self.head_dim = heads, dim // heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.attn_drop = nn.Dropout(dropout)
        self.proj_drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        B, N, D = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]                                   # (B, h, N, d)
        scores = (q @ k.transpose(-2, -1)) * (self.head_dim ** -0.5)      # (B, h, N, N)
        if mask is not None:
            scores = scores.masked_fill(~mask[:, None, None, :], torch.finfo(scores.dtype).min)
        attn = scores.softmax(dim=-1)                                      # (B, h, N, N)
        out = (self.attn_drop(attn) @ v).transpose(1, 2).reshape(B, N, D)  # (B, N, D)
        return self.proj_drop(self.proj(out)), attn


class MLP(nn.Module):
    def __init__(self, dim: int, hidden: int, dropout: float = 0.0):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(F.gelu(self.fc1(x)))))


class Block(nn.Module):
    """Pre-norm transformer block; returns the output and the attention maps."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, dropout: float = 0.0):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, dropout)
        self.mlp = MLP(dim, int(round(dim * mlp_ratio)), dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        attended, attn = self.attn(self.norm1(x), mask)
        x = x + attended
        return x + self.mlp(self.norm2(x)), attn


class DynamicPatcher(nn.Module):
    """Dynamic patching of DESIGN.md in torch, static shapes, no parameters.

    Same arithmetic as :mod:`xtinyhar.preprocess.patching` (tests check they agree):
    motion energy of the raw window -> patch length p in [p_min, p_max] -> ``n_max`` tokens
    of ``p_default`` points, token k resampling span [k*p, min((k+1)*p, W)) by linear
    interpolation; tokens past the end masked. ``dynamic=False`` uses p = p_default.
    """

    def __init__(self, *, window: int, imu_hz: float, p_min: int, p_max: int,
                 tau_low: float, tau_high: float, p_default: int, dynamic: bool = True):
        super().__init__()
        self.window, self.imu_hz, self.dynamic = window, imu_hz, dynamic
        self.p_min, self.p_max, self.tau_low, self.tau_high = p_min, p_max, tau_low, tau_high
        self.p_default = p_default
        self.n_max = math.ceil(window / (p_min if dynamic else p_default))
        self.register_buffer("slot", torch.arange(self.n_max, dtype=torch.float32), persistent=False)
        point = (torch.arange(p_default, dtype=torch.float32) + 0.5) / p_default
        self.register_buffer("point", point, persistent=False)

    def motion_energy(self, imu: torch.Tensor) -> torch.Tensor:
        """(B, W, C) raw physical units -> (B,) mean |delta acc| in g per 20 ms."""
        step = (imu[:, 1:, :3] - imu[:, :-1, :3]).norm(dim=-1)            # (B, W-1)
        return step.mean(dim=1) * (self.imu_hz / REFERENCE_HZ)

    def patch_length(self, imu: torch.Tensor) -> torch.Tensor:
        """(B,) float patch length, whole numbers in [p_min, p_max] (p_default if fixed)."""
        if not self.dynamic:
            return torch.full(imu.shape[:1], float(self.p_default), device=imu.device)
        lively = ((self.motion_energy(imu) - self.tau_low) / (self.tau_high - self.tau_low)).clamp(0, 1)
        return torch.round(self.p_max - lively * (self.p_max - self.p_min))

    def grid(self, patch_len: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """positions (B, n_max, p_default), mask (B, n_max), centre and width (B, n_max)."""
        start = self.slot[None, :] * patch_len[:, None]                    # (B, n_max)
        end = torch.clamp(start + patch_len[:, None], max=float(self.window))
        mask = start < self.window
        width = torch.where(mask, end - start, torch.zeros_like(start))
        positions = start[..., None] + self.point * width[..., None] - 0.5
        positions = positions.clamp(0.0, self.window - 1.0)               # (B, n_max, p)
        centre = torch.where(mask, start + width / 2, torch.zeros_like(start))
        return positions, mask, centre, width

    @staticmethod
    def gather(features: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, W, F) sampled at (B, n_max, p) by linear interpolation -> (B, n_max, p, F)."""
        B, W, Fdim = features.shape
        flat = positions.reshape(B, -1)                                    # (B, n_max*p)
        left = flat.floor().clamp(0, W - 1)
        weight = (flat - left).unsqueeze(-1)
        left = left.long()
        right = (left + 1).clamp(max=W - 1)
        lo = torch.gather(features, 1, left.unsqueeze(-1).expand(-1, -1, Fdim))
        hi = torch.gather(features, 1, right.unsqueeze(-1).expand(-1, -1, Fdim))
        tokens = (lo + (hi - lo) * weight).reshape(B, *positions.shape[1:], Fdim)
        return tokens * mask[..., None, None].to(tokens.dtype)


class TimeEmbedding(nn.Module):
    """Positional embedding of each token's centre time (in samples), so tokens of any
    width share one time axis. ``mode``: "learned" (a table over sample positions,
    linearly interpolated), "sinusoidal" (fixed, continuous) or "none" (the ablation)."""

    def __init__(self, dim: int, window: int, mode: str = "learned"):
        super().__init__()
        if mode not in ("learned", "sinusoidal", "none"):
            raise ValueError(f"unknown positional embedding {mode!r}")
        self.mode, self.window, self.dim = mode, window, dim
        if mode == "learned":
            self.table = nn.Parameter(torch.randn(window + 1, dim) * 0.02)
        freq = torch.exp(-math.log(10000.0) * torch.arange(0, dim, 2, dtype=torch.float32) / dim)
        self.register_buffer("freq", freq, persistent=False)

    def forward(self, centre: torch.Tensor) -> torch.Tensor:
        """(B, N) centres in samples -> (B, N, D)."""
        if self.mode == "none":
            return centre.new_zeros(*centre.shape, self.dim)
        if self.mode == "sinusoidal":
            angle = centre[..., None] * self.freq                          # (B, N, D/2)
            return torch.stack([angle.sin(), angle.cos()], dim=-1).flatten(-2)[..., :self.dim]
        pos = centre.clamp(0, self.window)
        left = pos.floor().clamp(max=self.window - 1)
        weight = (pos - left)[..., None]
        left = left.long()
        return self.table[left] * (1 - weight) + self.table[left + 1] * weight


class PatchEmbedding(nn.Module):
    """Flattened token (p_default points x F features) plus its relative width -> D."""

    def __init__(self, p_default: int, features: int, dim: int, window: int):
        super().__init__()
        self.window = window
        self.proj = nn.Linear(p_default * features + 1, dim)

    def forward(self, tokens: torch.Tensor, width: torch.Tensor) -> torch.Tensor:
        """(B, N, p, F) tokens and (B, N) widths in samples -> (B, N, D)."""
        flat = torch.cat([tokens.flatten(2), (width / self.window)[..., None]], dim=-1)
        return self.proj(flat)


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over real tokens: (B, N, D), (B, N) -> (B, D)."""
    weight = mask.to(x.dtype)[..., None]
    return (x * weight).sum(dim=1) / weight.sum(dim=1).clamp(min=1.0)


class ConvStem(nn.Module):
    """Two 1-D convolutions over the normalised window before patching: local features
    that a linear patch embedding alone does not learn well from little data."""

    def __init__(self, channels: int, features: int, kernel: int = 5):
        super().__init__()
        self.conv1 = nn.Conv1d(channels, features, kernel, padding=kernel // 2)
        self.conv2 = nn.Conv1d(features, features, kernel, padding=kernel // 2)
        self.norm1, self.norm2 = nn.BatchNorm1d(features), nn.BatchNorm1d(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, W, C) -> (B, W, F)."""
        x = F.gelu(self.norm1(self.conv1(x.transpose(1, 2))))
        x = F.gelu(self.norm2(self.conv2(x)))
        return x.transpose(1, 2)


class ImuTokenizer(nn.Module):
    """Raw IMU window -> token embeddings, the path a device runs before the transformer.

    Normalisation (training-fold statistics as buffers), dynamic patching from the raw
    window, an optional conv stem, patch embedding plus time embedding of token centres.
    Student and teacher both use it, so the teacher's IMU tokens are the student's.
    """

    def __init__(self, *, channels: int, window: int, imu_hz: float, dim: int, p_default: int,
                 p_min: int, p_max: int, tau_low: float, tau_high: float, dynamic: bool,
                 stem_channels: int, pos_embedding: str, mean=None, std=None):
        super().__init__()
        self.register_buffer("norm_mean", torch.as_tensor(mean if mean else [0.0] * channels,
                                                          dtype=torch.float32))
        self.register_buffer("norm_std", torch.as_tensor(std if std else [1.0] * channels,
                                                         dtype=torch.float32))
        self.patcher = DynamicPatcher(window=window, imu_hz=imu_hz, p_min=p_min, p_max=p_max,
                                      tau_low=tau_low, tau_high=tau_high, p_default=p_default,
                                      dynamic=dynamic)
        self.stem = ConvStem(channels, stem_channels) if stem_channels else nn.Identity()
        self.embed = PatchEmbedding(p_default, stem_channels or channels, dim, window)
        self.pos = TimeEmbedding(dim, window, pos_embedding)

    def set_normalization(self, mean, std) -> None:
        self.norm_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.norm_std.copy_(torch.as_tensor(std, dtype=torch.float32))

    def forward(self, imu: torch.Tensor, patch_len: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, W, C) raw -> embeddings (B, N, D), mask (B, N), centres (B, N) in samples.

        ``patch_len`` (B,) overrides the patch length the window's motion energy would give:
        explanations hold it fixed along an attribution path, where the rounding of the
        energy-to-length map would otherwise make the model jump.
        """
        if patch_len is None:
            patch_len = self.patcher.patch_length(imu)                   # (B,)
        positions, mask, centre, width = self.patcher.grid(patch_len)
        x = self.stem((imu - self.norm_mean) / self.norm_std)            # (B, W, F)
        tokens = self.patcher.gather(x, positions, mask)                 # (B, N, p, F)
        return self.embed(tokens, width) + self.pos(centre), mask, centre
