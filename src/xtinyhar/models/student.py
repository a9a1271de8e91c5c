"""The Inertial Transformer student: raw IMU window in, class logits out.

Everything a device must do lives in the graph: per-channel normalisation (statistics
fitted on the training fold, stored as buffers), dynamic patching from the raw window's
motion energy, a small convolutional stem, patch embedding, time positional embedding of
each token's centre, a few pre-norm transformer blocks over the real tokens, masked mean
pooling and a linear head. The model config dataclass is saved in every checkpoint and
``from_config`` rebuilds the model from it, so evaluation and export never re-read a YAML.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from xtinyhar.models.layers import Block, ImuTokenizer, attention_bias, masked_mean


@dataclass
class StudentModelConfig:
    """All a student needs to be rebuilt: shapes, patching and architecture."""
    n_classes: int
    window: int = 100
    channels: int = 6
    imu_hz: float = 50.0
    dim: int = 128
    depth: int = 2
    heads: int = 4
    mlp_ratio: float = 2.0
    p_default: int = 20
    p_min: int = 10
    p_max: int = 30
    tau_low: float = 0.08
    tau_high: float = 0.20
    dynamic_patching: bool = True
    stem_channels: int = 16          # 0: no stem, tokens are built from the normalised IMU
    stem_layers: int = 2             # convolutions in the stem
    pos_embedding: str = "learned"   # learned | sinusoidal | none
    dropout: float = 0.1
    norm_mean: list[float] = field(default_factory=list)  # filled from the training fold
    norm_std: list[float] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


class InertialTransformer(nn.Module):
    """IMU-only student. ``forward(imu)`` takes (B, W, C) windows in physical units."""

    def __init__(self, cfg: StudentModelConfig):
        super().__init__()
        self.cfg = cfg
        self.tokenizer = ImuTokenizer(
            channels=cfg.channels, window=cfg.window, imu_hz=cfg.imu_hz, dim=cfg.dim,
            p_default=cfg.p_default, p_min=cfg.p_min, p_max=cfg.p_max, tau_low=cfg.tau_low,
            tau_high=cfg.tau_high, dynamic=cfg.dynamic_patching, stem_channels=cfg.stem_channels,
            stem_layers=cfg.stem_layers,
            pos_embedding=cfg.pos_embedding, mean=cfg.norm_mean, std=cfg.norm_std)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg.dim, cfg.heads, cfg.mlp_ratio, cfg.dropout)
                                    for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(cfg.dim)
        self.head = nn.Linear(cfg.dim, cfg.n_classes)

    def set_normalization(self, mean, std) -> None:
        """Store training-fold statistics in the model and in its config (checkpoints)."""
        self.tokenizer.set_normalization(mean, std)
        self.cfg.norm_mean = [float(v) for v in mean]
        self.cfg.norm_std = [float(v) for v in std]

    def forward(self, imu: torch.Tensor, return_attention: bool = False,
                patch_len: torch.Tensor | None = None):
        """Logits (B, K); with ``return_attention`` also each layer's (B, h, N, N) maps.
        ``patch_len`` (B,) fixes the patch length instead of deriving it from the window."""
        x, mask, _ = self.tokenizer(imu, patch_len)                      # (B, N, D), (B, N)
        x = self.drop(x)
        bias = attention_bias(mask)                                      # (B, 1, 1, N)
        maps = []
        for block in self.blocks:
            x, attn = block(x, bias)                                     # attn (B, h, N, N)
            maps.append(attn)
        logits = self.head(masked_mean(self.norm(x), mask))              # (B, K)
        return (logits, maps) if return_attention else logits

    @classmethod
    def from_config(cls, cfg: StudentModelConfig | dict) -> "InertialTransformer":
        return cls(cfg if isinstance(cfg, StudentModelConfig) else StudentModelConfig(**cfg))
