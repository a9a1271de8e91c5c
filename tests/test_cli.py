"""The command line: prepare end to end, and one-line errors with exit code 2."""

import numpy as np
import pytest

from xtinyhar.cli import main
from xtinyhar.config import load_config
from xtinyhar.preprocess.tokens import load_token_cache

from conftest import CONFIGS


def test_prepare_utd_mhad(utd_root, tmp_path, capsys):
    out = tmp_path / "cache" / "utd_tokens.npz"
    code = main(["prepare", "--config", str(CONFIGS / "utd_mhad.yaml"), "--dataset", "utd-mhad",
                 "--root", str(utd_root), "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0
    assert "trials      861" in printed and "classes     27" in printed
    assert "subjects    8" in printed and "patch-length histogram" in printed
    cache = load_token_cache(out, load_config(CONFIGS / "utd_mhad.yaml"))
    assert len(cache.trial_id) == 861


def test_prepare_synthetic(tmp_path, capsys):
    out = tmp_path / "synthetic.npz"
    assert main(["prepare", "--config", str(CONFIGS / "synthetic.yaml"), "--out", str(out)]) == 0
    cache = load_token_cache(out, load_config(CONFIGS / "synthetic.yaml"))
    assert len(np.unique(cache.trial_subject)) >= 6 and len(cache.class_names) >= 6


def test_errors_are_one_line_with_exit_code_2(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  lrr: 1\n")
    assert main(["prepare", "--config", str(bad), "--out", str(tmp_path / "x.npz")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "unknown key 'train.lrr'" in err and "\n" not in err

    code = main(["prepare", "--config", str(CONFIGS / "utd_mhad.yaml"), "--root",
                 str(tmp_path / "missing"), "--out", str(tmp_path / "x.npz")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "UTD-MHAD folder not found" in err and "\n" not in err
    assert not (tmp_path / "x.npz").exists()


def test_set_overrides_config_keys(capsys):
    assert main(["profile", "--config", str(CONFIGS / "synthetic.yaml"), "--n-classes", "6",
                 "--set", "model.student.arch=cnn1d", "--set", "train.lr=1e-3"]) == 0
    assert "student (cnn1d)" in capsys.readouterr().out
    assert main(["profile", "--config", str(CONFIGS / "synthetic.yaml"), "--set", "model.student.archh=x"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "archh" in err
    assert main(["profile", "--config", str(CONFIGS / "synthetic.yaml"), "--set", "oops"]) == 2
    assert "expected KEY=VALUE" in capsys.readouterr().err
    assert main(["profile", "--config", str(CONFIGS / "synthetic.yaml"), "--set", "train.lr=[1,"]) == 2
    assert "not a valid YAML scalar" in capsys.readouterr().err


def test_profile_refuses_counts_below_one(capsys):
    """--runs 0 ended in a ValueError traceback from measure_latency (after the models
    were built and profiled), --n-classes -1 and --n-joints 0 in torch RuntimeErrors."""
    base = ["profile", "--config", str(CONFIGS / "synthetic.yaml")]
    for flag, value in (("--runs", "0"), ("--n-classes", "-1"), ("--n-joints", "0")):
        assert main([*base, "--latency", flag, value]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"{flag} {value}: must be at least 1" in err


def test_unwritable_output_is_one_line(tmp_path, capsys):
    """A file standing where the output's folder should be: one line naming the path."""
    blocker = tmp_path / "blocker"
    blocker.write_text("not a folder")
    out = blocker / "synthetic.npz"
    assert main(["prepare", "--config", str(CONFIGS / "synthetic.yaml"), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and str(blocker) in err


def test_no_kd_with_a_teacher_is_refused(tmp_path, capsys):
    assert main(["train-student", "--config", str(CONFIGS / "synthetic.yaml"), "--no-kd",
                 "--teacher", str(tmp_path / "t.pt"), "--out", str(tmp_path / "s.pt")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--no-kd and --teacher" in err


def test_profile_refuses_a_skeleton_without_its_hip_joint(capsys):
    assert main(["profile", "--config", str(CONFIGS / "synthetic.yaml"), "--n-classes", "6",
                 "--n-joints", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "hip joint 3" in err


def test_outputs_are_checked_before_any_work(tmp_path, capsys):
    """A directory, a wrong suffix or a bad export tolerance is refused up front (it used
    to fail after training or exporting, naming an internal temporary file)."""
    folder = tmp_path / "taken.npz"
    folder.mkdir()
    cases = [
        (["prepare", "--config", str(CONFIGS / "synthetic.yaml"), "--out", str(folder)],
         f"--out {folder}: is a directory"),
        (["prepare", "--config", str(CONFIGS / "synthetic.yaml"), "--out", str(tmp_path / "c.yaml")],
         "should end in .npz"),
        (["train-student", "--config", str(CONFIGS / "synthetic.yaml"), "--no-kd", "--out",
          str(tmp_path / "s.yaml")], "--out"),
        (["export", "--checkpoint", str(tmp_path / "none.pt"), "--out", str(tmp_path / "m.onnx"),
          "--tolerance", "-1"], "--tolerance -1.0: must be a positive number"),
        (["profile", "--checkpoint", str(tmp_path / "none.pt"), "--n-classes", "5"],
         "--n-classes only apply with --config"),
        (["stream", "--model", str(tmp_path / "none.onnx"), "--input", str(tmp_path / "x.csv"),
          "--chunk", "0"], "--chunk 0: must be >= 1"),
    ]
    for argv, fragment in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and fragment in err, (argv, err)
    int8_dir = tmp_path / "m_int8.onnx"
    int8_dir.mkdir()
    assert main(["export", "--checkpoint", str(tmp_path / "none.pt"), "--out", str(tmp_path / "m.onnx"),
                 "--int8"]) == 2
    assert f"{int8_dir} would be written and is a directory" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m_int8.onnx", "taken.npz"]


def test_root_and_tokens_together_are_refused(tmp_path, capsys):
    assert main(["train-student", "--config", str(CONFIGS / "synthetic.yaml"), "--no-kd",
                 "--tokens", str(tmp_path / "t.npz"), "--root", str(tmp_path),
                 "--out", str(tmp_path / "s.pt")]) == 2
    assert "the token cache already holds the data" in capsys.readouterr().err


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    return err


@pytest.mark.parametrize("setting, fragment", [
    ("data.window=100000", "choose a data.window of at most"),
    ("preproc.resample_hz=1", "raise preproc.resample_hz towards the sensor's 50 Hz"),
])
def test_prepare_refuses_windows_that_are_mostly_padding(tmp_path, capsys, setting, fragment):
    """A window longer than every recording (or a 1 Hz rate) gave a cache of padding: 3.7 GB
    of it for the synthetic set, and exit 0."""
    out = tmp_path / "tokens.npz"
    assert main(["prepare", "--config", str(CONFIGS / "synthetic.yaml"), "--set", setting,
                 "--out", str(out)]) == 2
    err = _one_line_error(capsys)
    assert str(CONFIGS / "synthetic.yaml") in err and fragment in err
    assert "264 of 264 windows would be more than half padding" in err   # 8 x 11 x 3 trials
    assert list(tmp_path.iterdir()) == []


def test_prepare_refuses_an_absurd_cache_size_before_writing(tmp_path, capsys, monkeypatch):
    from xtinyhar.preprocess import tokens

    monkeypatch.setattr(tokens, "MAX_CACHE_GB", 0.001)   # 1 MB: the synthetic cache is ~18 MB
    out = tmp_path / "tokens.npz"
    assert main(["prepare", "--config", str(CONFIGS / "synthetic.yaml"), "--out", str(out)]) == 2
    err = _one_line_error(capsys)
    assert "the token cache would take about 18 MB (918 windows of 19 KB), over the 0.001 GB limit" in err
    assert list(tmp_path.iterdir()) == []


def test_unwritable_out_folder_fails_before_any_work(tmp_path, capsys):
    """The folder is probed with a real file: permission bits do not stop root, and a
    filesystem that takes no files (here /proc) passes os.access."""
    import os
    from pathlib import Path

    cases = []
    if Path("/proc").is_dir():
        cases.append(Path("/proc") / "tokens.npz")
    if os.geteuid() != 0:
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o555)
        cases.append(locked / "sub" / "tokens.npz")
    if not cases:
        pytest.skip("no unwritable folder available")
    for out in cases:
        assert main(["prepare", "--config", str(CONFIGS / "synthetic.yaml"), "--out", str(out)]) == 2
        err = _one_line_error(capsys)
        assert f"--out {out}: cannot write into" in err
        assert "trials" not in capsys.readouterr().out   # no work done


def test_prepare_after_a_killed_write_removes_the_temp_file_left(tmp_path):
    """SIGKILL during a write leaves a hidden .NAME.XXXXXXXX.tmp beside --out; the next
    prepare of that --out removes it (and only it)."""
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "tokens.npz"
    writer = ("import sys, time; from xtinyhar.io import atomic_write; "
              "atomic_write(sys.argv[1], lambda f: (f.write(b'x' * 100000), f.flush(), time.sleep(60)))")
    proc = subprocess.Popen([sys.executable, "-c", writer, str(out)])
    deadline = time.time() + 60
    while not list(tmp_path.glob(".tokens.npz.*.tmp")) and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    left = list(tmp_path.glob(".tokens.npz.*.tmp"))
    assert len(left) == 1 and left[0].stat().st_size == 100000
    keep = tmp_path / ".other.npz.abcd1234.tmp"
    keep.write_bytes(b"another target's")
    done = subprocess.run([sys.executable, "-m", "xtinyhar.cli", "prepare", "--config",
                           str(CONFIGS / "synthetic.yaml"), "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [keep.name, "tokens.npz"]


def test_export_of_a_checkpoint_with_a_zero_std_names_the_checkpoint(tmp_path, capsys):
    """It used to fail after the export, as a parity error of the exported graph."""
    import torch

    from xtinyhar.config import config_from_dict
    from xtinyhar.models.factory import build_student
    from xtinyhar.train.checkpoints import save_model

    cfg = config_from_dict({"data": {"window": 50}, "model": {"teacher": {"skeleton_tokens": 5}}})
    path = tmp_path / "student.pt"
    save_model(path, build_student(cfg, 3), cfg=cfg, class_names=list("abc"), cache_hash="x",
               train_subjects=[1])
    payload = torch.load(path, weights_only=True)
    payload["state_dict"]["tokenizer.norm_std"][5] = 0.0
    torch.save(payload, path)
    assert main(["export", "--checkpoint", str(path), "--out", str(tmp_path / "m.onnx")]) == 2
    err = _one_line_error(capsys)
    assert err.startswith(f"error: {path}: normalization std") and "channel 5 (gyro_z)" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["student.pt"]


def test_every_command_help_ends_with_examples_that_parse(capsys):
    """Each subcommand's --help shows examples, and each example is a valid command line."""
    import shlex

    from xtinyhar.cli import EXAMPLES, build_parser

    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    assert set(EXAMPLES) == set(commands)
    for name, lines in EXAMPLES.items():
        for line in lines:
            words = shlex.split(line)
            assert words[:2] == ["xtinyhar", name]
            assert parser.parse_args(words[1:]).command == name
        with pytest.raises(SystemExit):
            parser.parse_args([name, "--help"])
        assert "examples:\n  " + lines[0] in capsys.readouterr().out
