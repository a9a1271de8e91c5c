"""Booktabs LaTeX tables from run folders (see :mod:`xtinyhar.report.runs`).

The summary table prints what ``summary.json`` holds (mean +- std over folds, the same
numbers ``xtinyhar cv`` prints); the per-class table scores the confusion matrix summed over
folds with scikit-learn, as :mod:`xtinyhar.evaluate.metrics` scores one fold.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import precision_recall_fscore_support

from xtinyhar.report.runs import Run

_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
            "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\^{}"}


def escape(text: str) -> str:
    """``text`` safe inside a LaTeX table cell (run names hold underscores)."""
    return "".join(_SPECIAL.get(ch, ch) for ch in str(text))


def mean_std(entry: dict, digits: int = 3) -> str:
    """A summary entry {"mean", "std", "values"} as ``0.906 $\\pm$ 0.025``; one fold: the mean."""
    mean, std = entry.get("mean"), entry.get("std")
    if mean is None or not np.isfinite(mean):
        return "--"
    if std is None or not np.isfinite(std) or len(entry.get("values", [])) < 2:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} $\\pm$ {std:.{digits}f}"


def _tabular(columns: str, header: list[str], rows: list[list[str]], comment: str) -> str:
    lines = [f"% {comment}", f"\\begin{{tabular}}{{{columns}}}", "\\toprule",
             " & ".join(header) + r" \\", "\\midrule"]
    lines += [" & ".join(row) + r" \\" for row in rows]
    lines += ["\\bottomrule", "\\end{tabular}", ""]
    return "\n".join(lines)


def summary_table(runs: list[Run], level: str = "trial") -> str:
    """One row per run and model: protocol, folds, accuracy, macro-F1 and Cohen's kappa
    (mean +- std over folds) at the ``trial`` or ``window`` level."""
    rows = []
    for run in runs:
        for model in run.models():
            entry = run.summary.get(f"{model}_{level}")
            if entry is None:
                continue
            rows.append([escape(run.label), escape(run.protocol), str(run.summary["folds"]),
                         escape(run.describe(model)), mean_std(entry["accuracy"]), mean_std(entry["f1_macro"]),
                         mean_std(entry["kappa"])])
    sources = ", ".join(str(run.path) for run in runs)
    return _tabular("lllrccc", ["Run", "Protocol", "Folds", "Model", "Accuracy", "Macro-F1",
                                r"$\kappa$"], rows,
                    f"xtinyhar report: {level} level, mean +- std over folds; runs {sources}")


def per_class_scores(confusion: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Precision, recall, F1 and support per class of a (K, K) confusion matrix
    (row = true class), with scikit-learn's conventions (0 where undefined)."""
    k = len(confusion)
    true = np.repeat(np.repeat(np.arange(k), k), confusion.ravel())
    pred = np.repeat(np.tile(np.arange(k), k), confusion.ravel())
    p, r, f, s = precision_recall_fscore_support(true, pred, labels=np.arange(k), average=None,
                                                 zero_division=0)
    return p, r, f, s


def per_class_table(run: Run, model: str = "student", level: str = "trial") -> str:
    """Precision, recall, F1 and support per class, all folds' test predictions pooled."""
    names = run.class_names(model, level)
    p, r, f, s = per_class_scores(run.confusion(model, level))
    rows = [[escape(name), f"{p[i]:.3f}", f"{r[i]:.3f}", f"{f[i]:.3f}", str(int(s[i]))]
            for i, name in enumerate(names)]
    return _tabular("lcccr", ["Class", "Precision", "Recall", "F1", "Support"], rows,
                    f"xtinyhar report: {run.path}, {model}, {level} level, the test predictions "
                    f"of all {len(run.folds)} fold(s) pooled")


EDGE_COLUMNS = (("trial_acc", "Trial acc", "{:.3f}"), ("int8_trial_acc", "int8 acc", "{:.3f}"),
                ("params", "Params", "{:,}"), ("fp32_kb", "fp32 KB", "{:.1f}"),
                ("int8_kb", "int8 KB", "{:.1f}"), ("mflops", "MFLOPs", "{:.2f}"),
                ("torch_ms", "PyTorch ms", "{:.3f}"), ("ort_ms", "ORT ms", "{:.3f}"),
                ("ort_int8_ms", "ORT int8 ms", "{:.3f}"), ("tflite_ms", "TFLite ms", "{:.3f}"),
                ("tflite_int8_ms", "TFLite int8 ms", "{:.3f}"))


def edge_table(rows: list[dict], source: str) -> str:
    """The table ``benchmarks/bench_edge.py`` printed, from its ``bench_edge.json``: accuracy,
    size, FLOPs and median batch-1 latency per runtime (``--`` where a model has none)."""
    body = []
    for row in rows:
        cells = [escape(row["model"])]
        for key, _, fmt in EDGE_COLUMNS:
            value = row.get(key)
            if isinstance(value, dict):          # a latency record: its median
                value = value.get("median_ms")
            cells.append("--" if value is None else escape(fmt.format(value)))
        body.append(cells)
    return _tabular("l" + "r" * len(EDGE_COLUMNS), ["Model"] + [name for _, name, _ in EDGE_COLUMNS],
                    body, f"xtinyhar report: {source} (benchmarks/bench_edge.py; latencies are "
                          "medians, batch 1, 1 thread; a model without an ONNX graph, MiniRocket, "
                          "has its numpy/numba time under ORT)")


