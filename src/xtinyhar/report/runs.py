"""Read a finished run folder (``xtinyhar cv --out``) for tables and figures.

A report reads only what ``cv`` wrote: ``summary.json`` (mean and std over folds),
``folds/<k>/metrics.json`` (per-fold scores, per-class scores, confusion matrices) and
``folds/<k>/history.csv`` (the fit loop's epochs). Every number in a table or figure
therefore traces back to a run anyone can repeat with the command in its ``config.yaml``.

:func:`load_run` checks everything a report uses before anything is written, so a bad
file is a one-line :class:`DataError` naming it, never a traceback from numpy or csv.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from xtinyhar.errors import DataError

log = logging.getLogger(__name__)

MODELS = ("student", "teacher")
LEVELS = ("trial", "window")
SUMMARY_METRICS = ("accuracy", "f1_macro", "kappa")       # the summary table's columns
HISTORY_NEEDED = ("epoch", "train_loss", "train_acc")      # a training-curves figure needs these
HISTORY_NUMBERS = HISTORY_NEEDED + ("val_loss", "val_acc")  # ... and plots these where present


@dataclass
class Run:
    """One run folder: its summary, each fold's metrics, and its name for tables."""
    path: Path
    label: str
    summary: dict
    folds: list[dict]          # metrics.json of each fold, in fold order
    config: dict               # the resolved config the run was made with (config.yaml)
    history: list[dict] = field(default_factory=list)   # fold 0's history.csv, numbers parsed

    @property
    def protocol(self) -> str:
        return str(self.summary.get("protocol", "?"))

    def describe(self, model: str) -> str:
        """``teacher``, ``student``, ``student (no KD)`` or the baseline's name, e.g.
        ``cnn1d (no KD)``, from the run's config and its folds' fit records."""
        if model != "student":
            return model
        student = _section(_section(self.config, "model"), "student")
        arch = str(student.get("arch", "transformer"))
        name = "student" if arch == "transformer" else arch
        distilled = [_section(f, "student_fit").get("distilled") for f in self.folds]
        return name if all(distilled) else f"{name} (no KD)"

    def models(self) -> list[str]:
        """The models this run evaluated (a baseline run has a student only)."""
        return [m for m in MODELS if all(m in fold for fold in self.folds)]

    def class_names(self, model: str = "student", level: str = "trial") -> list[str]:
        return list(self.folds[0][model][level]["per_class"])

    def confusion(self, model: str = "student", level: str = "trial") -> np.ndarray:
        """(K, K) counts summed over folds: row = true class, column = predicted."""
        return np.sum([np.asarray(f[model][level]["confusion"], dtype=np.int64)
                       for f in self.folds], axis=0)

    def fold_scores(self, model: str, level: str, metric: str) -> list[float]:
        return [float(f[model][level][metric]) for f in self.folds]


def _section(mapping: dict, key: str) -> dict:
    """``mapping[key]`` if it is a dict, else {} (a section a run may lack)."""
    value = mapping.get(key) if isinstance(mapping, dict) else None
    return value if isinstance(value, dict) else {}


def is_number(value) -> bool:
    """A JSON number (int or float; true and false are not numbers)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def shown(value) -> str:
    """``repr(value)`` cut to fit in a one-line error message."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def read_json(path: Path, hint: str):
    """Parsed JSON of ``path``; a one-line DataError (ending in ``hint`` if missing)."""
    if not path.is_file():
        raise DataError(f"{path}: not found; {hint}")
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: not readable JSON ({exc})") from None


def _read_json(path: Path) -> dict:
    content = read_json(path, "is this a finished `xtinyhar cv` run?")
    if not isinstance(content, dict):
        raise DataError(f"{path}: expected a JSON object")
    return content


def load_run(path: str | Path, label: str | None = None) -> Run:
    """The run folder ``path``; a one-line DataError if it is not a finished cv run or a
    file the report reads from it is malformed."""
    path = Path(path)
    if not path.is_dir():
        raise DataError(f"{path}: run folder not found")
    summary = _read_json(path / "summary.json")
    n_folds = _check_summary(summary, path / "summary.json")
    files = [path / "folds" / str(k) / "metrics.json" for k in range(n_folds)]
    folds = [_read_json(file) for file in files]
    for file, fold in zip(files, folds):
        if not isinstance(fold.get("student"), dict) or any(
                level not in fold["student"] for level in LEVELS):
            raise DataError(f"{file}: no student metrics")
    _check_scores(folds, files)
    return Run(path=path, label=label or path.name, summary=summary, folds=folds,
               config=_read_config(path / "config.yaml"),
               history=read_history(path / "folds" / "0" / "history.csv"))


