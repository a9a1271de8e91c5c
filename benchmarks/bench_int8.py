"""Benchmark: int8 settings for the student's ONNX file, side by side with fp32.

    .venv/bin/python benchmarks/bench_int8.py
        [--model runs/bench/standard_seed42/folds/0/student.pt] [--rounds 8]

Trains nothing. Exports the student as ``xtinyhar export`` does (its deployed form), then
quantises the fp32 file with ONNX Runtime's static quantisation in several settings, all
calibrated on the same windows of the training subjects (up to 512, as ``--int8``) and
keeping the same nodes in float (``to_onnx.FLOAT_INPUTS``):

- ``--int8`` as written by ``xtinyhar export`` (``to_onnx.INT8_SETTINGS``: QDQ; MatMul,
  Gemm, Conv, Gather; uint8 activations, per-channel 7-bit int8 weights);
- full-range int8 weights with int8 activations (ONNX Runtime's defaults, which saturate
  on x86 without AVX-512 VNNI) and with uint8 activations;
- uint8 activations and uint8 weights (U8U8, the other saturation-free format);
- MatMul and Conv only; MatMul only (each in the ``--int8`` types);
- the older QOperator format (QLinearMatMul / QLinearConv) for MatMul and Conv.

For each: file size, the saturation risks ``to_onnx.int8_saturation_risks`` finds in it,
held-out trial accuracy (one whole-trial window per trial of the
subjects the model never saw), the share of held-out windows given the fp32 file's class,
and the batch-1, 1-thread ONNX Runtime latency, median / p95 over one held-out window,
the files taking turns round by round. Then ONNX Runtime's fixed cost per node: a chain
of 60 tiny Add nodes against a single one.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from xtinyhar.export.to_onnx import (INT8_OPS, INT8_SETTINGS, _nodes_kept_in_float, export_onnx,
                                     held_out_and_training, int8_saturation_risks, onnx_session,
                                     quiet_exporter, this_machine)
from xtinyhar.train.checkpoints import load_with_windows

REPO = Path(__file__).resolve().parents[1]


def settings():
    from onnxruntime.quantization import QuantFormat, QuantType

    all_ops = list(INT8_OPS)                 # what `xtinyhar export --int8` quantises
    chosen = dict(quant_format=QuantFormat.QDQ, op_types_to_quantize=all_ops)   # + INT8_SETTINGS' types
    return {
        "--int8 (7-bit weights, uint8 act.)": chosen,
        "full-range weights, int8 act.": {**chosen, "activation_type": QuantType.QInt8,
                                           "reduce_range": False},
        "full-range weights, uint8 act.": {**chosen, "reduce_range": False},
        "U8U8 (uint8 weights)": {**chosen, "weight_type": QuantType.QUInt8, "reduce_range": False},
        "MatMul and Conv only": {**chosen, "op_types_to_quantize": ["MatMul", "Conv"]},
        "MatMul only": {**chosen, "op_types_to_quantize": ["MatMul"]},
        "QOperator, MatMul and Conv": {**chosen, "quant_format": QuantFormat.QOperator,
                                       "op_types_to_quantize": ["MatMul", "Conv"]},
    }


def quantise(prepared: Path, out: Path, calibration: np.ndarray, options: dict) -> Path:
    from onnxruntime.quantization import CalibrationDataReader, QuantType, quantize_static

    class Windows(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{"imu": calibration[i:i + 32]} for i in range(0, len(calibration), 32)])

        def get_next(self):
            return next(self.batches, None)

    kwargs = dict(per_channel=True, activation_type=getattr(QuantType, INT8_SETTINGS["activation_type"]),
                  weight_type=getattr(QuantType, INT8_SETTINGS["weight_type"]),
                  reduce_range=INT8_SETTINGS["reduce_range"],
                  nodes_to_exclude=_nodes_kept_in_float(prepared))
    kwargs.update(options)
    quantize_static(str(prepared), str(out), Windows(), **kwargs)
    return out


def logits_one_by_one(session, windows: np.ndarray) -> np.ndarray:
    return np.concatenate([session.run(None, {"imu": windows[i:i + 1]})[0] for i in range(len(windows))])


def in_turns(sessions: dict, window: np.ndarray, rounds: int, calls: int = 300) -> dict:
    """Median and p95 (us) per session, the sessions alternating round by round."""
    feed = {"imu": window}
    for session in sessions.values():
        for _ in range(200):
            session.run(None, feed)
    times = {name: [] for name in sessions}
    for _ in range(rounds):
        for name, session in sessions.items():
            for _ in range(calls):
                start = time.perf_counter_ns()
                session.run(None, feed)
                times[name].append((time.perf_counter_ns() - start) / 1e3)
    return {name: (float(np.median(t)), float(np.percentile(t, 95))) for name, t in times.items()}


def node_overhead(nodes: int = 60, rounds: int = 5) -> tuple[float, float]:
    """Median us of one tiny Add node and of a chain of ``nodes`` of them, 1 thread."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    def chain(n: int):
        graph = helper.make_graph(
            [helper.make_node("Add", ["x" if i == 0 else f"y{i - 1}", "one"], [f"y{i}"]) for i in range(n)],
            "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])],
            [helper.make_tensor_value_info(f"y{n - 1}", TensorProto.FLOAT, [1, 16])],
            [helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0])])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])

    sessions = {"one": chain(1), "chain": chain(nodes)}
    x = {"x": np.zeros((1, 16), np.float32)}
    times = {name: [] for name in sessions}
    for _ in range(rounds):
        for name, session in sessions.items():
            for _ in range(500):
                start = time.perf_counter_ns()
                session.run(None, x)
                times[name].append((time.perf_counter_ns() - start) / 1e3)
    return float(np.median(times["one"])), float(np.median(times["chain"]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(REPO / "runs" / "bench" / "standard_seed42" / "folds" / "0" / "student.pt"))
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args()
    from onnxruntime.quantization.shape_inference import quant_pre_process

    quiet_exporter()
    model, payload, cache = load_with_windows(args.model)
    held_out, training = held_out_and_training(cache, payload["train_subjects"], payload.get("val_subjects", []),
                                               payload.get("test_subjects"))
    windows = np.ascontiguousarray(cache.imu[held_out], dtype=np.float32)
    labels = cache.label[held_out]
    calibration = np.ascontiguousarray(cache.imu[training][:512], dtype=np.float32)
    meta = {"window": windows.shape[1], "channels": windows.shape[2]}
    with tempfile.TemporaryDirectory(prefix="xtinyhar_int8_") as folder, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        work = Path(folder)
        files = {"fp32": export_onnx(model, work / "fp32.onnx", meta)}
        prepared = work / "prepared.onnx"
        quant_pre_process(str(files["fp32"]), str(prepared), skip_symbolic_shape=True)
        for i, (name, options) in enumerate(settings().items()):
            files[name] = quantise(prepared, work / f"int8_{i}.onnx", calibration, options)
        sessions = {name: onnx_session(path) for name, path in files.items()}
        reference = logits_one_by_one(sessions["fp32"], windows).argmax(1)
        timed = in_turns(sessions, windows[:1], args.rounds)
        machine = this_machine()
        print(f"{args.model}: {len(windows)} held-out windows (one per trial), batch 1, 1 thread, "
              f"ONNX Runtime, median / p95 us, files in turns; CPU {machine['processor']} "
              f"({machine['machine']}, int8 dot product: {', '.join(machine['int8_dot_product']) or 'none'})")
        print(f"{'file':<36} {'KB':>7} {'risks':>5} {'trial acc':>9} {'same class':>10} {'latency us':>16}")
        for name, session in sessions.items():
            predicted = logits_one_by_one(session, windows).argmax(1)
            median, p95 = timed[name]
            risks = "-" if name == "fp32" else str(len(int8_saturation_risks(files[name])))
            print(f"{name:<36} {files[name].stat().st_size / 1024:>7.1f} {risks:>5} "
                  f"{np.mean(predicted == labels):>9.3f} {np.mean(predicted == reference):>10.3f} "
                  f"{median:>8.1f} / {p95:<6.1f}")
    one, chain = node_overhead()
    print(f"\nONNX Runtime per node: 1 tiny Add node {one:.1f} us, a chain of 60 {chain:.1f} us "
          f"-> {(chain - one) / 59:.2f} us per extra node")
    return 0


if __name__ == "__main__":
    sys.exit(main())