def _with_math(text: str) -> str:
    """Escape a printed cell and set its ``±``, ``>=`` and ``<=`` as LaTeX math."""
    out = escape(text)
    for plain, math in (("±", r"$\pm$"), (">=", r"$\geq$"), ("<=", r"$\leq$")):
        out = out.replace(plain, math)
    return out


def _mean_sd(values: list[float]) -> str:
    """Mean +- sample std (as ``bench_validation.py`` prints it); one value: the value."""
    if len(values) < 2:
        return f"{values[0]:.3f}" if values else "--"
    return f"{np.mean(values):.3f} $\\pm$ {np.std(values, ddof=1):.3f}"


def validation_table(variants: list[tuple[str, dict]]) -> str:
    """One row per ``bench_validation.py`` run (model selection on validation subjects):
    its changes to the config, KD or not, the student's trial accuracy per seed, their mean
    +- std, macro-F1 and the teachers' accuracy (mean +- std over seeds)."""
    body = []
    for name, content in variants:
        rows = sorted(content["rows"], key=lambda r: r["seed"])
        accuracy = [r["student_accuracy"] for r in rows]
        teachers = [r["teacher_accuracy"] for r in rows if r.get("teacher_accuracy") is not None]
        seeds = " / ".join(f"{a:.3f}" for a in accuracy)
        changes = ", ".join(content.get("overrides") or []) or "config as is"
        body.append([escape(name), escape(changes), "yes" if content.get("kd", True) else "no",
                     escape(" / ".join(str(r["seed"]) for r in rows)), seeds, _mean_sd(accuracy),
                     _mean_sd([r["student_f1_macro"] for r in rows]),
                     _mean_sd(teachers) if teachers else "--"])
    return _tabular("lllllccc", ["Variant", "Changes", "KD", "Seeds", "Accuracy per seed",
                                 "Accuracy", "Macro-F1", "Teacher"], body,
                    "xtinyhar report: benchmarks/bench_validation.py runs (validation protocol: the "
                    "standard split's training subjects 7, 5, 3, 1 held out in turn; student trial "
                    "level, mean +- sample std over seeds)")


def targets_table(rows: list[list[str]], source: str) -> str:
    """The what / measured / target table ``benchmarks/bench_accuracy.py`` printed, from its
    ``bench_accuracy.json``."""
    body = [[_with_math(cell) for cell in row] for row in rows]
    return _tabular("lrr", ["What", "Measured", "Target"], body,
                    f"xtinyhar report: {source} (benchmarks/bench_accuracy.py; trial level)")


def _difference(entry: dict | None) -> str:
    """A paired difference and its interval as ``+0.012 [$-$0.004, +0.030]``."""
    if not entry:
        return "reference"

    def signed(value: float) -> str:
        return f"{value:+.3f}".replace("-", "$-$")
    return f"{signed(entry['mean'])} [{signed(entry['low'])}, {signed(entry['high'])}]"


def ablation_table(table: dict, source: str) -> str:
    """One row per variant of an ``xtinyhar ablate`` study (its ``ablation.json``): KD, its
    changes to the config, student trial accuracy and macro-F1 (mean +- std over the (fold,
    seed) pairs), each one's paired difference to the reference with its bootstrap interval,
    parameters and MFLOPs."""
    body = []
    for row in table["variants"]:
        changes = ", ".join(row.get("overrides") or []) or "config as is"
        body.append([escape(row["name"]), escape(changes), "yes" if row.get("kd", True) else "no",
                     mean_std(row["accuracy"]), _difference(row["difference"].get("accuracy")),
                     mean_std(row["f1_macro"]), _difference(row["difference"].get("f1_macro")),
                     "--" if row.get("params") is None else f"{row['params']:,}",
                     "--" if row.get("mflops") is None else f"{row['mflops']:.2f}"])
    stats = table.get("statistics", {})
    return _tabular("lllccccrr", ["Variant", "Changes", "KD", "Accuracy", r"$\Delta$ accuracy [95\% CI]",
                                  "Macro-F1", r"$\Delta$ macro-F1 [95\% CI]", "Params", "MFLOPs"], body,
                    f"xtinyhar report: {source} (xtinyhar ablate; student, test {table.get('level', 'trial')} "
                    f"level, {table.get('protocol')}, {table.get('folds')} fold(s) x seeds "
                    f"{table.get('seeds')}; mean +- sample std over the (fold, seed) pairs; Delta = "
                    f"variant - {table.get('base')} per pair, {stats.get('interval', 'bootstrap interval')}, "
                    f"{stats.get('resamples')} resamples, RNG seed {stats.get('rng_seed')})")
