"""ONNX export of a real UTD-MHAD student: parity with PyTorch, int8, metadata, the device
runtime without torch, streaming = batch windows, and bad input."""

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest

from xtinyhar.cli import main
from xtinyhar.config import load_config
from xtinyhar.data.splits import make_splits
from xtinyhar.errors import DataError
from xtinyhar.export.recording import read_imu_csv
from xtinyhar.export.runtime import HarModel, Streamer, sidecar_path
from xtinyhar.export.to_onnx import (METADATA_KEY, ExportError, Int8Guard, annotate_onnx,
                                     export_checkpoint, int8_saturation_risks, onnx_logits)
from xtinyhar.train.checkpoints import load_model, save_model
from xtinyhar.train.tasks import fit_student

from conftest import CONFIGS

# The guard of ``export --int8`` for the small, briefly trained student below, whose
# low-margin predictions flip most easily (it is here to test the file, not to be
# deployed); the default guard (0.95, 0.02) is for trained models.
SMALL_MODEL_GUARD = Int8Guard(min_agreement=0.5, max_accuracy_drop=0.1)
SMALL = {"model.student.D": 32, "model.student.heads": 2, "model.student.stem_channels": 8,
         "train.epochs": 6, "train.warmup_epochs": 1, "train.threads": 1, "eval.val_subjects": 0}


@pytest.fixture(scope="module")
def student(utd_root, utd_cache, tmp_path_factory):
    """A small student trained briefly on UTD-MHAD standard-split training subjects."""
    cfg = load_config(CONFIGS / "utd_mhad_paper.yaml", {"data.root": str(utd_root), **SMALL})
    split = make_splits(utd_cache.subject, "standard", seed=cfg.train.seed, val_subjects=0)[0]
    trained = fit_student(cfg, utd_cache, split.train, split.val)
    folder = tmp_path_factory.mktemp("export")
    path = folder / "student.pt"
    save_model(path, trained.model, cfg=cfg, class_names=utd_cache.class_names,
               cache_hash=utd_cache.meta["config_hash"], train_subjects=list(split.train_subjects))
    model, payload = load_model(path, "student")
    reports = export_checkpoint(model, payload, utd_cache, folder / "s.onnx", int8=True,
                                guard=SMALL_MODEL_GUARD)
    return {"folder": folder, "ckpt": path, "model": model, "payload": payload,
            "reports": reports, "onnx": folder / "s.onnx", "int8": folder / "s_int8.onnx"}


def test_fp32_matches_pytorch_on_held_out_real_windows(student, utd_cache):
    r = student["reports"]["fp32"]
    assert r["parity_max_abs"] < 1e-4
    assert r["held_out_subjects"] == [2, 4, 6, 8]
    assert r["parity_windows"] == int(np.isin(utd_cache.subject, [2, 4, 6, 8]).sum())
    assert r["accuracy"]["trial"] == pytest.approx(r["accuracy_torch"]["trial"], abs=1e-9)


def test_int8_keeps_the_padding_bias_pooling_weights_and_energy_in_float(student):
    """Only what int8 would merely approximate is left out; the rest is quantised."""
    graph = onnx.load(str(student["int8"])).graph
    gathers = {node.input[0]: node for node in graph.node if node.op_type == "Gather"}
    assert {"attn_bias", "pool_weight"} <= set(gathers)
    energy = [node for node in graph.node if node.op_type == "Conv" and "energy_weight" in node.input]
    producer = {out: node for node in graph.node for out in node.output}
    assert len(energy) == 1 and producer[energy[0].input[0]].op_type == "Transpose"  # no QDQ pair
    assert producer[energy[0].input[0]].input[0] == "imu"
    quantized = {node.input[0] for node in graph.node if node.op_type == "DequantizeLinear"}
    float_inputs = {"attn_bias", "pool_weight", "energy_weight"}
    assert not float_inputs & {name.split("_quantized")[0] for name in quantized}
    assert any(name.startswith("token_bias") for name in quantized)


