"""Bad input to the device runtime and its timing command (``xtinyhar profile --model``):
one line naming the flag or file and what is wrong, every file checked before the table's
header or any timing, metadata of another format refused."""

import json
import shutil

import numpy as np
import pytest

from xtinyhar.errors import DataError
from xtinyhar.export import device_timing
from xtinyhar.export.runtime import HarModel, sidecar_path
from xtinyhar.export.to_onnx import annotate_onnx

from test_onnx import run_timing_without_torch, time_main as main
from test_onnx import student  # noqa: F401  (the small exported UTD-MHAD student)


@pytest.fixture
def no_timing(monkeypatch):
    """Record every timing call: a failing command must time nothing."""
    calls = []

    def time_calls(fn, warmup, runs):
        calls.append(fn)
        return {"median_ms": 0.0, "p95_ms": 0.0}

    monkeypatch.setattr(device_timing, "time_calls", time_calls)
    return calls


def one_error(capsys) -> str:
    """The command's stderr, which must be one ``error:`` line, with nothing on stdout."""
    captured = capsys.readouterr()
    assert captured.out == "", f"printed before the error: {captured.out!r}"
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    return lines[0]


def write_csv(path, imu):
    np.savetxt(path, imu, delimiter=",", header="ax,ay,az,gx,gy,gz", comments="")
    return path


def trial_model(student, folder, name="trial.onnx"):  # noqa: F811
    """A copy of the student whose metadata says it classifies whole trials."""
    path = folder / name
    shutil.copy(student["onnx"], path)
    meta = json.loads(sidecar_path(student["onnx"]).read_text())
    sidecar_path(path).write_text(json.dumps({**meta, "segmentation": "trial"}))
    annotate_onnx(path, {**meta, "segmentation": "trial"})     # the file's own copy agrees
    return path


def still(samples: int) -> np.ndarray:
    return device_timing.still_window(samples, 6, seed=1)


# ------------------------------------------------------------------------ 1. the flags

@pytest.mark.parametrize("args, message, others", [
    (["--runs", "0"], "need --runs >= 1, got 0", ("--warmup", "--threads")),
    (["--warmup", "-3"], "need --warmup >= 0, got -3", ("--runs", "--threads")),
    (["--threads", "0"], "need --threads >= 1, got 0", ("--runs", "--warmup")),
    (["--runs", "-1", "--threads", "0"], "need --runs >= 1, got -1; need --threads >= 1, got 0",
     ("--warmup",)),
])
def test_each_bad_flag_is_named_with_its_value(student, capsys, no_timing, args, message, others):  # noqa: F811
    assert main([str(student["onnx"]), *args]) == 2
    err = one_error(capsys)
    assert message in err
    assert not any(flag in err for flag in others), err     # only the wrong flags are named
    assert no_timing == []


# ------------------------------------------------------------------------ 2. CSV only

def test_a_mat_input_is_refused_as_csv_only(student, utd_root, tmp_path, capsys, no_timing):  # noqa: F811
    mat = tmp_path / "x_inertial.mat"
    shutil.copy(next((utd_root / "inertial").glob("*_inertial.mat")), mat)
    assert main([str(student["onnx"]), "--input", str(mat)]) == 2
    err = one_error(capsys)
    assert f"{mat}: a MATLAB .mat file; --input reads CSV only" in err
    assert "undecodable" not in err and no_timing == []


def test_other_binary_input_says_what_a_csv_holds(student, tmp_path, capsys, no_timing):  # noqa: F811
    binary = tmp_path / "trial.npy"
    np.save(binary, still(120))
    assert main([str(student["onnx"]), "--input", str(binary)]) == 2
    err = one_error(capsys)
    assert f"{binary}: not a text CSV (undecodable bytes); expected comma-separated numbers" in err
    assert no_timing == []
    assert main([str(student["onnx"]), "--input", ""]) == 2
    assert "--input: empty file name" in one_error(capsys)


# ------------------------------------------------------------------- 3. a short trial

def test_a_trial_shorter_than_a_sliding_window_is_refused(student, tmp_path, capsys, no_timing):  # noqa: F811
    short = write_csv(tmp_path / "short.csv", still(20))
    assert main([str(student["onnx"]), "--input", str(short)]) == 2
    err = one_error(capsys)
    assert f"{short}: 20 samples, fewer than the window of 100 (2 s at 50 Hz) of s.onnx" in err
    assert no_timing == []
    exact = write_csv(tmp_path / "exact.csv", still(100))       # one whole window is enough
    assert main([str(student["onnx"]), "--input", str(exact)]) == 0
    assert len(no_timing) == 2                                   # predict and the bare graph


def test_a_whole_trial_model_takes_a_short_trial_as_predict_trial_does(student, tmp_path, capsys,  # noqa: F811
                                                                       no_timing):
    path = trial_model(student, tmp_path)
    imu = still(20)
    short = write_csv(tmp_path / "short.csv", imu)
    assert main([str(path), "--input", str(short)]) == 0        # stretched onto the window
    rows = capsys.readouterr().out.strip().splitlines()
    assert rows[-1].split()[-1] == HarModel(path).predict_trial(imu)[0]
    one = write_csv(tmp_path / "one.csv", imu[:1])
    assert main([str(path), "--input", str(one)]) == 2
    assert f"{one}: 1 sample(s); a trial needs at least 2" in one_error(capsys)
    with pytest.raises(DataError, match="a trial needs at least 2"):
        HarModel(path).predict_trial(imu[:1])                   # the same rule


