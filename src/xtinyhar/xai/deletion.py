"""Faithfulness by deletion: replace the most important fraction of a window's time steps by
the baseline and watch accuracy fall. A faithful importance ranking makes it fall faster
than a random one; the area under the accuracy-vs-fraction curve (lower = more faithful)
summarises each curve.

Deleting time steps changes a window's motion energy and so, under dynamic patching, the
patch length the model would pick; each window keeps its own patch length along the curve
(as Integrated Gradients keeps it along its path), so the curve measures the ranking, not a
re-tokenised window."""

from __future__ import annotations

import numpy as np
import torch

FRACTIONS = np.round(np.arange(0.0, 1.0001, 0.1), 2)


@torch.no_grad()
def deletion_curve(model: torch.nn.Module, imu: np.ndarray, labels: np.ndarray,
                   importance: np.ndarray, baseline: np.ndarray,
                   fractions: np.ndarray = FRACTIONS) -> np.ndarray:
    """Accuracy after replacing, in each window, the ``f`` most important time steps (by
    ``importance`` (B, T)) with ``baseline`` (B, T, C), for every ``f`` in ``fractions``."""
    order = np.argsort(-importance, axis=1, kind="stable")            # most important first
    T = imu.shape[1]
    model = model.eval()
    tokenizer = getattr(model, "tokenizer", None)
    patch_len = tokenizer.patcher.patch_length(torch.from_numpy(imu.astype(np.float32))) if tokenizer else None
    accuracies = []
    for f in fractions:
        k = int(round(f * T))
        edited = imu.copy()
        if k:
            rows = np.arange(len(imu))[:, None]
            edited[rows, order[:, :k]] = baseline[rows, order[:, :k]]
        edited = torch.from_numpy(edited.astype(np.float32))
        logits = model(edited) if patch_len is None else model(edited, patch_len=patch_len)
        pred = logits.argmax(1).numpy()
        accuracies.append(float(np.mean(pred == labels)))
    return np.asarray(accuracies)


def area_under_curve(fractions: np.ndarray, accuracies: np.ndarray) -> float:
    """Trapezoid area over fractions in [0, 1]."""
    x, y = np.asarray(fractions, dtype=float), np.asarray(accuracies, dtype=float)
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2))
