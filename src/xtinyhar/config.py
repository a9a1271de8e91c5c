"""Typed configuration: dataclasses loaded from YAML and validated.

Key names follow the seed paper's YAML (``data.window``, ``preproc.dynamic_patch.p_min``,
``distill.T``, ...) so its readers feel at home. Every problem in a config file (an unknown
or misspelt key, a wrong type, an out-of-range value) raises :class:`ConfigError` with one
line naming the file and the dotted key.

Relative paths in a config (``data.root``) resolve against the project root: the nearest
folder above the config file that holds a ``pyproject.toml`` (the config file's own folder
when there is none), so commands work from any working directory.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xtinyhar.errors import ConfigError, require_file

log = logging.getLogger(__name__)

DATASETS = ("utd-mhad", "mm-fit", "synthetic", "custom")
PROTOCOLS = ("kfold", "loso", "standard", "validation", "predefined", "auto")  # see xtinyhar.data.splits


def _range(lo: float | None = None, hi: float | None = None, *, lo_open: bool = False,
           hi_open: bool = False, choices: tuple | None = None) -> dict:
    """Field metadata for validation: inclusive bounds (``lo_open`` / ``hi_open`` make
    them exclusive)."""
    return {"lo": lo, "hi": hi, "lo_open": lo_open, "hi_open": hi_open, "choices": choices}


@dataclass
class SyntheticConfig:
    """Size of the embedded synthetic dataset (``data.synthetic``)."""
    subjects: int = field(default=8, metadata=_range(2, 100))
    trials_per_class: int = field(default=4, metadata=_range(1, 1000))
    seconds: float = field(default=4.0, metadata=_range(0.5, 600))
    seed: int = field(default=0, metadata=_range(0))


@dataclass
class MMFitConfig:
    """Which MM-Fit sensor to read (``data.mm_fit``): device sw/sp/eb, side l/r."""
    device: str = field(default="sw", metadata=_range(choices=("sw", "sp", "eb")))
    side: str = field(default="l", metadata=_range(choices=("l", "r")))


@dataclass
class CustomConfig:
    """Your own recordings (``data.dataset: custom``; ``data.root`` is the folder of CSV
    files, the ``.npz`` file or the ``NAME_TRAIN.ts`` file; see docs/own-data.md).

    ``layout`` says what the channels are: ``acc_gyro`` (6 channels: acc x,y,z then gyro
    x,y,z, as the built-in datasets; everything works), ``acc`` (acc x,y,z first, then any
    others: dynamic patching works, rotation/scale augmentation is off) or ``other`` (no
    physical meaning assumed: dynamic patching must be off, no unit conversion)."""
    manifest: str = "manifest.csv"      # CSV folders: one row per recording, relative to data.root
    channels: list[str] = field(default_factory=list)   # CSV columns to read; empty: all but time
    layout: str = field(default="acc_gyro", metadata=_range(choices=("acc_gyro", "acc", "other")))
    acc_unit: str = field(default="g", metadata=_range(choices=("g", "m/s2")))
    gyro_unit: str = field(default="deg/s", metadata=_range(choices=("deg/s", "rad/s")))


@dataclass
class DataConfig:
    dataset: str = field(default="utd-mhad", metadata=_range(choices=DATASETS))
    root: str = "../shared/data/utd_mhad"
    imu_sr: float = field(default=50.0, metadata=_range(0, lo_open=True))
    window: int = field(default=100, metadata=_range(2))
    stride: int = field(default=50, metadata=_range(1))
    imu_channels: int = field(default=6, metadata=_range(1))
    # sliding: windows of `window` samples every `stride` (a device classifies a stream);
    # trial: one window per trial, the whole trial resampled onto `window` samples (a device
    # classifies a segmented recording; `stride` is unused)
    segmentation: str = field(default="sliding", metadata=_range(choices=("sliding", "trial")))
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    mm_fit: MMFitConfig = field(default_factory=MMFitConfig)
    custom: CustomConfig = field(default_factory=CustomConfig)


@dataclass
class DynamicPatchConfig:
    """Patch length from motion energy: still windows get ``p_max``, lively ones ``p_min``.

    ``enabled: false`` gives fixed patching at ``model.student.p_default`` through the same
    code, for the ablation. ``tau_low``/``tau_high`` are motion-energy thresholds in g (see
    :func:`xtinyhar.preprocess.patching.motion_energy`).
    """
    enabled: bool = True
    p_min: int = field(default=10, metadata=_range(1))
    p_max: int = field(default=30, metadata=_range(1))
    tau_low: float = field(default=0.08, metadata=_range(0))
    tau_high: float = field(default=0.20, metadata=_range(0))


@dataclass
class AugmentConfig:
    """Training-only augmentation; each strength 0 turns that transform off."""
    jitter: float = field(default=0.05, metadata=_range(0, 1))         # noise std, fraction of channel std
    scale: float = field(default=0.1, metadata=_range(0, 0.9))         # amplitude factor in 1 +- scale
    rotation_deg: float = field(default=10.0, metadata=_range(0, 180))  # max angle of a random 3-D rotation
    time_warp: float = field(default=0.1, metadata=_range(0, 0.5))     # max local speed change
    crop: float = field(default=0.0, metadata=_range(0, 0.4))          # max fraction trimmed at each end,
                                                                       # the rest stretched back onto the window


@dataclass
class PreprocConfig:
    resample_hz: float = field(default=50.0, metadata=_range(0, lo_open=True))
    skeleton_hz: float = field(default=25.0, metadata=_range(0, lo_open=True))
    norm: str = field(default="zscore", metadata=_range(choices=("zscore", "none")))
    lowpass_hz: float | None = field(default=None, metadata=_range(0, lo_open=True))
    dynamic_patch: DynamicPatchConfig = field(default_factory=DynamicPatchConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)


@dataclass
class StudentConfig:
    # transformer: the Inertial Transformer; cnn1d, deepconvlstm, tinyhar: baselines
    # (models/baselines.py) trained and evaluated by the same commands; minirocket:
    # MiniRocket + ridge on the same windows (models/minirocket.py), cv only;
    # minirocket_trial: MiniRocket + ridge on whole trials resampled to 128 samples, cv only
    L: int = field(default=2, metadata=_range(1))
    D: int = field(default=128, metadata=_range(1))
    heads: int = field(default=4, metadata=_range(1))
    mlp_ratio: float = field(default=2.0, metadata=_range(0, lo_open=True))
    p_default: int = field(default=20, metadata=_range(1))
    arch: str = field(default="transformer",
                      metadata=_range(choices=("transformer", "cnn1d", "deepconvlstm", "tinyhar", "minirocket",
                                               "minirocket_trial")))
    stem_channels: int = field(default=16, metadata=_range(0))   # 0: no conv stem
    stem_layers: int = field(default=2, metadata=_range(1))      # convolutions in the stem
    pos_embedding: str = field(default="learned", metadata=_range(choices=("learned", "sinusoidal", "none")))
    dropout: float = field(default=0.1, metadata=_range(0, 0.9))


@dataclass
class TeacherConfig:
    D: int = field(default=256, metadata=_range(1))
    L: int = field(default=4, metadata=_range(1))
    heads: int = field(default=4, metadata=_range(1))
    mlp_ratio: float = field(default=2.0, metadata=_range(0, lo_open=True))
    dropout: float = field(default=0.1, metadata=_range(0, 0.9))
    skeleton_tokens: int = field(default=10, metadata=_range(1))
    modalities: str = field(default="skeleton_imu", metadata=_range(choices=("skeleton_imu", "imu")))
    # The teacher's IMU tokenizer. None: the student's value, so both tokenise alike. With
    # dynamic patching the token spans (and so attention transfer and the attention
    # similarity) depend only on preproc.dynamic_patch, so a student may use a cheaper
    # tokenizer (fewer points per token, a narrower stem) than its teacher and still cover
    # the same parts of the window; fixed patching cuts at p_default, so there the two
    # p_default must agree (checked).
    p_default: int | None = field(default=None, metadata=_range(1))
    stem_channels: int | None = field(default=None, metadata=_range(0))
    stem_layers: int | None = field(default=None, metadata=_range(1))


@dataclass
class ModelConfig:
    student: StudentConfig = field(default_factory=StudentConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)


@dataclass
class TrainConfig:
    batch_size: int = field(default=64, metadata=_range(1))
    epochs: int = field(default=20, metadata=_range(1))
    lr: float = field(default=1e-4, metadata=_range(0, lo_open=True))
    weight_decay: float = field(default=1e-5, metadata=_range(0))
    seed: int = field(default=42, metadata=_range(0))
    teacher_epochs: int | None = field(default=None, metadata=_range(1))  # None: same as epochs
    warmup_epochs: int = field(default=5, metadata=_range(0))
    # at least this many optimiser steps: with few training windows (a few dozen recordings)
    # the epochs are raised until epochs * ceil(windows / batch_size) reaches it; 0: off
    min_steps: int = field(default=0, metadata=_range(0))
    patience: int = field(default=30, metadata=_range(1))    # epochs without a better validation score
    grad_clip: float = field(default=1.0, metadata=_range(0, lo_open=True))
    label_smoothing: float = field(default=0.0, metadata=_range(0, 0.5))
    threads: int = field(default=2, metadata=_range(1))
    # weights validated and kept: the live ones ("none"), an exponential moving average over
    # steps ("ema", ema_decay per step) or a uniform average of every step's weights ("uniform",
    # SWA-like), averaging from average_start (a fraction of the epochs) on
    average: str = field(default="none", metadata=_range(choices=("none", "ema", "uniform")))
    average_start: float = field(default=0.0, metadata=_range(0, 1))
    ema_decay: float = field(default=0.995, metadata=_range(0, 1, lo_open=True, hi_open=True))


@dataclass
class DistillConfig:
    T: float = field(default=3.0, metadata=_range(0, lo_open=True))
    alpha: float = field(default=0.7, metadata=_range(0, 1))
    attention_weight: float = field(default=0.0, metadata=_range(0))  # attention transfer, off by default
    views: int = field(default=0, metadata=_range(0))  # >0: consistent KD, teacher targets on that
                                                       # many augmented copies of each window


@dataclass
class EvalConfig:
    folds: int = field(default=5, metadata=_range(2))
    averaging: str = field(default="micro", metadata=_range(choices=("micro", "macro")))
    val_subjects: int = field(default=1, metadata=_range(0))  # 0: no validation, keep the last epoch
    protocol: str = field(default="kfold",
                          metadata=_range(choices=PROTOCOLS))


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    preproc: PreprocConfig = field(default_factory=PreprocConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    source: str = field(default="<defaults>", compare=False, repr=False)  # file it came from

    def to_dict(self) -> dict[str, Any]:
        """The config as plain data (for YAML dumps and checkpoints), without ``source``."""
        out = dataclasses.asdict(self)
        out.pop("source")
        return out


# --------------------------------------------------------------------------- building

def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Check ``value`` against the type ``hint`` and convert where YAML is ambiguous.

    PyYAML reads ``1e-4`` (no dot) as a string, as YAML 1.1 says; a float field accepts
    such a numeric string so the seed paper's configs load unchanged.
    """
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None:
            return None
        return _coerce(value, options[0], where)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (item,) = typing.get_args(hint)
        return [_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping of keys, got {value!r}")
        return _build(hint, value, where)
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif hint is str:
        if isinstance(value, str):
            return value
    raise ConfigError(f"{where}: expected {getattr(hint, '__name__', hint)}, got {value!r}")


def _check_range(value: Any, meta: dict, where: str) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{where}: {value!r} is not a finite number")
    if value is None or not meta:
        return
    if meta.get("choices") is not None and value not in meta["choices"]:
        raise ConfigError(f"{where}: {value!r} is not one of {', '.join(map(str, meta['choices']))}")
    lo, hi = meta.get("lo"), meta.get("hi")
    if lo is not None and (value <= lo if meta.get("lo_open") else value < lo):
        raise ConfigError(f"{where}: {value!r} must be {'>' if meta.get('lo_open') else '>='} {lo}")
    if hi is not None and (value >= hi if meta.get("hi_open") else value > hi):
        raise ConfigError(f"{where}: {value!r} must be {'<' if meta.get('hi_open') else '<='} {hi}")


def _build(cls: type, raw: dict, where: str) -> Any:
    """Build dataclass ``cls`` from ``raw``, rejecting unknown keys by their dotted name."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name != "source"}
    kwargs = {}
    for key, value in raw.items():
        dotted = f"{where}.{key}" if where else str(key)
        if key not in fields:
            close = [k for k in fields if k.lower() == str(key).lower()]
            hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(fields)})"
            raise ConfigError(f"unknown key {dotted!r}{hint}")
        value = _coerce(value, hints[key], dotted)
        _check_range(value, fields[key].metadata, dotted)
        kwargs[key] = value
    return cls(**kwargs)


def _validate(cfg: Config) -> None:
    """Checks that span several keys."""
    d, p, s = cfg.data, cfg.preproc.dynamic_patch, cfg.model.student
    if p.p_min > p.p_max:
        raise ConfigError(f"preproc.dynamic_patch.p_min ({p.p_min}) must be <= p_max ({p.p_max})")
    if p.tau_low >= p.tau_high:
        raise ConfigError(f"preproc.dynamic_patch.tau_low ({p.tau_low}) must be < tau_high ({p.tau_high})")
    if p.p_max > d.window:
        raise ConfigError(f"preproc.dynamic_patch.p_max ({p.p_max}) must be <= data.window ({d.window})")
    if d.stride > d.window:
        raise ConfigError(f"data.stride ({d.stride}) must be <= data.window ({d.window}) so every "
                          "sample lies in a window")
    if s.p_default > d.window:
        raise ConfigError(f"model.student.p_default ({s.p_default}) must be <= data.window ({d.window})")
    t = cfg.model.teacher
    if t.p_default is not None and t.p_default > d.window:
        raise ConfigError(f"model.teacher.p_default ({t.p_default}) must be <= data.window ({d.window})")
    if t.p_default not in (None, s.p_default) and not p.enabled:
        raise ConfigError(f"model.teacher.p_default ({t.p_default}) differs from model.student.p_default "
                          f"({s.p_default}) with fixed patching (preproc.dynamic_patch.enabled: false): "
                          "their tokens would cover different spans; set both alike")
    for name, dim, heads in (("student", s.D, s.heads), ("teacher", t.D, t.heads)):
        if dim % heads:
            raise ConfigError(f"model.{name}.D ({dim}) must be divisible by model.{name}.heads ({heads})")
    if t.D % 16:
        raise ConfigError(f"model.teacher.D ({t.D}) must be a multiple of 16 (grouped temporal convolutions)")
    frames = d.window * cfg.preproc.skeleton_hz / cfg.preproc.resample_hz
    if d.dataset == "custom":   # no skeleton: the skeleton frame checks do not apply
        frames = t.skeleton_tokens
    if frames % t.skeleton_tokens:
        raise ConfigError(f"model.teacher.skeleton_tokens ({t.skeleton_tokens}) must divide the "
                          f"{frames:g} skeleton frames of a window")
    ratio = cfg.preproc.skeleton_hz / cfg.preproc.resample_hz
    if d.dataset != "custom" and abs(d.window * ratio - round(d.window * ratio)) > 1e-6:
        raise ConfigError(f"data.window ({d.window}) times preproc.skeleton_hz/resample_hz "
                          f"({ratio:g}) must be a whole number of skeleton frames")
    if cfg.distill.attention_weight > 0 and s.arch != "transformer":
        raise ConfigError(f"distill.attention_weight > 0 needs attention maps; model.student.arch "
                          f"{s.arch!r} has none (use transformer or set the weight to 0)")
    if cfg.distill.views > 0 and cfg.distill.attention_weight > 0:
        raise ConfigError("distill.views > 0 and distill.attention_weight > 0 cannot be combined: "
                          "attention transfer runs the teacher on each batch itself; set one to 0")
    nyquist = min(cfg.preproc.resample_hz, d.imu_sr) / 2
    if cfg.preproc.lowpass_hz is not None and cfg.preproc.lowpass_hz >= nyquist:
        rate = ("preproc.resample_hz" if cfg.preproc.resample_hz <= d.imu_sr else "data.imu_sr")
        raise ConfigError(f"preproc.lowpass_hz ({cfg.preproc.lowpass_hz:g}) must be below the Nyquist "
                          f"frequency {nyquist:g} Hz ({rate}/2): at or above it the filter removes "
                          "nothing; lower it, or set it to null for no filter")
    if d.dataset != "custom" and d.imu_channels != 6:
        raise ConfigError(f"data.imu_channels: {d.imu_channels} is not supported; loaders give 6 "
                          "channels (acc x,y,z in g, gyro x,y,z in deg/s)")
    if d.dataset == "custom":
        c = d.custom
        if c.channels and len(c.channels) != d.imu_channels:
            raise ConfigError(f"data.custom.channels names {len(c.channels)} channel(s) but "
                              f"data.imu_channels is {d.imu_channels}; make them agree")
        if c.layout == "acc_gyro" and d.imu_channels != 6:
            raise ConfigError(f"data.custom.layout acc_gyro needs data.imu_channels 6 (acc x,y,z, "
                              f"gyro x,y,z), got {d.imu_channels}; use layout acc (acc x,y,z first) "
                              "or other")
        if c.layout == "acc" and d.imu_channels < 3:
            raise ConfigError(f"data.custom.layout acc needs at least 3 channels (acc x,y,z first), "
                              f"got data.imu_channels {d.imu_channels}; use layout other")
        if c.layout == "other" and p.enabled:
            raise ConfigError("data.custom.layout other: dynamic patching measures motion energy "
                              "on an accelerometer in g, which this layout does not have; set "
                              "preproc.dynamic_patch.enabled: false (fixed patching)")


def _unique_key_loader():
    """A SafeLoader that refuses a mapping holding the same key twice (PyYAML keeps the last
    one silently, so a repeated key would override the first without a word). PyYAML is
    imported here, not with the module: the device runtime's commands read no YAML."""
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            seen: dict = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":   # `<<: *anchor` may repeat keys
                    continue
                key = self.construct_object(key_node, deep=deep)
                line = key_node.start_mark.line + 1
                try:
                    if key in seen:
                        raise ConfigError(f"duplicate key {key!r} (line {line}; first on line "
                                          f"{seen[key]}); keep one of them")
                    seen[key] = line
                except TypeError:   # an unhashable key: the base class reports it
                    continue
            return super().construct_mapping(node, deep=deep)

    return UniqueKeyLoader


def _read_yaml(path: Path) -> Any:
    """The YAML document in ``path``, or a one-line ConfigError naming it."""
    import yaml

    try:
        return yaml.load(path.read_text(encoding="utf-8"), Loader=_unique_key_loader())
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text YAML config (binary or non-UTF-8 content)") from None
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except yaml.YAMLError as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        at = f" (line {line + 1})" if line is not None else ""
        raise ConfigError(f"{path}: not valid YAML{at}: {getattr(exc, 'problem', exc)}") from None


def project_root(config_path: Path) -> Path:
    """The nearest folder above ``config_path`` holding pyproject.toml, else its folder."""
    for folder in config_path.resolve().parents:
        if (folder / "pyproject.toml").is_file():
            return folder
    return config_path.resolve().parent


def _apply_override(raw: dict, dotted: str, value: Any) -> None:
    node = raw
    *parents, last = dotted.split(".")
    for key in parents:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {dotted!r}: {key!r} is not a section")
    node[last] = value


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> Config:
    """Load and validate a YAML config; ``overrides`` maps dotted keys to new values.

    Errors name the file: ``configs/x.yaml: unknown key 'train.lrr' (did you mean ...)``.
    """
    path = require_file(path, "config file", error=ConfigError)
    raw = _read_yaml(path)
    if raw is None:
        log.warning("%s: the config file holds no settings (empty or only comments); every key "
                    "takes its default", path)
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    for dotted, value in (overrides or {}).items():
        _apply_override(raw, dotted, value)
    try:
        cfg = _build(Config, raw, "")
        _validate(cfg)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    root = Path(cfg.data.root).expanduser()
    if not root.is_absolute():
        root = project_root(path) / root
    cfg.data.root = str(root.resolve())
    cfg.source = str(path)
    return cfg


def config_from_dict(raw: dict[str, Any], source: str = "<dict>") -> Config:
    """Rebuild a config from :meth:`Config.to_dict` output (checkpoints, run folders)."""
    try:
        cfg = _build(Config, raw, "")
        _validate(cfg)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    cfg.source = source
    return cfg


def cache_hash(cfg: Config) -> str:
    """Hash of every setting that changes the token cache (not paths, not training keys).

    ``prepare`` stores it in the cache; later stages compare it with their own config and
    refuse a stale cache.
    """
    data = dataclasses.asdict(cfg.data)
    data.pop("root")
    if data["dataset"] != "custom":
        data.pop("custom")         # read only by the custom loader
    preproc = dataclasses.asdict(cfg.preproc)
    preproc.pop("augment")  # applied at training time, not stored in the cache
    payload = {"format": 1, "data": data, "preproc": preproc,
               "p_default": cfg.model.student.p_default}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]
