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


def seed_everything(seed: int) -> None:
    """One seed for Python's, NumPy's and PyTorch's generators."""
    import random
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


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


def fit(model: torch.nn.Module, train: Arrays, val: Arrays, step: Step, settings: FitSettings, *,
        augment: Augment | None = None, workdir: str | Path | None = None, resume: bool = False,
        desc: str = "fit", fingerprint: str | None = None) -> FitResult:
    """Train ``model`` in place; on return it holds the best validation weights (the last
    epoch's when ``val`` is empty).

    ``fingerprint`` names what this fit is (config, windows, teacher); it is saved in
    ``last.pt``, and resuming a ``last.pt`` saved with another one is an error instead of
    silently continuing a different fit."""
    torch.set_num_threads(THREADS or settings.threads)
    n = len(train["label"])
    steps_per_epoch = math.ceil(n / settings.batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    total = settings.epochs * steps_per_epoch
    warmup = min(settings.warmup_epochs * steps_per_epoch, total // 2)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: warmup_cosine(s, warmup, total))

    averaged = weight_averager(model, settings)
    average_from = math.floor(settings.average_start * settings.epochs)
    history: list[dict] = []
    best = {"score": (-1.0, -math.inf), "epoch": -1, "state": copy.deepcopy(model.state_dict())}
    start_epoch = 0
    last_path = Path(workdir) / "last.pt" if workdir else None
    if resume and last_path is not None and last_path.exists():
        state = load_checkpoint(last_path)
        if not isinstance(state, dict) or not {"model", "optimizer", "scheduler", "epoch"} <= set(state):
            raise XTinyHARError(f"{last_path}: not the state of an interrupted fit; delete it to "
                                "start again")
        saved = state.get("fingerprint")
        if fingerprint is not None and saved is not None and saved != fingerprint:
            raise XTinyHARError(f"{last_path}: an interrupted fit of another config, training "
                                "windows or teacher; resume with the same ones, or delete it to "
                                "start again")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        history, start_epoch = state["history"], state["epoch"] + 1
        if averaged is not None and state.get("averaged") is not None:
            averaged.load_state_dict(state["averaged"])
        best = {"score": tuple(state["best_score"]), "epoch": state["best_epoch"],
                "state": state["best_state"]}
        log.info("%s: resuming after epoch %d", desc, state["epoch"] + 1)

    started = time.perf_counter()
    for epoch in range(start_epoch, settings.epochs):
        if epoch - best["epoch"] > settings.patience and best["epoch"] >= 0:
            log.info("%s: early stop at epoch %d (best %d)", desc, epoch, best["epoch"] + 1)
            break
        tick = time.perf_counter()
        rng = np.random.default_rng(settings.seed + epoch)
        torch.manual_seed(settings.seed + epoch)
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
            batch = to_tensors(batch_np)
            loss, logits = step(model, batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
            optimizer.step()
            scheduler.step()
            if averaged is not None and epoch >= average_from:
                averaged.update_parameters(model)
            seen += len(index)
            loss_sum += float(loss.detach()) * len(index)
            predicted.append(logits.detach().argmax(1).numpy())
            truth.append(batch_np["label"])
        if not math.isfinite(loss_sum):
            raise XTinyHARError(f"{desc}: training diverged (loss {loss_sum / seen} in epoch "
                                f"{epoch + 1}); the model is not saved. Check the inputs for NaN/inf or "
                                "lower train.lr")
        predicted, truth = np.concatenate(predicted), np.concatenate(truth)
        train_metrics = {"loss": loss_sum / seen, "acc": float((predicted == truth).mean()),
                         "f1": float(f1_score(truth, predicted, average="macro"))}
        kept = averaged.module if averaged is not None and epoch >= average_from else model
        if len(val["label"]):
            val_metrics = evaluate(kept, val, step)
            score = (val_metrics["f1"], -val_metrics["loss"])
        else:  # no validation subjects: the last epoch is the result
            val_metrics = {"loss": float("nan"), "acc": float("nan"), "f1": float("nan")}
            score = (float(epoch), 0.0)
        if score > best["score"]:
            best = {"score": score, "epoch": epoch, "state": copy.deepcopy(kept.state_dict())}
        history.append({"epoch": epoch + 1, "train_loss": round(train_metrics["loss"], 5),
                        "train_acc": round(train_metrics["acc"], 5),
                        "train_f1": round(train_metrics["f1"], 5),
                        "val_loss": round(val_metrics["loss"], 5), "val_acc": round(val_metrics["acc"], 5),
                        "val_f1": round(val_metrics["f1"], 5), "lr": optimizer.param_groups[0]["lr"],
                        "seconds": round(time.perf_counter() - tick, 2)})
        log.debug("%s %s", desc, history[-1])
        if workdir is not None:
            write_csv(Path(workdir) / "history.csv", history)
            save_checkpoint(last_path, {
                "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "epoch": epoch, "history": history,
                "best_score": list(best["score"]), "best_epoch": best["epoch"],
                "best_state": best["state"], "fingerprint": fingerprint,
                "averaged": averaged.state_dict() if averaged is not None else None})
    if workdir is not None and history:   # a resumed fit that had nothing left to train
        write_csv(Path(workdir) / "history.csv", history)   # still leaves its own history
    model.load_state_dict(best["state"])
    model.eval()   # as with validation subjects, whose last evaluation left it in eval mode
    best_score = best["score"][0] if len(val["label"]) else float("nan")
    return FitResult(best_epoch=best["epoch"] + 1, best_score=best_score, history=history,
                     seconds=time.perf_counter() - started)
