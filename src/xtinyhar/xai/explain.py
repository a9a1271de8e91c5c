"""``xtinyhar explain``: IG figures per class, rollout per layer, teacher-student attention
similarity and deletion curves for a trained student on windows of subjects it never saw."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from xtinyhar.io import atomic_write, save_png, write_json
from xtinyhar.xai.deletion import FRACTIONS, area_under_curve, deletion_curve
from xtinyhar.xai.integrated_gradients import integrated_gradients, make_baseline
from xtinyhar.xai.rollout import attention_rollout, relevance_over_time
from xtinyhar.xai.similarity import attention_similarity

CHANNELS = ["acc x", "acc y", "acc z", "gyro x", "gyro y", "gyro z"]


def training_mean(cache, train_subjects) -> np.ndarray:
    """Per-channel mean of the model's training windows, in physical units: the ``mean`` IG
    baseline. Taken from the data, not from the model's normalisation buffers, which hold
    0 when the model was trained without normalisation (``preproc.norm: none``)."""
    rows = np.isin(cache.subject, list(train_subjects))
    if not rows.any():
        from xtinyhar.errors import XTinyHARError
        raise XTinyHARError("the 'mean' baseline needs windows of the model's training subjects; "
                            "the data has none")
    return cache.imu[rows].mean(axis=(0, 1))


def choose_windows(cache, train_subjects, classes: list[str] | None, max_windows: int,
                   seed: int = 0, val_subjects=(), test_subjects=None) -> np.ndarray:
    """Held-out windows (subjects not trained on; only the split's test subjects when the
    checkpoint records them), optionally of some classes, at most ``max_windows``, spread
    evenly over classes."""
    held_out = ~np.isin(cache.subject, [*train_subjects, *val_subjects])
    if test_subjects:
        held_out &= np.isin(cache.subject, list(test_subjects))
    index = np.flatnonzero(held_out)
    if classes:
        unknown = [c for c in classes if c not in cache.class_names]
        if unknown:
            from xtinyhar.errors import XTinyHARError
            raise XTinyHARError(f"--classes: unknown class(es) {', '.join(unknown)} "
                                f"(known: {', '.join(cache.class_names)})")
        wanted = [cache.class_names.index(c) for c in classes]
        index = index[np.isin(cache.label[index], wanted)]
    if len(index) == 0:
        from xtinyhar.errors import XTinyHARError
        raise XTinyHARError("no held-out windows to explain (every subject in the data was a "
                            "training subject of the model, or --classes matched none)")
    if len(index) > max_windows:
        rng = np.random.default_rng(seed)
        per_class = {k: rng.permutation(index[cache.label[index] == k]) for k in np.unique(cache.label[index])}
        picked, depth = [], 0
        while len(picked) < max_windows:
            for k in per_class:
                if depth < len(per_class[k]) and len(picked) < max_windows:
                    picked.append(per_class[k][depth])
            depth += 1
        index = np.sort(np.asarray(picked))
    return index


def plot_ig(window: np.ndarray, attributions: np.ndarray, hz: float, title: str, path: Path,
            xlabel: str = "time in window (s)") -> None:
    """IG heat map over channels and time above the window's acc and gyro signals. ``hz``
    sets the time axis; a whole-trial window passes hz = its length - 1 and an x label saying
    the axis is the fraction of the trial."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    T = len(window)
    t = np.arange(T) / hz
    fig, axes = plt.subplots(3, 1, figsize=(9, 6.5), sharex=True,
                             gridspec_kw={"height_ratios": [1.3, 1, 1]})
    limit = np.abs(attributions).max() or 1.0
    image = axes[0].imshow(attributions.T, aspect="auto", cmap="RdBu_r", vmin=-limit, vmax=limit,
                           extent=(0, T / hz, len(CHANNELS) - 0.5, -0.5), interpolation="nearest")
    axes[0].set_yticks(range(len(CHANNELS)), CHANNELS)
    axes[0].set_title(title)
    fig.colorbar(image, ax=axes, location="right", shrink=0.5, label="IG attribution (logit units)")
    for c in range(3):
        axes[1].plot(t, window[:, c], label=CHANNELS[c])
        axes[2].plot(t, window[:, 3 + c], label=CHANNELS[3 + c])
    axes[1].set_ylabel("acceleration (g)")
    axes[2].set_ylabel("angular rate (deg/s)")
    axes[2].set_xlabel(xlabel)
    for ax in axes[1:]:
        ax.legend(loc="upper right", fontsize=7, ncol=3)
    save_png(fig, path)