def test_int8_is_smaller_and_its_evaluation_is_what_the_file_does(student, utd_cache):
    """The numbers the guard judged and the metadata records are those of the file itself,
    recomputed here on the same held-out windows (no CPU-dependent threshold)."""
    fp32, int8 = student["reports"]["fp32"], student["reports"]["int8"]
    assert int8["bytes"] < 0.6 * fp32["bytes"] and int8["bytes"] == student["int8"].stat().st_size
    held_out = np.isin(utd_cache.subject, [2, 4, 6, 8])
    fp32_classes = onnx_logits(student["onnx"], utd_cache.imu[held_out]).argmax(1)
    int8_classes = onnx_logits(student["int8"], utd_cache.imu[held_out]).argmax(1)
    assert int8["agreement_with_fp32"] == pytest.approx(np.mean(fp32_classes == int8_classes))
    assert int8["calibration_subjects"] == "training subjects only"
    assert int8["trial_accuracy_change_vs_fp32"] == pytest.approx(
        int8["accuracy"]["trial"] - fp32["accuracy"]["trial"])
    stored = json.loads(sidecar_path(student["int8"]).read_text())["evaluation"]
    assert stored["agreement_with_fp32"] == int8["agreement_with_fp32"]
    assert stored["measured_on"]["machine"] and stored["guard"] == {"min_agreement": 0.5,
                                                                    "max_accuracy_drop": 0.1}
    inside = json.loads({p.key: p.value for p in onnx.load(str(student["int8"])).metadata_props}[METADATA_KEY])
    assert inside["evaluation"]["agreement_with_fp32"] == int8["agreement_with_fp32"]


