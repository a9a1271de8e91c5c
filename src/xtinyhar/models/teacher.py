"""The multimodal ST-ConvT teacher: skeleton + IMU in, class logits out.

Skeleton branch (spatio-temporal convolution, then tokens): every frame's joints are taken
relative to the hip joint (plus the hip's own motion within the window), z-scored with
training-fold statistics, embedded per joint, mixed across joints by a learned joint-to-joint
matrix, projected to D, passed through two temporal convolutions and average-pooled into
tokens. IMU branch: the student's own tokenizer (:class:`ImuTokenizer`), so the teacher
attends over the very IMU tokens the student sees. A modality embedding is added, both
token sets share the time embedding of their centre times, and a transformer fuses them.

Every layer is created in ``__init__`` and trained; nothing is built at distillation time.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from xtinyhar.errors import ConfigError
from xtinyhar.models.layers import Block, ImuTokenizer, TimeEmbedding, attention_bias, masked_mean


@dataclass
class TeacherModelConfig:
    n_classes: int
    window: int = 100               # IMU samples per window
    channels: int = 6
    imu_hz: float = 50.0
    skeleton_frames: int = 50       # skeleton frames per window (aligned to the IMU window)
    joints: int = 20
    hip_joint: int = 3              # Kinect v1 hip_center
    dim: int = 256
    depth: int = 4
    heads: int = 4
    mlp_ratio: float = 2.0
    joint_features: int = 16
    skeleton_tokens: int = 10
    p_default: int = 20
    p_min: int = 10
    p_max: int = 30
    tau_low: float = 0.08
    tau_high: float = 0.20
    dynamic_patching: bool = True
    stem_channels: int = 16
    stem_layers: int = 2
    pos_embedding: str = "learned"
    dropout: float = 0.1
    norm_mean: list[float] = field(default_factory=list)        # IMU, per channel
    norm_std: list[float] = field(default_factory=list)
    skeleton_mean: list[float] = field(default_factory=list)    # per joint coordinate (J*3)
    skeleton_std: list[float] = field(default_factory=list)
    modalities: str = "skeleton_imu"   # skeleton_imu | imu (the ablation's IMU-only teacher)

    def __post_init__(self):
        if not 0 <= self.hip_joint < self.joints:
            raise ConfigError(f"teacher: hip joint {self.hip_joint} is not one of the skeleton's "
                              f"{self.joints} joints (0..{self.joints - 1})")

    def to_dict(self) -> dict:
        return asdict(self)


def skeleton_features(skeleton: torch.Tensor, hip_joint: int) -> torch.Tensor:
    """(B, T, J, 3) metres -> (B, T, J, 3): joints relative to the hip in each frame; the
    hip's own slot holds its displacement from its mean over the window (whole-body motion)."""
    hip = skeleton[:, :, hip_joint:hip_joint + 1]                        # (B, T, 1, 3)
    relative = skeleton - hip
    motion = hip - hip.mean(dim=1, keepdim=True)
    slot = F.one_hot(torch.tensor(hip_joint), skeleton.shape[2]).to(skeleton.dtype)[None, None, :, None]
    return relative * (1 - slot) + motion * slot


