"""PNG figures from run folders (see :mod:`xtinyhar.report.runs`): confusion matrices,
training curves and per-fold accuracy. 150 dpi, labelled axes, written atomically."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from xtinyhar.io import save_png
from xtinyhar.report.runs import Run

DPI = 150


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def confusion_figure(run: Run, path: Path, model: str = "student", level: str = "trial") -> Path:
    """Row-normalised confusion matrix of all folds' test predictions pooled."""
    plt = _pyplot()
    counts = run.confusion(model, level)
    names = run.class_names(model, level)
    rows = counts.sum(axis=1, keepdims=True)
    fraction = np.divide(counts, rows, out=np.zeros(counts.shape), where=rows > 0)
    size = max(5.0, 0.28 * len(names) + 2.0)
    fig, ax = plt.subplots(figsize=(size + 1.0, size))
    image = ax.imshow(fraction, cmap="Blues", vmin=0.0, vmax=1.0)
    ticks = np.arange(len(names))
    small = 6 if len(names) > 15 else 8
    ax.set_xticks(ticks, names, rotation=90, fontsize=small)
    ax.set_yticks(ticks, names, fontsize=small)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    accuracy = np.trace(counts) / max(int(counts.sum()), 1)
    ax.set_title(f"{run.label}: {run.describe(model)}, {level} level, {int(counts.sum())} test "
                 f"{level}s of {len(run.folds)} fold(s) pooled, accuracy {accuracy:.3f}", fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
    return save_png(fig, path, DPI)


def _column(rows: list[dict], key: str) -> np.ndarray:
    """A history column (parsed by :func:`xtinyhar.report.runs.read_history`); NaN if absent."""
    return np.array([r.get(key, np.nan) for r in rows], dtype=np.float64)


def history_figure(run: Run, path: Path) -> Path | None:
    """Loss and accuracy per epoch of each model fitted in fold 0 (training windows, and
    validation subjects where the run had some); None if the fold kept no history."""
    history = run.history
    if not history:
        return None
    plt = _pyplot()
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(10, 3.6))
    for model in dict.fromkeys(r.get("model", "model") for r in history):
        rows = [r for r in history if r.get("model", "model") == model]
        epoch = _column(rows, "epoch")
        for key, ax in (("loss", loss_ax), ("acc", acc_ax)):
            ax.plot(epoch, _column(rows, f"train_{key}"), label=f"{model}, training")
            val = _column(rows, f"val_{key}")
            if np.isfinite(val).any():
                ax.plot(epoch, val, linestyle="--", label=f"{model}, validation subjects")
    loss_ax.set(xlabel="epoch", ylabel="loss (KD + CE for a distilled student)")
    acc_ax.set(xlabel="epoch", ylabel="window accuracy", ylim=(0.0, 1.0))
    acc_ax.legend(fontsize=7, loc="lower right")
    fig.suptitle(f"{run.label}, fold 0: training curves (augmented training windows)", fontsize=9)
    return save_png(fig, path, DPI)


def folds_figure(runs: list[Run], path: Path, level: str = "trial") -> Path:
    """Each run's per-fold test accuracy (dots) and mean over folds (a bar across them), for
    its IMU-only model and, where it has one, its teacher."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(5.0, 1.3 * len(runs) + 2.0), 3.6))
    colours = {"student": "tab:blue", "teacher": "tab:orange"}
    names = {"student": "IMU-only model", "teacher": "teacher (skeleton + IMU)"}
    shown, lowest = set(), 1.0
    for i, run in enumerate(runs):
        models = run.models()
        for j, model in enumerate(models):
            x = i + (j - (len(models) - 1) / 2) * 0.3
            scores = run.fold_scores(model, level, "accuracy")
            lowest = min(lowest, min(scores))
            ax.scatter(np.full(len(scores), x), scores, color=colours[model], s=14, zorder=3,
                       label=None if model in shown else names[model])
            ax.hlines(np.mean(scores), x - 0.12, x + 0.12, color=colours[model], linewidth=2)
            shown.add(model)
    ax.set_xticks(np.arange(len(runs)), [run.label for run in runs], rotation=20, ha="right", fontsize=8)
    ax.set_xlim(-0.6, len(runs) - 0.4)
    ax.set_ylabel(f"test {level} accuracy")
    ax.set_ylim(max(0.0, np.floor(lowest * 20) / 20 - 0.05), 1.0)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title("each fold (dots) and the mean over folds (bar)", fontsize=9)
    return save_png(fig, path, DPI)


def ablation_figure(table: dict, path: Path) -> Path:
    """An ``xtinyhar ablate`` study: each variant's mean paired difference to the reference
    (a dot) with its bootstrap interval (a bar), one row per variant, accuracy and macro-F1."""
    plt = _pyplot()
    rows = table["variants"]
    fig, axes = plt.subplots(1, 2, figsize=(10, max(2.4, 0.45 * len(rows) + 1.4)), sharey=True)
    y = np.arange(len(rows))[::-1]
    for ax, metric, name in zip(axes, ("accuracy", "f1_macro"), ("accuracy", "macro-F1")):
        for yi, row in zip(y, rows):
            entry = row["difference"].get(metric)
            if not entry:   # the reference: zero by definition
                ax.scatter([0.0], [yi], marker="D", color="tab:gray", zorder=3)
                continue
            ax.hlines(yi, entry["low"], entry["high"], color="tab:blue", linewidth=2)
            ax.scatter([entry["mean"]], [yi], color="tab:blue", zorder=3)
        ax.axvline(0.0, color="black", linewidth=0.8)
        ax.set_xlabel(f"test {table.get('level', 'trial')} {name}: variant - {table.get('base')}")
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(y, [row["name"] + (" (reference)" if row.get("reference") else "") for row in rows],
                       fontsize=8)
    stats = table.get("statistics", {})
    fig.suptitle(f"paired difference per (fold, seed), mean and 95% bootstrap interval "
                 f"({table.get('folds')} folds x {len(table.get('seeds', []))} seeds, "
                 f"{stats.get('resamples')} resamples, RNG seed {stats.get('rng_seed')})", fontsize=9)
    fig.tight_layout()
    return save_png(fig, path, DPI)
