"""Knowledge-distillation losses.

``distillation_loss`` is Hinton et al.'s soft-target loss as the seed paper writes it:
``alpha * T^2 * KL(softmax(t/T) || softmax(s/T)) + (1 - alpha) * CE(s, y)``; the T^2 keeps
the soft term's gradient on the scale of the hard term. ``attention_transfer_loss`` (off by
default, for the ablation) pulls the student's attention over its IMU tokens toward the
teacher's attention over the same tokens.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                      labels: torch.Tensor, *, T: float, alpha: float,
                      label_smoothing: float = 0.0) -> torch.Tensor:
    """Scalar KD loss; ``teacher_logits`` are treated as constants."""
    soft = F.kl_div(F.log_softmax(student_logits / T, dim=-1),
                    F.log_softmax(teacher_logits.detach() / T, dim=-1),
                    reduction="batchmean", log_target=True)
    hard = F.cross_entropy(student_logits, labels, label_smoothing=label_smoothing)
    return alpha * T * T * soft + (1.0 - alpha) * hard


def imu_attention(maps: list[torch.Tensor], first_imu_token: int = 0) -> torch.Tensor:
    """Head-averaged attention of the last layer restricted to IMU tokens, rows renormalised:
    (B, h, N, N) per layer -> (B, N_i, N_i)."""
    attn = maps[-1].mean(dim=1)[:, first_imu_token:, first_imu_token:]
    return attn / attn.sum(dim=-1, keepdim=True).clamp(min=1e-12)


def attention_transfer_loss(student_maps: list[torch.Tensor], teacher_maps: list[torch.Tensor],
                            n_skeleton_tokens: int, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared difference between student and teacher IMU-token attention (real rows)."""
    student = imu_attention(student_maps)
    teacher = imu_attention(teacher_maps, n_skeleton_tokens).detach()
    rows = mask.to(student.dtype)[..., None]                               # (B, N_i, 1)
    return ((student - teacher) ** 2 * rows).sum() / rows.sum().clamp(min=1.0) / student.shape[-1]
