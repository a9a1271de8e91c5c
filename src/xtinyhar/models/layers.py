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

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from xtinyhar.preprocess.patching import REFERENCE_HZ, max_tokens, token_positions


def lookup(table: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """``table[rows]`` for a (B,) or (B, N) index, written so that it exports as one ONNX
    Gather (plain indexing exports as GatherND plus reshapes)."""
    return table.index_select(0, rows.reshape(-1)).reshape(*rows.shape, *table.shape[1:])


def attention_bias(mask: torch.Tensor) -> torch.Tensor:
    """(B, N) padding mask (True = real token) -> (B, 1, 1, N) additive score bias: 0 for
    real tokens, the most negative float for padded ones (softmax gives them weight 0).
    Built once per forward and shared by every block."""
    blocked = torch.finfo(torch.float32).min
    return torch.where(mask, 0.0, blocked)[:, None, None, :]


class Attention(nn.Module):
    """Multi-head self-attention with an optional additive bias (see ``attention_bias``)."""

    def __init__(self, dim: int, heads: int, dropout: float = 0.0):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.heads, self.head_dim = heads, dim // heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.attn_drop = nn.Dropout(dropout)
        self.proj_drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, bias: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, N, D) tokens, (B, 1, 1, N) bias -> (B, N, D) and the (B, h, N, N) maps."""
        N, D = x.shape[1:]
        qkv = self.qkv(x).reshape(-1, N, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]                                   # (B, h, N, d)
        scores = (q * self.head_dim ** -0.5) @ k.transpose(-2, -1)        # (B, h, N, N)
        if bias is not None:
            scores = scores + bias
        attn = scores.softmax(dim=-1)                                      # (B, h, N, N)
        out = (self.attn_drop(attn) @ v).transpose(1, 2).reshape(-1, N, D)  # (B, N, D)
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

    def forward(self, x: torch.Tensor, bias: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """``bias``: (B, 1, 1, N) from ``attention_bias`` (padded tokens), or None."""
        attended, attn = self.attn(self.norm1(x), bias)
        x = x + attended
        return x + self.mlp(self.norm2(x)), attn


class DynamicPatcher(nn.Module):
    """Dynamic patching (docs/design.md) in torch, static shapes, no parameters.

    Same arithmetic as :mod:`xtinyhar.preprocess.patching` (tests check they agree):
    motion energy of the raw window -> patch length p in [p_min, p_max] -> ``n_max`` tokens
    of ``p_default`` points, token k resampling span [k*p, min((k+1)*p, W)) by linear
    interpolation; tokens past the end masked. ``dynamic=False`` uses p = p_default.

    A patch length is a whole number of samples, so there are only ``p_max - p_min + 1``
    grids. They are built once (by the NumPy code of :mod:`xtinyhar.preprocess.patching`)
    into lookup tables, non-persistent buffers derived from the config: a window's patch
    length picks its row, and building its tokens is two row gathers (left and right
    neighbours) and one weighted sum, in training as in an exported graph (the default
    one-block student's training form exports to 95 ONNX nodes, its deployed form to 72).
    """

    def __init__(self, *, window: int, imu_hz: float, p_min: int, p_max: int,
                 tau_low: float, tau_high: float, p_default: int, dynamic: bool = True):
        super().__init__()
        self.window, self.imu_hz, self.dynamic = window, imu_hz, dynamic
        self.p_min, self.p_max, self.tau_low, self.tau_high = p_min, p_max, tau_low, tau_high
        self.p_default = p_default
        self.n_max = max_tokens(window, p_min if dynamic else p_default)
        self.shortest = p_min if dynamic else p_default
        lengths = np.arange(p_min, p_max + 1) if dynamic else np.array([p_default])
        grid = token_positions(lengths, window=window, n_max=self.n_max, p_default=p_default)
        # Samples: token point j of a window with patch length p mixes sample left[p, j]
        # (weight 1 - w) with sample left[p, j] + 1 (weight w). Stored as int16 when the
        # window allows (it always does for IMU windows of seconds) to keep the file small.
        flat = grid.positions.reshape(len(lengths), -1).astype(np.float64)   # (P, n_max*p)
        left = np.clip(np.floor(flat), 0, max(window - 2, 0))
        self._table("sample_left", left, torch.int16 if window < 2**15 else torch.int32)
        self._table("sample_weight", (flat - left)[..., None])                 # (P, n_max*p, 1)
        self._table("token_mask", grid.mask, torch.bool)                       # (P, n_max)
        self._table("token_real", grid.mask[..., None])                        # (P, n_max, 1)
        self._table("token_centre", grid.centre)                               # (P, n_max)
        self._table("token_width", grid.width)                                 # (P, n_max)
        # Energy -> table row in one affine map: row = round(clip(a*e_raw + b, 0, P-1)),
        # the same number as patch_lengths(...) - p_min (e_raw: mean |delta acc| per sample).
        span = p_max - p_min
        per_sample = imu_hz / REFERENCE_HZ
        self.row_scale = -span * per_sample / (tau_high - tau_low)
        self.row_offset = span * tau_high / (tau_high - tau_low)

    def _table(self, name: str, values: np.ndarray, dtype=torch.float32) -> None:
        self.register_buffer(name, torch.as_tensor(np.asarray(values), dtype=dtype), persistent=False)

    def motion_energy(self, imu: torch.Tensor) -> torch.Tensor:
        """(B, W, C) raw physical units -> (B,) mean |delta acc| in g per 20 ms."""
        step = (imu[:, 1:, :3] - imu[:, :-1, :3]).norm(dim=-1)            # (B, W-1)
        return step.mean(dim=1) * (self.imu_hz / REFERENCE_HZ)

    def row(self, imu: torch.Tensor) -> torch.Tensor:
        """(B,) long: which grid each window uses (0 for fixed patching)."""
        if not self.dynamic:
            return torch.zeros(imu.shape[0], dtype=torch.long, device=imu.device)
        raw = (imu[:, 1:, :3] - imu[:, :-1, :3]).norm(dim=-1).mean(dim=1)  # (B,)
        span = float(self.p_max - self.p_min)
        return torch.round((raw * self.row_scale + self.row_offset).clamp(0.0, span)).long()

    def row_of(self, patch_len: torch.Tensor) -> torch.Tensor:
        """(B,) whole-number patch lengths -> (B,) table rows; lengths outside
        [p_min, p_max] are clamped to it (fixed patching has one row)."""
        return (torch.round(patch_len) - self.shortest).long().clamp(0, self.sample_left.shape[0] - 1)

    def patch_length(self, imu: torch.Tensor) -> torch.Tensor:
        """(B,) float patch length, whole numbers in [p_min, p_max] (p_default if fixed)."""
        return (self.row(imu) + self.shortest).to(imu.dtype)

    def tokens(self, features: torch.Tensor, row: torch.Tensor, zero_padded: bool = True) -> torch.Tensor:
        """(B, W, F) features, (B,) rows -> (B, n_max, p_default * F) flattened tokens;
        tokens past the window's end are zero (``zero_padded``; the deployed form skips it:
        masks keep them from the logits)."""
        batch, window, Fdim = features.shape
        # Whole sample vectors are picked from the batch's samples laid end to end: one
        # row Gather each for the left and right neighbours (an element-wise gather needs
        # its index expanded over F first: 10% slower in ONNX Runtime at batch 1).
        samples = features.reshape(-1, Fdim)                              # (B*W, F)
        first = torch.arange(batch, device=features.device)[:, None] * window
        left = lookup(self.sample_left, row).long() + first               # (B, n*p)
        lo = lookup(samples, left)                                         # (B, n*p, F)
        hi = lookup(samples, left + 1)
        mixed = lo + (hi - lo) * lookup(self.sample_weight, row)         # (B, n*p, F)
        tokens = mixed.reshape(-1, self.n_max, self.p_default * Fdim)
        return tokens * lookup(self.token_real, row) if zero_padded else tokens


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

    def interpolation(self, centre: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, N) centres -> rows of the learned table (B, 2N) and their weights (B, 2N, 1):
        the left neighbours of all tokens, then the right ones."""
        pos = centre.clamp(0, self.window)
        left = pos.floor().clamp(max=self.window - 1)
        weight = pos - left
        rows = torch.cat([left, left + 1], dim=-1).long()
        return rows, torch.cat([1 - weight, weight], dim=-1)[..., None]

    def mix(self, rows: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """Learned embedding from ``interpolation``'s rows and weights -> (B, N, D)."""
        picked = lookup(self.table, rows) * weight                         # (B, 2N, D)
        return picked.reshape(-1, 2, rows.shape[-1] // 2, self.dim).sum(dim=1)

    def forward(self, centre: torch.Tensor) -> torch.Tensor:
        """(B, N) centres in samples -> (B, N, D)."""
        if self.mode == "none":
            return centre.new_zeros(*centre.shape, self.dim)
        if self.mode == "sinusoidal":
            angle = centre[..., None] * self.freq                          # (B, N, D/2)
            return torch.stack([angle.sin(), angle.cos()], dim=-1).flatten(-2)[..., :self.dim]
        return self.mix(*self.interpolation(centre))


class PatchEmbedding(nn.Module):
    """Flattened token (p_default points x F features) plus its relative width -> D."""

    def __init__(self, p_default: int, features: int, dim: int, window: int):
        super().__init__()
        self.window = window
        self.proj = nn.Linear(p_default * features + 1, dim)

    def forward(self, tokens: torch.Tensor, width: torch.Tensor) -> torch.Tensor:
        """(B, N, p*F) flattened tokens and (B, N, 1) widths as a fraction of the window
        -> (B, N, D)."""
        return self.proj(torch.cat([tokens, width], dim=-1))


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over real tokens: (B, N, D), (B, N) -> (B, D)."""
    weight = mask.to(x.dtype)
    weight = weight / weight.sum(dim=1, keepdim=True).clamp(min=1.0)
    return (x * weight[..., None]).sum(dim=1)


class ConvStem(nn.Module):
    """A few 1-D convolutions (BatchNorm, GELU) over the normalised window before patching:
    local features that a linear patch embedding alone does not learn well from little data.
    Parameter names of the default two layers (conv1, norm1, conv2, norm2) are those of
    earlier checkpoints."""

    def __init__(self, channels: int, features: int, kernel: int = 5, layers: int = 2):
        super().__init__()
        self.layers = layers
        for i in range(1, layers + 1):
            self.add_module(f"conv{i}", nn.Conv1d(channels if i == 1 else features, features,
                                                  kernel, padding=kernel // 2))
            self.add_module(f"norm{i}", nn.BatchNorm1d(features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, W, C) -> (B, W, F)."""
        x = x.transpose(1, 2)
        for i in range(1, self.layers + 1):
            x = F.gelu(getattr(self, f"norm{i}")(getattr(self, f"conv{i}")(x)))
        return x.transpose(1, 2)


class ImuTokenizer(nn.Module):
    """Raw IMU window -> token embeddings, the path a device runs before the transformer.

    Normalisation (training-fold statistics as buffers), dynamic patching from the raw
    window, an optional conv stem, patch embedding plus time embedding of token centres.
    Student and teacher both use it, so the teacher's IMU tokens are the student's.
    """

    def __init__(self, *, channels: int, window: int, imu_hz: float, dim: int, p_default: int,
                 p_min: int, p_max: int, tau_low: float, tau_high: float, dynamic: bool,
                 stem_channels: int, pos_embedding: str, mean=None, std=None,
                 stem_layers: int = 2):
        super().__init__()
        self.register_buffer("norm_mean", torch.as_tensor(mean if mean else [0.0] * channels,
                                                          dtype=torch.float32))
        self.register_buffer("norm_std", torch.as_tensor(std if std else [1.0] * channels,
                                                         dtype=torch.float32))
        self.patcher = DynamicPatcher(window=window, imu_hz=imu_hz, p_min=p_min, p_max=p_max,
                                      tau_low=tau_low, tau_high=tau_high, p_default=p_default,
                                      dynamic=dynamic)
        self.stem = (ConvStem(channels, stem_channels, layers=stem_layers) if stem_channels
                     else nn.Identity())
        self.embed = PatchEmbedding(p_default, stem_channels or channels, dim, window)
        self.pos = TimeEmbedding(dim, window, pos_embedding)
        # Per patch length (table row): token widths as a fraction of the window and, for
        # the learned time embedding, which table rows each token's centre mixes.
        patcher = self.patcher
        self.register_buffer("width_fraction", (patcher.token_width / window)[..., None],
                             persistent=False)                            # (P, N, 1)
        pos_rows, pos_weight = self.pos.interpolation(patcher.token_centre)
        self.register_buffer("pos_rows", pos_rows, persistent=False)      # (P, 2N)
        self.register_buffer("pos_weight", pos_weight, persistent=False)  # (P, 2N, 1)

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
        patcher = self.patcher
        row = patcher.row(imu) if patch_len is None else patcher.row_of(patch_len)  # (B,)
        x = self.stem((imu - self.norm_mean) / self.norm_std)            # (B, W, F)
        tokens = patcher.tokens(x, row)                                  # (B, N, p*F)
        embedded = self.embed(tokens, lookup(self.width_fraction, row))   # (B, N, D)
        centre = lookup(patcher.token_centre, row)                       # (B, N)
        if self.pos.mode == "learned":
            embedded = embedded + self.pos.mix(lookup(self.pos_rows, row), lookup(self.pos_weight, row))
        elif self.pos.mode == "sinusoidal":
            embedded = embedded + self.pos(centre)
        return embedded, lookup(patcher.token_mask, row), centre
