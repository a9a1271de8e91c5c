"""Tables (booktabs LaTeX) and figures (PNG) made only from finished run folders."""

from __future__ import annotations

import re
from pathlib import Path

from xtinyhar.errors import XTinyHARError
from xtinyhar.io import atomic_write
from xtinyhar.report.figures import confusion_figure, folds_figure, history_figure
from xtinyhar.report.runs import LEVELS, Run, load_run
from xtinyhar.report.tables import per_class_table, summary_table

__all__ = ["Run", "load_run", "write_report"]


def file_stem(label: str) -> str:
    """A run label as a file name part (``runs/bench/kfold_kd`` -> ``kfold_kd``)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", label).strip("_") or "run"


def write_report(run_paths: list[str | Path], out: str | Path, *, labels: list[str] | None = None,
                 level: str = "trial") -> list[Path]:
    """Write ``summary.tex`` and ``folds.png`` over all runs, and per run its per-class table,
    confusion matrix (student; teacher too where the run has one) and fold-0 training
    curves, into ``out``. Returns the files written."""
    if level not in LEVELS:
        raise XTinyHARError(f"--level {level}: choose one of {', '.join(LEVELS)}")
    if labels and len(labels) != len(run_paths):
        raise XTinyHARError(f"{len(labels)} --label for {len(run_paths)} --run; give one per run or none")
    runs = [load_run(path, label) for path, label in zip(run_paths, labels or [None] * len(run_paths))]
    stems = [file_stem(run.label) for run in runs]
    if len(set(stems)) != len(stems):
        raise XTinyHARError(f"two runs share a name ({', '.join(stems)}); tell them apart with --label")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise XTinyHARError(f"{out}: --out must be a folder, this is a file")
    out.mkdir(parents=True, exist_ok=True)

    def text(path: Path, content: str) -> Path:
        atomic_write(path, lambda f: f.write(content.encode()))
        return path

    written = [text(out / "summary.tex", summary_table(runs, level)), folds_figure(runs, out / "folds.png", level)]
    for run, stem in zip(runs, stems):
        for model in run.models():
            written.append(text(out / f"{stem}_{model}_per_class.tex", per_class_table(run, model, level)))
            written.append(confusion_figure(run, out / f"{stem}_{model}_confusion.png", model, level))
        curves = history_figure(run, out / f"{stem}_history.png")
        if curves is not None:
            written.append(curves)
    return written