def test_int8_file_cannot_saturate_on_any_cpu(student, tmp_path):
    """x86 without AVX-512 VNNI adds pairs of uint8 x int8 products in int16: the file must
    use uint8 activations and weights of |w| <= 64 wherever an integer kernel runs, and the
    check must catch a full-range file (ONNX Runtime's own default) too."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    graph = onnx.load(str(student["int8"])).graph
    assert int8_saturation_risks(student["int8"]) == []
    weights = [node for node in graph.node if node.op_type == "DequantizeLinear"
               and node.input[0].endswith("_quantized") and "weight" in node.input[0]]
    assert weights                                   # the check looked at real weights

    class One(CalibrationDataReader):
        def __init__(self):
            still = np.zeros((2, 100, 6), np.float32)
            still[..., 2] = 1.0
            self.batches = iter([{"imu": still}])

        def get_next(self):
            return next(self.batches, None)

    full_range = tmp_path / "full_range.onnx"
    quantize_static(str(student["onnx"]), str(full_range), One(), quant_format=QuantFormat.QDQ,
                    op_types_to_quantize=["MatMul", "Conv"], per_channel=True,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
    risks = int8_saturation_risks(full_range)
    assert any("(> 64)" in r for r in risks) and any("is int8, not uint8" in r for r in risks)


def broken_int8(backend):
    """The backend with a quantiser calibrated on windows of the wrong units (x 1000): every
    activation scale is far too coarse, so the file is garbage on every CPU."""
    import dataclasses

    def quantize(fp32, out, metadata, training_imu):
        return backend.quantize(fp32, out, metadata, training_imu * 1000.0)
    return dataclasses.replace(backend, quantize=quantize)


def test_guard_refuses_a_broken_int8_file_and_keeps_earlier_files(student, utd_cache, tmp_path,
                                                                   monkeypatch):
    import xtinyhar.export.to_onnx as to_onnx

    out = tmp_path / "kept.onnx"
    export_checkpoint(student["model"], student["payload"], utd_cache, out, int8=True,
                      guard=SMALL_MODEL_GUARD)
    int8 = tmp_path / "kept_int8.onnx"
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    monkeypatch.setattr(to_onnx, "ONNX", broken_int8(to_onnx.ONNX))
    with pytest.raises(ExportError, match=r"kept_int8.onnx: int8 refused: it gives the fp32 class "
                                          r"on 0\.\d+ of 1321 held-out windows \(need >= 0\.95\)"):
        export_checkpoint(student["model"], student["payload"], utd_cache, out, int8=True)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before    # nothing else either
    assert int8.exists()


def test_export_command_refuses_a_broken_int8_file(student, tmp_path, capsys, monkeypatch):
    import xtinyhar.export.to_onnx as to_onnx

    monkeypatch.setattr(to_onnx, "ONNX", broken_int8(to_onnx.ONNX))
    out = tmp_path / "cli.onnx"
    assert main(["export", "--checkpoint", str(student["ckpt"]), "--out", str(out), "--int8"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "int8 refused" in err and "nothing was written" in err
    assert list(tmp_path.iterdir()) == []
    for flag in ("--int8-min-agreement", "--int8-max-drop"):
        assert main(["export", "--checkpoint", str(student["ckpt"]), "--out", str(out), "--int8",
                     flag, "1.5"]) == 2
        assert f"{flag} 1.5: must be in [0, 1]" in capsys.readouterr().err


def test_runtime_prints_the_agreement_measured_at_export(student):
    note = HarModel(student["int8"]).precision_note()
    agreement = student["reports"]["int8"]["agreement_with_fp32"]
    assert note.startswith("s_int8.onnx: int8, fp32's class on ") and f"{agreement:.1%}" in note
    assert HarModel(student["onnx"]).precision_note() == "s.onnx: fp32"
    out = run_timing_without_torch([student["int8"], "--runs", "2", "--warmup", "0"])
    assert out.returncode == 0, out.stderr
    row = next(line for line in out.stdout.splitlines() if line.startswith("s_int8.onnx"))
    assert row.split()[-2] == f"{agreement:.3f}"


@pytest.mark.parametrize("field, change", [("class_names", "swap"), ("imu_hz", 25.0),
                                           ("norm_std", "scale"), ("stride", 7)])
def test_a_sidecar_that_disagrees_with_the_file_is_refused(student, tmp_path, field, change):
    """The ONNX file carries its own metadata: a sidecar that would relabel predictions or
    shift times is refused, naming the field."""
    import shutil

    copy = tmp_path / "m.onnx"
    shutil.copy(student["onnx"], copy)
    meta = json.loads(sidecar_path(student["onnx"]).read_text())
    value = meta[field]
    if change == "swap":
        value = [value[1], value[0], *value[2:]]
    elif change == "scale":
        value = [v * 2 for v in value]
    else:
        value = change
    sidecar_path(copy).write_text(json.dumps({**meta, field: value}))
    with pytest.raises(DataError, match=f"m.onnx.json: {field} differs from the copy inside m.onnx"):
        HarModel(copy)
    sidecar_path(copy).write_text(json.dumps({**meta, "note": "extra keys are fine"}))
    assert HarModel(copy).class_names == meta["class_names"]


def test_metadata_inside_the_file_and_beside_it(student):
    meta = json.loads(sidecar_path(student["onnx"]).read_text())
    inside = {p.key: p.value for p in onnx.load(str(student["onnx"])).metadata_props}
    assert json.loads(inside[METADATA_KEY])["class_names"] == meta["class_names"]
    assert meta["window"] == 100 and meta["channels"] == 6 and meta["imu_hz"] == 50
    assert meta["stride"] == 50 and meta["segmentation"] == "sliding"
    assert meta["train_subjects"] == [1, 3, 5, 7] and len(meta["class_names"]) == 27
    assert meta["evaluation"]["parity_max_abs"] < 1e-4
    # without the JSON the runtime reads the copy inside the ONNX file
    alone = student["folder"] / "alone.onnx"
    alone.write_bytes(student["onnx"].read_bytes())
    assert HarModel(alone).class_names == meta["class_names"]


def test_sidecar_is_named_after_the_whole_file_and_only_it_is_read(student, tmp_path):
    """x.onnx and x.tflite keep their own x.onnx.json / x.tflite.json; an x.json beside the
    file is not its sidecar and is never read (the metadata inside the ONNX file is used)."""
    import os
    import shutil

    assert sidecar_path(tmp_path / "x.onnx").name == "x.onnx.json"
    assert oct(os.stat(student["onnx"]).st_mode & 0o044) == oct(0o044 & ~_umask())  # readable by others
    other = tmp_path / "other.onnx"
    shutil.copy(student["onnx"], other)
    meta = json.loads(sidecar_path(student["onnx"]).read_text())
    (tmp_path / "other.json").write_text(json.dumps({**meta, "stride": 7}))
    assert HarModel(other).stride == meta["stride"]
    sidecar_path(other).write_text(json.dumps({**meta, "stride": 7}))
    with pytest.raises(DataError, match="other.onnx.json: stride differs"):   # the sidecar is
        HarModel(other)                                                         # read, and checked


def _umask() -> int:
    import os
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_parity_failure_names_the_numbers_and_leaves_no_file(student, utd_cache, tmp_path):
    out = tmp_path / "bad.onnx"
    with pytest.raises(ExportError, match=r"differ from PyTorch by up to .* \(tolerance 0\)"):
        export_checkpoint(student["model"], student["payload"], utd_cache, out, tolerance=0.0)
    assert not out.exists() and not sidecar_path(out).exists()
    assert list(tmp_path.iterdir()) == []                  # no candidate left behind either


def test_parity_failure_keeps_an_earlier_export(student, utd_cache, tmp_path):
    out = tmp_path / "kept.onnx"
    export_checkpoint(student["model"], student["payload"], utd_cache, out)
    before, meta_before = out.read_bytes(), sidecar_path(out).read_text()
    with pytest.raises(ExportError, match="nothing was written"):
        export_checkpoint(student["model"], student["payload"], utd_cache, out, tolerance=0.0)
    assert out.read_bytes() == before and sidecar_path(out).read_text() == meta_before


def probabilities_without_torch(model_path, imu: np.ndarray, folder) -> np.ndarray:
    """Run the device runtime in a fresh interpreter and check torch was never imported."""
    np.save(folder / "windows.npy", imu)
    code = ("import sys, json, numpy as np\n"
            "from xtinyhar.export.runtime import HarModel\n"
            f"p = HarModel({str(model_path)!r}).predict_proba(np.load({str(folder / 'windows.npy')!r}))\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n"
            "print(json.dumps(p.tolist()))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return np.array(json.loads(out.stdout.strip().splitlines()[-1]))


def test_runtime_needs_no_torch(student, utd_cache):
    from xtinyhar.export.to_onnx import torch_logits

    index = np.flatnonzero(utd_cache.subject == 2)[:8]
    probs = probabilities_without_torch(student["onnx"], utd_cache.imu[index], student["folder"])
    assert probs.argmax(1).tolist() == torch_logits(student["model"], utd_cache.imu[index]).argmax(1).tolist()


def time_main(args: list) -> int:
    """``xtinyhar profile --model ARGS``: the device timing command (files, then flags)."""
    return main(["profile", "--model", *[str(a) for a in args]])


def run_timing_without_torch(args: list[str]) -> subprocess.CompletedProcess:
    """``xtinyhar profile --model ARGS`` in a fresh process that fails if torch, PyYAML or
    scipy gets imported (a device has numpy and onnxruntime only)."""
    code = ("import sys\n"
            "from xtinyhar.cli import main\n"
            f"code = main(['profile', '--model', *{[str(a) for a in args]!r}])\n"
            "for name in ('torch', 'yaml', 'scipy'):\n"
            "    assert name not in sys.modules, f'{name} was imported'\n"
            "sys.exit(code)\n")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)


def test_device_timing_command_without_torch(student, utd_trials, tmp_path):
    """``xtinyhar profile --model`` times a file with numpy + onnxruntime only."""
    trials, _ = utd_trials
    csv = tmp_path / "trial.csv"   # with a time column, as recorders write them; it is left out
    stamped = np.column_stack([np.arange(len(trials[3].imu)) / 50, trials[3].imu])
    np.savetxt(csv, stamped, delimiter=",", header="time_s,ax,ay,az,gx,gy,gz", comments="")
    out = run_timing_without_torch([student["onnx"], "--runs", "3", "--warmup", "1", "--input", csv])
    assert out.returncode == 0, out.stderr
    row = out.stdout.strip().splitlines()[-1].split()
    assert row[0] == student["onnx"].name and row[-1] in student["payload"]["class_names"]
    model = HarModel(student["onnx"])
    label, _ = model.predict(model.trial_windows(trials[3].imu)[0])
    assert row[-1] == label                    # the trial's first window is what is timed


@pytest.mark.parametrize("args, message", [
    (["--runs", "0"], "need --runs >= 1"),
    (["--input", "missing.csv"], "missing.csv: file not found"),
])
def test_device_timing_command_errors(student, capsys, args, message):
    assert time_main([str(student["onnx"]), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert time_main(["nothing_here.onnx"]) == 2
    assert "model file not found" in capsys.readouterr().err


def test_streaming_equals_batch_windows(student, utd_trials):
    trials, _ = utd_trials
    model = HarModel(student["onnx"])
    imu = np.concatenate([trials[3].imu, trials[40].imu, trials[500].imu])   # a longer recording
    stream = Streamer(model, stride=17)
    events = []
    for start in range(0, len(imu), 7):                                     # packets of 7 samples
        events += stream.push(imu[start:start + 7])
    ends = list(range(model.window, len(imu) + 1, 17))
    assert [e.end for e in events] == ends
    batch = model.predict_proba(np.stack([imu[e - model.window:e] for e in ends]))
    np.testing.assert_allclose(np.stack([e.probs for e in events]), batch, atol=1e-6)
    assert events[0].time_s == pytest.approx(model.window / 50)


@pytest.mark.parametrize("bad, message", [
    (np.zeros((100, 5)), "5 channels, the model expects 6"),
    (np.zeros((99, 6)), "window of 99 samples, the model expects 100"),
    (np.full((100, 6), np.nan), "600 NaN or infinite"),
    (np.full((100, 6), np.inf, np.float32), "600 NaN or infinite"),     # the float32 fast path
    (np.zeros((100, 5), np.float32), "5 channels, the model expects 6"),
    (np.full((100, 6), 1e300), "600 NaN or infinite value.s. .as float32."),
    (np.zeros((2, 3, 100, 6)), "got shape"),
    ([[0.0] * 6] * 99 + [[0.0] * 5], "not a rectangular array of numbers"),
    (np.full((100, 6), "a"), "not real numbers"),
    (np.zeros((100, 6), complex), "not real numbers"),
])
def test_bad_windows_are_clear_errors(student, bad, message):
    with pytest.raises(DataError, match=message):
        HarModel(student["onnx"]).predict(bad)


def test_float32_views_and_other_dtypes_give_the_same_prediction(student, utd_cache):
    model = HarModel(student["onnx"])
    window = utd_cache.imu[0].astype(np.float32)
    strided = np.asfortranarray(window)                     # float32, not C-contiguous
    label, probs = model.predict(window)
    for same in (strided, window.astype(np.float64), window.tolist()):
        other_label, other_probs = model.predict(same)
        assert other_label == label
        np.testing.assert_allclose(other_probs, probs, rtol=0, atol=1e-7)


def test_softmax_takes_integer_and_float_logits_without_touching_them():
    from xtinyhar.preprocess.arrays import softmax

    logits = np.array([[1, 2, 3]])
    np.testing.assert_allclose(softmax(logits), np.exp([[1, 2, 3]]) / np.exp([1, 2, 3]).sum())
    floats = np.array([[0.5, -1.0]], np.float32)
    probs = softmax(floats)
    assert probs.dtype == np.float32 and floats.tolist() == [[0.5, -1.0]]


def test_bad_files_are_clear_errors(student, tmp_path):
    with pytest.raises(DataError, match="model file not found"):
        HarModel(tmp_path / "none.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(DataError, match="not a readable ONNX model"):
        HarModel(junk)
    csv = tmp_path / "t.csv"
    csv.write_text("ax,ay,az,gx,gy,gz\n1,2,3,4,5,6\n1,2,x,4,5,6\n")
    with pytest.raises(DataError, match="line 3 is not numeric"):   # the file's line, header counted
        read_imu_csv(csv)
    csv.write_text("1,2,3\n")
    with pytest.raises(DataError, match="3 columns, the model expects 6"):
        read_imu_csv(csv, 6)
    csv.write_text("\ufeffTime,ax,ay,az,gx,gy,gz\n0.00,1,2,3,4,5,6\n0.02,1,2,3,4,5,7\n")
    np.testing.assert_array_equal(read_imu_csv(csv, 6), [[1, 2, 3, 4, 5, 6], [1, 2, 3, 4, 5, 7]])
    csv.write_text("time,ax,ay\n0.00,1,2\n")                   # the time column is no channel
    with pytest.raises(DataError, match="2 columns, the model expects 6"):
        read_imu_csv(csv, 6)
    with pytest.raises(DataError, match="samples must be"):
        Streamer(HarModel(student["onnx"])).push(np.zeros((4, 3)))
    with pytest.raises(DataError, match="not real numbers"):
        Streamer(HarModel(student["onnx"])).push([["x"] * 6])
    csv.write_text("1,2,x,4,5,6\n1,2,3,4,5,6\n")                 # a corrupt first row is no header
    with pytest.raises(DataError, match="line 1 is not numeric"):
        read_imu_csv(csv)
    csv.write_bytes(b"\xff\xfe\x00\x81binary")
    with pytest.raises(DataError, match="not a text CSV"):
        read_imu_csv(csv)
    import shutil
    odd = tmp_path / "odd.onnx"
    shutil.copy(student["onnx"], odd)
    meta = json.loads(sidecar_path(student["onnx"]).read_text())
    for change, message in (({"window": "abc"}, "must be numbers"), ({"stride": 0}, "out of range")):
        sidecar_path(odd).write_text(json.dumps({**meta, **change}))
        with pytest.raises(DataError, match=message):
            HarModel(odd)


def test_export_and_stream_commands(student, utd_root, utd_trials, tmp_path, capsys):
    out = tmp_path / "cli.onnx"
    assert main(["export", "--checkpoint", str(student["ckpt"]), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "max |logit diff| vs PyTorch" in text and out.exists()
    trials, _ = utd_trials
    long_trial = next(t for t in trials if len(t.imu) >= 160)
    csv = tmp_path / "trial.csv"
    np.savetxt(csv, long_trial.imu, delimiter=",", header="ax,ay,az,gx,gy,gz", comments="")
    assert main(["stream", "--model", str(out), "--input", str(csv), "--stride", "20"]) == 0
    lines = [l for l in capsys.readouterr().out.splitlines() if l.startswith("t=")]
    assert len(lines) == (len(long_trial.imu) - 100) // 20 + 1
    assert main(["stream", "--model", str(out), "--input", str(csv)]) == 0   # training's stride
    assert "whole trial (mean of its windows)" in capsys.readouterr().out
    short = tmp_path / "short.csv"
    np.savetxt(short, long_trial.imu[:50], delimiter=",")
    assert main(["stream", "--model", str(out), "--input", str(short)]) == 2
    assert "fewer than the model's window of 100" in capsys.readouterr().err
    assert main(["stream", "--model", str(out), "--input", str(short), "--pad"]) == 0
    # the teacher cannot be exported for a wearable
    assert main(["export", "--checkpoint", str(tmp_path / "missing.pt"), "--out", str(out)]) == 2
    assert "checkpoint not found" in capsys.readouterr().err



def test_predict_trial_pools_the_windows_that_evaluation_uses(student, utd_config, utd_trials):
    """A sliding model's trial prediction is the mean of the probabilities of exactly the
    windows the cache cuts from that trial (same starts, same padding of short trials)."""
    from xtinyhar.preprocess.windows import make_windows

    model = HarModel(student["onnx"])
    assert model.segmentation == "sliding"
    trials, _ = utd_trials
    long = next(t for t in trials if len(t.imu) > 180).imu
    for imu in (long, long[:70]):                   # several windows; one padded window
        windows = make_windows([imu], None, [0], [0], window=model.window, stride=model.stride).imu
        assert len(windows) == (3 if len(imu) > 180 else 1)
        np.testing.assert_allclose(model.trial_windows(imu), windows, atol=1e-6)
        label, probs = model.predict_trial(imu)
        np.testing.assert_allclose(probs, model.predict_proba(windows).mean(0), atol=1e-6)
        assert label == model.class_names[int(probs.argmax())]
    with pytest.raises(DataError, match="a trial needs at least 2"):
        model.predict_trial(np.zeros((1, 6)))
    with pytest.raises(DataError, match=r"expected a \(samples, 6\) trial"):
        model.predict_trial(np.zeros((50, 5)))
    with pytest.raises(DataError, match="NaN"):
        model.predict_trial(np.full((50, 6), np.nan))


def test_a_trial_model_stretches_the_trial_and_refuses_streams(student, utd_trials, tmp_path, capsys):
    """Metadata ``segmentation: trial``: the whole trial is stretched onto the window (as
    ``preprocess.windows.trial_windows`` does in training), streaming is refused."""
    import shutil

    from xtinyhar.preprocess.arrays import align_to_length

    path = tmp_path / "trial.onnx"
    shutil.copy(student["onnx"], path)
    meta = json.loads(sidecar_path(student["onnx"]).read_text())
    (tmp_path / "trial.onnx.json").write_text(json.dumps({**meta, "segmentation": "trial"}))
    annotate_onnx(path, {**meta, "segmentation": "trial"})       # the file's own copy agrees
    model = HarModel(path)
    assert model.segmentation == "trial"
    trials, _ = utd_trials
    imu = next(t for t in trials if len(t.imu) > 180).imu
    stretched = align_to_length(imu.astype(np.float64), model.window)
    np.testing.assert_allclose(model.trial_windows(imu)[0], stretched, atol=1e-5)
    label, probs = model.predict_trial(imu)
    np.testing.assert_allclose(probs, model.predict_proba(stretched.astype(np.float32))[0], atol=1e-6)
    with pytest.raises(DataError, match="trained on whole trials"):
        Streamer(model)
    csv = tmp_path / "rec.csv"
    np.savetxt(csv, imu, delimiter=",")
    assert main(["stream", "--model", str(path), "--input", str(csv)]) == 0
    assert f"whole trial  {label}" in capsys.readouterr().out
    assert main(["stream", "--model", str(path), "--input", str(csv), "--stride", "5"]) == 2
    assert "--stride and --pad do not apply" in capsys.readouterr().err
    assert main(["stream", "--model", str(path), "--input", str(csv), "--chunk", "0"]) == 2
    assert "--chunk 0: must be >= 1" in capsys.readouterr().err
    (tmp_path / "trial.onnx.json").write_text(json.dumps({**meta, "segmentation": "chunks"}))
    with pytest.raises(DataError, match="unknown segmentation 'chunks'"):
        HarModel(path)

# ----------------------------------------------------------------------------- TFLite

def require_tflite():
    """The TFLite stack is an optional extra: skipped locally without it, required in CI."""
    import importlib.util
    import os

    if all(importlib.util.find_spec(m) for m in ("litert_torch", "ai_edge_litert", "ai_edge_quantizer")):
        return
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail("CI must test the TFLite export: install the extra (pip install -e '.[tflite]')")
    pytest.skip("TFLite extra not installed (pip install -e '.[tflite]')")


@pytest.fixture(scope="module")
def tflite(student, utd_cache):
    require_tflite()
    from xtinyhar.export.to_tflite import export_checkpoint_tflite

    out = student["folder"] / "s.tflite"
    reports = export_checkpoint_tflite(student["model"], student["payload"], utd_cache, out, int8=True,
                                       guard=SMALL_MODEL_GUARD)
    return {"path": out, "reports": reports}


def test_tflite_matches_pytorch_on_held_out_real_windows(tflite, student, utd_cache):
    fp32, int8 = tflite["reports"]["fp32"], tflite["reports"]["int8"]
    assert fp32["parity_max_abs"] < 1e-4 and fp32["held_out_subjects"] == [2, 4, 6, 8]
    assert fp32["accuracy"]["trial"] == pytest.approx(student["reports"]["fp32"]["accuracy_torch"]["trial"])
    # dynamic-range int8: a smaller file (a small model: graph overhead and small tensors
    # left in float keep the ratio near 2/3), judged by the guard like the ONNX one
    assert int8["bytes"] < 0.8 * fp32["bytes"]
    stored = json.loads(sidecar_path(int8["file"]).read_text())["evaluation"]
    assert stored["agreement_with_fp32"] == int8["agreement_with_fp32"]
    classes = [HarModel(path).predict_proba(utd_cache.imu[np.isin(utd_cache.subject, [2, 4, 6, 8])]).argmax(1)
               for path in (tflite["path"], int8["file"])]
    assert int8["agreement_with_fp32"] == pytest.approx(np.mean(classes[0] == classes[1]))


def test_tflite_guard_refuses_an_int8_file_of_the_wrong_weights(tflite, student, utd_cache, tmp_path,
                                                                monkeypatch):
    """A broken TFLite int8 step (here: it quantises another model, the head's rows
    rolled by one class) is refused and leaves nothing behind."""
    import copy
    import dataclasses

    import torch

    import xtinyhar.export.to_tflite as to_tflite

    wrong = copy.deepcopy(student["model"])
    with torch.no_grad():
        wrong.head.weight.copy_(wrong.head.weight.roll(1, dims=0))
        wrong.head.bias.copy_(wrong.head.bias.roll(1, dims=0))

    real_quantize = to_tflite.TFLITE.quantize

    def quantize(fp32, out, metadata, training_imu):
        other = to_tflite.export_tflite(wrong, fp32.with_name("wrong.tflite"), metadata)
        try:
            return real_quantize(other, out, metadata, training_imu)
        finally:
            other.unlink()
            sidecar_path(other).unlink()
    monkeypatch.setattr(to_tflite, "TFLITE", dataclasses.replace(to_tflite.TFLITE, quantize=quantize))
    with pytest.raises(ExportError, match=r"w_int8.tflite: int8 refused: it gives the fp32 class on 0\.0"):
        to_tflite.export_checkpoint_tflite(student["model"], student["payload"], utd_cache,
                                           tmp_path / "w.tflite", int8=True)
    assert list(tmp_path.iterdir()) == []


def test_tflite_runtime_without_torch_agrees_with_onnx(tflite, student, utd_cache):
    index = np.flatnonzero(utd_cache.subject == 4)[:6]
    probs = probabilities_without_torch(tflite["path"], utd_cache.imu[index], student["folder"])
    np.testing.assert_allclose(probs, HarModel(student["onnx"]).predict_proba(utd_cache.imu[index]), atol=1e-5)


def test_export_command_tflite(tflite, student, tmp_path, capsys):
    out = tmp_path / "cli.tflite"
    assert main(["export", "--checkpoint", str(student["ckpt"]), "--format", "tflite", "--out", str(out)]) == 0
    assert "max |logit diff| vs PyTorch" in capsys.readouterr().out
    assert out.exists() and json.loads(sidecar_path(out).read_text())["format"] == "tflite"


class _FakeModel:
    """Stands in for HarModel in Streamer tests: 'predicts' the window's first sample index."""
    channels, window, imu_hz, stride = 1, 4, 50.0, 2
    class_names, segmentation = ["x"], "sliding"

    def predict(self, window, source="input"):
        return "x", np.asarray(window)[:, 0].copy()


