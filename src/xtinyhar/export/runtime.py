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
names, window, rate, stride) comes from the JSON file written beside the model by
``xtinyhar export``, or from the ONNX file itself when the JSON is missing.

Timing on the device itself (no torch either)::

    python -m xtinyhar.export.runtime exports/xtinyhar_student.onnx exports/xtinyhar_student_int8.onnx \
        [--input trial.csv] [--runs 1000] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xtinyhar.errors import DataError, XTinyHARError
from xtinyhar.timing import time_calls

METADATA_KEY = "xtinyhar"
DEVICE_FIELDS = ("format", "precision", "kind", "class_names", "window", "channels", "imu_hz",
                 "stride", "segmentation", "norm_mean", "norm_std")
"""Metadata the runtime acts on; a sidecar must agree with the ONNX file's copy on each."""


def _short(value) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, in one new array (the device path calls it per window)."""
    probs = np.subtract(logits, logits.max(axis=-1, keepdims=True),
                        dtype=np.result_type(logits, np.float32))      # a new float array
    np.exp(probs, out=probs)
    probs /= probs.sum(axis=-1, keepdims=True)
    return probs


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


def as_numeric(values, source: str) -> np.ndarray:
    """Any array-like -> a real-valued ndarray, or a one-line error (ragged nesting, text,
    complex numbers) instead of NumPy's exception."""
    try:
        array = np.asarray(values)
    except (ValueError, TypeError):
        raise DataError(f"{source}: not a rectangular array of numbers (ragged rows?)") from None
    if array.dtype == object or not (np.issubdtype(array.dtype, np.integer)
                                     or np.issubdtype(array.dtype, np.floating)):
        raise DataError(f"{source}: values are not real numbers (dtype {array.dtype})")
    return array


def metadata_beside(path: Path) -> tuple[dict, Path] | None:
    """The metadata in a JSON file beside the model, and that file: the sidecar
    ``<file>.json`` (whose ``format`` must be the model file's type), else, for files
    exported before it was named so, the ``<stem>.json`` of the same format; else None."""
    path = Path(path)
    sidecar = sidecar_path(path)
    if sidecar.is_file():
        metadata = _read_json(sidecar)
        check_format(metadata, path, str(sidecar))
        return metadata, sidecar
    legacy = path.with_suffix(".json")
    if legacy.is_file():
        metadata = _read_json(legacy)
        if metadata.get("format") == path.suffix.lstrip("."):
            return metadata, legacy
    return None


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


