"""Device runtime: run an exported XTinyHAR model with numpy and onnxruntime only.

A Raspberry Pi script needs nothing else (no torch, no scipy); for ``.tflite`` files
``ai-edge-litert`` replaces onnxruntime::

    from xtinyhar.export.runtime import HarModel, Streamer
    model = HarModel("exports/xtinyhar_student.onnx")
    label, probs = model.predict(window)          # window: (W, 6) acc in g, gyro in deg/s
    label, probs = model.predict_trial(recording) # a whole segmented trial (T, 6), any T
    stream = Streamer(model)                      # emits a prediction every stride samples
    for event in stream.push(samples):            # samples: (n, 6) as they arrive
        print(event.time_s, event.label)

Normalisation and dynamic patching run inside the exported graph, so the raw window in
physical units, sampled at the model's ``imu_hz``, is all a device passes. Metadata (class
names, window, rate, stride) comes from the JSON sidecar ``<file>.json`` written beside the
model by ``xtinyhar export``, or from the ONNX file itself when the sidecar is missing.
Windows are cut, padded and stretched by ``xtinyhar.preprocess.arrays``, as in training;
``xtinyhar.export.recording`` reads recordings, ``xtinyhar.export.device_timing`` times
the files (``xtinyhar profile --model``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xtinyhar.errors import DataError
from xtinyhar.export.recording import as_numeric
from xtinyhar.preprocess.arrays import align_to_length, sliding_windows, softmax

METADATA_KEY = "xtinyhar"
DEVICE_FIELDS = ("format", "precision", "kind", "class_names", "window", "channels", "imu_hz",
                 "stride", "segmentation", "norm_mean", "norm_std")
"""Metadata the runtime acts on; a sidecar must agree with the ONNX file's copy on each."""


def _short(value) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


def sidecar_path(model_path: str | Path) -> Path:
    """``exports/x.onnx`` -> ``exports/x.onnx.json``: the metadata the runtime reads. Named
    after the whole file name, so an ONNX and a TFLite export of one name keep their own."""
    model_path = Path(model_path)
    return model_path.with_name(model_path.name + ".json")


def _read_json(path: Path) -> dict:
    try:
        metadata = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a JSON text file (undecodable bytes)") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if not isinstance(metadata, dict):
        raise DataError(f"{path}: not XTinyHAR metadata (a JSON {type(metadata).__name__}, "
                        "expected an object)")
    return metadata


def metadata_beside(path: Path) -> tuple[dict, Path] | None:
    """The metadata in the sidecar ``<file>.json`` (whose ``format`` must be the model
    file's type) and that file, or None without a sidecar."""
    path = Path(path)
    sidecar = sidecar_path(path)
    if not sidecar.is_file():
        return None
    metadata = _read_json(sidecar)
    check_format(metadata, path, str(sidecar))
    return metadata, sidecar


def check_format(metadata: dict, path: Path, source: str) -> None:
    """The metadata's ``format`` (``onnx`` / ``tflite``, written by ``xtinyhar export``) must
    be the model file's type: a sidecar copied from another export describes another graph.
    Metadata without the key (hand-written) is taken as it is."""
    if "format" not in metadata:
        return
    expected = Path(path).suffix.lstrip(".")
    stated = metadata["format"]
    if stated != expected:
        raise DataError(f"{source}: metadata of a {stated!r} export, but {Path(path).name} is a "
                        f".{expected} file; is it from another export?")


def read_metadata(path: Path, inference=None) -> dict:
    """The sidecar ``<file>.json``, else the metadata inside an ONNX file (read through
    ``inference``, its ONNX Runtime inference object)."""
    path = Path(path)
    beside = metadata_beside(path)
    if beside is not None:
        return beside[0]
    if inference is not None:
        custom = inference.get_modelmeta().custom_metadata_map
        if METADATA_KEY in custom:
            try:
                metadata = json.loads(custom[METADATA_KEY])
            except json.JSONDecodeError:
                raise DataError(f"{path}: the metadata inside the file is not valid JSON") from None
            if not isinstance(metadata, dict):
                raise DataError(f"{path}: the metadata inside the file is not a JSON object")
            check_format(metadata, path, f"{path} (the metadata inside the file)")
            return metadata
    raise DataError(f"{path}: no XTinyHAR metadata (expected {sidecar_path(path).name} beside it); "
                    "export the model with `xtinyhar export`")