@pytest.mark.parametrize("stride", [1, 3, 4, 7, 10])
@pytest.mark.parametrize("chunk", [1, 2, 5, 13, 40])
def test_streamer_windows_for_any_stride_and_packet_size(stride, chunk):
    signal = np.arange(60, dtype=np.float32)[:, None]
    stream = Streamer(_FakeModel(), stride=stride)
    events = []
    for start in range(0, len(signal), chunk):
        events += stream.push(signal[start:start + chunk])
    ends = list(range(4, 61, stride))
    assert [e.end for e in events] == ends
    for event in events:                      # each window is exactly samples end-4 .. end-1
        np.testing.assert_array_equal(event.probs, np.arange(event.end - 4, event.end))


def test_export_refuses_a_mismatched_extension_and_lowpass_models(student, utd_cache, tmp_path, capsys):
    assert main(["export", "--checkpoint", str(student["ckpt"]), "--format", "tflite",
                 "--out", str(tmp_path / "x.onnx")]) == 2
    assert "should end in .tflite" in capsys.readouterr().err
    payload = {**student["payload"], "config": {**student["payload"]["config"],
                                                "preproc": {"lowpass_hz": 20.0}}}
    with pytest.raises(ExportError, match="low-pass"):
        export_checkpoint(student["model"], payload, utd_cache, tmp_path / "lp.onnx")