def test_input_columns_are_checked_against_each_model(student, tmp_path, capsys, no_timing):  # noqa: F811
    narrow = tmp_path / "narrow.csv"
    np.savetxt(narrow, still(120)[:, :3], delimiter=",")
    assert main([str(student["onnx"]), "--input", str(narrow)]) == 2
    assert f"{narrow}: 3 columns, s.onnx expects 6" in one_error(capsys)


# -------------------------------------------------- 4 and 5. check everything, then time

def test_nothing_is_printed_before_an_error(student, tmp_path, capsys, no_timing):  # noqa: F811
    assert main([str(tmp_path / "none.onnx")]) == 2
    assert "none.onnx: model file not found" in one_error(capsys)
    assert main([str(student["onnx"]), "--input", str(tmp_path / "missing.csv")]) == 2
    assert "missing.csv: file not found" in one_error(capsys)


def test_every_model_file_is_checked_before_any_is_timed(student, tmp_path, capsys, no_timing):  # noqa: F811
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    assert main([str(student["onnx"]), str(student["int8"]), str(junk), "--runs", "1"]) == 2
    assert "junk.onnx: not a readable ONNX model" in one_error(capsys)
    assert no_timing == []                                       # the good files were not timed
    assert main([str(student["onnx"]), str(tmp_path / "gone.onnx")]) == 2
    assert "gone.onnx: model file not found" in one_error(capsys)
    assert no_timing == []


def test_the_input_is_checked_against_every_model_before_any_is_timed(student, tmp_path, capsys,  # noqa: F811
                                                                      no_timing):
    whole = trial_model(student, tmp_path)                      # takes 20 samples
    short = write_csv(tmp_path / "short.csv", still(20))
    assert main([str(whole), str(student["onnx"]), "--input", str(short)]) == 2
    assert "short.csv: 20 samples, fewer than the window of 100" in one_error(capsys)
    assert no_timing == []


def test_good_files_are_timed_in_order(student, capsys, no_timing):  # noqa: F811
    assert main([str(student["onnx"]), str(student["int8"]), "--runs", "1", "--warmup", "0"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[0].startswith("batch 1, 1 thread(s)") and out[1].startswith("model")
    assert [row.split()[0] for row in out[2:4]] == ["s.onnx", "s_int8.onnx"]
    agreement = student["reports"]["int8"]["agreement_with_fp32"]
    assert out[2].split()[-2] == "-" and out[3].split()[-2] == f"{agreement:.3f}"
    assert "agrees: an int8 file's share of held-out windows" in out[0]
    assert len(no_timing) == 4


# ----------------------------------------------------- 6. metadata of the right format

def test_metadata_of_another_format_is_a_clear_error(student, tmp_path, capsys, no_timing):  # noqa: F811
    meta = json.loads(sidecar_path(student["onnx"]).read_text())
    assert meta["format"] == "onnx"
    odd = tmp_path / "odd.onnx"
    shutil.copy(student["onnx"], odd)
    sidecar_path(odd).write_text(json.dumps({**meta, "format": "tflite"}))
    with pytest.raises(DataError, match=r"odd\.onnx\.json: metadata of a 'tflite' export, but "
                                        r"odd\.onnx is a \.onnx file"):
        HarModel(odd)
    assert main([str(student["onnx"]), str(odd)]) == 2
    assert "odd.onnx.json: metadata of a 'tflite' export" in one_error(capsys)
    assert no_timing == []
    # a .tflite beside an ONNX export's metadata: refused by the JSON, before the file is read
    lite = tmp_path / "copy.tflite"
    lite.write_bytes(b"not read")
    sidecar_path(lite).write_text(json.dumps(meta))
    with pytest.raises(DataError, match=r"copy\.tflite\.json: metadata of a 'onnx' export, but "
                                        r"copy\.tflite is a \.tflite file"):
        HarModel(lite)
    sidecar_path(odd).write_text(json.dumps(meta))               # the right format: accepted
    assert HarModel(odd).window == 100


def test_unreadable_or_odd_metadata_is_one_line(student, tmp_path, capsys):  # noqa: F811
    odd = tmp_path / "odd.onnx"
    shutil.copy(student["onnx"], odd)
    sidecar_path(odd).write_bytes(b"\xff\xfe\x00\x81")
    with pytest.raises(DataError, match=r"odd\.onnx\.json: not a JSON text file"):
        HarModel(odd)
    meta = json.loads(sidecar_path(student["onnx"]).read_text())
    for names in ("walk", [], [1, 2]):
        sidecar_path(odd).write_text(json.dumps({**meta, "class_names": names}))
        with pytest.raises(DataError, match="class_names must be a non-empty list of names"):
            HarModel(odd)


def test_errors_from_a_fresh_process_are_one_line_without_torch(student, tmp_path):  # noqa: F811
    """The command as a device runs it: no traceback, and torch never imported."""
    short = write_csv(tmp_path / "short.csv", still(20))
    out = run_timing_without_torch([student["onnx"], "--input", short])
    assert out.returncode == 2 and out.stdout == "", out.stderr
    assert out.stderr.strip().splitlines() == [
        f"error: {short}: 20 samples, fewer than the window of 100 (2 s at 50 Hz) of s.onnx; "
        "record a longer trial, or leave out --input to time a still window"]