def _check_summary(summary: dict, path: Path) -> int:
    """The number of folds ``summary.json`` (at ``path``) records; a one-line DataError if
    it, or a score the summary table prints, is not a number."""
    n_folds = summary.get("folds", 0)
    if not isinstance(n_folds, int) or isinstance(n_folds, bool):
        raise DataError(f"{path}: 'folds' is not a whole number ({shown(n_folds)})")
    if n_folds < 1:
        raise DataError(f"{path}: no folds recorded")
    for model in MODELS:
        for level in LEVELS:
            entry = summary.get(f"{model}_{level}")
            if entry is None:
                continue
            for metric in SUMMARY_METRICS:
                key = f"{model}_{level}.{metric}"
                score = entry.get(metric) if isinstance(entry, dict) else None
                if not isinstance(score, dict) or not isinstance(score.get("values", []), list):
                    raise DataError(f"{path}: '{key}' is not an entry of mean, std and values")
                for part in ("mean", "std"):
                    if score.get(part) is not None and not is_number(score[part]):
                        raise DataError(f"{path}: '{key}.{part}' is not a number ({shown(score[part])})")
    return n_folds


def _is_counts(matrix, k: int) -> bool:
    """Whether ``matrix`` is a k x k list of lists of non-negative whole numbers."""
    return (isinstance(matrix, list) and len(matrix) == k
            and all(isinstance(row, list) and len(row) == k for row in matrix)
            and all(isinstance(n, int) and not isinstance(n, bool) and n >= 0
                    for row in matrix for n in row))


def _check_scores(folds: list[dict], files: list[Path]) -> None:
    """A one-line DataError unless each fold has, for every model and level a report uses,
    fold 0's classes, a K x K confusion matrix of counts and a finite accuracy."""
    for model in [m for m in MODELS if all(m in fold for fold in folds)]:
        for level in LEVELS:
            names = None
            for file, fold in zip(files, folds):
                scores = _section(_section(fold, model), level)
                key = f"{model}.{level}"
                if not isinstance(scores.get("per_class"), dict) or not scores["per_class"]:
                    raise DataError(f"{file}: no per-class scores at '{key}.per_class'")
                names = list(scores["per_class"]) if names is None else names
                if list(scores["per_class"]) != names:
                    raise DataError(f"{file}: other classes than fold 0")
                if not _is_counts(scores.get("confusion"), len(names)):
                    raise DataError(f"{file}: '{key}.confusion' is not a {len(names)} x {len(names)} "
                                    "matrix of counts (one row and column per class)")
                accuracy = scores.get("accuracy")
                if not is_number(accuracy) or not math.isfinite(accuracy):
                    raise DataError(f"{file}: '{key}.accuracy' is not a number ({shown(accuracy)})")


def read_history(path: Path) -> list[dict]:
    """Rows of a ``history.csv`` with its plotted columns as floats (an empty cell: NaN).

    No file: [] (the fold kept no history). An empty file or one without the columns
    ``epoch``, ``train_loss`` and ``train_acc``: [] and a one-line warning naming it. A
    cell that is not a number or a row with missing or extra cells: a one-line DataError
    (rows are counted from 1 after the header)."""
    if not path.exists():
        return []
    try:
        with path.open(newline="") as handle:
            reader = csv.DictReader(handle)
            columns, rows = reader.fieldnames or [], list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: not readable CSV ({exc})") from None
    why = _unplottable(columns, rows)
    if why:
        log.warning("%s: %s, so no training-curves figure for this run", path, why)
        return []
    for number, row in enumerate(rows, start=1):
        if None in row or None in row.values():
            raise DataError(f"{path}: row {number} does not have {len(columns)} cells like the header")
        for name in HISTORY_NUMBERS:
            if name in row:
                row[name] = _cell(row[name], path, name, number)
    return rows


def _unplottable(columns: list[str], rows: list[dict]) -> str | None:
    """Why a history.csv with this header and these rows cannot be plotted (None: it can)."""
    missing = [name for name in HISTORY_NEEDED if name not in columns]
    if not columns:
        return "empty"
    if missing:
        return f"the header lacks {', '.join(map(repr, missing))}"
    return None if rows else "no rows"


def _cell(text: str, path: Path, column: str, row: int) -> float:
    """A history.csv cell as a float (an empty cell: NaN); a one-line DataError if it is
    not a number."""
    if text.strip() == "":
        return math.nan
    try:
        return float(text)
    except ValueError:
        raise DataError(f"{path}: column {column!r} row {row} is not a number ({shown(text)})") from None


def _read_config(path: Path) -> dict:
    """The ``config`` section of a run's config.yaml ({} if the run has none)."""
    import yaml

    if not path.is_file():
        return {}
    try:
        content = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise DataError(f"{path}: not readable YAML ({str(exc).splitlines()[0]})") from None
    config = content.get("config", {}) if isinstance(content, dict) else None
    if not isinstance(config, dict):
        raise DataError(f"{path}: no config section")
    return config
