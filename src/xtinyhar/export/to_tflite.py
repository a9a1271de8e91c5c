"""Export a student to TFLite with Google's PyTorch-to-TFLite converter (``litert-torch``)
and check it with the LiteRT interpreter (``ai_edge_litert``).

Why this route: the seed's ONNX -> TensorFlow route (onnx2tf / onnx-tf) fails on attention
graphs and cannot share an environment with current onnx; litert-torch converts the torch
graph directly (static shapes: batch 1, one window, which is what a device runs). Like the
ONNX file, the graph holds normalisation and dynamic patching; metadata goes to the JSON
beside the file. The stack is an optional extra (``pip install .[tflite]``, ~1.2 GB).
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import numpy as np
import torch

from xtinyhar.export.to_onnx import (ExportError, _temp_beside, compare, describe, sidecar_path,
                                     torch_logits, window_and_trial_accuracy)
from xtinyhar.io import quiet_output, write_json


def _require():
    try:
        with quiet_output():      # importing them logs TF/absl/torchao notices
            import ai_edge_litert  # noqa: F401
            import ai_edge_quantizer  # noqa: F401
            import litert_torch  # noqa: F401
    except ImportError as exc:
        raise ExportError(f"TFLite export needs the optional extra: pip install -e '.[tflite]' "
                          f"({exc.name} is missing)") from None


def export_tflite(model: torch.nn.Module, out: str | Path, metadata: dict) -> Path:
    """Convert ``model(imu) -> logits`` for one (1, W, C) window to a .tflite file."""
    _require()
    import litert_torch

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    example = torch.zeros(1, metadata["window"], metadata["channels"])
    example[..., 2] = 1.0                         # a still wrist: gravity on z
    tmp = _temp_beside(out, ".tflite")
    try:
        for name in ("litert_torch", "absl", "jax"):
            logging.getLogger(name).setLevel(logging.ERROR)
        with warnings.catch_warnings(), quiet_output():   # the converter's progress report
            warnings.simplefilter("ignore")
            litert_torch.convert(model.eval(), (example,)).export(str(tmp))
        write_json(sidecar_path(out), metadata)
        os.replace(tmp, out)
    except ExportError:
        raise
    except Exception as exc:
        raise ExportError(f"{out}: TFLite conversion failed ({describe(exc)})") from exc
    finally:
        tmp.unlink(missing_ok=True)
    return out


def tflite_interpreter(path: str | Path, threads: int = 1):
    from ai_edge_litert.interpreter import Interpreter

    with quiet_output():      # "Created TensorFlow Lite XNNPACK delegate for CPU."
        interpreter = Interpreter(model_path=str(path), num_threads=threads)
        interpreter.allocate_tensors()
    return interpreter


def tflite_logits(path_or_interpreter, imu: np.ndarray) -> np.ndarray:
    """Run windows one at a time (the file has a static batch of 1)."""
    it = path_or_interpreter if hasattr(path_or_interpreter, "invoke") else tflite_interpreter(path_or_interpreter)
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    rows = []
    for window in np.asarray(imu, dtype=np.float32):
        it.set_tensor(inp["index"], window[None])
        it.invoke()
        rows.append(it.get_tensor(out["index"])[0].copy())
    return np.stack(rows)


def quantize_tflite_dynamic(fp32_path: str | Path, out: str | Path, metadata: dict) -> Path:
    """Dynamic-range int8 (int8 weights, float activations) with Google's AI Edge Quantizer."""
    from ai_edge_quantizer import quantizer, recipe

    out = Path(out)
    tmp = _temp_beside(out, ".tflite")
    try:
        with warnings.catch_warnings(), quiet_output():   # the quantizer's own report
            warnings.simplefilter("ignore")
            try:
                qt = quantizer.Quantizer(str(fp32_path))
                qt.load_quantization_recipe(recipe.dynamic_wi8_afp32())
                tmp.write_bytes(qt.quantize().quantized_model)
            except Exception as exc:
                raise ExportError(f"{out}: int8 quantisation failed ({describe(exc)})") from exc
        write_json(sidecar_path(out), {**metadata, "precision": "int8 weights (dynamic range)"})
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def export_checkpoint_tflite(model: torch.nn.Module, payload: dict, cache, out: str | Path, *,
                             int8: bool = False, tolerance: float = 1e-4) -> dict:
    """TFLite counterpart of :func:`xtinyhar.export.to_onnx.export_checkpoint`."""
    from xtinyhar.export.to_onnx import check_device_path, export_metadata, held_out_and_training

    out = Path(out)
    check_device_path(payload, out)
    held_out, _ = held_out_and_training(cache, payload["train_subjects"],
                                         payload.get("val_subjects", []))
    if len(held_out) == 0:
        raise ExportError(f"{out}: no held-out subjects in the data for parity and accuracy")
    imu = cache.imu[held_out]
    metadata = export_metadata(payload, "tflite", "fp32")
    export_tflite(model, out, metadata)
    reference = torch_logits(model, imu)
    logits = tflite_logits(out, imu)
    parity = compare(reference, logits)
    if not parity.max_abs < tolerance:
        out.unlink(missing_ok=True)
        sidecar_path(out).unlink(missing_ok=True)
        raise ExportError(f"{out}: TFLite logits differ from PyTorch by up to {parity.max_abs:.3g} "
                          f"(tolerance {tolerance:g}) on {parity.windows} held-out windows; the file was removed")
    report = {"file": str(out), "bytes": out.stat().st_size, "parity_max_abs": parity.max_abs,
              "parity_windows": parity.windows, "tolerance": tolerance,
              "held_out_subjects": sorted(int(s) for s in np.unique(cache.subject[held_out])),
              "accuracy": window_and_trial_accuracy(logits, cache, held_out)}
    write_json(sidecar_path(out), {**metadata, "evaluation": report})
    reports = {"fp32": report}
    if int8:
        q_path = out.with_name(out.stem + "_int8" + out.suffix)
        quantize_tflite_dynamic(out, q_path, metadata)
        q_logits = tflite_logits(q_path, imu)
        q_parity = compare(reference, q_logits)
        q_report = {"file": str(q_path), "bytes": q_path.stat().st_size,
                    "parity_max_abs": q_parity.max_abs, "same_prediction": q_parity.same_argmax,
                    "held_out_subjects": report["held_out_subjects"],
                    "accuracy": window_and_trial_accuracy(q_logits, cache, held_out)}
        q_report["trial_accuracy_change_vs_fp32"] = q_report["accuracy"]["trial"] - report["accuracy"]["trial"]
        write_json(sidecar_path(q_path), {**metadata, "precision": "int8 weights (dynamic range)",
                                          "evaluation": q_report})
        reports["int8"] = q_report
    return reports
