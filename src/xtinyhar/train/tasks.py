"""Fit a teacher or a student on one split of a token cache; save and load checkpoints.

Everything fitted (normalisation statistics of IMU and skeleton) is fitted on the training
indices only and stored inside the model and its checkpoint. A checkpoint holds the model
kind, its model config (rebuilds the model), the weights, the resolved run config, the
class names, the cache hash, the training subjects and the package version; it is loaded
with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from xtinyhar import __version__
from xtinyhar.config import Config
from xtinyhar.errors import DataError, XTinyHARError
from xtinyhar.io import load_checkpoint, save_checkpoint
from xtinyhar.models.baselines import BaselineConfig, build_baseline
from xtinyhar.models.student import InertialTransformer, StudentModelConfig
from xtinyhar.models.teacher import STConvTeacher, TeacherModelConfig, skeleton_features
from xtinyhar.preprocess.augment import (augment as augment_imu, crop_spans, stretch_spans, time_warp,
                                        warp_clocks)
from xtinyhar.preprocess.normalize import NormStats, fit_zscore
from xtinyhar.preprocess.tokens import TokenCache
from xtinyhar.train.kd import attention_transfer_loss, distillation_loss
from xtinyhar.train.loop import Arrays, FitResult, FitSettings, fit, predict_logits

HIP_JOINT = {"utd-mhad": 3, "synthetic": 3, "mm-fit": 0}  # Kinect hip_center; H36M hip


@dataclass
class Trained:
    model: torch.nn.Module
    result: FitResult


def settings_from(cfg: Config, teacher: bool) -> FitSettings:
    t = cfg.train
    epochs = (t.teacher_epochs or t.epochs) if teacher else t.epochs
    return FitSettings(epochs=epochs, batch_size=t.batch_size, lr=t.lr, weight_decay=t.weight_decay,
                       seed=t.seed, warmup_epochs=t.warmup_epochs, patience=t.patience,
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
    if settings.get("data", {}).get("dataset") != "custom":
        settings["data"].pop("custom", None)   # fits started before the key existed resume
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


def imu_stats(cfg: Config, imu: np.ndarray) -> NormStats:
    return fit_zscore(imu) if cfg.preproc.norm == "zscore" else NormStats.identity(imu.shape[-1])


def jitter_scale(imu: np.ndarray) -> np.ndarray:
    """Per-channel std of the training windows: augmentation's jitter is a fraction of it,
    whether or not the model normalises its input (``preproc.norm: none``)."""
    return fit_zscore(imu).std


def skeleton_stats(skeleton: np.ndarray, hip_joint: int) -> NormStats:
    features = skeleton_features(torch.from_numpy(skeleton), hip_joint).numpy()
    return fit_zscore(features.reshape(*features.shape[:2], -1))


def check_teacher(path: str | Path, payload: dict, train_subjects, cache_hash: str) -> None:
    """A teacher checkpoint may distil a student only if it was trained on exactly the
    student's training subjects (never its validation or test ones) and on the same windows
    (preprocessing config hash); otherwise a one-line error naming the file."""
    if sorted(int(s) for s in payload["train_subjects"]) != sorted(int(s) for s in train_subjects):
        raise XTinyHARError(f"{path}: trained on subjects {payload['train_subjects']}, "
                            f"but this split trains on {[int(s) for s in train_subjects]}; a teacher "
                            "must not have seen the student's validation or test subjects")
    if payload.get("cache_hash") != cache_hash:
        raise XTinyHARError(f"{path}: trained on other windows (preprocessing config hash "
                            f"{payload.get('cache_hash')}, this run's {cache_hash}); "
                            "train the teacher with the student's data and preproc settings")


def make_augment(cfg: Config, channel_std: np.ndarray):
    """Training-only augmentation: IMU as configured; skeleton turned about the vertical
    axis by up to the same angle and scaled by the same amount (a differently sized person
    facing slightly away) and cropped and time-warped exactly as the IMU (one time map for
    both streams, so they stay aligned)."""
    aug = cfg.preproc.augment
    if cfg.data.dataset == "custom" and cfg.data.custom.layout != "acc_gyro":
        # rotation and per-sensor scaling act on acc and gyro triples this layout lacks
        aug = dataclasses.replace(aug, rotation_deg=0.0, scale=0.0)

    def apply(batch: Arrays, rng: np.random.Generator) -> Arrays:
        out = dict(batch)
        spans = None
        if "skeleton" in batch and aug.crop > 0:   # one crop for both streams keeps them aligned
            spans = crop_spans(len(batch["imu"]), aug.crop, rng)
            out["skeleton"] = stretch_spans(batch["skeleton"], spans).astype(np.float32)
        clocks = None
        if "skeleton" in batch and aug.time_warp > 0:   # one warp for both streams too
            clocks = warp_clocks(len(batch["imu"]), batch["imu"].shape[1], aug.time_warp, rng)
            out["skeleton"] = time_warp(out["skeleton"], aug.time_warp, rng, clocks).astype(np.float32)
        out["imu"] = augment_imu(batch["imu"], aug, channel_std, rng, spans, clocks)
        if "skeleton" in batch and (aug.rotation_deg > 0 or aug.scale > 0):
            n = len(batch["skeleton"])
            angle = np.deg2rad(rng.uniform(-aug.rotation_deg, aug.rotation_deg, n))
            rot = np.zeros((n, 3, 3))
            rot[:, 0, 0], rot[:, 0, 2], rot[:, 1, 1] = np.cos(angle), np.sin(angle), 1.0
            rot[:, 2, 0], rot[:, 2, 2] = -np.sin(angle), np.cos(angle)
            factor = rng.uniform(1 - aug.scale, 1 + aug.scale, (n, 1, 1, 1))
            out["skeleton"] = (np.einsum("nij,ntkj->ntki", rot, out["skeleton"]) * factor).astype(np.float32)
        return out

    return apply


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
        pos_embedding=s.pos_embedding, dropout=t.dropout)


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

    result = fit(model, train, val, step, settings_from(cfg, teacher=True),
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

    result = fit(model, train, val, step, settings_from(cfg, teacher=False),
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


# ------------------------------------------------------------------------- checkpoints

def save_model(path: str | Path, model: torch.nn.Module, *, cfg: Config, class_names: list[str],
               cache_hash: str, train_subjects: list[int], extra: dict | None = None) -> None:
    kind = "teacher" if isinstance(model, STConvTeacher) else "student"
    save_checkpoint(path, {
        "format": "xtinyhar-checkpoint-1", "kind": kind, "version": __version__,
        "model_config": model.cfg.to_dict(), "state_dict": model.state_dict(),
        "config": cfg.to_dict(), "class_names": list(class_names), "cache_hash": cache_hash,
        "train_subjects": [int(s) for s in train_subjects], **(extra or {})})


def load_model(path: str | Path, kind: str | None = None) -> tuple[torch.nn.Module, dict]:
    """Rebuild a model from its checkpoint's model config and weights (eval mode)."""
    payload = load_checkpoint(path)
    if payload.get("format") != "xtinyhar-checkpoint-1":
        raise DataError(f"{path}: not an XTinyHAR model checkpoint")
    if payload.get("kind") not in ("teacher", "student"):
        raise DataError(f"{path}: kind {payload.get('kind')!r} is neither teacher nor student")
    if kind is not None and payload["kind"] != kind:
        raise DataError(f"{path}: is a {payload['kind']} checkpoint, expected a {kind}")
    try:
        if payload["kind"] == "teacher":
            model = STConvTeacher.from_config(payload["model_config"])
        elif payload["model_config"].get("arch", "transformer") != "transformer":
            model = build_baseline(payload["model_config"])
        else:
            model = InertialTransformer.from_config(payload["model_config"])
        model.load_state_dict(payload["state_dict"])
    except (KeyError, TypeError, ValueError, RuntimeError, XTinyHARError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{path}: its model config and weights do not rebuild a model "
                        f"({reason[:200]}); was it written by another version?") from None
    broken = [name for name, value in payload["state_dict"].items()
              if torch.is_tensor(value) and value.is_floating_point() and not torch.isfinite(value).all()]
    if broken:
        raise DataError(f"{path}: {len(broken)} weight tensor(s) hold NaN or inf (first: {broken[0]}); "
                        "the fit that wrote it diverged")
    _check_norm_std(path, payload["state_dict"])
    classes = payload.get("class_names")
    outputs = payload["model_config"].get("n_classes")
    if not isinstance(classes, list) or (outputs is not None and len(classes) != outputs):
        raise DataError(f"{path}: {len(classes) if isinstance(classes, list) else 'no'} class names "
                        f"for a model with {outputs} outputs")
    return model.eval(), payload


