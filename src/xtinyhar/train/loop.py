"""One generic fit loop for every model.

AdamW, linear warm-up then cosine decay (per step), gradient clipping, augmentation on
training batches only, validation on subjects held out of training, best-checkpoint
selection by validation macro-F1 (ties: lower validation loss), early stopping after
``patience`` epochs without improvement, ``history.csv`` written after every epoch, and
``last.pt`` so an interrupted fit resumes from its last finished epoch with the same result
(each epoch's shuffling and dropout are seeded from ``seed + epoch``). Optionally, the
weights that are validated and kept are an average of the weights after every step
(``average``: an exponential moving average, or a uniform one from ``average_start`` of the
way through training, as in SWA/SWAD), through ``torch.optim.swa_utils.AveragedModel``.

Data are dicts of equally long NumPy arrays (``imu``, ``label``, maybe ``skeleton``,
``teacher_logits``); ``step`` maps a model and a batch of tensors to (loss, logits).
"""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from sklearn.metrics import f1_score
from tqdm.auto import tqdm

from xtinyhar.errors import XTinyHARError
from xtinyhar.io import load_checkpoint, save_checkpoint, write_csv

log = logging.getLogger(__name__)

Arrays = dict[str, np.ndarray]
SHOW_PROGRESS = True   # a bar per epoch on a terminal; worker processes of a parallel CV turn it off
THREADS: int | None = None   # set by a parallel CV's workers: overrides FitSettings.threads
Step = Callable[[torch.nn.Module, dict[str, torch.Tensor]], tuple[torch.Tensor, torch.Tensor]]
Augment = Callable[[Arrays, np.random.Generator], Arrays]


@dataclass
class FitSettings:
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    seed: int
    warmup_epochs: int = 5
    patience: int = 30
    grad_clip: float = 1.0
    threads: int = 2
    average: str = "none"        # "none", "ema" or "uniform": which weights are validated and kept
    average_start: float = 0.0   # fraction of the epochs after which averaging starts
    ema_decay: float = 0.995     # per step, for average="ema"


@dataclass
class FitResult:
    best_epoch: int
    best_score: float
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0


def weight_averager(model: torch.nn.Module, settings: FitSettings):
    """An ``AveragedModel`` of ``model`` for ``settings.average`` (None for "none").

    Parameters are averaged; buffers (fixed patching tables, BatchNorm statistics) follow the
    live model, since integer tables cannot be averaged."""
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
    if settings.average == "none":
        return None
    if settings.average == "ema":
        return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(settings.ema_decay))
    if settings.average == "uniform":
        return AveragedModel(model)
    raise XTinyHARError(f"train.average: {settings.average!r} is not one of none, ema, uniform")


def to_tensors(batch: Arrays) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in batch.items()}


def take(data: Arrays, index: np.ndarray) -> Arrays:
    return {k: v[index] for k, v in data.items()}


