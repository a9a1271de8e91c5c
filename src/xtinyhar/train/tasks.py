"""The two training tasks: fit a teacher or a student on one split of a token cache.

Everything fitted (normalisation statistics of IMU and skeleton, ``train/normalization.py``)
is fitted on the training indices only and stored inside the model; models are built by
``models/factory.py``, saved and loaded by ``train/checkpoints.py``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from xtinyhar.config import Config
from xtinyhar.errors import DataError
from xtinyhar.models.factory import build_student, teacher_config
from xtinyhar.models.teacher import STConvTeacher
from xtinyhar.preprocess.tokens import TokenCache
from xtinyhar.train.augmentation import make_augment
from xtinyhar.train.kd import attention_transfer_loss, distillation_loss
from xtinyhar.train.loop import Arrays, FitResult, FitSettings, fit, predict_logits
from xtinyhar.train.normalization import imu_stats, jitter_scale, skeleton_stats

log = logging.getLogger(__name__)


@dataclass
class Trained:
    model: torch.nn.Module
    result: FitResult


def settings_from(cfg: Config, teacher: bool, n_train: int = 0) -> FitSettings:
    """The fit's settings; ``n_train`` training windows raise the epochs to reach
    ``train.min_steps`` optimiser steps."""
    t = cfg.train
    epochs = (t.teacher_epochs or t.epochs) if teacher else t.epochs
    steps_per_epoch, patience = math.ceil(n_train / t.batch_size), t.patience
    if t.min_steps and steps_per_epoch and epochs * steps_per_epoch < t.min_steps:
        raised = math.ceil(t.min_steps / steps_per_epoch)
        patience = math.ceil(t.patience * raised / epochs)   # the same share of the fit
        log.info("%d training windows: %d epochs (patience %d) for train.min_steps %d",
                 n_train, raised, patience, t.min_steps)
        epochs = raised
    return FitSettings(epochs=epochs, batch_size=t.batch_size, lr=t.lr, weight_decay=t.weight_decay,
                       seed=t.seed, warmup_epochs=t.warmup_epochs, patience=patience,
                       grad_clip=t.grad_clip, threads=t.threads, average=t.average,
                       average_start=t.average_start, ema_decay=t.ema_decay)


def fit_fingerprint(cfg: Config, cache: TokenCache, train_idx: np.ndarray,
                    teacher: torch.nn.Module | None = None) -> str:
    """What a fit is, for resuming: the config (less the thread count, which changes no
    result), the windows' preprocessing, the training rows and the teacher's weights."""
    import hashlib
    import json

    settings = cfg.to_dict()
    settings.get("train", {}).pop("threads", None)
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    digest.update(str(cache.meta.get("config_hash")).encode())
    digest.update(np.asarray(train_idx, dtype=np.int64).tobytes())
    if teacher is not None:
        for name, tensor in sorted(teacher.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def arrays(cache: TokenCache, index: np.ndarray, with_skeleton: bool) -> Arrays:
    data = {"imu": cache.imu[index], "label": cache.label[index]}
    if with_skeleton:
        if cache.skeleton is None:
            raise DataError("the token cache has no skeleton windows; the teacher needs them")
        data["skeleton"] = cache.skeleton[index]
    return data


def teacher_forward(model, batch):
    return model(batch["imu"], batch["skeleton"])


def student_forward(model, batch):
    return model(batch["imu"])


def fit_teacher(cfg: Config, cache: TokenCache, train_idx: np.ndarray, val_idx: np.ndarray, *,
                workdir: Path | None = None, resume: bool = False, desc: str = "teacher") -> Trained:
    """Train the multimodal teacher on ``train_idx``, selecting on ``val_idx``."""
    train, val = arrays(cache, train_idx, True), arrays(cache, val_idx, True)
    torch.manual_seed(cfg.train.seed)
    model = STConvTeacher(teacher_config(cfg, len(cache.class_names), cache.skeleton.shape[2]))
    imu_norm = imu_stats(cfg, train["imu"])
    skel_norm = skeleton_stats(train["skeleton"], model.cfg.hip_joint)
    model.set_normalization(imu_norm.mean, imu_norm.std, skel_norm.mean, skel_norm.std)
    smoothing = cfg.train.label_smoothing

    def step(m, batch):
        logits = teacher_forward(m, batch)
        return F.cross_entropy(logits, batch["label"], label_smoothing=smoothing), logits

    result = fit(model, train, val, step, settings_from(cfg, teacher=True, n_train=len(train_idx)),
                 augment=make_augment(cfg, jitter_scale(train["imu"])), workdir=workdir, resume=resume,
                 desc=desc, fingerprint=fit_fingerprint(cfg, cache, train_idx))
    return Trained(model, result)


def fit_student(cfg: Config, cache: TokenCache, train_idx: np.ndarray, val_idx: np.ndarray, *,
                teacher: STConvTeacher | None = None, workdir: Path | None = None,
                resume: bool = False, desc: str = "student") -> Trained:
    """Train the IMU-only student, distilling from ``teacher`` when given (else plain CE).

    Soft targets are the teacher's logits on the clean (un-augmented) training windows,
    computed once; with ``distill.views = K > 0`` they are consistent instead: the teacher
    labels K augmented copies of every training window once, and each training batch takes
    one of the copies at random, so the student always matches the teacher's output on
    exactly the window it sees. With ``distill.attention_weight > 0`` the teacher also runs
    on each augmented batch to supply its attention maps.
    """
    train, val = arrays(cache, train_idx, False), arrays(cache, val_idx, False)
    d, smoothing = cfg.distill, cfg.train.label_smoothing
    use_attention = teacher is not None and d.attention_weight > 0
    imu_norm = imu_stats(cfg, train["imu"])
    channel_std = jitter_scale(train["imu"])
    augment = make_augment(cfg, channel_std)
    if teacher is not None:
        full = arrays(cache, train_idx, True)
        train["teacher_logits"] = predict_logits(teacher, full, teacher_forward).astype(np.float32)
        if use_attention:
            train["skeleton"] = full["skeleton"]
        n_classes = train["teacher_logits"].shape[1]
        val["teacher_logits"] = (predict_logits(teacher, arrays(cache, val_idx, True), teacher_forward)
                                 if len(val_idx) else np.zeros((0, n_classes))).astype(np.float32)
        if d.views > 0 and not use_attention:
            augment = consistent_views(teacher, full, cfg, channel_std, d.views)
            train["row"] = np.arange(len(train_idx))
    torch.manual_seed(cfg.train.seed)
    model = build_student(cfg, len(cache.class_names))
    model.set_normalization(imu_norm.mean, imu_norm.std)

    def step(m, batch):
        if teacher is None:
            logits = m(batch["imu"])
            return F.cross_entropy(logits, batch["label"], label_smoothing=smoothing), logits
        if use_attention and m.training:
            logits, maps = m(batch["imu"], return_attention=True)
            with torch.no_grad():
                teacher.eval()
                _, teacher_maps = teacher(batch["imu"], batch["skeleton"], return_attention=True)
                patcher = m.tokenizer.patcher      # not m.tokenizer: its stem's BatchNorm would update again
                mask = patcher.token_mask[patcher.row(batch["imu"])]             # (B, N)
            loss = distillation_loss(logits, batch["teacher_logits"], batch["label"], T=d.T,
                                     alpha=d.alpha, label_smoothing=smoothing)
            loss = loss + d.attention_weight * attention_transfer_loss(
                maps, teacher_maps, teacher.n_skeleton_tokens, mask)
            return loss, logits
        logits = m(batch["imu"])
        return distillation_loss(logits, batch["teacher_logits"], batch["label"], T=d.T,
                                 alpha=d.alpha, label_smoothing=smoothing), logits

    result = fit(model, train, val, step, settings_from(cfg, teacher=False, n_train=len(train_idx)),
                 augment=augment, workdir=workdir, resume=resume, desc=desc,
                 fingerprint=fit_fingerprint(cfg, cache, train_idx, teacher))
    return Trained(model, result)


def consistent_views(teacher: STConvTeacher, full: Arrays, cfg: Config, channel_std: np.ndarray,
                     views: int):
    """Consistent KD: ``views`` augmented copies of every training window, both streams
    augmented together as the teacher is trained (one crop, warp, rotation and scale), labelled
    once by the teacher. Returns the student's batch augmentation: each row of a batch takes
    one copy's IMU at random, with the teacher's logits on that same copy."""
    rng = np.random.default_rng(cfg.train.seed + 7919)
    joint = make_augment(cfg, channel_std)
    copies = [joint(full, rng) for _ in range(views)]
    imu = np.stack([copy["imu"] for copy in copies]).astype(np.float32)        # (K, N, W, C)
    logits = np.stack([predict_logits(teacher, copy, teacher_forward) for copy in copies]).astype(np.float32)

    def apply(batch: Arrays, rng: np.random.Generator) -> Arrays:
        pick = rng.integers(views, size=len(batch["row"]))
        return {**batch, "imu": imu[pick, batch["row"]], "teacher_logits": logits[pick, batch["row"]]}

    return apply