def test_validation_subjects_are_not_counted_as_held_out(utd_cache):
    from xtinyhar.export.to_onnx import held_out_and_training

    held_out, training = held_out_and_training(utd_cache, [1, 3, 5], [7])
    assert set(np.unique(utd_cache.subject[held_out])) == {2, 4, 6, 8}
    assert set(np.unique(utd_cache.subject[training])) == {1, 3, 5}


def test_a_recorded_test_side_limits_the_held_out_windows(utd_cache):
    """A model of the validation protocol (trained on 1, 3, 5, tested on 7) is checked on
    subject 7 only: the standard test subjects stay untouched."""
    from xtinyhar.export.to_onnx import held_out_and_training
    from xtinyhar.xai.explain import choose_windows

    held_out, _ = held_out_and_training(utd_cache, [1, 3, 5], [], [7])
    assert set(np.unique(utd_cache.subject[held_out])) == {7}
    chosen = choose_windows(utd_cache, [1, 3, 5], None, 50, test_subjects=[7])
    assert set(np.unique(utd_cache.subject[chosen])) == {7}


def test_metadata_that_does_not_match_the_model_file_is_a_clear_error(student, tmp_path):
    """A sidecar left from another export (another window, channel count or class list)
    must not reach ONNX Runtime as a wrong-shaped input or label another model's classes."""
    import shutil

    odd = tmp_path / "stale.onnx"
    shutil.copy(student["onnx"], odd)
    meta = json.loads(sidecar_path(student["onnx"]).read_text())
    for change, message in (({"window": 150}, r"window differs .* \(150 vs 100\)"),
                            ({"channels": 3}, r"channels differs .* \(3 vs 6\)"),
                            ({"class_names": meta["class_names"][:-1]}, "class_names differs")):
        sidecar_path(odd).write_text(json.dumps({**meta, **change}))
        with pytest.raises(DataError, match=rf"stale\.onnx\.json: {message}"):
            HarModel(odd)
    # a file without its own copy (older exports) is still checked against the graph's shapes
    from onnx import load, save
    bare = load(str(odd))
    del bare.metadata_props[:]
    save(bare, str(odd))
    sidecar_path(odd).write_text(json.dumps({**meta, "window": 150}))
    with pytest.raises(DataError, match=r"stale\.onnx: .*window 150 .*model file has 100"):
        HarModel(odd)
    sidecar_path(odd).write_text(json.dumps(meta))
    assert HarModel(odd).window == 100


