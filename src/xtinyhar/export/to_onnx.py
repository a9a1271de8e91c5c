"""Export a trained student (or teacher) to ONNX, check it against PyTorch, quantise to int8.

The whole device path is in the graph: the raw IMU window (physical units) goes in, the
per-channel normalisation (training-fold statistics), dynamic patching, the transformer and
the head run inside, logits come out. The exporter is ``torch.onnx.export(dynamo=True)``
(the maintained one; it needs onnxscript), opset 20, with a dynamic batch axis.

Metadata (class names, window, rate, channels, stride, training subjects, model config) is
stored twice: inside the ONNX file (``metadata_props``, key ``xtinyhar``) and in a JSON
file beside it, which is what :mod:`xtinyhar.export.runtime` reads.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import warnings
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from xtinyhar import __version__
from xtinyhar.errors import XTinyHARError
from xtinyhar.export.fold import deploy_form
from xtinyhar.export.runtime import sidecar_path
from xtinyhar.io import usual_permissions, write_json

OPSET = 20   # Gelu is one node from opset 20 (five with Erf before)
METADATA_KEY = "xtinyhar"


class ExportError(XTinyHARError):
    """An exported model disagrees with PyTorch, or the export itself failed."""


def describe(exc: BaseException) -> str:
    """``Type: first line of the message`` of a converter's exception, for a one-line error."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0][:200]}" if text else type(exc).__name__


def export_metadata(payload: dict, fmt: str, precision: str) -> dict:
    """What a device needs besides the weights, taken from the checkpoint's payload."""
    model_cfg = payload["model_config"]
    data = payload["config"]["data"]
    return {
        "format": fmt, "precision": precision, "kind": payload["kind"],
        "xtinyhar_version": __version__,
        "input": "imu: float32 (batch, window, channels), raw physical units "
                 "(acc x,y,z in g, gyro x,y,z in deg/s), sampled at imu_hz",
        "output": "logits: float32 (batch, classes)",
        "class_names": list(payload["class_names"]), "window": int(model_cfg["window"]),
        "channels": int(model_cfg["channels"]), "imu_hz": float(model_cfg["imu_hz"]),
        "stride": int(data["stride"]), "segmentation": data.get("segmentation", "sliding"),
        "dataset": data["dataset"],
        "train_subjects": list(payload.get("train_subjects", [])),
        "norm_mean": model_cfg.get("norm_mean", []), "norm_std": model_cfg.get("norm_std", []),
        "model_config": model_cfg,
    }


def _temp_beside(path: Path, suffix: str) -> Path:
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    usual_permissions(name)   # a device's service account must be able to read the model
    return Path(name)


def _attach_metadata_and_move(src: Path, out: Path, metadata: dict) -> None:
    """Write ``metadata`` into the ONNX file ``src`` and move it to ``out`` atomically,
    with its JSON sidecar written first (so a present .onnx always has its .json)."""
    import onnx

    model = onnx.load(str(src))
    kept = [(p.key, p.value) for p in model.metadata_props if p.key != METADATA_KEY]
    del model.metadata_props[:]
    for key, value in kept:
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(metadata)
    onnx.save(model, str(src))
    write_json(sidecar_path(out), metadata)
    os.replace(src, out)


def quiet_exporter() -> None:
    """The exporter logs every optional torchvision op it skips and each graph pass; keep
    the user's terminal for our own report (errors still surface)."""
    for name in ("torch.onnx", "onnx_ir", "onnxscript"):
        logging.getLogger(name).setLevel(logging.ERROR)


