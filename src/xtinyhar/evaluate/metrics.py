"""Classification metrics, per-trial pooling and cross-validation summaries.

Every number comes from scikit-learn, never from a hand-written formula, so our values match
what other papers report with the same library. Results are plain dicts of Python floats,
ints and lists so they go straight into ``metrics.json`` / ``summary.json``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    cohen_kappa_score,
    confusion_matrix,
    precision_recall_fscore_support,
)

AVERAGINGS = ("macro", "micro")


def _check_labels(y: np.ndarray, name: str, n_classes: int) -> np.ndarray:
    """Return ``y`` as a 1-D int64 array of labels in ``[0, n_classes)`` or raise ValueError."""
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{name} must hold integer class indices, got dtype {y.dtype} "
                         f"(use .argmax(axis=1) on probabilities or .astype(int))")
    if y.size and (y.min() < 0 or y.max() >= n_classes):
        raise ValueError(f"{name} holds labels outside [0, {n_classes}) "
                         f"(min {y.min()}, max {y.max()}); check class_names")
    return y.astype(np.int64)


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, class_names: list[str],
                           averaging: str = "macro") -> dict:
    """Accuracy, Cohen's kappa, macro/micro precision-recall-F1, per-class scores, confusion.

    ``headline_f1`` is the F1 of ``averaging`` ("macro" or "micro"), the one a table shows.
    ``per_class`` and ``confusion`` cover all ``K = len(class_names)`` classes, so a class
    absent from this fold still appears (support 0, scores 0). Macro averages follow
    scikit-learn's default and average over the classes present in ``y_true`` or ``y_pred``,
    so a class missing from a test fold does not drag the macro-F1 down with a fake 0.
    ``kappa`` is ``None`` where it is undefined (both label vectors are one and the same
    single class), which keeps the dict strict JSON. ``confusion[i][j]`` counts samples of
    true class ``i`` predicted as ``j``.
    """
    if averaging not in AVERAGINGS:
        raise ValueError(f"averaging must be one of {AVERAGINGS}, got {averaging!r}")
    k = len(class_names)
    if k < 1:
        raise ValueError("class_names is empty; pass the dataset's class names")
    y_true = _check_labels(y_true, "y_true", k)
    y_pred = _check_labels(y_pred, "y_pred", k)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true and y_pred differ in length ({y_true.size} vs {y_pred.size})")
    if y_true.size == 0:
        raise ValueError("y_true and y_pred are empty; there is nothing to score")
    labels = list(range(k))

    out: dict = {"n": int(y_true.size), "averaging": averaging,
                 "accuracy": float(accuracy_score(y_true, y_pred))}
    with warnings.catch_warnings():  # undefined kappa is reported as None below
        warnings.simplefilter("ignore")
        kappa = cohen_kappa_score(y_true, y_pred, labels=labels, replace_undefined_by=np.nan)
    out["kappa"] = None if np.isnan(kappa) else float(kappa)
    for avg in AVERAGINGS:
        p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, average=avg,
                                                     zero_division=0)
        out[f"precision_{avg}"] = float(p)
        out[f"recall_{avg}"] = float(r)
        out[f"f1_{avg}"] = float(f)
    out["headline_f1"] = out[f"f1_{averaging}"]

    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, average=None,
                                                 zero_division=0)
    out["per_class"] = {str(name): {"precision": float(p[i]), "recall": float(r[i]),
                                    "f1": float(f[i]), "support": int(s[i])}
                        for i, name in enumerate(class_names)}
    out["confusion"] = confusion_matrix(y_true, y_pred, labels=labels).tolist()
    return out


def pool_trials(window_probs: np.ndarray, trial_index: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
    """Average window probabilities per trial: a trial's prediction is its windows' mean.

    Returns ``(trial_ids, trial_probs)``: the sorted unique ids of ``trial_index`` and a
    ``(n_trials, K)`` array whose row ``i`` is the mean over the windows of ``trial_ids[i]``.
    Pass probabilities (softmax), not logits, so each window has the same weight.
    """
    window_probs = np.asarray(window_probs, dtype=np.float64)
    trial_index = np.asarray(trial_index)
    if window_probs.ndim != 2:
        raise ValueError(f"window_probs must be (N, K), got shape {window_probs.shape}")
    if trial_index.ndim != 1 or trial_index.shape[0] != window_probs.shape[0]:
        raise ValueError(f"trial_index must be (N,) with N = {window_probs.shape[0]} windows, "
                         f"got shape {trial_index.shape}")
    trial_ids, inverse = np.unique(trial_index, return_inverse=True)
    inverse = inverse.reshape(-1)
    sums = np.zeros((trial_ids.size, window_probs.shape[1]), dtype=np.float64)
    np.add.at(sums, inverse, window_probs)
    counts = np.bincount(inverse, minlength=trial_ids.size)
    return trial_ids, sums / counts[:, None]


def summarize_folds(fold_metrics: list[dict],
                    keys: Sequence[str] = ("accuracy", "f1_macro", "f1_micro", "kappa")
                    ) -> dict:
    """Mean and spread of each metric over folds: ``{key: {"mean", "std", "values"}}``.

    ``std`` is the sample standard deviation (``ddof=1``), the usual "± std" over folds or
    seeds, and 0.0 for a single fold. A ``None`` value (undefined kappa) stays in ``values``
    but is left out of mean and std; a key with no defined value gets ``None`` for both.
    """
    if not fold_metrics:
        raise ValueError("fold_metrics is empty; nothing to summarize")
    summary: dict = {}
    for key in keys:
        missing = [i for i, m in enumerate(fold_metrics) if key not in m]
        if missing:
            raise ValueError(f"metric {key!r} is missing from fold(s) {missing}")
        values = [None if m[key] is None else float(m[key]) for m in fold_metrics]
        defined = np.array([v for v in values if v is not None], dtype=np.float64)
        if defined.size == 0:
            mean = std = None
        else:
            mean = float(defined.mean())
            std = float(defined.std(ddof=1)) if defined.size > 1 else 0.0
        summary[key] = {"mean": mean, "std": std, "values": values}
    return summary


def format_summary_table(rows: list[tuple[str, dict]]) -> str:
    """Plain-text table, one row per ``(name, summary)``: accuracy, macro-F1, kappa as mean ± std.

    ``summary`` is what :func:`summarize_folds` returns; a missing or undefined metric shows
    as ``-``.
    """
    columns = (("accuracy", "accuracy"), ("macro-F1", "f1_macro"), ("kappa", "kappa"))

    def cell(summary: dict, key: str) -> str:
        entry = summary.get(key)
        if not entry or entry.get("mean") is None:
            return "-"
        return f"{entry['mean']:.3f} ± {entry['std']:.3f}"

    table = [["model", *(title for title, _ in columns)]]
    table += [[str(name), *(cell(summary, key) for _, key in columns)] for name, summary in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                       for i, (c, w) in enumerate(zip(r, widths))).rstrip() for r in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
