"""A scikit-learn-style classifier over the package's own pipeline, for data held in memory.

    from xtinyhar import HarClassifier
    clf = HarClassifier(**{"data.imu_sr": 100, "train.epochs": 20})
    clf.fit(X, y, subjects=subjects)   # X: list of (T_i, C) arrays or (N, T, C); y: strings or ints
    clf.predict(X_new); clf.predict_proba(X_new); clf.score(X_test, y_test)
    clf.export("exports/mine.onnx", int8=True)   # or "exports/mine.tflite" (the tflite extra)

A scikit-learn estimator (``get_params``/``set_params``, ``sklearn.base.clone``). Each
recording goes through what ``xtinyhar prepare`` does (``data.custom`` units, resampling to
``preproc.resample_hz``, windows, dynamic patching: ``build_token_cache``) and the student is
trained by ``fit_student`` without a teacher (there is no skeleton). A recording's
prediction is the mean of its windows' probabilities, as in evaluation.

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
from sklearn.base import BaseEstimator, ClassifierMixin

from xtinyhar.config import Config, _apply_override, config_from_dict, load_config
from xtinyhar.errors import ConfigError, DataError, XTinyHARError

log = logging.getLogger(__name__)


class NotFittedError(XTinyHARError, AttributeError):
    """A fitted attribute or method used before ``fit`` (an AttributeError too, so that
    ``hasattr(clf, "classes_")`` is False, as scikit-learn expects)."""

OWN_DATA_DEFAULTS: dict[str, Any] = {
    "data.window": 100, "data.stride": 50, "preproc.resample_hz": 50.0,
    "model.student.L": 2, "model.student.D": 64, "model.student.heads": 4,
    "model.student.p_default": 20, "train.epochs": 30, "train.warmup_epochs": 2, "train.min_steps": 1400,
    "train.lr": 1e-3, "eval.val_subjects": 1,
}
"""What ``HarClassifier()`` starts from without a config: the values of
``configs/own_data.yaml`` (a test checks they agree), over the package defaults."""


def _recordings(X) -> list[np.ndarray]:
    if isinstance(X, np.ndarray) and X.dtype != object:
        if X.ndim != 3:
            raise DataError(f"X has shape {X.shape}; expected (N, T, C) or a list of (T_i, C) arrays")
        return list(X)
    try:
        return [np.asarray(x) for x in X]
    except TypeError:
        raise DataError("X must be an (N, T, C) array or a list of (T_i, C) arrays") from None


class HarClassifier(ClassifierMixin, BaseEstimator):
    """``HarClassifier(config=None, overrides=None, **overrides)``: ``config`` is a YAML path, a
    :class:`Config`, None (``OWN_DATA_DEFAULTS``: the values of ``configs/own_data.yaml``) or
    a dict of overrides (of those defaults); overrides are dotted keys as ``--set``
    takes them (``{"train.epochs": 5}``). ``data.dataset`` is always ``custom``;
    ``data.imu_channels`` follows X unless given; ``data.custom.layout`` must be given for
    data that is not acc x,y,z + gyro x,y,z (6 channels).

    A scikit-learn estimator: ``get_params()`` gives ``config`` and ``overrides`` (keyword
    overrides are merged into it), ``set_params`` takes those or dotted keys
    (``set_params(**{"train.epochs": 5})``), and ``sklearn.base.clone`` gives an unfitted copy."""

    def __init__(self, config: str | Path | Config | dict | None = None,
                 overrides: dict[str, Any] | None = None, **kw_overrides: Any):
        self.config = config      # stored as given, as scikit-learn's clone requires
        self.overrides = {**(overrides or {}), **kw_overrides} if kw_overrides else overrides
        self._resolve(channels=None)   # a bad key or value fails here, not in fit

    def set_params(self, **params: Any) -> "HarClassifier":
        """``config``/``overrides`` as scikit-learn sets them; dotted keys are added to
        ``overrides``. Checked at once, like the constructor."""
        before = (self.config, self.overrides)
        dotted = {k: v for k, v in params.items() if "." in k}
        try:
            super().set_params(**{k: v for k, v in params.items() if "." not in k})
            if dotted:
                self.overrides = {**(self.overrides or {}), **dotted}
            self._resolve(channels=None)
        except Exception:
            self.config, self.overrides = before   # a rejected value changes nothing
            raise
        return self

    # ------------------------------------------------------------------ config

    def _resolve(self, channels: int | None) -> Config:
        config, overrides = self.config, dict(self.overrides or {})
        if isinstance(config, dict):   # HarClassifier({"train.epochs": 5})
            config, overrides = None, {**config, **overrides}
        if config is None:
            overrides = {**OWN_DATA_DEFAULTS, **overrides}
        overrides["data.dataset"] = "custom"
        if channels is not None and "data.imu_channels" not in overrides:
            overrides["data.imu_channels"] = channels
            if channels != 6 and "data.custom.layout" not in overrides:
                raise ConfigError(f"X has {channels} channel(s): say what they are with "
                                  "data.custom.layout 'acc' (acc x,y,z in the first three) or "
                                  "'other' (with preproc.dynamic_patch.enabled False)")
        if config is None or isinstance(config, Config):
            raw = config.to_dict() if isinstance(config, Config) else {}
            try:
                for key, value in overrides.items():
                    _apply_override(raw, key, value)
            except ConfigError as exc:
                raise ConfigError(f"HarClassifier: {exc}") from None
            source = getattr(config, "source", "<defaults>") if config is not None else "<defaults>"
            cfg = config_from_dict(raw, source=f"HarClassifier ({source})")
        else:
            cfg = load_config(config, overrides)
        self._cfg = cfg
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
            imu = _recording(imu, f"X[{i}]", self._fit_cfg.data)
            trials.append(Trial(imu=imu, imu_hz=float(self._fit_cfg.data.imu_sr), skeleton=None,
                                skeleton_hz=None, label=0, subject=int(ids[i]),
                                trial_id=f"x{i}", dataset="custom", subject_known=known))
        return trials

    def _cache(self, trials):
        from xtinyhar.preprocess.tokens import build_token_cache
        return build_token_cache(self._fit_cfg, trials, list(self._names))

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
        for name in [k for k in vars(self) if k.endswith("_")]:   # a refit starts unfitted
            delattr(self, name)
        self._fit_cfg = cfg
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
        self.cfg_ = cfg
        return self

    @property
    def classes_(self) -> np.ndarray:
        self._check_fitted()
        if self._int_labels:
            return np.array([int(n) for n in self._names])
        return np.array(self._names)

    def _check_fitted(self) -> None:
        if getattr(self, "model_", None) is None:
            raise NotFittedError("HarClassifier is not fitted; call fit(X, y) first")

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

    def export(self, path: str | Path, int8: bool = False, X=None, y=None, *,
               tolerance: float = 1e-4, int8_min_agreement: float = 0.95,
               int8_max_drop: float = 0.02) -> dict:
        """Write the model as ``xtinyhar export`` does, through the same checks
        (``xtinyhar.export.to_onnx.export_with_checks``): ONNX for a path ending in ``.onnx``,
        TFLite for ``.tflite`` (the ``tflite`` extra). ``int8`` also writes
        ``<name>_int8.onnx`` (static, calibrated on the training windows) or
        ``<name>_int8.tflite`` (dynamic range), refused by ``Int8Guard(int8_min_agreement,
        int8_max_drop)`` as ``export --int8`` refuses it. Parity and accuracy are measured on
        ``X``/``y`` when given, else on the validation recordings of ``fit``. Returns the
        export's reports (``"fp32"``, and ``"int8"``)."""
        from xtinyhar.export.to_onnx import Int8Guard, export_checkpoint

        self._check_fitted()
        path = Path(path)
        if path.suffix not in (".onnx", ".tflite"):
            raise XTinyHARError(f"{path}: export writes ONNX or TFLite; the path should end in "
                                ".onnx or .tflite")
        guard = Int8Guard(int8_min_agreement, int8_max_drop)   # checked before any work
        if path.suffix == ".tflite":
            from xtinyhar.export.to_tflite import export_checkpoint_tflite as write
        else:
            write = export_checkpoint
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
        return write(self.model_, payload, cache, path, int8=int8, tolerance=tolerance, guard=guard)


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