class HarModel:
    """An exported model plus its metadata; ``predict`` takes raw IMU windows."""

    def __init__(self, path: str | Path, threads: int = 1):
        self.path = Path(path)
        if not self.path.is_file():
            raise DataError(f"{self.path}: model file not found")
        if self.path.suffix not in (".onnx", ".tflite"):
            raise DataError(f"{self.path}: unsupported model format {self.path.suffix!r} "
                            "(expected .onnx or .tflite)")
        # metadata beside the file is checked before the model is loaded
        beside = metadata_beside(self.path)
        if beside is not None:
            self._apply_metadata(beside[0])
        self.inference = self.interpreter = None
        if self.path.suffix == ".onnx":
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            options.log_severity_level = 3
            try:
                self.inference = ort.InferenceSession(str(self.path), options,
                                                    providers=["CPUExecutionProvider"])
            except Exception as exc:
                raise DataError(f"{self.path}: not a readable ONNX model ({str(exc).splitlines()[0][:160]})") from None
        else:
            try:
                from ai_edge_litert.interpreter import Interpreter
            except ImportError:
                raise DataError(f"{self.path}: running .tflite needs ai-edge-litert "
                                "(pip install ai-edge-litert)") from None
            try:
                self.interpreter = Interpreter(model_path=str(self.path), num_threads=threads)
                self.interpreter.allocate_tensors()
                # tensor indices looked up once (the details are rebuilt on every call)
                self._tflite_in = self.interpreter.get_input_details()[0]["index"]
                self._tflite_out = self.interpreter.get_output_details()[0]["index"]
            except Exception as exc:
                raise DataError(f"{self.path}: not a readable TFLite model ({str(exc).splitlines()[0][:160]})") from None
        if beside is None:
            self._apply_metadata(read_metadata(self.path, self.inference))
        elif self.inference is not None:
            self._check_sidecar_against_file(beside[1])
        self._check_graph_shapes()

    def _check_sidecar_against_file(self, sidecar: Path) -> None:
        """The ONNX file carries its own copy of the metadata: a sidecar that disagrees on
        anything the runtime acts on (class names, rates, window, normalisation) would
        relabel predictions or shift times, so it is refused, naming the field."""
        custom = self.inference.get_modelmeta().custom_metadata_map
        if METADATA_KEY not in custom:
            return                                   # a file without its own copy
        try:
            inside = json.loads(custom[METADATA_KEY])
        except json.JSONDecodeError:
            raise DataError(f"{self.path}: the metadata inside the file is not valid JSON") from None
        for field in DEVICE_FIELDS:
            if field in inside and self.metadata.get(field) != inside[field]:
                raise DataError(f"{sidecar}: {field} differs from the copy inside {self.path.name} "
                                f"({_short(self.metadata.get(field))} vs {_short(inside[field])}); "
                                "is the JSON from another export? Delete it to use the file's own")

    @property
    def evaluation(self) -> dict:
        """What ``xtinyhar export`` measured on held-out subjects ({} if the metadata has none)."""
        evaluation = self.metadata.get("evaluation", {})
        return evaluation if isinstance(evaluation, dict) else {}

    def agreement_text(self) -> str:
        """The int8 file's agreement with fp32 at export as ``0.991``, or ``-``."""
        agreement = self.evaluation.get("agreement_with_fp32")
        return f"{agreement:.3f}" if isinstance(agreement, (int, float)) else "-"

    def precision_note(self) -> str:
        """One line on the file's precision; for int8, its agreement with the fp32 file as
        measured at export, and on which CPU (int8 kernels differ between CPUs)."""
        precision = str(self.metadata.get("precision", "unknown precision"))
        agreement = self.evaluation.get("agreement_with_fp32")
        if not isinstance(agreement, (int, float)):
            return f"{self.path.name}: {precision}"
        where = self.evaluation.get("measured_on", {})
        machine = where.get("processor") or where.get("machine") or "an unknown CPU"
        return (f"{self.path.name}: {precision}, fp32's class on {agreement:.1%} of "
                f"{self.evaluation.get('parity_windows', '?')} held-out windows, measured at export "
                f"on {machine}")

    def _apply_metadata(self, metadata: dict) -> None:
        """Class names, window, channels, rate, stride and segmentation, or a one-line error."""
        self.metadata = metadata
        missing = [k for k in ("class_names", "window", "channels", "imu_hz", "stride", "segmentation")
                   if k not in self.metadata]
        if missing:
            raise DataError(f"{self.path}: metadata lacks {', '.join(missing)}; not written by "
                            "`xtinyhar export`?")
        names = self.metadata["class_names"]
        if not (isinstance(names, list) and names and all(isinstance(n, str) for n in names)):
            raise DataError(f"{self.path}: metadata class_names must be a non-empty list of names")
        self.class_names: list[str] = list(names)
        try:
            self.window: int = int(self.metadata["window"])
            self.channels: int = int(self.metadata["channels"])
            self.imu_hz: float = float(self.metadata["imu_hz"])
            self.stride: int = int(self.metadata["stride"])
        except (TypeError, ValueError):
            raise DataError(f"{self.path}: metadata window, channels, imu_hz and stride must be "
                            "numbers") from None
        if self.window < 2 or self.channels < 1 or self.stride < 1 or not self.imu_hz > 0:
            raise DataError(f"{self.path}: metadata out of range (window {self.window}, channels "
                            f"{self.channels}, stride {self.stride}, imu_hz {self.imu_hz}); "
                            "window >= 2, channels and stride >= 1, imu_hz > 0")
        # sliding: trained on windows cut from a stream; trial: on whole trials stretched
        # onto one window
        self.segmentation: str = str(self.metadata["segmentation"])
        if self.segmentation not in ("sliding", "trial"):
            raise DataError(f"{self.path}: unknown segmentation {self.segmentation!r} in metadata")

    def _check_graph_shapes(self) -> None:
        """Metadata of another model (a sidecar left beside a replaced file) is a one-line
        error here, not an ONNX Runtime error on the first window or another model's labels."""
        if self.inference is not None:
            inputs, outputs = self.inference.get_inputs()[0].shape, self.inference.get_outputs()[0].shape
        else:
            inputs = list(self.interpreter.get_input_details()[0]["shape"])
            outputs = list(self.interpreter.get_output_details()[0]["shape"])
        stated = {"window": (self.window, inputs, 1), "channels": (self.channels, inputs, 2),
                  "classes": (len(self.class_names), outputs, 1)}
        wrong = [f"{name} {value} (the model file has {shape[axis]})"
                 for name, (value, shape, axis) in stated.items()
                 if len(shape) > axis and isinstance(shape[axis], (int, np.integer))
                 and int(shape[axis]) != value]
        if wrong:
            raise DataError(f"{self.path}: metadata does not match the model: {', '.join(wrong)}; "
                            f"is {sidecar_path(self.path).name} from another export?")

    def check(self, imu: np.ndarray, source: str = "input") -> np.ndarray:
        """(W, C) or (B, W, C) -> float32 (B, W, C), or a one-line error saying what is wrong.
        A float32 array (what a device loop keeps) skips the conversion and its overflow
        guard: about 4 us less per call, a few % of a window's prediction."""
        if not (isinstance(imu, np.ndarray) and imu.dtype == np.float32):
            imu = as_numeric(imu, source)
        if imu.ndim == 2:
            imu = imu[None]
        if imu.ndim != 3:
            raise DataError(f"{source}: expected a (window, channels) or (batch, window, channels) "
                            f"array, got shape {imu.shape}")
        if imu.shape[2] != self.channels:
            raise DataError(f"{source}: {imu.shape[2]} channels, the model expects {self.channels} "
                            "(acc x,y,z in g, gyro x,y,z in deg/s)")
        if imu.shape[1] != self.window:
            raise DataError(f"{source}: window of {imu.shape[1]} samples, the model expects "
                            f"{self.window} at {self.imu_hz:g} Hz")
        if imu.dtype == np.float32:
            as_float32 = np.ascontiguousarray(imu)
        else:
            with np.errstate(over="ignore"):
                as_float32 = np.ascontiguousarray(imu, dtype=np.float32)
        if not np.isfinite(as_float32).all():   # after the cast: 1e300 is finite in float64 only
            bad = int((~np.isfinite(as_float32)).sum())
            raise DataError(f"{source}: {bad} NaN or infinite value(s) (as float32)")
        return as_float32

    def logits(self, imu: np.ndarray, source: str = "input") -> np.ndarray:
        imu = self.check(imu, source)
        if self.inference is not None:
            return self.inference.run(None, {"imu": imu})[0]
        if len(imu) == 0:
            return np.zeros((0, len(self.class_names)), np.float32)
        if len(imu) == 1:                           # a device's one window: no loop, no stack
            self.interpreter.set_tensor(self._tflite_in, imu)
            self.interpreter.invoke()
            return self.interpreter.get_tensor(self._tflite_out).copy()
        rows = []
        for window in imu:                          # the TFLite graph has a batch of 1
            self.interpreter.set_tensor(self._tflite_in, window[None])
            self.interpreter.invoke()
            rows.append(self.interpreter.get_tensor(self._tflite_out)[0].copy())
        return np.stack(rows)

    def predict_proba(self, imu: np.ndarray, source: str = "input") -> np.ndarray:
        """(B, K) class probabilities for (B, W, C) windows (or (1, K) for one window)."""
        return softmax(self.logits(imu, source))

    def predict(self, window: np.ndarray, source: str = "input") -> tuple[str, np.ndarray]:
        """One (W, C) window -> (label, probabilities (K,))."""
        probs = self.predict_proba(window, source)[0]
        return self.class_names[int(probs.argmax())], probs

    def trial_windows(self, imu: np.ndarray, source: str = "input") -> np.ndarray:
        """A whole recorded trial (T, C) -> the (B, W, C) windows the model saw in training:
        a ``trial`` model gets the trial linearly stretched onto its window; a ``sliding``
        model gets windows every ``stride`` samples plus one ending at the last sample, a
        trial shorter than a window padded by repeating its last sample (the functions of
        ``xtinyhar.preprocess.arrays`` that build the training windows)."""
        imu = as_numeric(imu, source)
        if imu.ndim != 2 or imu.shape[1] != self.channels:
            raise DataError(f"{source}: expected a (samples, {self.channels}) trial, got shape {imu.shape}")
        if len(imu) < 2:
            raise DataError(f"{source}: {len(imu)} sample(s); a trial needs at least 2")
        if not np.isfinite(imu).all():
            raise DataError(f"{source}: NaN or infinite value(s) in the trial")
        imu = imu.astype(np.float64)
        if self.segmentation == "trial":
            return align_to_length(imu, self.window)[None].astype(np.float32)
        return sliding_windows(imu, self.window, self.stride).astype(np.float32)

    def predict_trial(self, imu: np.ndarray, source: str = "input") -> tuple[str, np.ndarray]:
        """A whole segmented trial (T, C) -> (label, probabilities (K,)), as evaluation makes
        a trial's prediction: the mean of its windows' probabilities."""
        probs = self.predict_proba(self.trial_windows(imu, source), source).mean(axis=0)
        return self.class_names[int(probs.argmax())], probs


