"""What a model costs: parameters, checkpoint size, FLOPs, latency and peak memory.

All measurements use PyTorch's own tools (``FlopCounterMode``, ``torch.save``,
``torch.profiler``) so they can be reproduced without this package.

FLOP counting caveat: ``FlopCounterMode`` counts a multiply-add as 2 FLOPs and only counts
ops it has a formula for. Explicit ``q @ k.transpose(-2, -1)`` and ``attn @ v`` (bmm/matmul)
are counted, but ``F.scaled_dot_product_attention`` on CPU dispatches to
``aten::_scaled_dot_product_flash_attention_for_cpu``, which has no formula, and counts as 0
(checked in torch 2.13). Our models therefore compute attention with explicit matmuls (which
they need anyway to return the attention maps), so the attention cost is in the total.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch

from xtinyhar.io import quiet_output
from xtinyhar.timing import time_calls
from torch.utils.flop_counter import FlopCounterMode


def count_parameters(model: torch.nn.Module, trainable_only: bool = False) -> int:
    """Number of parameter elements (shared parameters counted once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def state_dict_bytes(model: torch.nn.Module) -> int:
    """Size in bytes of ``torch.save(model.state_dict())``: the float32 checkpoint on disk."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes


def count_flops(model: torch.nn.Module, *inputs: torch.Tensor) -> int:
    """FLOPs of one forward pass over ``inputs`` (whatever batch they hold), in eval mode.

    A multiply-add counts as 2 FLOPs (``FlopCounterMode``'s convention). Ops without a FLOP
    formula (elementwise ops, softmax, and ``F.scaled_dot_product_attention`` on CPU) count
    0, so compute attention with explicit matmuls for the count to include it. oneDNN is
    switched off while counting: its fused LSTM kernel has no formula either, while the
    decomposed LSTM is counted (matmuls of every step). The model's train/eval mode is
    restored afterwards.
    """
    was_training = model.training
    model.eval()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)   # oneDNN's note about Intel GPUs
            with torch.backends.mkldnn.flags(enabled=False), torch.no_grad(), \
                    FlopCounterMode(display=False) as counter:
                model(*inputs)
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())


def measure_latency(fn: Callable[[], object], *, warmup: int = 50, runs: int = 1000,
                    threads: int = 1) -> dict:
    """Wall-clock latency of ``fn()`` over ``runs`` calls after ``warmup`` untimed calls
    (:func:`xtinyhar.timing.time_calls`), with ``torch.set_num_threads(threads)`` (1 by
    default: an edge CPU core) restored afterwards. Returns ``{"median_ms", "p95_ms",
    "mean_ms", "runs"}``. Wrap the model call in ``torch.inference_mode()`` inside ``fn``
    to time inference alone.
    """
    if runs < 1 or warmup < 0 or threads < 1:
        raise ValueError(f"need runs >= 1, warmup >= 0, threads >= 1 "
                         f"(got runs={runs}, warmup={warmup}, threads={threads})")
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return time_calls(fn, warmup=warmup, runs=runs)
    finally:
        torch.set_num_threads(previous)


def peak_memory_bytes(fn: Callable[[], object]) -> int:
    """Peak bytes of PyTorch CPU tensor memory allocated while ``fn()`` runs.

    Replays the allocation/free events that ``torch.profiler`` records with
    ``profile_memory=True`` and returns the highest running total, counted from zero at the
    start (tensors alive before the call are not included). Why not the alternatives: an RSS
    increase is blurred by the allocator keeping freed pages, and ``tracemalloc`` sees
    NumPy/Python allocations but not PyTorch's. Conversely this does not see NumPy or Python
    allocations; use ``tracemalloc`` for NumPy code. Reads the profiler's event stream through
    ``prof.profiler.kineto_results``, a semi-private attribute stable since torch 1.10.
    """
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    with quiet_output(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = [(e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
              if e.name() == "[memory]" and e.device_type() == DeviceType.CPU]
    # Order by time; at equal times put allocations first so the peak is never underestimated.
    events.sort(key=lambda ev: (ev[0], -ev[1]))
    running = peak = 0
    for _, nbytes in events:
        running += nbytes
        peak = max(peak, running)
    return int(peak)


@dataclass
class ModelProfile:
    """Static cost of one model: parameters, checkpoint bytes and FLOPs per forward pass."""

    name: str
    params: int
    size_bytes: int
    flops: int

    def to_dict(self) -> dict:
        return asdict(self)


def profile_model(name: str, model: torch.nn.Module, *inputs: torch.Tensor) -> ModelProfile:
    """Parameters, ``state_dict`` size and FLOPs of ``model`` on ``inputs``."""
    return ModelProfile(name=name, params=count_parameters(model),
                        size_bytes=state_dict_bytes(model), flops=count_flops(model, *inputs))
