"""A scikit-learn-style classifier over the package's own pipeline, for data held in memory.

    from xtinyhar import HarClassifier
    clf = HarClassifier(**{"data.imu_sr": 100, "train.epochs": 20})
    clf.fit(X, y, subjects=subjects)   # X: list of (T_i, C) arrays or (N, T, C); y: strings or ints
    clf.predict(X_new); clf.predict_proba(X_new); clf.score(X_test, y_test)
    clf.export("exports/mine.onnx")

Each recording goes through what ``xtinyhar prepare`` does (``data.custom`` units,
resampling to ``preproc.resample_hz``, windows, dynamic patching: ``build_token_cache``) and
the student is trained by ``fit_student`` without a teacher (there is no skeleton). A
recording's prediction is the mean of its windows' probabilities, as in evaluation.

Validation (early stopping, model selection) is carved from the training data:
``eval.val_subjects`` subjects when ``subjects`` are given, else a stratified fifth of the
recordings. ``export`` checks the exported file against PyTorch on held-out windows; without
``X``/``y`` passed to it, those are the validation recordings, so the accuracy it reports is
a validation accuracy, not a test one.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from xtinyhar.config import Config, _apply_override, config_from_dict, load_config
from xtinyhar.errors import ConfigError, DataError, XTinyHARError

log = logging.getLogger(__name__)


def _recordings(X) -> list[np.ndarray]:
    if isinstance(X, np.ndarray) and X.dtype != object:
        if X.ndim != 3:
            raise DataError(f"X has shape {X.shape}; expected (N, T, C) or a list of (T_i, C) arrays")
        return list(X)
    try:
        return [np.asarray(x) for x in X]
    except TypeError:
        raise DataError("X must be an (N, T, C) array or a list of (T_i, C) arrays") from None


class HarClassifier:
    """``HarClassifier(config=None, overrides=None, **overrides)``: ``config`` is a YAML path, a
    :class:`Config`, None (the package defaults) or a dict of overrides; overrides are dotted keys as ``--set``
    takes them (``{"train.epochs": 5}``). ``data.dataset`` is always ``custom``;
    ``data.imu_channels`` follows X unless given; ``data.custom.layout`` must be given for
    data that is not acc x,y,z + gyro x,y,z (6 channels)."""

    def __init__(self, config: str | Path | Config | None = None,
                 overrides: dict[str, Any] | None = None, **kw_overrides: Any):
        if isinstance(config, dict):   # HarClassifier({"train.epochs": 5})
            config, overrides = None, {**config, **(overrides or {})}
        self.config = config
        self.overrides = {**(overrides or {}), **kw_overrides}
        self.cfg_: Config | None = None
        self.model_ = None
        self._resolve(channels=None)   # a bad key or value fails here, not in fit

    # ------------------------------------------------------------------ config

    def _resolve(self, channels: int | None) -> Config:
        overrides = dict(self.overrides)
        overrides["data.dataset"] = "custom"
        if channels is not None and "data.imu_channels" not in overrides:
            overrides["data.imu_channels"] = channels
            if channels != 6 and "data.custom.layout" not in overrides:
                raise ConfigError(f"X has {channels} channel(s): say what they are with "
                                  "data.custom.layout 'acc' (acc x,y,z in the first three) or "
                                  "'other' (with preproc.dynamic_patch.enabled False)")
        if self.config is None or isinstance(self.config, Config):
            raw = self.config.to_dict() if isinstance(self.config, Config) else {}
            try:
                for key, value in overrides.items():
                    _apply_override(raw, key, value)
            except ConfigError as exc:
                raise ConfigError(f"HarClassifier: {exc}") from None
            source = getattr(self.config, "source", "<defaults>") if self.config else "<defaults>"
            cfg = config_from_dict(raw, source=f"HarClassifier ({source})")
        else:
            cfg = load_config(self.config, overrides)
        self.cfg_ = cfg
        return cfg

    # ------------------------------------------------------------------ data

    def _trials(self, X, y=None, subjects=None, *, first_subject: int = 1):
        from xtinyhar.data.custom import _as_key, _recording, _subject_ids
        from xtinyhar.data.trial import Trial

        series = _recordings(X)
        n = len(series)
        if n == 0:
            raise DataError("X holds no recordings")
        for name, values in (("y", y), ("subjects", subjects)):
            if values is not None and len(values) != n:
                raise DataError(f"{name} has {len(values)} entries, X holds {n} recording(s)")
        known = subjects is not None
        ids = _subject_ids([_as_key(s) for s in subjects], "subjects")[0] if known else \
            list(range(first_subject, first_subject + n))
        trials = []
        for i, imu in enumerate(series):
            imu = _recording(imu, f"X[{i}]", self.cfg_.data)
            trials.append(Trial(imu=imu, imu_hz=float(self.cfg_.data.imu_sr), skeleton=None,
                                skeleton_hz=None, label=0, subject=int(ids[i]),
                                trial_id=f"x{i}", dataset="custom", subject_known=known))
        return trials

    def _cache(self, trials):
        from xtinyhar.preprocess.tokens import build_token_cache
        return build_token_cache(self.cfg_, trials, list(self._names))

    # ------------------------------------------------------------------ estimator API

    def fit(self, X, y, subjects=None) -> "HarClassifier":
        """Train the student on all of X (less a validation part carved from it)."""
        from xtinyhar.data.custom import _as_key, class_names_of
        from xtinyhar.data.splits import carve_recordings, carve_validation, VAL_FRACTION
        from xtinyhar.train.tasks import fit_student

        series = _recordings(X)
        channels = {s.shape[1] if s.ndim == 2 else -1 for s in series}
        if -1 in channels or len(channels) != 1:
            raise DataError(f"every recording in X must be (T_i, C) with one C; got channel counts "
                            f"{sorted(channels)}")
        cfg = self._resolve(channels=channels.pop())
        if y is None:
            raise DataError("y is required")
        labels = [_as_key(v) for v in y]
        self._names = class_names_of(labels)
        if len(self._names) < 2:
            raise DataError("y holds one class; a classifier needs at least 2")
        self._int_labels = all(not isinstance(v, str) and float(v).is_integer()
                               for v in np.asarray(y, dtype=object))
        trials = self._trials(series, y, subjects)
        index = {name: k for k, name in enumerate(self._names)}
        for trial, label in zip(trials, labels):
            trial.label = index[label]
        cache = self._cache(trials)
        everything = np.arange(len(cache))
        if subjects is not None:
            train, val = carve_validation(cache.subject, everything, cfg.eval.val_subjects, cfg.train.seed)
        else:
            train, val = carve_recordings(cache.subject, cache.label, everything,
                                          VAL_FRACTION if cfg.eval.val_subjects else 0.0, cfg.train.seed)
        trained = fit_student(cfg, cache, train, val, teacher=None, desc="HarClassifier")
        self.model_, self.fit_result_ = trained.model.eval(), trained.result
        self._cache_fit = cache
        self._train, self._val = train, val
        self.train_subjects_ = sorted(int(s) for s in np.unique(cache.subject[train]))
        return self

    @property
    def classes_(self) -> np.ndarray:
        self._check_fitted()
        if self._int_labels:
            return np.array([int(n) for n in self._names])
        return np.array(self._names)

    def _check_fitted(self) -> None:
        if self.model_ is None:
            raise XTinyHARError("HarClassifier is not fitted; call fit(X, y) first")

    def predict_proba(self, X) -> np.ndarray:
        """(N, K) probabilities: each recording the mean of its windows' (columns: ``classes_``)."""
        from xtinyhar.preprocess.arrays import softmax
        from xtinyhar.evaluate.metrics import pool_trials
        from xtinyhar.train.loop import predict_logits
        from xtinyhar.train.tasks import student_forward

        self._check_fitted()
        cache = self._cache(self._trials(X))
        logits = predict_logits(self.model_, {"imu": cache.imu, "label": cache.label}, student_forward)
        ids, probs = pool_trials(softmax(logits), cache.trial_index)
        out = np.zeros((len(cache.trial_id), len(self._names)))
        out[ids] = probs
        return out

    def predict(self, X) -> np.ndarray:
        return self.classes_[self.predict_proba(X).argmax(axis=1)]

    def score(self, X, y) -> float:
        """Accuracy over recordings."""
        from xtinyhar.data.custom import _as_key

        predicted = [_as_key(v) for v in self.predict(X)]
        return float(np.mean([p == _as_key(t) for p, t in zip(predicted, y)]))

    # ------------------------------------------------------------------ export

    def _payload(self, held_out_subjects: list[int] | None = None) -> dict:
        from xtinyhar import __version__

        return {"format": "xtinyhar-checkpoint-1", "kind": "student", "version": __version__,
                "model_config": self.model_.cfg.to_dict(), "config": self.cfg_.to_dict(),
                "class_names": list(self._names), "cache_hash": self._cache_fit.meta["config_hash"],
                "train_subjects": list(self.train_subjects_), "val_subjects": [],
                "test_subjects": held_out_subjects}

    def export(self, path: str | Path, int8: bool = False, X=None, y=None) -> dict:
        """Write an ONNX file (and ``<name>_int8.onnx`` with ``int8``) with the export's checks
        (``xtinyhar.export.to_onnx.export_checkpoint``). Parity and accuracy are measured on
        ``X``/``y`` when given, else on the validation recordings of ``fit``. Returns the
        export's reports."""
        from xtinyhar.export.to_onnx import export_checkpoint

        self._check_fitted()
        path = Path(path)
        if path.suffix != ".onnx":
            raise XTinyHARError(f"{path}: export writes ONNX; the path should end in .onnx")
        if X is not None:
            if y is None:
                raise DataError("export: X given without y")
            from xtinyhar.data.custom import _as_key
            first = int(self._cache_fit.subject.max()) + 1   # subjects the model never saw
            trials = self._trials(X, y, first_subject=first)
            index = {name: k for k, name in enumerate(self._names)}
            for trial, label in zip(trials, y):
                if _as_key(label) not in index:
                    raise DataError(f"export: label {label!r} is not one of the fitted classes")
                trial.label = index[_as_key(label)]
            held = self._cache(trials)
            cache = _merge(self._cache_fit, self._train, held)
            payload = self._payload(sorted(int(s) for s in np.unique(held.subject)))
        else:
            if len(self._val) == 0:
                raise XTinyHARError("export needs held-out windows for its parity check and fit "
                                    "kept no validation recordings; pass export(path, X=..., y=...)")
            cache = self._cache_fit
            val_subjects = sorted(int(s) for s in np.unique(cache.subject[self._val]))
            payload = self._payload(val_subjects)
        return export_checkpoint(self.model_, payload, cache, path, int8=int8)


def _merge(fit_cache, train: np.ndarray, held):
    """A token cache of the fit's training windows followed by the held-out ones (only imu,
    label, subject and the trial records are read by the export)."""
    from dataclasses import fields

    from xtinyhar.preprocess.tokens import PER_TRIAL, TokenCache

    parts = {}
    n_trials = len(fit_cache.trial_id)
    for f in fields(TokenCache):
        a, b = getattr(fit_cache, f.name), getattr(held, f.name)
        if f.name == "meta" or a is None:
            parts[f.name] = a
        elif f.name == "trial_index":
            parts[f.name] = np.concatenate([a[train], b + n_trials])
        elif f.name in PER_TRIAL or f.name == "trial_id":
            parts[f.name] = np.concatenate([a, b])
        else:
            parts[f.name] = np.concatenate([a[train], b])
    return TokenCache(**parts)