IMU_CHANNELS = ("acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z")


def _check_norm_std(path: str | Path, state: dict) -> None:
    """Every stored normalisation std must be positive: training never stores a zero (a
    constant channel gets 1), so a zero or negative one means a damaged or edited checkpoint,
    which would otherwise divide by zero and surface later as an export parity error."""
    for name, value in state.items():
        if not (name.endswith("norm_std") or name.endswith("normalize.std")) or not torch.is_tensor(value):
            continue
        bad = (value <= 0).reshape(-1).nonzero().flatten().tolist()
        if not bad:
            continue
        first = bad[0]
        if value.dim() == 2:   # the skeleton's, per joint and axis
            channel = f"joint {first // value.shape[1]} axis {'xyz'[first % value.shape[1]]}"
        elif value.numel() == len(IMU_CHANNELS):
            channel = f"channel {first} ({IMU_CHANNELS[first]})"
        else:
            channel = f"channel {first}"
        raise DataError(f"{path}: normalization std {name} is {float(value.reshape(-1)[first]):g} "
                        f"for {channel}{f' and {len(bad) - 1} more' if len(bad) > 1 else ''}; "
                        "a std must be positive (the checkpoint is damaged or was edited)")


def load_with_windows(path: str | Path, kind: str = "student") -> tuple[torch.nn.Module, dict, TokenCache]:
    """A checkpoint's model (eval mode) and payload, with the token cache its own training
    config builds from the data (for benchmarks that evaluate or time a trained model)."""
    from xtinyhar.config import config_from_dict
    from xtinyhar.data import load_dataset
    from xtinyhar.preprocess.tokens import build_token_cache

    model, payload = load_model(path, kind)
    cfg = config_from_dict(payload["config"])
    report = load_dataset(cfg)
    return model.eval(), payload, build_token_cache(cfg, report.trials, report.class_names)
