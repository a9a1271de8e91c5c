"""Save and load model checkpoints, and check that a teacher may distil a student.

A checkpoint holds the model kind, its model config (rebuilds the model), the weights, the
resolved run config, the class names, the cache hash, the training subjects and the package
version; it is loaded with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

from pathlib import Path

import torch

from xtinyhar import __version__
from xtinyhar.config import Config
from xtinyhar.errors import DataError, XTinyHARError
from xtinyhar.io import load_checkpoint, save_checkpoint
from xtinyhar.models.baselines import build_baseline
from xtinyhar.models.student import InertialTransformer
from xtinyhar.models.teacher import STConvTeacher
from xtinyhar.preprocess.tokens import TokenCache


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
