"""Integrated Gradients (Sundararajan, Taly & Yan, ICML 2017) over the raw IMU window.

    IG_i(x) = (x_i - x'_i) * integral_0^1 d f(x' + a (x - x')) / d x_i  da

f is the target class's logit, x' a baseline window. The integral is a weighted sum over
``steps`` points of the straight path (Riemann left/right/middle or trapezoid rule), done in
batches. Completeness: the attributions of a window add up to f(x) - f(x'); ``delta`` reports
how far they are from it, and shrinks as ``steps`` grows.

Dynamic patching picks the patch length from the window's motion energy through a rounding
step, so along the path the model would jump from one patch length to another (a jump has no
gradient and breaks completeness). For models that accept it (the student), the patch length
is held at the value of the explained window along the whole path, baseline included: the
attributions explain the model's decision given the patching it chose for that window.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import numpy as np
import torch

METHODS = ("riemann_left", "riemann_right", "riemann_middle", "trapezoid")
BASELINES = ("zero", "mean", "blur")


@dataclass
class Attribution:
    """IG of a batch of windows: ``values`` (B, T, C), the explained class per window,
    f(x) and f(x') of that class, and the completeness gap ``sum(values) - (f(x) - f(x'))``."""
    values: np.ndarray
    target: np.ndarray
    output: np.ndarray
    baseline_output: np.ndarray
    delta: np.ndarray


def path_weights(steps: int, method: str = "trapezoid") -> tuple[np.ndarray, np.ndarray]:
    """Points ``alpha`` in [0, 1] and weights that sum to 1 for the path integral."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if method == "riemann_left":
        return np.arange(steps) / steps, np.full(steps, 1 / steps)
    if method == "riemann_right":
        return np.arange(1, steps + 1) / steps, np.full(steps, 1 / steps)
    if method == "riemann_middle":
        return (np.arange(steps) + 0.5) / steps, np.full(steps, 1 / steps)
    if method == "trapezoid":
        alphas = np.linspace(0.0, 1.0, steps + 1)
        weights = np.full(steps + 1, 1 / steps)
        weights[[0, -1]] /= 2
        return alphas, weights
    raise ValueError(f"unknown method {method!r} (known: {', '.join(METHODS)})")


def make_baseline(imu: np.ndarray, kind: str, *, train_mean: np.ndarray | None = None,
                  blur_sigma: float = 10.0) -> np.ndarray:
    """Baseline windows for (B, T, C) raw ``imu``.

    - ``zero``: all channels 0 (in physical units this is free fall with no rotation, not
      "still": a still sensor reads 1 g; prefer ``mean`` for a neutral reference);
    - ``mean``: the per-channel mean of the training windows (the model stores it as its
      normalisation mean), constant over time;
    - ``blur``: the window smoothed by a Gaussian of ``blur_sigma`` samples along time,
      keeping its slow posture and removing the motion.
    """
    if kind == "zero":
        return np.zeros_like(imu)
    if kind == "mean":
        if train_mean is None:
            raise ValueError("the 'mean' baseline needs train_mean (the training windows' channel means)")
        return np.broadcast_to(np.asarray(train_mean, dtype=imu.dtype), imu.shape).copy()
    if kind == "blur":
        from scipy.ndimage import gaussian_filter1d

        return gaussian_filter1d(imu, sigma=blur_sigma, axis=1, mode="nearest").astype(imu.dtype)
    raise ValueError(f"unknown baseline {kind!r} (known: {', '.join(BASELINES)})")


def _accepts_patch_len(model: torch.nn.Module) -> bool:
    return "patch_len" in inspect.signature(model.forward).parameters


def integrated_gradients(model: torch.nn.Module, imu: np.ndarray, baseline: np.ndarray, *,
                         target: np.ndarray | None = None, steps: int = 64,
                         method: str = "trapezoid", batch_size: int = 512,
                         fix_patch_length: bool = True) -> Attribution:
    """IG of ``model``'s target logit for raw windows ``imu`` (B, T, C) against ``baseline``
    (same shape). ``target`` defaults to the predicted class of each window."""
    imu = np.asarray(imu, dtype=np.float32)
    baseline = np.asarray(baseline, dtype=np.float32)
    if imu.ndim != 3 or baseline.shape != imu.shape:
        raise ValueError(f"imu must be (B, T, C) and baseline the same shape; got {imu.shape} "
                         f"and {baseline.shape}")
    model = model.eval()
    x, x0 = torch.from_numpy(imu), torch.from_numpy(baseline)
    kwargs = {}
    if fix_patch_length and _accepts_patch_len(model) and hasattr(model, "tokenizer"):
        with torch.no_grad():
            kwargs["patch_len"] = model.tokenizer.patcher.patch_length(x)

    def logits(inputs: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        extra = {k: v[rows] for k, v in kwargs.items()}
        return model(inputs, **extra)

    every = torch.arange(len(x))
    with torch.no_grad():
        out = logits(x, every)
        out0 = logits(x0, every)
    target = out.argmax(1).numpy() if target is None else np.asarray(target)
    tgt = torch.as_tensor(target, dtype=torch.long)
    alphas, weights = path_weights(steps, method)
    total = torch.zeros_like(x)
    # all (window, alpha) pairs, in batches of at most batch_size path points
    pairs = [(b, k) for b in range(len(x)) for k in range(len(alphas))]
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start:start + batch_size]
        rows = torch.tensor([b for b, _ in chunk])
        alpha = torch.tensor([alphas[k] for _, k in chunk], dtype=torch.float32)[:, None, None]
        weight = torch.tensor([weights[k] for _, k in chunk], dtype=torch.float32)[:, None, None]
        points = (x0[rows] + alpha * (x[rows] - x0[rows])).requires_grad_(True)
        selected = logits(points, rows).gather(1, tgt[rows][:, None]).sum()
        grad, = torch.autograd.grad(selected, points)
        total.index_add_(0, rows, grad * weight)
    values = ((x - x0) * total).numpy()
    f = out.gather(1, tgt[:, None])[:, 0].numpy()
    f0 = out0.gather(1, tgt[:, None])[:, 0].numpy()
    return Attribution(values=values, target=target, output=f, baseline_output=f0,
                       delta=values.sum(axis=(1, 2)) - (f - f0))
