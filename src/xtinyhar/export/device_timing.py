"""Timing exported models on the device itself, with NumPy and ONNX Runtime (or LiteRT)
only: ``xtinyhar profile --model FILE ...``. Per file: its size, ``HarModel.predict``
(checks, graph, softmax, label) and the bare graph call, batch 1, median and p95."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from xtinyhar.errors import DataError
from xtinyhar.export.recording import read_imu_csv
from xtinyhar.export.runtime import HarModel
from xtinyhar.timing import time_calls


def still_window(window: int, channels: int, seed: int = 0) -> np.ndarray:
    """A wrist at rest (gravity on z, 0.01 g and 1 deg/s of sensor noise), float32 (W, C):
    the default input for timing. The graphs have static shapes, so what the window holds
    changes only which patch-length row it takes, not how much is computed."""
    rng = np.random.default_rng(seed)
    still = rng.normal(0.0, 1.0, size=(window, channels)).astype(np.float32)
    still[:, :3] *= 0.01
    still[:, 2] += 1.0
    return still


def graph_call(model: HarModel, window: np.ndarray):
    """The bare session or interpreter call for one (W, C) float32 window, without the
    runtime's checks, softmax and label (what ``bench_edge`` times)."""
    batch = np.ascontiguousarray(window[None], dtype=np.float32)
    if model.inference is not None:
        feed = {model.inference.get_inputs()[0].name: batch}
        return lambda: model.inference.run(None, feed)
    interpreter, inp, out = model.interpreter, model._tflite_in, model._tflite_out

    def call():
        interpreter.set_tensor(inp, batch)
        interpreter.invoke()
        return interpreter.get_tensor(out)
    return call


def timing_table(paths: list[str], *, input_path: str | None = None, runs: int = 1000,
                 warmup: int = 100, threads: int = 1) -> Iterator[str]:
    """The lines of the timing table of exported ``paths``: two header lines, then one row
    per file as it is timed. Everything is checked before the first line: each number, the
    input, every model file and the input against each model (whose first prediction is
    made here)."""
    bad = [f"need {flag} >= {least}, got {value}"
           for flag, value, least in (("--runs", runs, 1), ("--warmup", warmup, 0),
                                      ("--threads", threads, 1)) if value < least]
    if bad:
        raise DataError("; ".join(bad))
    imu = None if input_path is None else read_timing_input(input_path)
    models = [HarModel(path, threads=threads) for path in paths]
    prepared = []
    for model in models:
        if imu is None:
            window, source = still_window(model.window, model.channels), "still window"
        else:
            window, source = first_window(model, imu, input_path), input_path
        label, _ = model.predict(window, source)
        prepared.append((model, window, label))
    yield (f"batch 1, {threads} thread(s), median / p95 ms over {runs} calls; input: "
           f"{input_path or 'a still window'}; agrees: an int8 file's share of held-out windows "
           "given the fp32 file's class, measured at export on the exporting CPU")
    yield f"{'model':<40} {'KB':>8} {'predict ms':>15} {'graph ms':>15} {'agrees':>7}  label"
    for model, window, label in prepared:
        predict = time_calls(lambda: model.predict(window), warmup=warmup, runs=runs)
        graph = time_calls(graph_call(model, window), warmup=warmup, runs=runs)
        yield (f"{model.path.name:<40} {model.path.stat().st_size / 1024:>8.1f} "
               f"{predict['median_ms']:>7.3f} / {predict['p95_ms']:<5.3f} "
               f"{graph['median_ms']:>7.3f} / {graph['p95_ms']:<5.3f} "
               f"{model.agreement_text():>7}  {label}")


def read_timing_input(path: str | Path) -> np.ndarray:
    """The ``--input`` of the timing command: a CSV of IMU samples (T, C), or a one-line
    error. A UTD-MHAD ``.mat`` file is refused by name: reading it needs scipy, which the
    device runtime does without (``xtinyhar stream`` reads it)."""
    if not str(path).strip():
        raise DataError("--input: empty file name")
    path = Path(path)
    if path.is_file() and path.suffix.lower() == ".mat":
        raise DataError(f"{path}: a MATLAB .mat file; --input reads CSV only (one sample per row: "
                        "acc x,y,z in g, gyro x,y,z in deg/s); `xtinyhar stream` reads UTD-MHAD "
                        ".mat files")
    return read_imu_csv(path)


def first_window(model: HarModel, imu: np.ndarray, source: str) -> np.ndarray:
    """The first window ``model`` takes from a recorded trial: a sliding-window model needs a
    whole window of samples (as ``xtinyhar stream`` without --pad); a whole-trial model
    stretches any trial of 2 or more samples onto its window, as ``predict_trial`` does."""
    if imu.shape[1] != model.channels:
        raise DataError(f"{source}: {imu.shape[1]} columns, {model.path.name} expects "
                        f"{model.channels} (acc x,y,z in g, gyro x,y,z in deg/s)")
    if model.segmentation == "sliding" and len(imu) < model.window:
        raise DataError(f"{source}: {len(imu)} samples, fewer than the window of {model.window} "
                        f"({model.window / model.imu_hz:g} s at {model.imu_hz:g} Hz) of "
                        f"{model.path.name}; record a longer trial, or leave out --input to time "
                        "a still window")
    return model.trial_windows(imu, source)[0]