def plot_rollout_layers(layers: np.ndarray, rollout: np.ndarray, n_real: int, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mats = [*layers[:, :n_real, :n_real], rollout[:n_real, :n_real]]
    names = [f"layer {i + 1}" for i in range(len(layers))] + ["rollout"]
    fig, axes = plt.subplots(1, len(mats), figsize=(4.2 * len(mats), 3.8), layout="constrained")
    for ax, mat, name in zip(np.atleast_1d(axes), mats, names):
        im = ax.imshow(mat, cmap="viridis", vmin=0)
        ax.set_title(name)
        ax.set_xlabel("key token (time order)")
        ax.set_ylabel("query token")
        ticks = np.arange(0, n_real, max(1, n_real // 6))
        ax.set_xticks(ticks)
        ax.set_yticks(ticks)
        fig.colorbar(im, ax=ax, shrink=0.8, label="attention weight")
    fig.suptitle("attention per layer (heads averaged, residual added) and rollout, one window")
    save_png(fig, path)


def plot_similarity(per_class: dict[str, dict[str, float]], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(next(iter(per_class.values())))
    fig, ax = plt.subplots(figsize=(max(6, 0.35 * len(names)), 4))
    width = 0.8 / len(per_class)
    for i, (label, values) in enumerate(per_class.items()):
        ax.bar(np.arange(len(names)) + i * width, [values[n] for n in names], width, label=label)
    ax.set_xticks(np.arange(len(names)) + 0.4 - width / 2, names, rotation=75, ha="right", fontsize=7)
    ax.set_ylabel("cosine similarity to the teacher")
    ax.set_ylim(0, 1.12)
    ax.axhline(1.0, color="grey", lw=0.5)
    ax.legend(loc="upper center", ncol=len(per_class), fontsize=8, frameon=False)
    save_png(fig, path)


def plot_deletion(curves: dict[str, np.ndarray], aucs: dict[str, float], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    for name, acc in curves.items():
        ax.plot(FRACTIONS, acc, marker="o", label=f"{name} (AUC {aucs[name]:.3f})")
    ax.set_xlabel("fraction of time steps replaced by the baseline")
    ax.set_ylabel("window accuracy")
    ax.set_title("deletion: lower curve = more faithful ranking")
    ax.legend()
    save_png(fig, path)


def explain(student, payload: dict, cache, out: str | Path, *, teacher=None, compare=None,
            labels_of: tuple[str, str] = ("student", "comparison"),
            classes: list[str] | None = None, max_windows: int = 200, steps: int = 64,
            baseline_kind: str = "mean", seed: int = 0) -> dict:
    """Write the explanation files of ``student`` into ``out``; returns the summary."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        from xtinyhar.errors import XTinyHARError
        raise XTinyHARError(f"{out}: --out must be a folder, this is a file")
    out.mkdir(parents=True, exist_ok=True)
    index = choose_windows(cache, payload["train_subjects"], classes, max_windows, seed,
                           payload.get("val_subjects", []), payload.get("test_subjects"))
    imu, labels = cache.imu[index], cache.label[index]
    names = cache.class_names
    hz, xlabel = float(student.cfg.imu_hz), "time in window (s)"
    if payload.get("config", {}).get("data", {}).get("segmentation") == "trial":
        # a whole trial stretched onto the window: its axis is the fraction of the trial
        hz, xlabel = float(imu.shape[1] - 1), "fraction of the trial (stretched onto the window)"
    mean = training_mean(cache, payload["train_subjects"]) if baseline_kind == "mean" else None
    baseline = make_baseline(imu, baseline_kind, train_mean=mean)

    values = np.zeros_like(imu)
    batch = 16
    deltas = []
    for start in tqdm(range(0, len(imu), batch), desc="integrated gradients", unit="batch", leave=False):
        part = slice(start, start + batch)
        ig = integrated_gradients(student, imu[part], baseline[part], target=labels[part], steps=steps)
        values[part] = ig.values
        gap = np.abs(ig.output - ig.baseline_output)
        deltas.append(np.abs(ig.delta) / np.maximum(gap, 1e-6))
    completeness = np.concatenate(deltas)

    with torch.no_grad():
        x = torch.from_numpy(imu)
        logits, maps = student(x, return_attention=True)
        _, mask, _ = student.tokenizer(x)
        patch_len = student.tokenizer.patcher.patch_length(x).numpy()
    probs = torch.softmax(logits, 1).numpy()
    pred = probs.argmax(1)

    figures = []
    for k in np.unique(labels):
        rows = np.flatnonzero(labels == k)
        right = rows[pred[rows] == k]
        pick = (right if len(right) else rows)[np.argmax(probs[right if len(right) else rows, k])]
        name = names[k]
        plot_ig(imu[pick], values[pick], hz, f"{name}: predicted {names[pred[pick]]} "
                f"(p={probs[pick, pred[pick]]:.2f}), IG vs {baseline_kind} baseline, window {int(index[pick])}",
                out / f"ig_{name}.png", xlabel)
        figures.append(f"ig_{name}.png")

    roll = attention_rollout(maps, mask)
    first = int(np.argmax(probs[np.arange(len(pred)), labels]))
    plot_rollout_layers(roll.layers[:, first], roll.rollout[first], int(mask[first].sum()),
                        out / "rollout_layers.png")
    atomic_write(out / "rollout.npz", lambda f: np.savez(
        f, layers=roll.layers, rollout=roll.rollout, relevance=roll.relevance,
        mask=mask.numpy(), patch_len=patch_len, window_index=index))

    summary = {"windows": int(len(index)), "held_out_subjects": sorted(int(s) for s in np.unique(cache.subject[index])),
               "steps": steps, "baseline": baseline_kind,
               "ig_completeness_relative_gap": {"median": float(np.median(completeness)),
                                                "max": float(completeness.max())},
               "figures": figures + ["rollout_layers.png"]}

    if teacher is not None:
        skeleton = cache.skeleton[index]
        reports = {labels_of[0]: attention_similarity(student, teacher, imu, skeleton, labels, names)}
        if compare is not None:
            reports[labels_of[1]] = attention_similarity(compare, teacher, imu, skeleton, labels, names)
        plot_similarity({k: r["per_class"] for k, r in reports.items()}, out / "similarity_per_class.png")
        sim = {k: {key: v for key, v in r.items() if key != "per_window"} for k, r in reports.items()}
        write_json(out / "similarity.json", sim)
        summary["similarity"] = {k: r["mean"] for k, r in reports.items()}

    ig_time = np.abs(values).sum(axis=2)
    rollout_time = relevance_over_time(roll.relevance, patch_len, imu.shape[1])
    random_time = np.random.default_rng(seed).random(ig_time.shape)
    curves = {name: deletion_curve(student, imu, labels, importance, baseline)
              for name, importance in (("IG", ig_time), ("rollout", rollout_time), ("random", random_time))}
    aucs = {name: area_under_curve(FRACTIONS, acc) for name, acc in curves.items()}
    plot_deletion(curves, aucs, out / "deletion.png")
    write_json(out / "deletion.json", {"fractions": FRACTIONS.tolist(), "baseline": baseline_kind,
                                       "accuracy": {k: v.tolist() for k, v in curves.items()},
                                       "auc": aucs})
    summary["deletion_auc"] = aucs
    write_json(out / "summary.json", summary)
    return summary