class SkeletonTokenizer(nn.Module):
    """Skeleton window -> tokens (B, skeleton_tokens, D) with their centre times."""

    def __init__(self, cfg: TeacherModelConfig):
        super().__init__()
        J, c = cfg.joints, cfg.joint_features
        if cfg.skeleton_frames % cfg.skeleton_tokens:
            raise ValueError(f"skeleton_frames {cfg.skeleton_frames} is not a multiple of "
                             f"skeleton_tokens {cfg.skeleton_tokens}")
        self.hip_joint, self.pool = cfg.hip_joint, cfg.skeleton_frames // cfg.skeleton_tokens
        mean = cfg.skeleton_mean or [0.0] * (J * 3)
        std = cfg.skeleton_std or [1.0] * (J * 3)
        self.register_buffer("norm_mean", torch.tensor(mean, dtype=torch.float32).reshape(J, 3))
        self.register_buffer("norm_std", torch.tensor(std, dtype=torch.float32).reshape(J, 3))
        self.joint_embed = nn.Linear(3, c)
        self.joint_mix = nn.Parameter(torch.eye(J) + 0.01 * torch.randn(J, J))  # spatial mixing
        self.frame_proj = nn.Linear(J * c, cfg.dim)
        self.temporal1 = nn.Conv1d(cfg.dim, cfg.dim, 5, padding=2, groups=cfg.dim // 16)
        self.temporal2 = nn.Conv1d(cfg.dim, cfg.dim, 5, padding=2, groups=cfg.dim // 16)
        self.norm1, self.norm2 = nn.BatchNorm1d(cfg.dim), nn.BatchNorm1d(cfg.dim)
        ratio = cfg.window / cfg.skeleton_frames                          # IMU samples per frame
        centre = (torch.arange(cfg.skeleton_tokens, dtype=torch.float32) + 0.5) * self.pool * ratio
        self.register_buffer("centre", centre, persistent=False)

    def forward(self, skeleton: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        B, T, J, _ = skeleton.shape
        x = (skeleton_features(skeleton, self.hip_joint) - self.norm_mean) / self.norm_std
        x = F.gelu(self.joint_embed(x))                                  # (B, T, J, c)
        x = torch.einsum("btjc,jk->btkc", x, self.joint_mix)             # mix across joints
        x = self.frame_proj(x.flatten(2)).transpose(1, 2)                # (B, D, T)
        x = x + F.gelu(self.norm1(self.temporal1(x)))
        x = x + F.gelu(self.norm2(self.temporal2(x)))
        x = F.avg_pool1d(x, self.pool).transpose(1, 2)                   # (B, N_s, D)
        return x, self.centre.expand(B, -1)


class STConvTeacher(nn.Module):
    """``forward(imu, skeleton)``: (B, W, C) raw IMU and (B, T_s, J, 3) skeleton (metres).
    With ``modalities="imu"`` the skeleton is ignored: a larger IMU-only model, the
    ablation's answer to what the skeleton adds to distillation."""

    def __init__(self, cfg: TeacherModelConfig):
        super().__init__()
        self.cfg = cfg
        if cfg.modalities not in ("skeleton_imu", "imu"):
            raise ConfigError(f"teacher: modalities {cfg.modalities!r} is not skeleton_imu or imu")
        self.skeleton = SkeletonTokenizer(cfg) if cfg.modalities == "skeleton_imu" else None
        self.imu = ImuTokenizer(
            channels=cfg.channels, window=cfg.window, imu_hz=cfg.imu_hz, dim=cfg.dim,
            p_default=cfg.p_default, p_min=cfg.p_min, p_max=cfg.p_max, tau_low=cfg.tau_low,
            tau_high=cfg.tau_high, dynamic=cfg.dynamic_patching, stem_channels=cfg.stem_channels,
            stem_layers=cfg.stem_layers,
            pos_embedding="none", mean=cfg.norm_mean, std=cfg.norm_std)
        self.pos = TimeEmbedding(cfg.dim, cfg.window, cfg.pos_embedding)  # shared time axis
        self.modality = nn.Parameter(torch.zeros(2, cfg.dim))
        nn.init.normal_(self.modality, std=0.02)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg.dim, cfg.heads, cfg.mlp_ratio, cfg.dropout)
                                    for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(cfg.dim)
        self.head = nn.Linear(cfg.dim, cfg.n_classes)

    @property
    def n_skeleton_tokens(self) -> int:
        return self.cfg.skeleton_tokens if self.skeleton is not None else 0

    def set_normalization(self, imu_mean, imu_std, skeleton_mean, skeleton_std) -> None:
        """Store training-fold statistics in the model and in its config (checkpoints)."""
        self.imu.set_normalization(imu_mean, imu_std)
        J = self.cfg.joints
        if self.skeleton is not None:
            self.skeleton.norm_mean.copy_(torch.as_tensor(skeleton_mean, dtype=torch.float32).reshape(J, 3))
            self.skeleton.norm_std.copy_(torch.as_tensor(skeleton_std, dtype=torch.float32).reshape(J, 3))
        self.cfg.norm_mean, self.cfg.norm_std = [float(v) for v in imu_mean], [float(v) for v in imu_std]
        self.cfg.skeleton_mean = [float(v) for v in skeleton_mean]
        self.cfg.skeleton_std = [float(v) for v in skeleton_std]

    def forward(self, imu: torch.Tensor, skeleton: torch.Tensor, return_attention: bool = False):
        imu_tokens, imu_mask, imu_centre = self.imu(imu)                 # (B, N_i, D)
        if self.skeleton is None:                                        # IMU-only teacher
            x = imu_tokens + self.modality[1] + self.pos(imu_centre)
            mask = imu_mask
        else:
            skel_tokens, skel_centre = self.skeleton(skeleton)           # (B, N_s, D)
            x = torch.cat([skel_tokens + self.modality[0], imu_tokens + self.modality[1]], dim=1)
            x = x + self.pos(torch.cat([skel_centre, imu_centre], dim=1))
            mask = torch.cat([torch.ones_like(skel_centre, dtype=torch.bool), imu_mask], dim=1)
        x = self.drop(x)
        bias = attention_bias(mask)                                      # (B, 1, 1, N)
        maps = []
        for block in self.blocks:
            x, attn = block(x, bias)                                     # attn (B, h, N, N)
            maps.append(attn)
        logits = self.head(masked_mean(self.norm(x), mask))
        return (logits, maps) if return_attention else logits

    @classmethod
    def from_config(cls, cfg: TeacherModelConfig | dict) -> "STConvTeacher":
        return cls(cfg if isinstance(cfg, TeacherModelConfig) else TeacherModelConfig(**cfg))