@dataclass
class Prediction:
    """One streaming output: the window ending at sample ``end`` (exclusive)."""
    end: int
    time_s: float
    label: str
    probs: np.ndarray


class Streamer:
    """Feed IMU samples as they arrive; a prediction is emitted once ``window`` samples have
    been seen and then every ``stride`` samples, on the latest ``window`` samples. The
    windows are those starting at 0, stride, 2*stride, ... of the recording, so the output
    equals ``predict`` on those windows."""

    def __init__(self, model: HarModel, stride: int | None = None):
        if model.segmentation == "trial":
            raise DataError(f"{model.path}: trained on whole trials (segmentation: trial), so it "
                            "cannot classify a stream; use predict_trial on a segmented recording")
        self.model = model
        self.stride = int(model.stride if stride is None else stride)
        if self.stride < 1:
            raise DataError(f"stride must be >= 1, got {self.stride}")
        self.buffer = np.zeros((0, model.channels), dtype=np.float32)
        self.buffer_start = 0              # absolute index of buffer[0]
        self.seen = 0                      # samples received so far
        self.next_end = model.window       # emit when this many samples have been seen

    def push(self, samples: np.ndarray, source: str = "stream") -> list[Prediction]:
        samples = as_numeric(samples, source).astype(np.float32)
        if samples.ndim == 1:
            samples = samples[None]
        if samples.ndim != 2 or samples.shape[1] != self.model.channels:
            raise DataError(f"{source}: samples must be (n, {self.model.channels}), got shape {samples.shape}")
        if not np.isfinite(samples).all():
            raise DataError(f"{source}: NaN or infinite value(s) in samples "
                            f"{self.seen}..{self.seen + len(samples) - 1}")
        self.buffer = np.concatenate([self.buffer, samples])
        self.seen += len(samples)
        window, out = self.model.window, []
        while self.seen >= self.next_end:
            end = self.next_end - self.buffer_start
            label, probs = self.model.predict(self.buffer[end - window:end], source)
            out.append(Prediction(self.next_end, self.next_end / self.model.imu_hz, label, probs))
            self.next_end += self.stride
        # keep from the next window's start (never more than we hold: stride may exceed window)
        keep_from = min(max(0, self.next_end - window - self.buffer_start), len(self.buffer))
        self.buffer = self.buffer[keep_from:]
        self.buffer_start += keep_from
        return out


