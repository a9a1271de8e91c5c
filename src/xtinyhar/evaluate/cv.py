"""Subject-independent cross-validation: per fold, train the teacher, distil the student,
evaluate both on the held-out subjects, and write the run directory of docs/design.md:

    runs/<name>/config.yaml
    runs/<name>/folds/<k>/{metrics.json, history.csv, predictions.npz, teacher.pt, student.pt}
    runs/<name>/folds/<k>/done.json
    runs/<name>/summary.json

``done.json`` is written last and lists every artefact of the fold with its size and
sha256. ``resume`` skips a fold only when that marker and every file it lists check out; a
fold whose marker is missing continues from its saved training state (an interrupted fit
resumes after its last finished epoch), and one whose marker or files are damaged is redone
from scratch. Everything that can be checked (the splits, the models) is checked before the
run folder is made. Metrics are computed per window and per trial (a trial's prediction is
the mean of its windows' probabilities).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import shutil
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml
from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from xtinyhar.config import Config, cache_hash, config_from_dict
from xtinyhar.data.splits import Split, splits_for_cache, standard_train_subjects
from xtinyhar.errors import DataError, XTinyHARError
from xtinyhar.evaluate.executors import Executor, WorkerLost, check_address, make_executor
from xtinyhar.evaluate.metrics import (classification_metrics, format_summary_table,
                                       pool_trials, summarize_folds)
from xtinyhar.io import atomic_write, write_csv, write_json, write_text
from xtinyhar.models.teacher import STConvTeacher
from xtinyhar.preprocess.tokens import TokenCache
from xtinyhar.train.loop import predict_logits
from xtinyhar.models.factory import build_student, teacher_config
from xtinyhar.preprocess.arrays import softmax
from xtinyhar.train.checkpoints import check_teacher, load_model, save_model
from xtinyhar.train.tasks import arrays, fit_student, fit_teacher, student_forward, teacher_forward

log = logging.getLogger(__name__)


DONE = "done.json"


def fold_artefacts(cfg: Config, kd: bool) -> tuple[str, ...]:
    """The files a finished fold must hold (its done.json lists them, history.csv too)."""
    if cfg.model.student.arch.startswith("minirocket"):
        return ("predictions.npz", "metrics.json")
    return ("predictions.npz", *(("teacher.pt",) if kd else ()), "student.pt", "metrics.json")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_done(fold_dir: Path, names: tuple[str, ...]) -> None:
    """Mark a fold finished: ``done.json`` with the name, size and sha256 of each artefact
    (and history.csv when there is one). Written after every artefact, so a fold killed
    before it has no marker."""
    present = [n for n in (*names, "history.csv") if (fold_dir / n).is_file()]
    entries = [{"name": n, "bytes": (fold_dir / n).stat().st_size, "sha256": _sha256(fold_dir / n)}
               for n in dict.fromkeys(present)]
    write_json(fold_dir / DONE, {"artefacts": entries})


def unfinished_reason(fold_dir: Path, names: tuple[str, ...]) -> str | None:
    """None when the fold's done.json is readable, lists every artefact in ``names`` and
    every file it lists has its recorded size and sha256; otherwise what is wrong."""
    marker = fold_dir / DONE
    if not marker.is_file():
        return f"no {marker}"
    try:
        entries = {e["name"]: e for e in json.loads(marker.read_text())["artefacts"]}
        if any(Path(n).name != n for n in entries):
            raise ValueError("a listed name is a path")
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError):
        return f"{marker} is unreadable"
    missing = [n for n in names if n not in entries]
    if missing:
        return f"{marker} does not list {', '.join(missing)}"
    for name, entry in entries.items():
        path = fold_dir / name
        if not path.is_file():
            return f"{path} is missing"
        size = path.stat().st_size
        if size != entry.get("bytes"):
            return f"{path} is {size} bytes, {DONE} recorded {entry.get('bytes')} (truncated or replaced)"
        if _sha256(path) != entry.get("sha256"):
            return f"{path} differs from the file {DONE} recorded (sha256)"
    return None


def evaluate_on(model: torch.nn.Module, cache: TokenCache, index: np.ndarray, *,
                teacher: bool, averaging: str) -> tuple[dict, dict]:
    """Window- and trial-level metrics of ``model`` on windows ``index``, and predictions."""
    forward = teacher_forward if teacher else student_forward
    probs = softmax(predict_logits(model, arrays(cache, index, teacher), forward))
    return _metrics_from_probs(probs, cache, index, averaging)


def _metrics_from_probs(probs: np.ndarray, cache: TokenCache, index: np.ndarray,
                        averaging: str) -> tuple[dict, dict]:
    labels = cache.label[index]
    trial_ids, trial_probs = pool_trials(probs, cache.trial_index[index])
    trial_labels = cache.trial_label[trial_ids]
    names = cache.class_names
    metrics = {
        "window": classification_metrics(labels, probs.argmax(1), names, averaging),
        "trial": classification_metrics(trial_labels, trial_probs.argmax(1), names, averaging),
    }
    return metrics, {"window_probs": probs.astype(np.float32), "trial_ids": trial_ids,
                     "trial_probs": trial_probs.astype(np.float32), "trial_labels": trial_labels}


def _fold_record(split: Split) -> dict:
    return {"fold": split.fold, "train_subjects": list(split.train_subjects),
            "val_subjects": list(split.val_subjects), "test_subjects": list(split.test_subjects)}


def train_fold_teacher(cfg: Config, cache: TokenCache, split: Split, fold_dir: Path, *,
                       resume: bool) -> tuple[torch.nn.Module, dict, list[dict]]:
    """Train one fold's teacher; save ``teacher.pt`` and ``teacher_fit.json`` (its fit record
    and epoch history, so a later call that reloads the teacher still reports them)."""
    fold_dir.mkdir(parents=True, exist_ok=True)
    trained = fit_teacher(cfg, cache, split.train, split.val, workdir=fold_dir / "fit_teacher",
                          resume=resume, desc=f"fold {split.fold} teacher")
    save_model(fold_dir / "teacher.pt", trained.model, cfg=cfg, class_names=cache.class_names,
               cache_hash=cache.meta["config_hash"], train_subjects=list(split.train_subjects),
               extra={"fold": split.fold, "val_subjects": [int(s) for s in split.val_subjects],
                      "test_subjects": [int(s) for s in split.test_subjects]})
    fit_record = {"best_epoch": trained.result.best_epoch, "epochs_run": len(trained.result.history),
                  "seconds": round(trained.result.seconds, 1)}
    history = [{"model": "teacher", **row} for row in trained.result.history]
    write_json(fold_dir / "teacher_fit.json", {"record": fit_record, "history": history})
    return trained.model, fit_record, history


def run_fold(cfg: Config, cache: TokenCache, split: Split, fold_dir: Path, *, kd: bool,
             resume: bool) -> dict:
    """Train (or reload) teacher and student for one fold; write its files; return metrics."""
    fold_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    chash = cache.meta["config_hash"]
    record = _fold_record(split)
    predictions: dict[str, np.ndarray] = {"test_index": split.test, "label": cache.label[split.test],
                                          "trial_index": cache.trial_index[split.test]}
    histories: list[dict] = []
    teacher = None
    if cfg.model.student.arch.startswith("minirocket"):
        return _minirocket_fold(cfg, cache, split, fold_dir, record, predictions, started)
    if kd:
        teacher_path = fold_dir / "teacher.pt"
        reloaded = _reload_teacher(teacher_path, split) if resume and teacher_path.exists() else None
        if reloaded is not None:
            teacher, payload = reloaded
            check_teacher(teacher_path, payload, split.train_subjects, chash)
            fitted = fold_dir / "teacher_fit.json"   # written with the teacher, if by this version
            earlier = (_read_record(fitted, "delete the fold's folder to rerun it")
                       if fitted.exists() else {})
            record["teacher_fit"] = earlier.get("record", {"reloaded": True})
            histories += earlier.get("history", [])
            started -= record["teacher_fit"].get("seconds", 0.0)   # the fold's time includes it
        else:
            teacher, record["teacher_fit"], history = train_fold_teacher(cfg, cache, split, fold_dir,
                                                                        resume=resume)
            histories += history
        record["teacher"], preds = evaluate_on(teacher, cache, split.test, teacher=True,
                                               averaging=cfg.eval.averaging)
        predictions.update({f"teacher_{k}": v for k, v in preds.items()})

    trained = fit_student(cfg, cache, split.train, split.val, teacher=teacher,
                          workdir=fold_dir / "fit_student", resume=resume,
                          desc=f"fold {split.fold} student{'' if kd else ' (no KD)'}")
    save_model(fold_dir / "student.pt", trained.model, cfg=cfg, class_names=cache.class_names,
               cache_hash=chash, train_subjects=list(split.train_subjects),
               extra={"fold": split.fold, "distilled": kd,
                      "val_subjects": [int(s) for s in split.val_subjects],
                             "test_subjects": [int(s) for s in split.test_subjects]})
    record["student_fit"] = {"best_epoch": trained.result.best_epoch,
                             "epochs_run": len(trained.result.history),
                             "seconds": round(trained.result.seconds, 1), "distilled": kd}
    histories += [{"model": "student", **row} for row in trained.result.history]
    record["student"], preds = evaluate_on(trained.model, cache, split.test, teacher=False,
                                           averaging=cfg.eval.averaging)
    predictions.update({f"student_{k}": v for k, v in preds.items()})

    if histories:
        keys = list(dict.fromkeys(k for row in histories for k in row))
        write_csv(fold_dir / "history.csv", [{k: row.get(k, "") for k in keys} for row in histories])
    atomic_write(fold_dir / "predictions.npz", lambda f: np.savez(f, **predictions))
    record["seconds"] = round(time.perf_counter() - started, 1)
    write_json(fold_dir / "metrics.json", record)
    write_done(fold_dir, fold_artefacts(cfg, kd))   # last: marks the fold finished
    for workdir in ("fit_teacher", "fit_student"):  # resume state; history.csv has it all
        shutil.rmtree(fold_dir / workdir, ignore_errors=True)
    (fold_dir / "teacher_fit.json").unlink(missing_ok=True)
    return record


def _reload_teacher(path: Path, split: Split):
    """An unfinished fold's saved teacher (model, payload), or None, with a warning, when the
    file cannot be loaded: then the teacher is trained again instead of failing the run."""
    try:
        return load_model(path, "teacher")
    except DataError as exc:
        log.warning("fold %d: %s; training its teacher again", split.fold, exc)
        return None


def _minirocket_fold(cfg: Config, cache: TokenCache, split: Split, fold_dir: Path, record: dict,
                     predictions: dict, started: float) -> dict:
    """The MiniRocket baseline on one fold: no teacher, no epochs, no checkpoint (it is not a
    torch model); metrics and predictions are written like the student's. ``minirocket``
    classifies windows (trial = mean of its windows); ``minirocket_trial`` classifies whole
    trials resampled to a fixed length, and each window carries its trial's scores."""
    from xtinyhar.models.minirocket import TRIAL_LENGTH, fit_minirocket, trial_series

    from xtinyhar.train import loop

    fit_started = time.perf_counter()
    threads = loop.THREADS or cfg.train.threads   # a CV worker's share of the cores
    by_trial = cfg.model.student.arch == "minirocket_trial"
    if by_trial:
        train_trials = np.unique(cache.trial_index[split.train])
        model = fit_minirocket(trial_series(cache, train_trials), cache.trial_label[train_trials],
                               seed=cfg.train.seed, threads=threads, n_classes=len(cache.class_names))
    else:
        model = fit_minirocket(cache.imu[split.train], cache.label[split.train], seed=cfg.train.seed,
                               threads=threads, n_classes=len(cache.class_names))
    record["student_fit"] = {"model": cfg.model.student.arch,
                             "seconds": round(time.perf_counter() - fit_started, 1)}
    if by_trial:
        record["student_fit"]["trial_length"] = TRIAL_LENGTH
        test_trials, where = np.unique(cache.trial_index[split.test], return_inverse=True)
        probs = softmax(model.scores(trial_series(cache, test_trials)))[where]
    else:
        probs = softmax(model.scores(cache.imu[split.test]))
    record["student"], preds = _metrics_from_probs(probs, cache, split.test, cfg.eval.averaging)
    predictions.update({f"student_{k}": v for k, v in preds.items()})
    atomic_write(fold_dir / "predictions.npz", lambda f: np.savez(f, **predictions))
    record["seconds"] = round(time.perf_counter() - started, 1)
    write_json(fold_dir / "metrics.json", record)
    write_done(fold_dir, fold_artefacts(cfg, kd=False))
    return record


