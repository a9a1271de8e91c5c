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
        "stride": int(data["stride"]), "segmentation": data["segmentation"],
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
    annotate_onnx(src, metadata)
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
    inference = path_or_session if hasattr(path_or_session, "run") else onnx_session(path_or_session)
    imu = np.ascontiguousarray(imu, dtype=np.float32)
    return np.concatenate([inference.run(None, {"imu": imu[i:i + batch]})[0]
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


INT8_SETTINGS = dict(quant_format="QDQ", per_channel=True, activation_type="QUInt8",
                     weight_type="QInt8", reduce_range=True)
"""The int8 format of ``--int8``, chosen so that no CPU's kernels can saturate.

ONNX Runtime runs a quantised MatMul or Conv with uint8 activations times int8 weights
(U8S8). On x86-64 without AVX-512 VNNI (AVX2 and plain AVX-512 machines) that kernel is
``VPMADDUBSW``, which adds two uint8 x int8 products into one *int16* and saturates: with
full-range weights (|w| <= 127) a pair reaches 2 x 255 x 127 = 64,770 > 32,767, and the
student's argmax survived on about a third of the windows only. Weights quantised to 7 bits
(``reduce_range``: |w| <= 64) bound a pair by 2 x 255 x 64 = 32,640, which fits, so the
result is exact on every kernel (VNNI and ARM's accumulate in int32 anyway); the one bit of
weight precision it costs is within the agreement the export guard measures. Activations
are uint8 (x86's native U8S8 path; int8 activations are shifted to uint8 by the kernel).
QDQ keeps the graph readable by every ONNX Runtime, per-channel scales keep small output
channels from losing their weights. :func:`int8_saturation_risks` checks a file for it."""

INT16_MAX = 32767


def int8_saturation_risks(path: str | Path) -> list[str]:
    """What in an int8 ONNX file could saturate an int16 pair sum (``VPMADDUBSW``): each
    int8 weight of a MatMul, Gemm or Conv whose |value| exceeds 64, and each activation of
    one of them quantised to int8 rather than the uint8 of ``INT8_SETTINGS`` (the bound
    above assumes uint8 activations; int8 ones take other kernels on each CPU).
    An empty list means the file is saturation-free by construction, on any CPU."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    initializers = {init.name: init for init in graph.initializer}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    integer_ops = {"MatMul", "Gemm", "Conv", "QLinearMatMul", "QLinearConv", "MatMulInteger",
                   "ConvInteger"}
    limit = INT16_MAX // (2 * 255)            # 64: two uint8 x int8 products fit an int16
    risks = []
    for node in graph.node:
        if node.op_type != "DequantizeLinear":
            continue
        users = {user.op_type for user in consumers.get(node.output[0], [])}
        if not users & integer_ops:
            continue
        source = node.input[0]
        if source in initializers:
            values = numpy_helper.to_array(initializers[source])
            if values.dtype == np.int8 and np.abs(values.astype(np.int16)).max(initial=0) > limit:
                risks.append(f"weight {source} uses |w| up to "
                             f"{int(np.abs(values.astype(np.int16)).max())} (> {limit})")
        else:
            zero_point = initializers.get(node.input[2]) if len(node.input) > 2 else None
            if zero_point is not None and zero_point.data_type == onnx.TensorProto.INT8:
                risks.append(f"activation {source} is int8, not uint8")
    return risks


def quantize_onnx_int8(fp32_path: str | Path, out: str | Path, calibration_imu: np.ndarray,
                       metadata: dict) -> Path:
    """Static post-training int8 quantisation with ONNX Runtime in ``INT8_SETTINGS`` (QDQ,
    uint8 activations, per-channel 7-bit int8 weights: saturation-free on every CPU).

    MatMul, Gemm, Conv and Gather are quantised (Gather: the deployed student's per-row
    embedding table and the patching tables' interpolation weights); the patch-length
    arithmetic (energy, round, clamp), the padding bias and the pooling weights
    (``FLOAT_INPUTS``) stay in float. ``calibration_imu`` are windows of the training
    subjects only. A file that :func:`int8_saturation_risks` flags is refused.
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

    settings = dict(INT8_SETTINGS)
    settings["quant_format"] = getattr(QuantFormat, settings["quant_format"])
    settings["activation_type"] = getattr(QuantType, settings["activation_type"])
    settings["weight_type"] = getattr(QuantType, settings["weight_type"])
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    prepared, quantized = _temp_beside(out, ".pre.onnx"), _temp_beside(out, ".q.onnx")
    try:
        try:
            quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
            quantize_static(str(prepared), str(quantized), Windows(calibration_imu),
                            op_types_to_quantize=list(INT8_OPS),
                            nodes_to_exclude=_nodes_kept_in_float(prepared), **settings)
        except Exception as exc:
            raise ExportError(f"{out}: int8 quantisation failed ({describe(exc)})") from exc
        risks = int8_saturation_risks(quantized)
        if risks:
            raise ExportError(f"{out}: the int8 file could saturate on x86 CPUs without VNNI "
                              f"({risks[0]}; {len(risks)} in all); nothing was written")
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
    from xtinyhar.preprocess.arrays import softmax

    probs = softmax(logits.astype(np.float64))
    trial_ids, trial_probs = pool_trials(probs, cache.trial_index[index])
    return {"window": float(np.mean(probs.argmax(1) == cache.label[index])),
            "trial": float(np.mean(trial_probs.argmax(1) == cache.trial_label[trial_ids])),
            "windows": int(len(index)), "trials": int(len(trial_ids))}


def this_machine() -> dict:
    """The CPU an int8 file's agreement was measured on (int8 kernels differ between x86
    with and without AVX-512 VNNI and ARM, so the number belongs to the machine)."""
    import platform

    processor, flags = platform.processor(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and not processor.strip():
                processor = value.strip()
            elif key.strip() in ("flags", "Features") and not flags:
                flags = set(value.split())
    except OSError:
        pass
    return {"machine": platform.machine(), "processor": processor or "unknown",
            "int8_dot_product": sorted(flags & {"avx512_vnni", "avx_vnni", "asimddp", "i8mm"})}


@dataclass(frozen=True)
class Int8Guard:
    """When ``export --int8`` refuses its int8 file: measured against the fp32 file on every
    held-out window, on the machine that exports."""
    min_agreement: float = 0.95        # share of held-out windows given the fp32 file's class
    max_accuracy_drop: float = 0.02    # held-out trial accuracy, fp32 minus int8

    def __post_init__(self):
        if not 0.0 <= self.min_agreement <= 1.0:
            raise ExportError(f"--int8-min-agreement {self.min_agreement}: must be in [0, 1]")
        if not 0.0 <= self.max_accuracy_drop <= 1.0:
            raise ExportError(f"--int8-max-drop {self.max_accuracy_drop}: must be in [0, 1]")

    def check(self, report: dict, fp32_trial_accuracy: float, out: Path) -> None:
        """A one-line ExportError saying what was measured and what to try, or nothing."""
        agreement, drop = report["agreement_with_fp32"], -report["trial_accuracy_change_vs_fp32"]
        if agreement >= self.min_agreement and drop <= self.max_accuracy_drop + 1e-12:
            return
        raise ExportError(
            f"{out}: int8 refused: it gives the fp32 class on {agreement:.3f} of "
            f"{report['parity_windows']} held-out windows (need >= {self.min_agreement:g}) and "
            f"trial accuracy {report['accuracy']['trial']:.3f} vs fp32 {fp32_trial_accuracy:.3f} "
            f"(change {-drop:+.3f}, allowed drop {self.max_accuracy_drop:g}) on this "
            f"{report['measured_on']['machine']} CPU; nothing was written, earlier files are kept. "
            "Deploy the fp32 file, or retrain longer (low-margin models flip most), or lower "
            "--int8-min-agreement / raise --int8-max-drop knowingly")


@dataclass
class Backend:
    """What differs between export formats: how to write a file, run it, quantise it.
    ``quantize(fp32_path, out, metadata, training_imu)`` returns the int8 path and what to
    record about its calibration; ``annotate(path, metadata)`` stores the final metadata in
    the file itself where the format has room for it (ONNX), the sidecar being written by
    the caller."""
    name: str            # the "format" in the metadata
    runtime: str         # what runs the file, for messages
    export: Callable[[torch.nn.Module, Path, dict], Path]
    logits: Callable[[Path, np.ndarray], np.ndarray]
    quantize: Callable[[Path, Path, dict, np.ndarray], tuple[Path, dict]]
    annotate: Callable[[Path, dict], None] = lambda path, metadata: None


def _finish(path: Path, metadata: dict, report: dict, backend: Backend) -> dict:
    """Store ``report`` as the file's ``evaluation``: inside it (all but its size and final
    name) and, with those, in its sidecar. Returns the sidecar's metadata."""
    backend.annotate(path, {**metadata, "evaluation": {k: v for k, v in report.items()
                                                       if k not in ("file", "bytes")}})
    report["bytes"] = path.stat().st_size
    full = {**metadata, "evaluation": report}
    write_json(sidecar_path(path), full)
    return full


def export_with_checks(model: torch.nn.Module, payload: dict, cache, out: str | Path,
                       backend: Backend, *, int8: bool = False, tolerance: float = 1e-4,
                       guard: Int8Guard | None = None) -> dict:
    """Export a student checkpoint (and its int8 file), check parity with PyTorch on every
    held-out window, report each file's accuracy there, and refuse an int8 file that
    ``guard`` rejects. All files are written beside ``out`` first and moved into place only
    when every check passed, so a refusal leaves earlier files as they were. Returns the
    reports (also stored as each file's ``evaluation`` metadata)."""
    out = Path(out)
    guard = guard or Int8Guard()
    check_device_path(payload, out)
    held_out, training = held_out_and_training(cache, payload["train_subjects"],
                                                payload.get("val_subjects", []),
                                                payload.get("test_subjects"))
    if len(held_out) == 0:
        raise ExportError(f"{out}: every subject of the data was a training subject of the "
                          "model; parity and accuracy need held-out windows")
    imu = cache.imu[held_out]
    subjects = sorted(int(s) for s in np.unique(cache.subject[held_out]))
    metadata = export_metadata(payload, backend.name, "fp32")
    int8_out = out.with_name(out.stem + "_int8" + out.suffix)
    candidate = out.with_name(f".{out.stem}.candidate{out.suffix}")
    int8_candidate = out.with_name(f".{out.stem}_int8.candidate{out.suffix}")
    moves = [(candidate, out)] + ([(int8_candidate, int8_out)] if int8 else [])
    try:
        backend.export(model, candidate, metadata)
        reference = torch_logits(model, imu)
        fp32_logits = backend.logits(candidate, imu)
        parity = compare(reference, fp32_logits)
        if not parity.max_abs < tolerance:
            raise ExportError(f"{out}: {backend.runtime} logits differ from PyTorch by up to "
                              f"{parity.max_abs:.3g} (tolerance {tolerance:g}) on {parity.windows} "
                              "held-out windows; nothing was written")
        report = {"file": str(out), "parity_max_abs": parity.max_abs,
                  "parity_windows": parity.windows, "tolerance": tolerance,
                  "held_out_subjects": subjects,
                  "accuracy_torch": window_and_trial_accuracy(reference, cache, held_out),
                  "accuracy": window_and_trial_accuracy(fp32_logits, cache, held_out)}
        reports = {"fp32": report}
        if int8:
            _, calibration = backend.quantize(candidate, int8_candidate, metadata, cache.imu[training])
            q_metadata = json.loads(sidecar_path(int8_candidate).read_text())
            int8_logits = backend.logits(int8_candidate, imu)
            q_parity = compare(reference, int8_logits)
            q_report = {"file": str(int8_out), **calibration,
                        "parity_max_abs": q_parity.max_abs, "parity_windows": q_parity.windows,
                        "same_prediction": q_parity.same_argmax,
                        "agreement_with_fp32": compare(fp32_logits, int8_logits).same_argmax,
                        "held_out_subjects": subjects,
                        "accuracy": window_and_trial_accuracy(int8_logits, cache, held_out),
                        "measured_on": this_machine(),
                        "guard": {"min_agreement": guard.min_agreement,
                                  "max_accuracy_drop": guard.max_accuracy_drop}}
            q_report["trial_accuracy_change_vs_fp32"] = (q_report["accuracy"]["trial"]
                                                         - report["accuracy"]["trial"])
            guard.check(q_report, report["accuracy"]["trial"], int8_out)
            _finish(int8_candidate, q_metadata, q_report, backend)
            reports["int8"] = q_report
        _finish(candidate, metadata, report, backend)
        for source, target in moves:                 # sidecar first: a present model has its own
            os.replace(sidecar_path(source), sidecar_path(target))
            os.replace(source, target)
    finally:
        for source, _ in moves:
            source.unlink(missing_ok=True)
            sidecar_path(source).unlink(missing_ok=True)
    return reports


def annotate_onnx(path: Path, metadata: dict) -> None:
    """Replace the XTinyHAR metadata inside the ONNX file ``path`` (in place: ``path`` is
    a candidate that is moved into place afterwards)."""
    import onnx

    model = onnx.load(str(path))
    kept = [(p.key, p.value) for p in model.metadata_props if p.key != METADATA_KEY]
    del model.metadata_props[:]
    for key, value in kept + [(METADATA_KEY, json.dumps(metadata))]:
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(path))


def _onnx_int8(fp32: Path, out: Path, metadata: dict, training_imu: np.ndarray,
               calibration_windows: int = 512, seed: int = 0) -> tuple[Path, dict]:
    if len(training_imu) == 0:
        raise ExportError(f"{out}: int8 calibration needs windows of the model's training "
                          "subjects; the data has none")
    chosen = np.sort(np.random.default_rng(seed).choice(
        len(training_imu), size=min(calibration_windows, len(training_imu)), replace=False))
    quantize_onnx_int8(fp32, out, training_imu[chosen], metadata)
    return out, {"calibration_windows": int(len(chosen)), "calibration_subjects": "training subjects only"}


ONNX = Backend("onnx", "ONNX Runtime", export_onnx, onnx_logits, _onnx_int8, annotate_onnx)


def export_checkpoint(model: torch.nn.Module, payload: dict, cache, out: str | Path, *,
                      int8: bool = False, tolerance: float = 1e-4,
                      guard: Int8Guard | None = None) -> dict:
    """ONNX fp32 (and static int8) with parity, held-out accuracy and the int8 guard: see
    export_with_checks."""
    return export_with_checks(model, payload, cache, out, ONNX, int8=int8, tolerance=tolerance,
                              guard=guard)
