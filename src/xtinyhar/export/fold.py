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
  pooling gives them weight 0, so their values cannot reach the logits;
- the patch length's table row comes from one fixed convolution over the raw window's
  acceleration (successive differences, pre-scaled by the row map's slope) and a sum over
  time, instead of two slices, a mean and an affine map: the same row, 6% faster in ONNX
  Runtime (int8 keeps this convolution in float, ``to_onnx.FLOAT_INPUTS``). TFLite's
  dynamic-range int8 would quantise the convolution's input on the fly (one scale for raw
  g and deg/s: a quarter of the windows got another patch length), so its export keeps the
  slices (``energy_by_conv=False``).

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

    def __init__(self, student: nn.Module, energy_by_conv: bool = True):
        super().__init__()
        student = student.eval()
        tokenizer = student.tokenizer
        patcher = tokenizer.patcher
        self.patcher = patcher
        self.blocks, self.norm, self.head = student.blocks, student.norm, student.head
        with torch.no_grad():
            self._fold_energy(patcher, tokenizer.norm_mean.shape[0], energy_by_conv)
            self._fold_stem(tokenizer)
            self._fold_tokens(tokenizer)
            self.register_buffer("attn_bias", attention_bias(patcher.token_mask))  # (P, 1, 1, N)
            real = patcher.token_mask.float()
            self.register_buffer("pool_weight", (real / real.sum(1, keepdim=True).clamp(min=1.0))[..., None])

    def _fold_energy(self, patcher, channels: int, by_conv: bool) -> None:
        """``energy_weight`` (3, C, 2): output channel a is ``c * (acc_a[t+1] - acc_a[t])``
        with ``c = |row_scale| / (W - 1)``, so that ``row = round(clip(row_offset -
        sum_t |diff_t|, 0, P - 1))`` equals :meth:`DynamicPatcher.row` (its slope is
        negative: more motion, shorter patches, a lower row)."""
        self.by_conv = by_conv and patcher.dynamic
        if not self.by_conv:
            return
        if patcher.row_scale > 0:
            raise ValueError("the patch-length row must fall with motion energy (tau_low < tau_high)")
        weight = torch.zeros(3, channels, 2)
        for axis in range(3):
            weight[axis, axis] = torch.tensor([-1.0, 1.0])
        self.register_buffer("energy_weight", weight * (-patcher.row_scale / (patcher.window - 1)))
        self.row_offset, self.last_row = patcher.row_offset, float(patcher.p_max - patcher.p_min)

    def row(self, imu_t: torch.Tensor) -> torch.Tensor:
        """(B, C, W) raw window, channels first -> (B,) patch-length table rows."""
        if not self.by_conv:
            return self.patcher.row(imu_t.transpose(1, 2))
        steps = F.conv1d(imu_t, self.energy_weight).norm(dim=1).sum(dim=1)     # (B,)
        return torch.round((self.row_offset - steps).clamp(0.0, self.last_row)).long()

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

    def features(self, imu_t: torch.Tensor) -> torch.Tensor:
        """(B, C, W) raw, channels first -> (B, W, F) stem features (or the normalised window)."""
        x = (imu_t - self.norm_mean[:, None]) / self.norm_std[:, None]
        for i, padding in enumerate(self.paddings, start=1):
            x = F.gelu(F.conv1d(x, getattr(self, f"stem_weight{i}"),
                                getattr(self, f"stem_bias{i}"), padding=padding))
        return x.transpose(1, 2)

    def forward(self, imu: torch.Tensor) -> torch.Tensor:
        """(B, W, C) raw window -> (B, K) logits, as the trained student gives them."""
        if imu.shape[1] != self.patcher.window:   # the energy's scale assumes W samples
            raise ValueError(f"window of {imu.shape[1]} samples, the model expects {self.patcher.window}")
        imu_t = imu.transpose(1, 2)                                          # (B, C, W)
        row = self.row(imu_t)                                                # (B,)
        tokens = self.patcher.tokens(self.features(imu_t), row, zero_padded=False)  # (B, N, p*F)
        x = tokens @ self.token_matrix + lookup(self.token_bias, row)        # (B, N, D)
        bias = lookup(self.attn_bias, row)                                   # (B, 1, 1, N)
        for block in self.blocks:
            x, _ = block(x, bias)
        pooled = (self.norm(x) * lookup(self.pool_weight, row)).sum(dim=1)   # (B, D)
        return self.head(pooled)


def deploy_form(model: nn.Module, energy_by_conv: bool = True) -> nn.Module:
    """What an exporter should convert: the folded student for an Inertial Transformer,
    any other model (baselines) as it is. ``energy_by_conv``: see the module doc (False
    for TFLite)."""
    from xtinyhar.models.student import InertialTransformer

    if isinstance(model, InertialTransformer):
        return DeployStudent(model, energy_by_conv).eval()   # a converter checks the top module's mode
    return model