def test_metadata_that_is_not_a_json_object_is_a_clear_error(student, tmp_path):
    import shutil

    odd = tmp_path / "odd.onnx"
    shutil.copy(student["onnx"], odd)
    for text in ("null", "3", '"window stride"', "[]"):
        sidecar_path(odd).write_text(text)
        with pytest.raises(DataError, match=r"odd\.onnx\.json: "):
            HarModel(odd)
    sidecar_path(odd).unlink()
    (tmp_path / "odd.json").write_text("[1, 2]")          # not the sidecar: never read
    assert HarModel(odd).class_names == student["payload"]["class_names"]


def test_device_timing_command_times_tflite_files(tflite, student, capsys):

    files = [str(tflite["path"]), str(tflite["reports"]["int8"]["file"])]
    assert time_main([*files, "--runs", "2", "--warmup", "0"]) == 0
    rows = capsys.readouterr().out.strip().splitlines()[2:4]
    assert [r.split()[0] for r in rows] == ["s.tflite", "s_int8.tflite"]
    assert all(r.split()[-1] in student["payload"]["class_names"] for r in rows)



def test_tflite_empty_batch_gives_no_rows(tflite, student):
    model = HarModel(tflite["path"])
    empty = np.zeros((0, model.window, model.channels), np.float32)
    assert model.logits(empty).shape == (0, len(student["payload"]["class_names"]))


def test_load_with_windows_rebuilds_the_checkpoints_own_cache(student):
    from xtinyhar.train.checkpoints import load_with_windows

    model, payload, cache = load_with_windows(student["ckpt"])
    assert not model.training and payload["train_subjects"] == student["payload"]["train_subjects"]
    assert cache.meta["config_hash"] == payload["cache_hash"]
