"""Model configs and models built from a run config: the student (the Inertial Transformer
or a baseline, ``model.student.arch``) and the teacher. Training, profiling and the
ablation driver build every model through these functions."""

from __future__ import annotations

import torch

from xtinyhar.config import Config
from xtinyhar.errors import DataError
from xtinyhar.models.baselines import BaselineConfig, build_baseline
from xtinyhar.models.student import InertialTransformer, StudentModelConfig
from xtinyhar.models.teacher import TeacherModelConfig

HIP_JOINT = {"utd-mhad": 3, "synthetic": 3, "mm-fit": 0}  # Kinect hip_center; H36M hip


def student_config(cfg: Config, n_classes: int) -> StudentModelConfig:
    s, dp = cfg.model.student, cfg.preproc.dynamic_patch
    return StudentModelConfig(
        n_classes=n_classes, window=cfg.data.window, channels=cfg.data.imu_channels,
        imu_hz=cfg.preproc.resample_hz, dim=s.D, depth=s.L, heads=s.heads, mlp_ratio=s.mlp_ratio,
        p_default=s.p_default, p_min=dp.p_min, p_max=dp.p_max, tau_low=dp.tau_low,
        tau_high=dp.tau_high, dynamic_patching=dp.enabled, stem_channels=s.stem_channels,
        stem_layers=s.stem_layers,
        pos_embedding=s.pos_embedding, dropout=s.dropout)


def build_student(cfg: Config, n_classes: int) -> torch.nn.Module:
    """The configured IMU-only model: the Inertial Transformer or a baseline."""
    s = cfg.model.student
    if s.arch == "transformer":
        return InertialTransformer(student_config(cfg, n_classes))
    if s.arch.startswith("minirocket"):
        raise DataError(f"{cfg.source}: model.student.arch {s.arch!r} is not a torch model; "
                        "evaluate it with `xtinyhar cv` (no train-student, export or profile)")
    return build_baseline(BaselineConfig(arch=s.arch, n_classes=n_classes, window=cfg.data.window,
                                         channels=cfg.data.imu_channels,
                                         imu_hz=cfg.preproc.resample_hz, dropout=s.dropout))


def _own_or_student(teacher_value, student_value):
    return student_value if teacher_value is None else teacher_value


def teacher_config(cfg: Config, n_classes: int, joints: int) -> TeacherModelConfig:
    """The teacher's model config; its IMU tokenizer keys default to the student's."""
    s, t, dp = cfg.model.student, cfg.model.teacher, cfg.preproc.dynamic_patch
    return TeacherModelConfig(
        n_classes=n_classes, window=cfg.data.window, channels=cfg.data.imu_channels,
        imu_hz=cfg.preproc.resample_hz,
        skeleton_frames=int(round(cfg.data.window * cfg.preproc.skeleton_hz / cfg.preproc.resample_hz)),
        joints=joints, hip_joint=HIP_JOINT[cfg.data.dataset], dim=t.D, depth=t.L, heads=t.heads,
        mlp_ratio=t.mlp_ratio, skeleton_tokens=t.skeleton_tokens,
        p_default=_own_or_student(t.p_default, s.p_default),
        p_min=dp.p_min, p_max=dp.p_max, tau_low=dp.tau_low, tau_high=dp.tau_high,
        dynamic_patching=dp.enabled,
        stem_channels=_own_or_student(t.stem_channels, s.stem_channels),
        stem_layers=_own_or_student(t.stem_layers, s.stem_layers),
        pos_embedding=s.pos_embedding, dropout=t.dropout, modalities=t.modalities)
