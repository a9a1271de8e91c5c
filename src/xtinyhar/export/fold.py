"""The deployed form of a trained student: the same logits from a smaller graph.

Training needs the model in the form that learns (normalisation as buffers, BatchNorm, a
width feature concatenated to each token, a time embedding mixed from a table, masks
turned into biases and pooling weights). Once the weights are fixed, everything that
depends only on the window's patch length (one of ``p_max - p_min + 1`` table rows) or
on nothing at all can be computed once, at export time:

- the stem's BatchNorm folds into its convolutions (the per-channel normalisation stays
  a subtraction and a division before them: folded into the first convolution it would
  make int8 quantise raw g and deg/s with one scale);
- the patch embedding's bias, its width term and the time embedding of each token slot
  become one (rows, N, D) table: a token's embedding is its flattened points times a
  matrix plus one gathered row;
- the attention bias of the padded tokens and the pooling weights of the real ones become
  (rows, ...) tables too;
- padded tokens are not zeroed: attention never reads them (their keys are blocked) and
  pooling gives them weight 0, so their values cannot reach the logits.

``DeployStudent(student)`` is what ``xtinyhar export`` writes; the parity check compares
it with the trained model itself, window by window.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from xtinyhar.models.layers import attention_bias, lookup


def _fold_batchnorm(conv: nn.Conv1d, norm: nn.BatchNorm1d) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights and bias of ``norm(conv(x))`` in eval mode as one convolution."""
    scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
    weight = conv.weight * scale[:, None, None]
    bias = (conv.bias - norm.running_mean) * scale + norm.bias
    return weight, bias


class DeployStudent(nn.Module):
    """Inference-only equivalent of a trained :class:`InertialTransformer` (eval mode)."""

    def __init__(self, student: nn.Module):
        super().__init__()
        student = student.eval()
        tokenizer = student.tokenizer
        patcher = tokenizer.patcher
        self.patcher = patcher
        self.blocks, self.norm, self.head = student.blocks, student.norm, student.head
        with torch.no_grad():
            self._fold_stem(tokenizer)
            self._fold_tokens(tokenizer)
            self.register_buffer("attn_bias", attention_bias(patcher.token_mask))  # (P, 1, 1, N)
            real = patcher.token_mask.float()
            self.register_buffer("pool_weight", (real / real.sum(1, keepdim=True).clamp(min=1.0))[..., None])

    def _fold_stem(self, tokenizer) -> None:
        mean, std = tokenizer.norm_mean, tokenizer.norm_std
        stem = tokenizer.stem
        self.paddings = []
        layers = getattr(stem, "layers", 0)
        for i in range(1, layers + 1):
            conv = getattr(stem, f"conv{i}")
            weight, bias = _fold_batchnorm(conv, getattr(stem, f"norm{i}"))
            self.register_buffer(f"stem_weight{i}", weight.clone())
            self.register_buffer(f"stem_bias{i}", bias.clone())
            self.paddings.append(conv.padding[0])
        self.stem_layers = layers
        self.register_buffer("norm_mean", mean.clone())
        self.register_buffer("norm_std", std.clone())

    def _fold_tokens(self, tokenizer) -> None:
        proj = tokenizer.embed.proj
        self.register_buffer("token_matrix", proj.weight[:, :-1].T.contiguous())     # (p*F, D)
        bias = proj.bias + tokenizer.width_fraction * proj.weight[:, -1]            # (P, N, D)
        if tokenizer.pos.mode == "learned":
            bias = bias + tokenizer.pos.mix(tokenizer.pos_rows, tokenizer.pos_weight)
        elif tokenizer.pos.mode == "sinusoidal":
            bias = bias + tokenizer.pos(tokenizer.patcher.token_centre)
        self.register_buffer("token_bias", bias.contiguous())

    def features(self, imu: torch.Tensor) -> torch.Tensor:
        """(B, W, C) raw -> (B, W, F) stem features (or the normalised window)."""
        x = (imu - self.norm_mean) / self.norm_std
        if not self.stem_layers:
            return x
        x = x.transpose(1, 2)
        for i, padding in enumerate(self.paddings, start=1):
            x = F.gelu(F.conv1d(x, getattr(self, f"stem_weight{i}"),
                                getattr(self, f"stem_bias{i}"), padding=padding))
        return x.transpose(1, 2)

    def forward(self, imu: torch.Tensor) -> torch.Tensor:
        """(B, W, C) raw window -> (B, K) logits, as the trained student gives them."""
        row = self.patcher.row(imu)                                          # (B,)
        tokens = self.patcher.tokens(self.features(imu), row, zero_padded=False)  # (B, N, p*F)
        x = tokens @ self.token_matrix + lookup(self.token_bias, row)        # (B, N, D)
        bias = lookup(self.attn_bias, row)                                   # (B, 1, 1, N)
        for block in self.blocks:
            x, _ = block(x, bias)
        pooled = (self.norm(x) * lookup(self.pool_weight, row)).sum(dim=1)   # (B, D)
        return self.head(pooled)


def deploy_form(model: nn.Module) -> nn.Module:
    """What an exporter should convert: the folded student for an Inertial Transformer,
    any other model (baselines) as it is."""
    from xtinyhar.models.student import InertialTransformer

    return DeployStudent(model) if isinstance(model, InertialTransformer) else model
