"""Attention rollout (Abnar & Zuidema, ACL 2020) and its mapping onto the window's time axis.

Per layer the heads are fused (mean, or max), the identity is added for the residual path
(``0.5 * A + 0.5 * I``) and rows are renormalised; the layers are multiplied, first layer
rightmost: ``R = A_L ... A_2 A_1``. Padded tokens are masked: their columns are zeroed before
renormalising (no real token attends to them) and their rows are zero in the result.
The student pools by the mean over real tokens (no class token), so a token's relevance is
the mean of its column over the real rows of R.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class Rollout:
    """``rollout`` (B, N, N); ``layers`` the fused, residual-added per-layer matrices
    (L, B, N, N); ``relevance`` (B, N) per token, 0 on padded tokens, summing to 1."""
    rollout: np.ndarray
    layers: np.ndarray
    relevance: np.ndarray


def _normalise_rows(a: torch.Tensor) -> torch.Tensor:
    return a / a.sum(dim=-1, keepdim=True).clamp(min=1e-12)


def attention_rollout(maps: list[torch.Tensor], mask: torch.Tensor | None = None, *,
                      head_fusion: str = "mean", residual: bool = True) -> Rollout:
    """``maps``: per layer (B, h, N, N) attention; ``mask`` (B, N), True on real tokens."""
    if not maps:
        raise ValueError("no attention maps")
    B, _, N, _ = maps[0].shape
    mask = torch.ones(B, N, dtype=torch.bool) if mask is None else mask.bool()
    real = mask.to(maps[0].dtype)
    both = real[:, :, None] * real[:, None, :]                     # real rows x real columns
    eye = torch.eye(N, dtype=maps[0].dtype)[None]
    result = eye * real[:, :, None]
    layers = []
    for attn in maps:
        if head_fusion == "mean":
            fused = attn.mean(dim=1)
        elif head_fusion == "max":
            fused = attn.max(dim=1).values
        else:
            raise ValueError(f"unknown head fusion {head_fusion!r} (mean or max)")
        fused = _normalise_rows(fused * both)
        if residual:
            fused = _normalise_rows(0.5 * fused + 0.5 * eye * real[:, :, None])
        fused = fused * real[:, :, None]
        layers.append(fused)
        result = fused @ result
    relevance = (result * real[:, :, None]).sum(dim=1) / real.sum(dim=1, keepdim=True).clamp(min=1)
    relevance = relevance / relevance.sum(dim=1, keepdim=True).clamp(min=1e-12)
    return Rollout(rollout=result.detach().numpy(), layers=torch.stack(layers).detach().numpy(),
                   relevance=relevance.detach().numpy())


def relevance_over_time(relevance: np.ndarray, patch_len: np.ndarray, window: int) -> np.ndarray:
    """Token relevance (B, N) -> per-sample relevance (B, window): sample t belongs to token
    ``t // p`` of its window (tokens tile the window, the last one may be shorter); each
    token's relevance is spread evenly over its samples, so the time curve sums to 1 too."""
    relevance = np.asarray(relevance, dtype=np.float64)
    patch_len = np.asarray(patch_len).astype(int)
    out = np.zeros((len(relevance), window))
    t = np.arange(window)
    for b, p in enumerate(patch_len):
        token = t // p
        width = np.bincount(token, minlength=relevance.shape[1])[token]
        out[b] = relevance[b, token] / width
    return out
