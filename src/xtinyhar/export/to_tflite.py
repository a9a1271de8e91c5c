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

from xtinyhar.export.to_onnx import (Backend, ExportError, Int8Guard, _temp_beside, converting,
                                     describe, export_with_checks, sidecar_path)
from xtinyhar.export.fold import deploy_form
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
    """Convert ``model(imu) -> logits`` for one (1, W, C) window to a .tflite file (a
    student in its deployed form, :mod:`xtinyhar.export.fold`)."""
    _require()
    import litert_torch

    out = Path(out)
    example = torch.zeros(1, metadata["window"], metadata["channels"])
    example[..., 2] = 1.0                         # a still wrist: gravity on z
    with converting(out, "TFLite conversion") as tmp:
        for name in ("litert_torch", "absl", "jax"):
            logging.getLogger(name).setLevel(logging.ERROR)
        with warnings.catch_warnings(), quiet_output():   # the converter's progress report
            warnings.simplefilter("ignore")
            # The motion energy by slices: dynamic-range int8 would quantise a convolution's
            # raw-unit input (fold.py's module doc).
            deployed = deploy_form(model.eval(), energy_by_conv=False)
            litert_torch.convert(deployed, (example,)).export(str(tmp))
        write_json(sidecar_path(out), metadata)
        os.replace(tmp, out)
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


def _tflite_int8(fp32: Path, out: Path, metadata: dict, training_imu: np.ndarray) -> tuple[Path, dict]:
    quantize_tflite_dynamic(fp32, out, metadata)
    return out, {"calibration_windows": 0, "calibration_subjects": "none (dynamic range)"}


TFLITE = Backend("tflite", "TFLite", export_tflite, tflite_logits, _tflite_int8)


def export_checkpoint_tflite(model: torch.nn.Module, payload: dict, cache, out: str | Path, *,
                             int8: bool = False, tolerance: float = 1e-4,
                             guard: Int8Guard | None = None) -> dict:
    """TFLite fp32 (and dynamic-range int8) with parity, held-out accuracy and the int8
    guard (the metadata lives in the sidecar only)."""
    return export_with_checks(model, payload, cache, out, TFLITE, int8=int8, tolerance=tolerance,
                              guard=guard)