def warmup_cosine(step: int, warmup_steps: int, total_steps: int) -> float:
    """Learning-rate factor: linear from ~0 to 1 over warm-up, then cosine down to 0."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


@torch.no_grad()
def predict_logits(model: torch.nn.Module, data: Arrays, forward: Callable,
                   batch_size: int = 512) -> np.ndarray:
    """Logits for every row of ``data`` in eval mode (no augmentation, no dropout)."""
    model.eval()
    n = len(next(iter(data.values())))
    out = [forward(model, to_tensors(take(data, np.arange(i, min(i + batch_size, n)))))
           for i in range(0, n, batch_size)]
    return torch.cat(out).numpy()


@torch.no_grad()
def evaluate(model: torch.nn.Module, data: Arrays, step: Step, batch_size: int = 512) -> dict:
    """Mean loss, accuracy and macro-F1 over ``data`` in eval mode."""
    model.eval()
    n = len(data["label"])
    total, logits = 0.0, []
    for i in range(0, n, batch_size):
        batch = to_tensors(take(data, np.arange(i, min(i + batch_size, n))))
        loss, out = step(model, batch)
        total += float(loss) * len(out)
        logits.append(out)
    pred = torch.cat(logits).argmax(1).numpy()
    return {"loss": total / n, "acc": float((pred == data["label"]).mean()),
            "f1": float(f1_score(data["label"], pred, average="macro"))}


@dataclass
class _State:
    """What a fit carries from epoch to epoch, and what ``last.pt`` saves."""
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    averaged: torch.nn.Module | None
    average_from: int
    history: list[dict]
    best: dict
    start_epoch: int = 0


def _start(model: torch.nn.Module, settings: FitSettings, steps_per_epoch: int) -> _State:
    """AdamW, warm-up + cosine per step, the weight averager, no best epoch yet."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    total = settings.epochs * steps_per_epoch
    warmup = min(settings.warmup_epochs * steps_per_epoch, total // 2)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: warmup_cosine(s, warmup, total))
    return _State(model=model, optimizer=optimizer, scheduler=scheduler,
                  averaged=weight_averager(model, settings),
                  average_from=math.floor(settings.average_start * settings.epochs), history=[],
                  best={"score": (-1.0, -math.inf), "epoch": -1,
                        "state": copy.deepcopy(model.state_dict())})


def _resume(state: _State, last_path: Path, fingerprint: str | None, desc: str) -> None:
    """Load an interrupted fit's ``last.pt`` into ``state``; refuse another fit's."""
    saved = load_checkpoint(last_path)
    if not isinstance(saved, dict) or not {"model", "optimizer", "scheduler", "epoch"} <= set(saved):
        raise XTinyHARError(f"{last_path}: not the state of an interrupted fit; delete it to "
                            "start again")
    if fingerprint is not None and saved.get("fingerprint") not in (None, fingerprint):
        raise XTinyHARError(f"{last_path}: an interrupted fit of another config, training "
                            "windows or teacher; resume with the same ones, or delete it to "
                            "start again")
    state.model.load_state_dict(saved["model"])
    state.optimizer.load_state_dict(saved["optimizer"])
    state.scheduler.load_state_dict(saved["scheduler"])
    state.history, state.start_epoch = saved["history"], saved["epoch"] + 1
    if state.averaged is not None and saved.get("averaged") is not None:
        state.averaged.load_state_dict(saved["averaged"])
    state.best = {"score": tuple(saved["best_score"]), "epoch": saved["best_epoch"],
                  "state": saved["best_state"]}
    log.info("%s: resuming after epoch %d", desc, saved["epoch"] + 1)


def _train_epoch(state: _State, train: Arrays, step: Step, settings: FitSettings, epoch: int,
                 augment: Augment | None, desc: str) -> dict:
    """One pass over the shuffled training rows (seeded from ``seed + epoch``); the
    epoch's training loss, accuracy and macro-F1."""
    n = len(train["label"])
    steps_per_epoch = math.ceil(n / settings.batch_size)
    rng = np.random.default_rng(settings.seed + epoch)
    torch.manual_seed(settings.seed + epoch)
    model = state.model
    model.train()
    order = rng.permutation(n)
    seen, loss_sum, predicted, truth = 0, 0.0, [], []
    bar = tqdm(range(steps_per_epoch), desc=f"{desc} epoch {epoch + 1}/{settings.epochs}",
               leave=False, disable=None if SHOW_PROGRESS else True)
    for b in bar:
        index = order[b * settings.batch_size:(b + 1) * settings.batch_size]
        batch_np = take(train, index)
        if augment is not None:
            batch_np = augment(batch_np, rng)
        loss, logits = step(model, to_tensors(batch_np))
        state.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
        state.optimizer.step()
        state.scheduler.step()
        if state.averaged is not None and epoch >= state.average_from:
            state.averaged.update_parameters(model)
        seen += len(index)
        loss_sum += float(loss.detach()) * len(index)
        predicted.append(logits.detach().argmax(1).numpy())
        truth.append(batch_np["label"])
    if not math.isfinite(loss_sum):
        raise XTinyHARError(f"{desc}: training diverged (loss {loss_sum / seen} in epoch "
                            f"{epoch + 1}); the model is not saved. Check the inputs for NaN/inf or "
                            "lower train.lr")
    predicted, truth = np.concatenate(predicted), np.concatenate(truth)
    return {"loss": loss_sum / seen, "acc": float((predicted == truth).mean()),
            "f1": float(f1_score(truth, predicted, average="macro"))}


def _validate(state: _State, val: Arrays, step: Step, epoch: int) -> dict:
    """Validate the kept weights (the averaged ones once averaging runs) and keep them if
    they are the best so far: higher macro-F1, ties to lower loss; without validation rows
    the latest epoch is the best. Returns the validation metrics."""
    use_average = state.averaged is not None and epoch >= state.average_from
    kept = state.averaged.module if use_average else state.model
    if len(val["label"]):
        metrics = evaluate(kept, val, step)
        score = (metrics["f1"], -metrics["loss"])
    else:
        metrics = {"loss": float("nan"), "acc": float("nan"), "f1": float("nan")}
        score = (float(epoch), 0.0)
    if score > state.best["score"]:
        state.best = {"score": score, "epoch": epoch, "state": copy.deepcopy(kept.state_dict())}
    return metrics


def _record(state: _State, epoch: int, train_metrics: dict, val_metrics: dict, seconds: float) -> None:
    state.history.append({
        "epoch": epoch + 1, "train_loss": round(train_metrics["loss"], 5),
        "train_acc": round(train_metrics["acc"], 5), "train_f1": round(train_metrics["f1"], 5),
        "val_loss": round(val_metrics["loss"], 5), "val_acc": round(val_metrics["acc"], 5),
        "val_f1": round(val_metrics["f1"], 5), "lr": state.optimizer.param_groups[0]["lr"],
        "seconds": round(seconds, 2)})


def _save_progress(state: _State, workdir: Path, epoch: int, fingerprint: str | None) -> None:
    """``history.csv`` and ``last.pt``, after every epoch, so an interrupted fit resumes."""
    write_csv(workdir / "history.csv", state.history)
    save_checkpoint(workdir / "last.pt", {
        "model": state.model.state_dict(), "optimizer": state.optimizer.state_dict(),
        "scheduler": state.scheduler.state_dict(), "epoch": epoch, "history": state.history,
        "best_score": list(state.best["score"]), "best_epoch": state.best["epoch"],
        "best_state": state.best["state"], "fingerprint": fingerprint,
        "averaged": state.averaged.state_dict() if state.averaged is not None else None})


def fit(model: torch.nn.Module, train: Arrays, val: Arrays, step: Step, settings: FitSettings, *,
        augment: Augment | None = None, workdir: str | Path | None = None, resume: bool = False,
        desc: str = "fit", fingerprint: str | None = None) -> FitResult:
    """Train ``model`` in place; on return it holds the best validation weights (the last
    epoch's when ``val`` is empty), in eval mode.

    ``fingerprint`` names what this fit is (config, windows, teacher); it is saved in
    ``last.pt``, and resuming a ``last.pt`` saved with another one is an error instead of
    silently continuing a different fit."""
    torch.set_num_threads(THREADS or settings.threads)
    workdir = Path(workdir) if workdir is not None else None
    state = _start(model, settings, math.ceil(len(train["label"]) / settings.batch_size))
    if resume and workdir is not None and (workdir / "last.pt").exists():
        _resume(state, workdir / "last.pt", fingerprint, desc)
    started = time.perf_counter()
    for epoch in range(state.start_epoch, settings.epochs):
        if state.best["epoch"] >= 0 and epoch - state.best["epoch"] > settings.patience:
            log.info("%s: early stop at epoch %d (best %d)", desc, epoch, state.best["epoch"] + 1)
            break
        tick = time.perf_counter()
        train_metrics = _train_epoch(state, train, step, settings, epoch, augment, desc)
        val_metrics = _validate(state, val, step, epoch)
        _record(state, epoch, train_metrics, val_metrics, time.perf_counter() - tick)
        log.debug("%s %s", desc, state.history[-1])
        if workdir is not None:
            _save_progress(state, workdir, epoch, fingerprint)
    if workdir is not None and state.history:   # a resumed fit with nothing left to train
        write_csv(workdir / "history.csv", state.history)   # still leaves its own history
    model.load_state_dict(state.best["state"])
    model.eval()
    best_score = state.best["score"][0] if len(val["label"]) else float("nan")
    return FitResult(best_epoch=state.best["epoch"] + 1, best_score=best_score,
                     history=state.history, seconds=time.perf_counter() - started)
