"""Tables (booktabs LaTeX) and figures (PNG) made only from finished run folders."""

from __future__ import annotations

import math
import re
from pathlib import Path

from xtinyhar.errors import DataError, XTinyHARError
from xtinyhar.io import write_json, write_text
from xtinyhar.report.figures import ablation_figure, confusion_figure, folds_figure, history_figure
from xtinyhar.report.runs import LEVELS, Run, is_number, load_run, read_json, shown
from xtinyhar.report.tables import (EDGE_COLUMNS, ablation_table, edge_table, per_class_table, summary_table,
                                    targets_table, validation_table)

__all__ = ["Run", "load_run", "write_report"]


def file_stem(label: str) -> str:
    """A run label as a file name part (``runs/bench/kfold_kd`` -> ``kfold_kd``)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", label).strip("_") or "run"


def load_edge(path: str | Path) -> list[dict]:
    """The rows of a ``bench_edge.json``; a one-line DataError if it is not one."""
    path = Path(path)
    rows = read_json(path, "`benchmarks/bench_edge.py` writes it")
    if not isinstance(rows, list) or not rows or not all(isinstance(r, dict) and "model" in r for r in rows):
        raise DataError(f"{path}: not a bench_edge.json (expected a list of rows with a 'model')")
    for number, row in enumerate(rows, start=1):
        for key, _, _ in EDGE_COLUMNS:
            value = row.get(key)
            if isinstance(value, dict):          # a latency record: its median
                key, value = f"{key}.median_ms", value.get("median_ms")
            if value is not None and not is_number(value):
                raise DataError(f"{path}: row {number} ({shown(row['model'])}) '{key}' is not a "
                                f"number ({shown(value)})")
    return rows


def load_targets(path: str | Path) -> list[list[str]]:
    """The rows of a ``bench_accuracy.json``; a one-line DataError if it is not one."""
    path = Path(path)
    content = read_json(path, "`benchmarks/bench_accuracy.py` writes it")
    rows = content.get("rows") if isinstance(content, dict) else None
    if not isinstance(rows, list) or not rows or not all(
            isinstance(r, list) and len(r) == 3 and all(isinstance(c, str) for c in r) for r in rows):
        raise DataError(f"{path}: not a bench_accuracy.json (expected rows of what, measured, target)")
    return rows


def load_validation(path: str | Path) -> tuple[str, dict]:
    """A ``bench_validation.py`` run folder (or its ``bench_validation.json``) -> (name, the
    JSON's content); a one-line DataError if it is not one."""
    path = Path(path)
    file = path / "bench_validation.json" if path.is_dir() else path
    content = read_json(file, "`benchmarks/bench_validation.py --run DIR` writes DIR/bench_validation.json")
    rows = content.get("rows") if isinstance(content, dict) else None
    keys = ("seed", "student_accuracy", "student_f1_macro")
    if not isinstance(rows, list) or not rows or not all(
            isinstance(r, dict) and all(is_number(r.get(k)) for k in keys) for r in rows):
        raise DataError(f"{file}: not a bench_validation.json (expected rows with "
                        f"{', '.join(keys)})")
    for number, row in enumerate(rows, start=1):
        teacher = row.get("teacher_accuracy")
        if teacher is not None and not is_number(teacher):
            raise DataError(f"{file}: row {number} 'teacher_accuracy' is not a number ({shown(teacher)})")
    overrides = content.get("overrides")
    if overrides is not None and not (isinstance(overrides, list)
                                      and all(isinstance(o, str) for o in overrides)):
        raise DataError(f"{file}: 'overrides' is not a list of KEY=VALUE strings ({shown(overrides)})")
    return (file.parent.name, content)


def _finite(value) -> bool:
    return is_number(value) and math.isfinite(value)


def load_ablation(path: str | Path) -> tuple[Path, dict]:
    """An ``xtinyhar ablate`` study folder (or its ``ablation.json``) -> (the file, its
    content); a one-line DataError if it is not one."""
    path = Path(path)
    file = path / "ablation.json" if path.is_dir() else path
    content = read_json(file, "`xtinyhar ablate --out DIR` writes DIR/ablation.json")
    rows = content.get("variants") if isinstance(content, dict) else None
    if not isinstance(rows, list) or not rows or not all(isinstance(r, dict) and "name" in r for r in rows):
        raise DataError(f"{file}: not an ablation.json (expected variants with a name)")
    for row in rows:
        name = shown(row["name"])
        for metric in ("accuracy", "f1_macro"):
            entry = row.get(metric)
            if not isinstance(entry, dict) or not all(_finite(entry.get(k)) for k in ("mean", "std")):
                raise DataError(f"{file}: variant {name}: '{metric}' is not an entry of mean and std")
            diff = row.get("difference", {}) if isinstance(row.get("difference", {}), dict) else None
            if diff is None:
                raise DataError(f"{file}: variant {name}: 'difference' is not a mapping")
            entry = diff.get(metric)
            if entry is not None and not (isinstance(entry, dict) and all(
                    _finite(entry.get(k)) for k in ("mean", "low", "high"))):
                raise DataError(f"{file}: variant {name}: 'difference.{metric}' is not an entry of "
                                "mean, low and high")
        for key in ("params", "mflops"):
            if row.get(key) is not None and not _finite(row[key]):
                raise DataError(f"{file}: variant {name}: '{key}' is not a number ({shown(row[key])})")
        row.setdefault("difference", {})
    return file, content


MERGE_KEYS = ("config", "protocol", "seeds", "folds", "base", "level", "model")


def _pair_values(row: dict, metric: str, source: str) -> dict[tuple[int, int], float]:
    values = row.get(metric, {}).get("values") if isinstance(row.get(metric), dict) else None
    if not isinstance(values, list) or not all(isinstance(v, dict) and {"seed", "fold", "value"} <= v.keys()
                                               for v in values):
        raise XTinyHARError(f"{source}: variant {row.get('name')!r} has no per-(fold, seed) '{metric}' "
                            "values; only tables written by `xtinyhar ablate` merge")
    return {(int(v["seed"]), int(v["fold"])): float(v["value"]) for v in values}


def _same_values(row: dict, other: dict, source: str, other_source: str) -> None:
    """Refuse two copies of one variant's row whose per-(fold, seed) scores differ."""
    for metric in ("accuracy", "f1_macro"):
        mine, theirs = _pair_values(row, metric, source), _pair_values(other, metric, other_source)
        for pair in sorted(set(mine) | set(theirs)):
            a, b = mine.get(pair), theirs.get(pair)
            if a is None or b is None or abs(a - b) > 1e-9:
                raise XTinyHARError(
                    f"{source}: variant {row['name']!r} at seed {pair[0]} fold {pair[1]} has {metric} "
                    f"{a} where {other_source} has {b}: the parts were not trained alike (code, data "
                    "or machine), so their differences to the reference do not pair")


def merge_tables(parts: list[tuple[str, dict]]) -> dict:
    """One study table from tables of parts of one study (``ablate --variants`` runs,
    each with the reference): ``parts`` are (source name, ablation.json content).

    The parts must agree on the config, protocol, seeds, folds, reference, level and model,
    and the reference (and any variant in several parts) must have the same score at every
    (fold, seed) in each part; otherwise a one-line error names the part. Each row's
    difference and interval were computed against its own part's reference, which is then
    the same, so the rows are kept as they are, in the order they first appear."""
    if not parts:
        raise XTinyHARError("merging an ablation study needs at least one table")
    first_source, first = parts[0]
    rows: dict[str, dict] = {}
    for source, table in parts:
        for key in MERGE_KEYS:
            if table.get(key) != first.get(key):
                raise XTinyHARError(f"{source}: {key} {table.get(key)!r} differs from {first_source}'s "
                                    f"{first.get(key)!r}; only parts of one study merge")
        names = [row.get("name") for row in table.get("variants", [])]
        if first.get("base") not in names:
            raise XTinyHARError(f"{source}: has no row of the reference {first.get('base')!r}, so its "
                                "rows cannot be checked against the other parts")
        for row in table["variants"]:
            if row["name"] in rows:
                kept = rows[row["name"]]
                _same_values(row, kept, source, kept["source"])
            else:
                rows[row["name"]] = {**row, "source": source}
    return {**first, "variants": list(rows.values()),
            "parts": [source for source, _ in parts]}


def write_report(run_paths: list[str | Path], out: str | Path, *, labels: list[str] | None = None,
                 level: str = "trial", edge: str | Path | None = None,
                 accuracy: str | Path | None = None,
                 validation: list[str | Path] | None = None,
                 ablation: str | Path | list[str | Path] | None = None) -> list[Path]:
    """Write ``summary.tex`` and ``folds.png`` over all runs, and per run its per-class table,
    confusion matrix (student; teacher too where the run has one) and fold-0 training
    curves, into ``out``; with ``edge`` (a ``bench_edge.json``) also ``edge.tex``, with
    ``accuracy`` (a ``bench_accuracy.json``) ``accuracy.tex``, with ``validation``
    (``bench_validation.py`` runs) ``validation.tex``, with ``ablation`` (an ``xtinyhar
    ablate`` study folder) ``ablation.tex`` and ``ablation.png``; several study folders are
    parts of one study (``ablate --variants``), merged into one table (and ``ablation.json``)
    by :func:`merge_tables`. Returns the files written."""
    if isinstance(ablation, (str, Path)):
        ablation = [ablation]
    if not run_paths and edge is None and accuracy is None and not validation and not ablation:
        raise XTinyHARError("report needs at least one --run, --edge, --accuracy or --validation (or --ablation)")
    if level not in LEVELS:
        raise XTinyHARError(f"--level {level}: choose one of {', '.join(LEVELS)}")
    if labels and len(labels) != len(run_paths):
        raise XTinyHARError(f"{len(labels)} --label for {len(run_paths)} --run; give one per run or none")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise XTinyHARError(f"{out}: --out must be a folder, this is a file")
    # read and check every input first, so a bad one stops the report before it writes anything
    runs = [load_run(path, label) for path, label in zip(run_paths, labels or [None] * len(run_paths))]
    stems = [file_stem(run.label) for run in runs]
    if len(set(stems)) != len(stems):
        raise XTinyHARError(f"two runs share a name ({', '.join(stems)}); tell them apart with --label")
    edge_rows = load_edge(edge) if edge is not None else None
    target_rows = load_targets(accuracy) if accuracy is not None else None
    variants = [load_validation(path) for path in validation or []]
    studies = [load_ablation(path) for path in ablation or []]
    study = None
    if len(studies) == 1:
        study = studies[0]
    elif studies:
        study = (Path(out) / "ablation.json", merge_tables([(str(file), table) for file, table in studies]))
    out.mkdir(parents=True, exist_ok=True)

    def text(path: Path, content: str) -> Path:
        write_text(path, content)
        return path

    written = []
    if len(studies) > 1:
        write_json(study[0], study[1])
        written.append(study[0])
    if study is not None:
        written += [text(out / "ablation.tex", ablation_table(study[1], str(study[0]))),
                    ablation_figure(study[1], out / "ablation.png")]
    if variants:
        written.append(text(out / "validation.tex", validation_table(variants)))
    if target_rows is not None:
        written.append(text(out / "accuracy.tex", targets_table(target_rows, str(accuracy))))
    if edge_rows is not None:
        written.append(text(out / "edge.tex", edge_table(edge_rows, str(edge))))
    if runs:
        written += [text(out / "summary.tex", summary_table(runs, level)),
                    folds_figure(runs, out / "folds.png", level)]
    for run, stem in zip(runs, stems):
        for model in run.models():
            written.append(text(out / f"{stem}_{model}_per_class.tex", per_class_table(run, model, level)))
            written.append(confusion_figure(run, out / f"{stem}_{model}_confusion.png", model, level))
        curves = history_figure(run, out / f"{stem}_history.png")
        if curves is not None:
            written.append(curves)
    return written