def read_metadata(path: Path, session=None) -> dict:
    """The sidecar ``<file>.json``; else, for files exported before it was named so, the
    ``<stem>.json`` of the same format; else the metadata inside an ONNX file."""
    path = Path(path)
    beside = metadata_beside(path)
    if beside is not None:
        return beside[0]
    if session is not None:
        custom = session.get_modelmeta().custom_metadata_map
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
        self.session = self.interpreter = None
        if self.path.suffix == ".onnx":
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            options.log_severity_level = 3
            try:
                self.session = ort.InferenceSession(str(self.path), options,
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
            self._apply_metadata(read_metadata(self.path, self.session))
        elif self.session is not None:
            self._check_sidecar_against_file(beside[1])
        self._check_graph_shapes()

    def _check_sidecar_against_file(self, sidecar: Path) -> None:
        """The ONNX file carries its own copy of the metadata: a sidecar that disagrees on
        anything the runtime acts on (class names, rates, window, normalisation) would
        relabel predictions or shift times, so it is refused, naming the field."""
        custom = self.session.get_modelmeta().custom_metadata_map
        if METADATA_KEY not in custom:
            return                                   # exported before the copy existed
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
        """What ``xtinyhar export`` measured on held-out subjects ({} for older exports)."""
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
        missing = [k for k in ("class_names", "window", "channels", "imu_hz", "stride") if k not in self.metadata]
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
        # onto one window (exports made before the key existed are sliding)
        self.segmentation: str = str(self.metadata.get("segmentation", "sliding"))
        if self.segmentation not in ("sliding", "trial"):
            raise DataError(f"{self.path}: unknown segmentation {self.segmentation!r} in metadata")

    def _check_graph_shapes(self) -> None:
        """Metadata of another model (a sidecar left beside a replaced file) is a one-line
        error here, not an ONNX Runtime error on the first window or another model's labels."""
        if self.session is not None:
            inputs, outputs = self.session.get_inputs()[0].shape, self.session.get_outputs()[0].shape
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
        if self.session is not None:
            return self.session.run(None, {"imu": imu})[0]
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
        trial shorter than a window padded by repeating its last sample (the rules of
        ``xtinyhar.preprocess.windows``, restated here in numpy only)."""
        imu = as_numeric(imu, source)
        if imu.ndim != 2 or imu.shape[1] != self.channels:
            raise DataError(f"{source}: expected a (samples, {self.channels}) trial, got shape {imu.shape}")
        if len(imu) < 2:
            raise DataError(f"{source}: {len(imu)} sample(s); a trial needs at least 2")
        if not np.isfinite(imu).all():
            raise DataError(f"{source}: NaN or infinite value(s) in the trial")
        imu = imu.astype(np.float64)
        if self.segmentation == "trial":
            return stretch(imu, self.window)[None].astype(np.float32)
        if len(imu) < self.window:
            imu = np.concatenate([imu, np.repeat(imu[-1:], self.window - len(imu), axis=0)])
        starts = list(range(0, len(imu) - self.window + 1, self.stride))
        if starts[-1] + self.window < len(imu):
            starts.append(len(imu) - self.window)
        return np.stack([imu[s:s + self.window] for s in starts]).astype(np.float32)

    def predict_trial(self, imu: np.ndarray, source: str = "input") -> tuple[str, np.ndarray]:
        """A whole segmented trial (T, C) -> (label, probabilities (K,)), as evaluation makes
        a trial's prediction: the mean of its windows' probabilities."""
        probs = self.predict_proba(self.trial_windows(imu, source), source).mean(axis=0)
        return self.class_names[int(probs.argmax())], probs


def stretch(series: np.ndarray, length: int) -> np.ndarray:
    """(T, C) -> (length, C): linear interpolation onto ``length`` evenly spaced points from
    the first sample to the last (``preprocess.resample.align_to_length`` in numpy only)."""
    positions = np.linspace(0.0, len(series) - 1.0, length)
    left = np.clip(np.floor(positions).astype(np.int64), 0, max(len(series) - 2, 0))
    right = np.minimum(left + 1, len(series) - 1)
    weight = (positions - left)[:, None]
    return series[left] * (1.0 - weight) + series[right] * weight


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


def read_imu_csv(path: str | Path, channels: int | None = None) -> np.ndarray:
    """A CSV of IMU samples, one row per sample (acc x,y,z in g, gyro x,y,z in deg/s); a
    header row of names is allowed. Returns float32 (T, C)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a text CSV (undecodable bytes); expected comma-separated "
                        "numbers, one sample per row") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
    lines = [(number, line) for number, line in enumerate(text.splitlines(), start=1)
             if line.strip()]                                  # (line number in the file, text)
    if lines and _is_header(lines[0][1]):
        lines = lines[1:]
    if not lines:
        raise DataError(f"{path}: no samples")
    rows = []
    for number, line in lines:
        try:
            rows.append([float(c) for c in line.split(",")])
        except ValueError:
            raise DataError(f"{path}: line {number} is not numeric: {line[:60]!r}") from None
    widths = {len(r) for r in rows}
    if len(widths) != 1:
        raise DataError(f"{path}: rows have different numbers of columns {sorted(widths)}")
    imu = np.asarray(rows, dtype=np.float32)
    if channels is not None and imu.shape[1] != channels:
        raise DataError(f"{path}: {imu.shape[1]} columns, the model expects {channels} "
                        "(acc x,y,z in g, gyro x,y,z in deg/s)")
    if not np.isfinite(imu).all():
        raise DataError(f"{path}: {int((~np.isfinite(imu)).sum())} NaN or infinite value(s)")
    return imu