@contextmanager
def converting(out: Path, what: str):
    """Yield a temporary file beside ``out`` for a converter to write; any converter error
    becomes a one-line ExportError naming ``out``; the temporary file never stays behind
    (the caller moves it to ``out`` when everything worked)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_beside(out, out.suffix)
    try:
        yield tmp
    except XTinyHARError:
        raise
    except Exception as exc:
        raise ExportError(f"{out}: {what} failed ({describe(exc)})") from exc
    finally:
        tmp.unlink(missing_ok=True)


def export_onnx(model: torch.nn.Module, out: str | Path, metadata: dict) -> Path:
    """Export ``model`` (IMU-only: ``model(imu) -> logits``) to ``out`` with a dynamic batch;
    a student in its deployed form (:mod:`xtinyhar.export.fold`)."""
    out = Path(out)
    model = deploy_form(model.eval())
    example = torch.zeros(2, metadata["window"], metadata["channels"])
    with converting(out, "ONNX export") as tmp:
        quiet_exporter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)   # torch-internal deprecations
            warnings.filterwarnings("ignore", message=".*were assigned during export")  # LSTM weights
            program = torch.onnx.export(
                model.eval(), (example,), dynamo=True, opset_version=OPSET, input_names=["imu"],
                output_names=["logits"], dynamic_shapes={"imu": {0: torch.export.Dim("batch")}},
                verbose=False)
        program.save(str(tmp))
        _attach_metadata_and_move(tmp, out, metadata)
    return out


def onnx_session(path: str | Path, threads: int = 1):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def onnx_logits(path_or_session, imu: np.ndarray, batch: int = 256) -> np.ndarray:
    session = path_or_session if hasattr(path_or_session, "run") else onnx_session(path_or_session)
    imu = np.ascontiguousarray(imu, dtype=np.float32)
    return np.concatenate([session.run(None, {"imu": imu[i:i + batch]})[0]
                           for i in range(0, len(imu), batch)])


@dataclass
class Parity:
    """How far an exported model's logits are from PyTorch's on the same windows."""
    max_abs: float
    windows: int
    same_argmax: float     # fraction of windows with the same predicted class


def compare(reference: np.ndarray, other: np.ndarray) -> Parity:
    return Parity(max_abs=float(np.abs(reference - other).max()), windows=len(reference),
                  same_argmax=float(np.mean(reference.argmax(1) == other.argmax(1))))


def torch_logits(model: torch.nn.Module, imu: np.ndarray, batch: int = 256) -> np.ndarray:
    with torch.no_grad():
        return torch.cat([model.eval()(torch.from_numpy(np.ascontiguousarray(imu[i:i + batch],
                                                                              dtype=np.float32)))
                          for i in range(0, len(imu), batch)]).numpy()


INT8_OPS = ("MatMul", "Gemm", "Conv", "Gather")
"""Operator types ``--int8`` quantises (``benchmarks/bench_int8.py`` compares other sets)."""

FLOAT_INPUTS = ("attn_bias", "pool_weight", "energy_weight")
"""Constants of the deployed student (:mod:`xtinyhar.export.fold`) whose nodes int8 would
only approximate at a cost: the padding bias (0 or float32's most negative value), the
pooling weights (1/n), each a few hundred bytes, and the motion-energy convolution over the
raw window (quantised, its input's one int8 scale would turn small acceleration changes
into wrong patch lengths)."""


def _nodes_kept_in_float(path: Path) -> list[str]:
    """Names of the Gather and Conv nodes that read one of ``FLOAT_INPUTS``."""
    import onnx

    graph = onnx.load(str(path)).graph
    kept = [node for node in graph.node
            if node.op_type in ("Gather", "Conv") and set(node.input) & set(FLOAT_INPUTS)]
    named = {init.name for init in graph.initializer} & set(FLOAT_INPUTS)
    missed = named - {name for node in kept for name in node.input}
    if missed:   # an exporter that renamed or moved them would quietly quantise them
        raise ExportError(f"{path}: no Gather/Conv node reads {', '.join(sorted(missed))}; "
                          "cannot keep it out of int8")
    return [node.name for node in kept]


def quantize_onnx_int8(fp32_path: str | Path, out: str | Path, calibration_imu: np.ndarray,
                       metadata: dict) -> Path:
    """Static post-training int8 quantisation (ONNX Runtime, QDQ format, per-channel weights).

    MatMul, Gemm, Conv and Gather are quantised (Gather: the deployed student's per-row
    embedding table, 121 KB -> 30 KB for the default student, and the patching tables'
    interpolation weights; held-out accuracy within 0.3 points of fp32); the patch-length
    arithmetic (energy, round, clamp), the padding bias and the pooling weights
    (``FLOAT_INPUTS``) stay in float.
    ``calibration_imu`` are windows of the training subjects only.
    """
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Windows(CalibrationDataReader):
        def __init__(self, imu: np.ndarray, batch: int = 32):
            self.batches = iter([{"imu": np.ascontiguousarray(imu[i:i + batch], dtype=np.float32)}
                                 for i in range(0, len(imu), batch)])

        def get_next(self):
            return next(self.batches, None)

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    prepared, quantized = _temp_beside(out, ".pre.onnx"), _temp_beside(out, ".q.onnx")
    try:
        try:
            quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
            quantize_static(str(prepared), str(quantized), Windows(calibration_imu),
                            quant_format=QuantFormat.QDQ, op_types_to_quantize=list(INT8_OPS),
                            per_channel=True, activation_type=QuantType.QInt8,
                            weight_type=QuantType.QInt8,
                            nodes_to_exclude=_nodes_kept_in_float(prepared))
        except Exception as exc:
            raise ExportError(f"{out}: int8 quantisation failed ({describe(exc)})") from exc
        _attach_metadata_and_move(quantized, out, {**metadata, "precision": "int8"})
    finally:
        prepared.unlink(missing_ok=True)
        quantized.unlink(missing_ok=True)
    return out


# ------------------------------------------------------------------ checkpoint -> files

def check_device_path(payload: dict, out: Path) -> None:
    """The exported graph must see what training saw: refuse preprocessing it does not hold."""
    lowpass = payload["config"].get("preproc", {}).get("lowpass_hz")
    if lowpass:
        raise ExportError(f"{out}: the model was trained on low-pass filtered windows "
                          f"(preproc.lowpass_hz {lowpass}); the exported graph has no filter, so a "
                          "device would see other inputs. Export a model trained without it")


def held_out_and_training(cache, train_subjects: list[int], val_subjects: list[int] = (),
                          test_subjects: list[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Windows of subjects the model never saw, neither for training nor for model
    selection (for parity and accuracy), and of its training subjects (the only ones int8
    calibration may use). A checkpoint that records its split's test subjects is evaluated
    on those only (a ``validation``-protocol model never touches the standard test side)."""
    seen = np.isin(cache.subject, list(train_subjects))
    used = seen | np.isin(cache.subject, list(val_subjects))
    held_out = ~used
    if test_subjects:
        held_out &= np.isin(cache.subject, list(test_subjects))
    return np.flatnonzero(held_out), np.flatnonzero(seen)


def window_and_trial_accuracy(logits: np.ndarray, cache, index: np.ndarray) -> dict:
    from xtinyhar.evaluate.metrics import pool_trials
    from xtinyhar.export.runtime import softmax

    probs = softmax(logits.astype(np.float64))
    trial_ids, trial_probs = pool_trials(probs, cache.trial_index[index])
    return {"window": float(np.mean(probs.argmax(1) == cache.label[index])),
            "trial": float(np.mean(trial_probs.argmax(1) == cache.trial_label[trial_ids])),
            "windows": int(len(index)), "trials": int(len(trial_ids))}


@dataclass
class Backend:
    """What differs between export formats: how to write a file, run it, quantise it.
    ``quantize(fp32_path, out, metadata, training_imu)`` returns the int8 path and what to
    record about its calibration."""
    name: str            # the "format" in the metadata
    runtime: str         # what runs the file, for messages
    export: Callable[[torch.nn.Module, Path, dict], Path]
    logits: Callable[[Path, np.ndarray], np.ndarray]
    quantize: Callable[[Path, Path, dict, np.ndarray], tuple[Path, dict]]


def export_with_checks(model: torch.nn.Module, payload: dict, cache, out: str | Path,
                       backend: Backend, *, int8: bool = False, tolerance: float = 1e-4) -> dict:
    """Export a student checkpoint (and its int8 file), check parity with PyTorch on every
    held-out window and report each file's accuracy there. Returns the reports (also
    written into each file's JSON)."""
    out = Path(out)
    check_device_path(payload, out)
    held_out, training = held_out_and_training(cache, payload["train_subjects"],
                                                payload.get("val_subjects", []),
                                                payload.get("test_subjects"))
    if len(held_out) == 0:
        raise ExportError(f"{out}: every subject of the data was a training subject of the "
                          "model; parity and accuracy need held-out windows")
    imu = cache.imu[held_out]
    metadata = export_metadata(payload, backend.name, "fp32")
    # Written beside ``out`` and moved there only once it agrees with PyTorch: a failed
    # export leaves an earlier file of that name as it was.
    candidate = out.with_name(f".{out.stem}.candidate{out.suffix}")
    try:
        backend.export(model, candidate, metadata)
        reference = torch_logits(model, imu)
        fp32_logits = backend.logits(candidate, imu)
        parity = compare(reference, fp32_logits)
        if not parity.max_abs < tolerance:
            raise ExportError(f"{out}: {backend.runtime} logits differ from PyTorch by up to "
                              f"{parity.max_abs:.3g} (tolerance {tolerance:g}) on {parity.windows} "
                              "held-out windows; nothing was written")
        os.replace(sidecar_path(candidate), sidecar_path(out))
        os.replace(candidate, out)
    finally:
        candidate.unlink(missing_ok=True)
        sidecar_path(candidate).unlink(missing_ok=True)
    subjects = sorted(int(s) for s in np.unique(cache.subject[held_out]))
    report = {"file": str(out), "bytes": out.stat().st_size, "parity_max_abs": parity.max_abs,
              "parity_windows": parity.windows, "tolerance": tolerance, "held_out_subjects": subjects,
              "accuracy_torch": window_and_trial_accuracy(reference, cache, held_out),
              "accuracy": window_and_trial_accuracy(fp32_logits, cache, held_out)}
    write_json(sidecar_path(out), {**metadata, "evaluation": report})
    reports = {"fp32": report}
    if int8:
        int8_path, calibration = backend.quantize(out, out.with_name(out.stem + "_int8" + out.suffix),
                                                  metadata, cache.imu[training])
        int8_logits = backend.logits(int8_path, imu)
        q_parity = compare(reference, int8_logits)
        q_report = {"file": str(int8_path), "bytes": int8_path.stat().st_size, **calibration,
                    "parity_max_abs": q_parity.max_abs, "same_prediction": q_parity.same_argmax,
                    "held_out_subjects": subjects,
                    "accuracy": window_and_trial_accuracy(int8_logits, cache, held_out)}
        q_report["trial_accuracy_change_vs_fp32"] = (q_report["accuracy"]["trial"]
                                                     - report["accuracy"]["trial"])
        q_meta = json.loads(sidecar_path(int8_path).read_text())
        write_json(sidecar_path(int8_path), {**q_meta, "evaluation": q_report})
        reports["int8"] = q_report
    return reports


def _onnx_int8(fp32: Path, out: Path, metadata: dict, training_imu: np.ndarray,
               calibration_windows: int = 512, seed: int = 0) -> tuple[Path, dict]:
    if len(training_imu) == 0:
        raise ExportError(f"{out}: int8 calibration needs windows of the model's training "
                          "subjects; the data has none")
    chosen = np.sort(np.random.default_rng(seed).choice(
        len(training_imu), size=min(calibration_windows, len(training_imu)), replace=False))
    quantize_onnx_int8(fp32, out, training_imu[chosen], metadata)
    return out, {"calibration_windows": int(len(chosen)), "calibration_subjects": "training subjects only"}


ONNX = Backend("onnx", "ONNX Runtime", export_onnx, onnx_logits, _onnx_int8)


def export_checkpoint(model: torch.nn.Module, payload: dict, cache, out: str | Path, *,
                      int8: bool = False, tolerance: float = 1e-4) -> dict:
    """ONNX fp32 (and static int8) with parity and held-out accuracy: see export_with_checks."""
    return export_with_checks(model, payload, cache, out, ONNX, int8=int8, tolerance=tolerance)
