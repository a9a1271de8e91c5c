"""The token cache: every trial resampled, aligned, windowed and dynamically patched.

``build_token_cache`` turns trials into windows (physical units: normalisation and
augmentation are fitted and applied per training fold later, never here, so the cache
cannot leak test statistics) plus the dynamic-patching result of each window. The cache is
one ``.npz`` written atomically (temp file, then rename) that records the hash of the
config it was built from; ``load_token_cache`` refuses a cache built from another config.
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from xtinyhar import __version__
from xtinyhar.config import Config, cache_hash
from xtinyhar.data.trial import Trial
from xtinyhar.errors import ConfigError, DataError, StaleCacheError, require_file
from xtinyhar.io import atomic_write
from xtinyhar.preprocess.arrays import window_starts
from xtinyhar.preprocess.patching import (fixed_patch_lengths, gather_tokens, max_tokens,
                                          motion_energy, patch_lengths, token_positions)
from xtinyhar.preprocess.resample import resample_trial
from xtinyhar.preprocess.windows import make_windows, trial_windows

MAX_CACHE_GB = float(os.environ.get("XTINYHAR_MAX_CACHE_GB", 4))   # a larger cache is refused


@dataclass
class TokenCache:
    """Windows of a whole dataset and their tokens; see docs/design.md.

    Per window (N): imu (N, W, C) and skeleton (N, W_s, J, 3) in physical units, label,
    subject, trial_index, start, n_valid, energy, patch_len, tokens (N, n_max, p_default, C),
    token_mask (N, n_max), token_centre and token_width (N, n_max) in samples.
    Per trial: trial_id, trial_label, trial_subject, trial_placement. ``meta`` holds the
    config hash, dataset, rates, window and class names.
    """
    imu: np.ndarray
    skeleton: np.ndarray | None
    label: np.ndarray
    subject: np.ndarray
    trial_index: np.ndarray
    start: np.ndarray
    n_valid: np.ndarray
    energy: np.ndarray
    patch_len: np.ndarray
    tokens: np.ndarray
    token_mask: np.ndarray
    token_centre: np.ndarray
    token_width: np.ndarray
    trial_id: np.ndarray
    trial_label: np.ndarray
    trial_subject: np.ndarray
    trial_placement: np.ndarray
    meta: dict

    @property
    def class_names(self) -> list[str]:
        return list(self.meta["class_names"])

    def __len__(self) -> int:
        return len(self.imu)


def build_token_cache(cfg: Config, trials: list[Trial], class_names: list[str]) -> TokenCache:
    """Resample + align each trial, cut windows, measure motion energy, patch."""
    pre, dp = cfg.preproc, cfg.preproc.dynamic_patch
    with_skeleton = all(t.skeleton is not None for t in trials)
    imus, skeletons = [], []
    for trial in trials:
        if trial.imu.shape[1] != cfg.data.imu_channels:
            raise DataError(f"{trial.trial_id}: IMU has {trial.imu.shape[1]} channels, "
                            f"config data.imu_channels is {cfg.data.imu_channels}")
        imu, skel = resample_trial(trial.imu, trial.imu_hz,
                                   trial.skeleton if with_skeleton else None,
                                   resample_hz=pre.resample_hz, skeleton_hz=pre.skeleton_hz,
                                   lowpass_hz=pre.lowpass_hz)
        imus.append(imu)
        skeletons.append(skel)
    labels, subjects = [t.label for t in trials], [t.subject for t in trials]
    ratio = pre.skeleton_hz / pre.resample_hz
    joints = trials[0].skeleton.shape[1] if with_skeleton and trials else 0
    check_windowing(cfg, [len(imu) for imu in imus], joints)
    if cfg.data.segmentation == "trial":
        windows = trial_windows(imus, skeletons if with_skeleton else None, labels, subjects,
                                window=cfg.data.window, skeleton_ratio=ratio)
    else:
        windows = make_windows(imus, skeletons if with_skeleton else None, labels, subjects,
                               window=cfg.data.window, stride=cfg.data.stride, skeleton_ratio=ratio)
    energy = motion_energy(windows.imu, pre.resample_hz, windows.n_valid)
    if dp.enabled:
        lengths = patch_lengths(energy, p_min=dp.p_min, p_max=dp.p_max,
                                tau_low=dp.tau_low, tau_high=dp.tau_high)
        n_max = max_tokens(cfg.data.window, dp.p_min)
    else:
        lengths = fixed_patch_lengths(len(windows), cfg.model.student.p_default)
        n_max = max_tokens(cfg.data.window, cfg.model.student.p_default)
    grid = token_positions(lengths, window=cfg.data.window, n_max=n_max,
                           p_default=cfg.model.student.p_default)
    tokens = gather_tokens(windows.imu, grid.positions, grid.mask)
    meta = {
        "config_hash": cache_hash(cfg), "dataset": cfg.data.dataset, "version": __version__,
        "imu_hz": pre.resample_hz, "skeleton_hz": pre.skeleton_hz if with_skeleton else None,
        "window": cfg.data.window, "stride": cfg.data.stride, "segmentation": cfg.data.segmentation,
        "class_names": list(class_names),
        "channels": channel_names(cfg),
    }
    if any(t.split is not None for t in trials):   # a train/test split that came with the data
        meta["trial_split"] = [t.split or "" for t in trials]
    if not all(t.subject_known for t in trials):    # subject only numbers the recording
        meta["subjects_known"] = False
    return TokenCache(
        imu=windows.imu, skeleton=windows.skeleton, label=windows.label,
        subject=windows.subject, trial_index=windows.trial_index, start=windows.start,
        n_valid=windows.n_valid, energy=energy, patch_len=lengths, tokens=tokens,
        token_mask=grid.mask, token_centre=grid.centre, token_width=grid.width,
        trial_id=np.array([t.trial_id for t in trials]),
        trial_label=np.array([t.label for t in trials], dtype=np.int64),
        trial_subject=np.array([t.subject for t in trials], dtype=np.int64),
        trial_placement=np.array([t.placement for t in trials]),
        meta=meta)


DEFAULT_CHANNELS = ["acc_x_g", "acc_y_g", "acc_z_g", "gyro_x_dps", "gyro_y_dps", "gyro_z_dps"]


def channel_names(cfg: Config) -> list[str]:
    """Names of the IMU channels: the built-in datasets' six, or a custom dataset's own."""
    d = cfg.data
    if d.dataset != "custom" or (d.custom.layout == "acc_gyro" and not d.custom.channels):
        return list(DEFAULT_CHANNELS)
    return list(d.custom.channels) or [f"ch{i}" for i in range(d.imu_channels)]


def window_valid_counts(lengths: list[int], window: int, stride: int) -> np.ndarray:
    """Real (not padded) samples of every sliding window the trials of ``lengths`` give."""
    return np.concatenate([np.minimum(n - window_starts(n, window, stride), window)
                           for n in lengths]) if lengths else np.zeros(0, np.int64)


def bytes_per_window(cfg: Config, joints: int) -> int:
    """Bytes one window takes in the cache: IMU, skeleton, tokens and per-window records."""
    d, s, dp = cfg.data, cfg.model.student, cfg.preproc.dynamic_patch
    n_max = max_tokens(d.window, dp.p_min if dp.enabled else s.p_default)
    frames = int(round(d.window * cfg.preproc.skeleton_hz / cfg.preproc.resample_hz))
    return (4 * d.window * d.imu_channels + 4 * frames * joints * 3
            + 4 * n_max * s.p_default * d.imu_channels + 9 * n_max + 6 * 8 + 4)


def _size(n_bytes: float) -> str:
    return f"{n_bytes / 1e9:.1f} GB" if n_bytes >= 1e9 else f"{n_bytes / 1e6:.0f} MB"


def check_windowing(cfg: Config, lengths: list[int], joints: int) -> None:
    """Refuse, before any window is cut, a config that makes most windows mostly padding
    (a window longer than most trials, or a very low sample rate) or whose cache would be
    absurdly large; the message says how many windows and what to change."""
    d, hz = cfg.data, cfg.preproc.resample_hz
    if not lengths:
        return
    if d.segmentation == "sliding":
        valid = window_valid_counts(lengths, d.window, d.stride)
        padded = int((valid < d.window / 2).sum())
        if padded > len(valid) / 2:
            median = int(np.median(lengths))
            change = f"choose a data.window of at most {median} samples"
            if hz < d.imu_sr:
                change = (f"raise preproc.resample_hz towards the sensor's {d.imu_sr:g} Hz "
                          f"(data.imu_sr) or {change}")
            raise ConfigError(
                f"{cfg.source}: {padded} of {len(valid)} windows would be more than half padding: "
                f"data.window is {d.window} samples but the trials hold {min(lengths)}..{max(lengths)} "
                f"(median {median}) at preproc.resample_hz {hz:g} Hz; {change}")
        n_windows = len(valid)
    else:
        n_windows = len(lengths)
    size = n_windows * bytes_per_window(cfg, joints)
    if size > MAX_CACHE_GB * 1e9:
        raise ConfigError(
            f"{cfg.source}: the token cache would take about {_size(size)} ({n_windows} windows "
            f"of {bytes_per_window(cfg, joints) / 1e3:.0f} KB), over the {MAX_CACHE_GB:g} GB limit; "
            "lower data.window, raise data.stride or use fewer trials (or raise the limit with "
            "XTINYHAR_MAX_CACHE_GB if you mean it)")


def save_token_cache(path: str | Path, cache: TokenCache) -> None:
    """Write the cache as an uncompressed .npz (no pickled objects), atomically."""
    arrays = {f.name: getattr(cache, f.name) for f in fields(cache)
              if f.name != "meta" and getattr(cache, f.name) is not None}
    arrays["meta"] = np.array(json.dumps(cache.meta))
    atomic_write(Path(path), lambda handle: np.savez(handle, **arrays))


def load_token_cache(path: str | Path, cfg: Config | None = None) -> TokenCache:
    """Read a cache; with ``cfg``, refuse one built from a different config."""
    path = require_file(path, "token cache", "; build it with `xtinyhar prepare`")
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != b"PK\x03\x04":
        what = "an empty file" if not magic else "not an .npz archive"
        raise DataError(f"{path}: not a readable token cache ({what}); build it with `xtinyhar prepare`")
    try:
        content = np.load(path, allow_pickle=False)
        if not isinstance(content, np.lib.npyio.NpzFile):   # a single .npy array
            raise ValueError("a single array, not an .npz archive")
        with content:
            arrays = {name: content[name] for name in content.files}
        meta = json.loads(str(arrays.pop("meta")))
        if not isinstance(meta, dict):
            raise ValueError("meta is not a JSON object")
    except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile, json.JSONDecodeError) as exc:
        reason = f"no {exc}" if isinstance(exc, KeyError) else str(exc) or type(exc).__name__
        raise DataError(f"{path}: not a readable token cache ({reason})") from None
    expected = {f.name for f in fields(TokenCache)} - {"meta", "skeleton"}
    missing = expected - set(arrays)
    if missing:
        raise DataError(f"{path}: token cache lacks {', '.join(sorted(missing))}; rebuild it "
                        "with `xtinyhar prepare`")
    unknown = set(arrays) - expected - {"skeleton"}
    if unknown:
        raise DataError(f"{path}: not a token cache: unknown array(s) {', '.join(sorted(unknown))}")
    if cfg is not None and meta.get("config_hash") != cache_hash(cfg):
        raise StaleCacheError(
            f"{path}: stale token cache: built from a config with hash {meta.get('config_hash')}, "
            f"but {cfg.source} hashes to {cache_hash(cfg)}; rerun `xtinyhar prepare`")
    cache = TokenCache(skeleton=arrays.pop("skeleton", None), meta=meta, **arrays)
    _check_contents(path, cache)
    return cache


PER_WINDOW = ("label", "subject", "trial_index", "start", "n_valid", "energy", "patch_len",
              "tokens", "token_mask", "token_centre", "token_width")
PER_TRIAL = ("trial_label", "trial_subject", "trial_placement")


def _check_contents(path: Path, cache: TokenCache) -> None:
    """Shapes, finite values and labels of a loaded cache: a damaged or hand-edited file
    stops here with its name, not later inside a model."""
    def bad(what: str) -> DataError:
        return DataError(f"{path}: {what}; rebuild it with `xtinyhar prepare`")

    imu = cache.imu
    if imu.ndim != 3 or not np.issubdtype(imu.dtype, np.floating):
        raise bad(f"imu must be a float (windows, samples, channels) array, got {imu.dtype} {imu.shape}")
    channels = len(cache.meta.get("channels", [None] * imu.shape[2]))
    if imu.shape[2] != channels:
        raise bad(f"imu has {imu.shape[2]} channels, its meta names {channels}")
    window = cache.meta.get("window", imu.shape[1])
    if imu.shape[1] != window:
        raise bad(f"imu windows hold {imu.shape[1]} samples, its meta says {window}")
    n = len(imu)
    for name in PER_WINDOW + (("skeleton",) if cache.skeleton is not None else ()):
        if len(getattr(cache, name)) != n:
            raise bad(f"{name} has {len(getattr(cache, name))} rows for {n} windows")
    trials = len(cache.trial_id)
    for name in PER_TRIAL:
        if len(getattr(cache, name)) != trials:
            raise bad(f"{name} has {len(getattr(cache, name))} rows for {trials} trials")
    for name in ("imu", "skeleton", "energy"):
        values = getattr(cache, name)
        if values is not None and np.issubdtype(values.dtype, np.floating):
            finite = np.isfinite(values).reshape(len(values), -1).all(axis=1)
            if not finite.all():
                raise bad(f"{name} holds NaN or inf in {int((~finite).sum())} window(s) "
                          f"(first: window {int(np.argmin(finite))})")
    classes = len(cache.meta.get("class_names", ()))
    for name in ("label", "trial_label"):
        labels = getattr(cache, name)
        if len(labels) and (labels.min() < 0 or labels.max() >= classes):
            raise bad(f"{name} holds {int(labels.min() if labels.min() < 0 else labels.max())}, "
                      f"outside 0..{classes - 1} ({classes} class names)")
    if n and (cache.trial_index.min() < 0 or cache.trial_index.max() >= trials):
        raise bad(f"trial_index points outside the {trials} trials")


def summarize(cache: TokenCache) -> str:
    """A human-readable summary: trials, windows, classes, subjects, patch lengths."""
    lengths, counts = np.unique(cache.patch_len, return_counts=True)
    width = max(counts)
    hist = "\n".join(f"  p={int(p):3d} {int(c):6d} {'#' * max(1, round(40 * c / width))}"
                     for p, c in zip(lengths, counts))
    per_class = np.bincount(cache.trial_label, minlength=len(cache.class_names))
    skel = "none" if cache.skeleton is None else f"{cache.skeleton.shape[1:]} at {cache.meta['skeleton_hz']} Hz"
    if cache.meta.get("segmentation", "sliding") == "trial":
        windows = (f"{len(cache)}, one per trial: each whole trial stretched onto "
                   f"{cache.imu.shape[1]} samples")
    else:
        windows = (f"{len(cache)} of {cache.imu.shape[1]} samples at {cache.meta['imu_hz']} Hz, "
                   f"stride {cache.meta['stride']}; {int((cache.n_valid < cache.imu.shape[1]).sum())} padded")
    return "\n".join([
        f"dataset     {cache.meta['dataset']} (config hash {cache.meta['config_hash']})",
        f"trials      {len(cache.trial_id)}",
        f"windows     {windows}",
        f"skeleton    {skel}",
        f"classes     {len(cache.class_names)} (trials per class {per_class.min()}..{per_class.max()})",
        f"subjects    {len(np.unique(cache.trial_subject))}: "
        f"{', '.join(str(s) for s in np.unique(cache.trial_subject))}",
        f"tokens      {cache.tokens.shape[1]} slots x {cache.tokens.shape[2]} points; "
        f"energy (g/20 ms) median {np.median(cache.energy):.3f}",
        "patch-length histogram:",
        hist,
    ])