def _is_header(line: str) -> bool:
    """A row of names: no cell is a number (a row with some numbers is a corrupt sample,
    reported as such, not dropped as a header)."""
    for cell in line.split(","):
        try:
            float(cell)
            return False
        except ValueError:
            pass
    return True


# ------------------------------------------------------------------ timing on the device

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
    if model.session is not None:
        feed = {model.session.get_inputs()[0].name: batch}
        return lambda: model.session.run(None, feed)
    interpreter, inp, out = model.interpreter, model._tflite_in, model._tflite_out

    def call():
        interpreter.set_tensor(inp, batch)
        interpreter.invoke()
        return interpreter.get_tensor(out)
    return call


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m xtinyhar.export.runtime",
        description="Time exported XTinyHAR models on this machine, batch 1, with numpy and "
                    "onnxruntime (or ai-edge-litert) only: HarModel.predict (checks, graph, "
                    "softmax, label) and the bare graph call.")
    parser.add_argument("models", nargs="+", help=".onnx or .tflite files written by xtinyhar export")
    parser.add_argument("--input", help="a recorded trial (CSV only, one sample per row: acc x,y,z in g, "
                                        "gyro x,y,z in deg/s) whose first window is timed; "
                                        "default: a still window")
    parser.add_argument("--runs", type=int, default=1000, help="timed calls per model (default 1000)")
    parser.add_argument("--warmup", type=int, default=100, help="untimed calls first (default 100)")
    parser.add_argument("--threads", type=int, default=1, help="threads per model (default 1)")
    args = parser.parse_args(argv)
    try:
        try:
            prepared = prepare_timing(args)
        except XTinyHARError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(f"batch 1, {args.threads} thread(s), median / p95 ms over {args.runs} calls; input: "
              f"{args.input or 'a still window'}; agrees: an int8 file's share of held-out windows "
              "given the fp32 file's class, measured at export on the exporting CPU")
        print(f"{'model':<40} {'KB':>8} {'predict ms':>15} {'graph ms':>15} {'agrees':>7}  label")
        for model, window, label in prepared:
            predict = time_calls(lambda: model.predict(window), warmup=args.warmup, runs=args.runs)
            graph = time_calls(graph_call(model, window), warmup=args.warmup, runs=args.runs)
            print(f"{model.path.name:<40} {model.path.stat().st_size / 1024:>8.1f} "
                  f"{predict['median_ms']:>7.3f} / {predict['p95_ms']:<5.3f} "
                  f"{graph['median_ms']:>7.3f} / {graph['p95_ms']:<5.3f} {model.agreement_text():>7}  {label}")
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


def prepare_timing(args: argparse.Namespace) -> list[tuple[HarModel, np.ndarray, str]]:
    """Check everything the timing command was given before the table's header or any
    timing: each flag, the input, every model file and the input against each model (whose
    first prediction is made here). Returns (model, window, label) per file."""
    bad = [f"need {flag} >= {least}, got {value}"
           for flag, value, least in (("--runs", args.runs, 1), ("--warmup", args.warmup, 0),
                                      ("--threads", args.threads, 1)) if value < least]
    if bad:
        raise DataError("; ".join(bad))
    imu = None if args.input is None else read_timing_input(args.input)
    models = [HarModel(path, threads=args.threads) for path in args.models]
    prepared = []
    for model in models:
        if imu is None:
            window, source = still_window(model.window, model.channels), "still window"
        else:
            window, source = first_window(model, imu, args.input), args.input
        label, _ = model.predict(window, source)
        prepared.append((model, window, label))
    return prepared


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


if __name__ == "__main__":
    sys.exit(main())