MODELS_LEVELS = [("teacher", "trial"), ("student", "trial"), ("teacher", "window"), ("student", "window")]


def _read_record(path: Path, what: str) -> dict:
    """A JSON or YAML file a run wrote earlier, or a one-line error naming it."""
    try:
        text = path.read_text()
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text) or {}
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise XTinyHARError(f"{path}: unreadable ({reason[:120]}); {what}") from None
    if not isinstance(data, dict):
        raise XTinyHARError(f"{path}: not a mapping; {what}")
    return data


@dataclass
class FoldTask:
    """One fold of one run for :func:`schedule_folds`: what :func:`run_fold` needs, the
    token cache named by ``cache_key`` (the pool sends each cache to a worker once), and
    ``key``, under which the fold's record is returned. ``order`` ranks runs: a lower one's
    tasks go first, so runs finish one after another."""
    key: Hashable
    cfg: Config
    cache_key: str
    split: Split
    fold_dir: Path
    kd: bool
    resume: bool
    order: int = 0


def schedule_folds(tasks: list[FoldTask], caches: dict[str, TokenCache], *, jobs: int = 1,
                   address: str | None = None, executor: Executor | None = None,
                   on_done: Callable[[FoldTask, dict], None] | None = None) -> dict:
    """Run ``tasks`` (folds of one or several runs) and return ``{task.key: record}``;
    ``on_done(task, record)`` is called in this process as each fold finishes. The one
    scheduler of ``cv`` and ``ablate``, whatever runs the tasks.

    ``executor`` runs them (default :func:`make_executor`: ``address`` a Ray cluster, else
    ``jobs`` local worker processes, else this process); each model trains on
    ``train.threads // jobs`` threads (the saved config keeps the configured count). With
    KD, a fold's teacher and its student are separate tasks (a student starts once its
    teacher is saved in the fold's folder). Of the tasks ready to start, the lowest
    ``order`` goes first; with one task at a time folds then run one after another, with
    more teachers go before students: 5 folds on 2 workers then take about 2.5 fold-times,
    not 3 (whole folds, or students first, leave a worker idle at the end). Workers that do
    not share this file system get each fold's files through the executor and give back
    the files they write; this process writes them into the run folder, ``done.json``
    last. One line is logged per finished fold, and a progress bar counts the tasks with
    the time left. A failing task stops the others."""
    records: dict = {}
    if not tasks:
        return records
    if executor is None:
        executor = make_executor(jobs=min(jobs, len(tasks)), address=address)
    threads = max(1, min(t.cfg.train.threads for t in tasks) // executor.jobs)

    def needs_teacher(task: FoldTask) -> bool:
        return task.kd and not task.cfg.model.student.arch.startswith("minirocket")

    # (order, 0 teacher / 1 student, position): ready tasks
    ready = [(t.order, 0 if needs_teacher(t) and not (t.resume and (t.fold_dir / "teacher.pt").exists())
              else 1, i, t) for i, t in enumerate(tasks)]
    running: dict = {}
    bar = tqdm(total=len(ready) + sum(stage == 0 for _, stage, _, _ in ready), unit="task",
               desc=f"{len(tasks)} fold(s)", disable=None, leave=False)
    finished = 0

    def submit() -> None:
        slots = executor.capacity()
        while len(running) < slots and ready:
            # one at a time: fold after fold; more: teachers first, so no worker idles at the end
            ready.sort(key=(lambda item: item[:3]) if slots > 1 else (lambda item: (item[0], item[2], item[1])))
            order, stage, position, task = ready.pop(0)
            work = (task.fold_dir if executor.shares_files
                    else FoldFiles(str(task.fold_dir), read_fold_files(task.fold_dir)))
            if stage == 0:
                handle = executor.submit(teacher_task, task.cache_key, task.cfg, task.split, work,
                                         task.resume)
            else:
                # resume=True for a teacher saved by this call: the student reloads it
                handle = executor.submit(fold_task, task.cache_key, task.cfg, task.split, work,
                                         task.kd, task.resume or needs_teacher(task))
            running[handle] = (order, stage, position, task)

    with contextlib.ExitStack() as stack:
        stack.callback(bar.close)
        if not bar.disable:
            stack.enter_context(logging_redirect_tqdm())   # log lines above the bar, not through it
        try:
            executor.start({t.cache_key: caches[t.cache_key] for t in tasks}, threads)
            submit()
            while running:
                for handle, succeeded, result in executor.wait():
                    order, stage, position, task = running.pop(handle)
                    if not succeeded:
                        if isinstance(result, WorkerLost):
                            raise XTinyHARError(f"{task.fold_dir}: {result}") from None
                        raise result
                    record, files = result
                    if files is not None:
                        write_fold_files(task.fold_dir, files)
                    bar.update(1)
                    if stage == 0:
                        ready.append((order, 1, position, task))
                        continue
                    records[task.key] = record
                    finished += 1
                    log.info("%s: fold %d finished (test subjects %s), %d of %d", task.fold_dir,
                             task.split.fold, task.split.test_subjects, finished, len(tasks))
                    if on_done is not None:
                        on_done(task, record)
                submit()
        except BaseException:
            executor.close(cancel=True)
            raise
    executor.close()
    return records


def teacher_task(cache: TokenCache, cfg: Config, split: Split, work: Path | FoldFiles,
                 resume: bool) -> tuple[None, dict | None]:
    """A fold's teacher, as a scheduler task (see :func:`in_fold_folder` for ``work``)."""
    def body(folder: Path) -> None:
        train_fold_teacher(cfg, cache, split, folder, resume=resume)
    return in_fold_folder(work, body)


def fold_task(cache: TokenCache, cfg: Config, split: Split, work: Path | FoldFiles, kd: bool,
              resume: bool) -> tuple[dict, dict | None]:
    """A fold (its student, reloading a saved teacher), as a scheduler task."""
    return in_fold_folder(work, lambda folder: run_fold(cfg, cache, split, folder, kd=kd, resume=resume))


@dataclass
class FoldFiles:
    """A fold's folder sent to a worker that does not share this file system: ``label`` is
    the folder in the run (errors name it), ``files`` its files (relative path -> bytes)."""
    label: str
    files: dict[str, bytes]


def in_fold_folder(work: Path | FoldFiles, body: Callable[[Path], object]) -> tuple[object, dict | None]:
    """``body(folder)`` in the fold's folder: ``work`` itself when it is a path (the worker
    shares the driver's file system; returns ``(result, None)``), else a scratch folder
    filled with ``work.files``, whose files come back: ``(result, {relative path: bytes})``."""
    if isinstance(work, Path):
        return body(work), None
    import tempfile

    with tempfile.TemporaryDirectory(prefix="xtinyhar-fold-") as scratch:
        folder = Path(scratch) / "fold"
        folder.mkdir()
        for name, data in work.files.items():
            path = folder / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        try:
            result = body(folder)
        except XTinyHARError as exc:   # named by the fold's folder in the run, not the scratch one
            raise type(exc)(str(exc).replace(str(folder), work.label)) from None
        return result, read_fold_files(folder)


def read_fold_files(fold_dir: Path) -> dict[str, bytes]:
    """Every file under a fold's folder (relative path -> bytes), temp files left out."""
    if not fold_dir.is_dir():
        return {}
    return {path.relative_to(fold_dir).as_posix(): path.read_bytes()
            for path in sorted(fold_dir.rglob("*"))
            if path.is_file() and not (path.name.startswith(".") and path.name.endswith(".tmp"))}


def write_fold_files(fold_dir: Path, files: dict[str, bytes]) -> None:
    """Make ``fold_dir`` hold what a task's scratch folder held at its end: each changed
    file written atomically, ``done.json`` after the others, then the files the task
    removed (its resume state) removed here too."""
    for name in files:
        if Path(name).is_absolute() or ".." in Path(name).parts:
            raise XTinyHARError(f"{fold_dir}: a task returned the file {name!r}, outside its folder")
    for name in sorted(files, key=lambda n: n == DONE):
        path, data = fold_dir / name, files[name]
        if path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data:
            continue   # sent to the task and unchanged
        atomic_write(path, lambda f, data=data: f.write(data))
    for stale in read_fold_files(fold_dir).keys() - files.keys():
        (fold_dir / stale).unlink(missing_ok=True)
    for folder in sorted((p for p in fold_dir.rglob("*") if p.is_dir()), reverse=True):
        if not any(folder.iterdir()):
            folder.rmdir()


def summarize(records: list[dict], *, protocol: str, cfg: Config) -> dict:
    """Mean and std over folds; ``seconds`` adds up the folds' wall times (resumed included)."""
    seconds = sum(r.get("seconds", 0.0) for r in records)
    summary = {"protocol": protocol, "folds": len(records), "seconds": round(seconds, 1),
               "averaging": cfg.eval.averaging, "config_hash": cache_hash(cfg)}
    for model, level in MODELS_LEVELS:
        if all(model in r for r in records):
            summary[f"{model}_{level}"] = summarize_folds([r[model][level] for r in records])
    return summary


def summary_table(summary: dict) -> str:
    rows = [(f"{model} ({level})", summary[f"{model}_{level}"]) for model, level in MODELS_LEVELS
            if f"{model}_{level}" in summary]
    return format_summary_table(rows)


def check_models(cfg: Config, cache: TokenCache, *, kd: bool) -> None:
    """Build the models of a fold once, untrained, so that a config or cache they cannot be
    built from fails before the run folder exists (not in the middle of fold 0)."""
    if cfg.model.student.arch.startswith("minirocket"):
        return
    n_classes = len(cache.class_names)
    build_student(cfg, n_classes)
    if kd:
        if cache.skeleton is None:
            raise DataError("the token cache has no skeleton windows; the teacher needs them "
                            "(pass --no-kd for a student without a teacher)")
        STConvTeacher(teacher_config(cfg, n_classes, cache.skeleton.shape[2]))


def _save_or_check_run_config(saved: Path, cfg: Config, *, protocol: str, kd: bool) -> None:
    """Write the run's config.yaml, or, resuming, refuse a config, KD setting or protocol
    other than the one the run was started with."""
    if not saved.exists():
        text = yaml.safe_dump({"config": cfg.to_dict(), "protocol": protocol, "kd": kd}, sort_keys=False)
        write_text(saved, text)
        return
    _check_run_config(saved, cfg, protocol=protocol, kd=kd)


def _check_run_config(saved: Path, cfg: Config, *, protocol: str, kd: bool) -> None:
    """Refuse a run's config.yaml made with another config, KD setting or protocol."""
    previous = _read_record(saved, "choose another --out (or restore the file)")
    try:   # keys added to the package since the run started take their defaults
        before = config_from_dict(previous.get("config", {}), source=str(saved)).to_dict()
    except XTinyHARError:
        before = None
    if before != cfg.to_dict() or previous.get("kd") != kd or previous.get("protocol") != protocol:
        raise XTinyHARError(f"{saved}: the run was started with another config, KD setting or protocol; "
                            "resume it with the same ones or choose another --out")


def _finished_record(fold_dir: Path, split: Split) -> dict:
    """The metrics of a fold finished earlier, refused if it ran on other subjects."""
    done = fold_dir / "metrics.json"
    record = _read_record(done, "delete it to rerun the fold")
    expected = _fold_record(split)
    if any(sorted(int(s) for s in record.get(key, [])) != sorted(int(s) for s in expected[key])
           for key in ("train_subjects", "val_subjects", "test_subjects")):
        raise XTinyHARError(f"{done}: fold {split.fold} ran on other subjects (test "
                            f"{record.get('test_subjects')}) than this split's (test "
                            f"{expected['test_subjects']}); rerun it in another --out")
    return record


def _prepare_unfinished(fold_dir: Path, fold: int, reason: str) -> None:
    """Say why a fold is run again. One that finished once and was damaged since (its marker
    exists) starts from scratch, its training state long gone; one without a marker was
    interrupted and continues from its saved training state, if it has one."""
    if (fold_dir / DONE).exists():
        log.warning("fold %d: %s; redoing the fold from scratch", fold, reason)
        shutil.rmtree(fold_dir)
        return
    state = [name for name in ("fit_teacher/last.pt", "teacher.pt", "fit_student/last.pt")
             if (fold_dir / name).is_file()]
    if state:
        log.warning("fold %d: not finished (%s); continuing from its saved training state (%s)",
                    fold, reason, ", ".join(state))
    elif any(fold_dir.iterdir()):
        log.warning("fold %d: not finished (%s) and no training state saved; redoing it", fold, reason)


@dataclass
class CVPlan:
    """A cv run checked and ready: its folder exists with its config.yaml, ``records`` holds
    the folds finished earlier, ``todo`` the (split, fold folder) pairs still to run."""
    cfg: Config
    protocol: str
    run_dir: Path
    kd: bool
    resume: bool
    splits: list[Split]
    records: dict[int, dict]
    todo: list[tuple[Split, Path]]
    from_scratch: bool


def cv_splits(cfg: Config, cache: TokenCache, protocol: str,
              max_folds: int | None = None) -> list[Split]:
    """The folds ``run_cv`` runs for this config, cache and protocol."""
    _, splits = splits_for_cache(cache, protocol, folds=cfg.eval.folds, seed=cfg.train.seed,
                                 val_subjects=cfg.eval.val_subjects,
                                 standard_train=standard_train_subjects(cfg.data.dataset))
    return splits[:max_folds] if max_folds is not None else splits


def _check_run_dir(run_dir: Path, resume: bool) -> None:
    if run_dir.exists() and not run_dir.is_dir():
        raise XTinyHARError(f"{run_dir}: --out must be a directory, this is a file")
    if run_dir.exists() and any(run_dir.iterdir()) and not resume:
        raise XTinyHARError(f"{run_dir}: run directory exists and is not empty; pass --resume to "
                            "continue it or choose another --out")


def plan_cv(cfg: Config, cache: TokenCache, *, protocol: str, run_dir: str | Path,
            resume: bool = False, kd: bool = True, max_folds: int | None = None) -> CVPlan:
    """Everything :func:`run_cv` does before training: check the arguments, the splits and
    the models, make the run folder and its config.yaml, and (resuming) sort the folds into
    finished ones and ones to run (a damaged fold is cleared, each with a line saying why)."""
    if max_folds is not None and max_folds < 1:
        raise XTinyHARError(f"--max-folds {max_folds}: must be at least 1")
    run_dir = Path(run_dir)
    _check_run_dir(run_dir, resume)
    splits = cv_splits(cfg, cache, protocol, max_folds)
    check_models(cfg, cache, kd=kd)
    run_dir.mkdir(parents=True, exist_ok=True)   # only once everything above holds
    _save_or_check_run_config(run_dir / "config.yaml", cfg, protocol=protocol, kd=kd)

    records: dict[int, dict] = {}
    todo = []
    names = fold_artefacts(cfg, kd)
    for split in splits:
        fold_dir = run_dir / "folds" / str(split.fold)
        if resume and fold_dir.exists():
            reason = unfinished_reason(fold_dir, names)
            if reason is None:
                log.info("fold %d finished earlier; skipping", split.fold)
                records[split.fold] = _finished_record(fold_dir, split)
                continue
            _prepare_unfinished(fold_dir, split.fold, reason)
        elif fold_dir.exists():
            shutil.rmtree(fold_dir)
        todo.append((split, fold_dir))
    from_scratch = len(todo) == len(splits) and not any(
        fold_dir.exists() and any(fold_dir.iterdir()) for _, fold_dir in todo)
    return CVPlan(cfg=cfg, protocol=protocol, run_dir=run_dir, kd=kd, resume=resume,
                  splits=splits, records=records, todo=todo, from_scratch=from_scratch)


def plan_tasks(plan: CVPlan, cache_key: str, *, key: Hashable = None, order: int = 0) -> list[FoldTask]:
    """The plan's folds still to run as scheduler tasks, keyed ``(key, fold)``."""
    return [FoldTask(key=(key, split.fold), cfg=plan.cfg, cache_key=cache_key, split=split,
                     fold_dir=fold_dir, kd=plan.kd, resume=plan.resume, order=order)
            for split, fold_dir in plan.todo]


def finish_cv(plan: CVPlan, records: dict[int, dict], *, jobs: int,
              wall_seconds: float | None) -> dict:
    """Write and return the run's summary.json once every fold has a record. ``wall_seconds``:
    the wall time of a call that ran every fold (None when the folds' wall time is not this
    run's alone: a resumed run, or one sharing a pool with other runs)."""
    records = {**plan.records, **records}
    summary = summarize([records[s.fold] for s in plan.splits], protocol=plan.protocol, cfg=plan.cfg)
    previous = plan.run_dir / "summary.json"
    try:   # a damaged summary of an earlier call is simply written anew
        earlier = json.loads(previous.read_text()) if previous.exists() else {}
    except (OSError, UnicodeDecodeError, ValueError):
        earlier = {}
    earlier = earlier if isinstance(earlier, dict) else {}
    if not plan.todo and earlier.get("folds") == len(plan.splits):   # nothing ran: keep what was measured
        summary["wall_seconds"], summary["jobs"] = earlier.get("wall_seconds"), earlier.get("jobs", 1)
    else:
        summary["wall_seconds"] = round(wall_seconds, 1) if plan.from_scratch and wall_seconds is not None else None
        summary["jobs"] = jobs
    write_json(plan.run_dir / "summary.json", summary)
    return summary


def run_plans(plans: dict[Hashable, CVPlan], caches: dict[str, TokenCache], cache_keys: dict[Hashable, str],
              *, jobs: int = 1, address: str | None = None, executor: Executor | None = None,
              on_finished: Callable[[Hashable, CVPlan, dict], None] | None = None) -> dict[Hashable, dict[int, dict]]:
    """Run the folds of several planned cv runs as one grid through :func:`schedule_folds`
    (plan ``k``'s tasks ranked ``order`` = its position, its cache ``caches[cache_keys[k]]``)
    and return each run's fold records, finished earlier or now. A run's summary.json is
    written as soon as its last fold finishes (``on_finished(key, plan, summary)`` then), so
    an interrupted grid loses only the folds in flight."""
    tasks = [task for order, (key, plan) in enumerate(plans.items())
             for task in plan_tasks(plan, cache_keys[key], key=key, order=order)]
    done: dict[Hashable, dict[int, dict]] = {key: {} for key in plans}

    def finish(key: Hashable) -> None:
        summary = finish_cv(plans[key], done[key], jobs=jobs, wall_seconds=None)
        if on_finished is not None:
            on_finished(key, plans[key], summary)

    def on_done(task: FoldTask, record: dict) -> None:
        key, fold = task.key
        done[key][fold] = record
        if len(done[key]) == len(plans[key].todo):
            finish(key)

    for key, plan in plans.items():    # every fold finished earlier, the summary was not written
        if not plan.todo:
            finish(key)
    schedule_folds(tasks, caches, jobs=jobs, address=address, executor=executor, on_done=on_done)
    return {key: {**plan.records, **done[key]} for key, plan in plans.items()}


def finished_run_reason(run_dir: str | Path, cfg: Config, cache: TokenCache, *, protocol: str,
                        kd: bool, max_folds: int | None = None) -> str | None:
    """None when ``run_dir`` is a finished run of this config, KD setting and protocol: its
    config.yaml matches, its summary.json is readable and counts every fold, and every
    fold's done.json and files check out and it ran on this split's subjects (what
    ``--resume`` checks per fold); otherwise what is missing or wrong. Reads, never writes."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        return f"no {run_dir / 'config.yaml'}"
    try:
        _check_run_config(run_dir / "config.yaml", cfg, protocol=protocol, kd=kd)
    except XTinyHARError as exc:
        return str(exc)
    splits = cv_splits(cfg, cache, protocol, max_folds)
    summary_path = run_dir / "summary.json"
    try:
        summary = json.loads(summary_path.read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return f"{summary_path} is missing or unreadable"
    if not isinstance(summary, dict) or summary.get("folds") != len(splits):
        return f"{summary_path} does not count the {len(splits)} folds"
    names = fold_artefacts(cfg, kd)
    for split in splits:
        fold_dir = run_dir / "folds" / str(split.fold)
        reason = unfinished_reason(fold_dir, names)
        if reason is not None:
            return reason
        try:
            _finished_record(fold_dir, split)
        except XTinyHARError as exc:
            return str(exc)
    return None


def run_cv(cfg: Config, cache: TokenCache, *, protocol: str, run_dir: str | Path,
           resume: bool = False, kd: bool = True, max_folds: int | None = None,
           jobs: int = 1, address: str | None = None, executor: Executor | None = None) -> dict:
    """Cross-validate teacher and student; returns the summary (also in summary.json).

    ``jobs`` > 1 trains that many models at once in worker processes, each with
    ``train.threads // jobs`` threads (at least 1). The models are small, so two processes
    on one thread each do more work than one process on two threads; a fold's numbers can
    differ from a ``jobs=1`` run in the last digits (float sums in another order).
    ``address`` (or ``RAY_ADDRESS``) runs the folds on a Ray cluster instead, each task on
    ``train.threads // jobs`` threads; ``executor`` runs them on one made by the caller
    (:mod:`xtinyhar.evaluate.executors`). ``wall_seconds`` in the summary is the wall time
    of the call that ran every fold; a call that resumed a run records ``null`` (the folds'
    own times are in ``seconds``)."""
    if jobs < 1:
        raise XTinyHARError(f"--jobs {jobs}: must be at least 1")
    if executor is None:
        check_address(address)
    plan = plan_cv(cfg, cache, protocol=protocol, run_dir=run_dir, resume=resume, kd=kd,
                   max_folds=max_folds)
    started = time.perf_counter()
    jobs = min(jobs, max(len(plan.todo), 1))
    done = schedule_folds(plan_tasks(plan, "cache"), {"cache": cache}, jobs=jobs, address=address,
                          executor=executor)
    records = {fold: record for (_, fold), record in done.items()}
    return finish_cv(plan, records, jobs=jobs, wall_seconds=time.perf_counter() - started)
