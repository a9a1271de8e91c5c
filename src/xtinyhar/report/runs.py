"""Read a finished run folder (``xtinyhar cv --run``) for tables and figures.

A report reads only what ``cv`` wrote: ``summary.json`` (mean and std over folds),
``folds/<k>/metrics.json`` (per-fold scores, per-class scores, confusion matrices) and
``folds/<k>/history.csv`` (the fit loop's epochs). Every number in a table or figure
therefore traces back to a run anyone can repeat with the command in its ``config.yaml``.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xtinyhar.errors import DataError

MODELS = ("student", "teacher")
LEVELS = ("trial", "window")


@dataclass
class Run:
    """One run folder: its summary, each fold's metrics, and its name for tables."""
    path: Path
    label: str
    summary: dict
    folds: list[dict]          # metrics.json of each fold, in fold order
    config: dict               # the resolved config the run was made with (config.yaml)

    @property
    def protocol(self) -> str:
        return str(self.summary.get("protocol", "?"))

    def describe(self, model: str) -> str:
        """``teacher``, ``student``, ``student (no KD)`` or the baseline's name, e.g.
        ``cnn1d (no KD)``, from the run's config and its folds' fit records."""
        if model != "student":
            return model
        arch = self.config.get("model", {}).get("student", {}).get("arch", "transformer")
        name = "student" if arch == "transformer" else arch
        distilled = [f.get("student_fit", {}).get("distilled") for f in self.folds]
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

    def history(self, fold: int = 0) -> list[dict]:
        """Rows of ``folds/<fold>/history.csv`` (empty if the fold kept none)."""
        path = self.path / "folds" / str(fold) / "history.csv"
        if not path.exists():
            return []
        with path.open(newline="") as handle:
            return list(csv.DictReader(handle))


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
    """The run folder ``path``; a one-line DataError if it is not a finished cv run."""
    path = Path(path)
    if not path.is_dir():
        raise DataError(f"{path}: run folder not found")
    summary = _read_json(path / "summary.json")
    n_folds = int(summary.get("folds", 0))
    if n_folds < 1:
        raise DataError(f"{path / 'summary.json'}: no folds recorded")
    folds = [_read_json(path / "folds" / str(k) / "metrics.json") for k in range(n_folds)]
    for k, fold in enumerate(folds):
        if "student" not in fold or any(level not in fold["student"] for level in LEVELS):
            raise DataError(f"{path / 'folds' / str(k) / 'metrics.json'}: no student metrics")
    names = list(folds[0]["student"]["trial"]["per_class"])
    for k, fold in enumerate(folds[1:], start=1):
        if list(fold["student"]["trial"]["per_class"]) != names:
            raise DataError(f"{path / 'folds' / str(k) / 'metrics.json'}: other classes than fold 0")
    return Run(path=path, label=label or path.name, summary=summary, folds=folds,
               config=_read_config(path / "config.yaml"))


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
