"""End to end on a tiny synthetic dataset: prepare -> cv (teacher + distilled student) ->
run directory; checkpoints round-trip; resume skips finished folds; CLI commands."""

import json

import numpy as np
import pytest
import torch
import yaml

from xtinyhar.cli import main
from xtinyhar.config import load_config
from xtinyhar.evaluate.cv import run_cv
from xtinyhar.io import load_checkpoint
from xtinyhar.preprocess.tokens import load_token_cache
from xtinyhar.train.checkpoints import load_model

from conftest import CONFIGS

TINY = {
    "data": {"synthetic": {"subjects": 6, "trials_per_class": 2, "seconds": 3.0, "seed": 1}},
    "model": {"student": {"D": 16, "L": 1, "heads": 2, "stem_channels": 8},
              "teacher": {"D": 32, "L": 1, "heads": 2}},
    "train": {"epochs": 8, "batch_size": 32, "lr": 3e-3, "warmup_epochs": 1, "threads": 1},
    "eval": {"folds": 3},
}


def merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        out[key] = merge(base.get(key, {}), value) if isinstance(value, dict) else value
    return out


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny")
    raw = merge(yaml.safe_load((CONFIGS / "synthetic.yaml").read_text()), TINY)
    config = folder / "tiny.yaml"
    config.write_text(yaml.safe_dump(raw))
    tokens = folder / "tokens.npz"
    assert main(["prepare", "--config", str(config), "--out", str(tokens)]) == 0
    cfg = load_config(config)
    cache = load_token_cache(tokens, cfg)
    run = folder / "run"
    summary = run_cv(cfg, cache, protocol="kfold", run_dir=run)
    return {"config": config, "tokens": tokens, "cfg": cfg, "cache": cache, "run": run,
            "summary": summary, "folder": folder}


def test_cv_learns_well_above_chance(tiny):
    chance = 1 / len(tiny["cache"].class_names)
    s = tiny["summary"]
    assert s["folds"] == 3
    assert s["student_trial"]["accuracy"]["mean"] > 3 * chance
    assert s["teacher_trial"]["accuracy"]["mean"] > 3 * chance


def test_run_directory_layout_and_subject_independence(tiny):
    run = tiny["run"]
    assert (run / "config.yaml").exists() and (run / "summary.json").exists()
    tested = []
    for k in range(3):
        fold = run / "folds" / str(k)
        for name in ("metrics.json", "history.csv", "predictions.npz", "teacher.pt", "student.pt"):
            assert (fold / name).exists(), name
        metrics = json.loads((fold / "metrics.json").read_text())
        sides = [set(metrics[key]) for key in ("train_subjects", "val_subjects", "test_subjects")]
        assert not (sides[0] & sides[1] or sides[0] & sides[2] or sides[1] & sides[2])
        tested += metrics["test_subjects"]
        assert set(metrics["student"]) == {"window", "trial"}
        assert len(metrics["student"]["trial"]["confusion"]) == len(tiny["cache"].class_names)
        pred = np.load(fold / "predictions.npz")
        np.testing.assert_allclose(pred["student_window_probs"].sum(1), 1.0, rtol=1e-5)
        history = (fold / "history.csv").read_text().splitlines()
        assert history[0].startswith("model,epoch,train_loss") and len(history) > 2
    assert sorted(tested) == list(range(1, 7))


def test_checkpoint_round_trip_gives_identical_outputs(tiny):
    fold = tiny["run"] / "folds" / "0"
    cache = tiny["cache"]
    imu = torch.from_numpy(cache.imu[:16])
    skel = torch.from_numpy(cache.skeleton[:16])
    student, payload = load_model(fold / "student.pt", "student")
    assert payload["class_names"] == cache.class_names and payload["distilled"] is True
    again, _ = load_model(fold / "student.pt")
    assert torch.equal(student(imu), again(imu))
    teacher, _ = load_model(fold / "teacher.pt", "teacher")
    assert teacher(imu, skel).shape == (16, len(cache.class_names))
    # the stored normalisation is the training fold's, not the whole dataset's
    train_subjects = payload["train_subjects"]
    train = cache.imu[np.isin(cache.subject, train_subjects)]
    np.testing.assert_allclose(student.tokenizer.norm_mean.numpy(),
                               train.reshape(-1, 6).mean(0), rtol=1e-4, atol=1e-5)


def test_resume_skips_finished_folds(tiny, caplog):
    before = (tiny["run"] / "folds" / "0" / "student.pt").stat().st_mtime_ns
    with caplog.at_level("INFO"):
        summary = run_cv(tiny["cfg"], tiny["cache"], protocol="kfold", run_dir=tiny["run"], resume=True)
    assert (tiny["run"] / "folds" / "0" / "student.pt").stat().st_mtime_ns == before
    assert summary["student_trial"] == tiny["summary"]["student_trial"]
    assert "finished earlier" in caplog.text


def test_refuses_to_overwrite_a_run(tiny, capsys):
    code = main(["cv", "--config", str(tiny["config"]), "--tokens", str(tiny["tokens"]),
                 "--out", str(tiny["run"])])
    assert code == 2 and "pass --resume" in capsys.readouterr().err


def test_train_teacher_then_student_commands(tiny, capsys):
    folder = tiny["folder"]
    common = ["--config", str(tiny["config"]), "--tokens", str(tiny["tokens"]),
              "--protocol", "kfold", "--fold", "1"]
    assert main(["train-teacher", *common, "--out", str(folder / "t.pt")]) == 0
    assert main(["train-student", *common, "--teacher", str(folder / "t.pt"),
                 "--out", str(folder / "s.pt")]) == 0
    out = capsys.readouterr().out
    assert "test trial  accuracy" in out and (folder / "s.pt").exists()
    # the epoch history stays beside the checkpoint; the resume state is gone once finished
    assert (folder / "s.history.csv").read_text().startswith("epoch,train_loss")
    assert not (folder / "s.pt.fit").exists() and not (folder / "t.pt.fit").exists()
    # --resume with no interrupted state simply trains from the start
    assert main(["train-student", *common, "--no-kd", "--resume", "--out", str(folder / "s2.pt")]) == 0
    assert "kept epoch" in capsys.readouterr().out
    # a teacher trained on other subjects is refused (it would leak the student's test set)
    code = main(["train-student", "--config", str(tiny["config"]), "--tokens", str(tiny["tokens"]),
                 "--protocol", "kfold", "--fold", "0", "--teacher", str(folder / "t.pt"),
                 "--out", str(folder / "s0.pt")])
    assert code == 2 and "must not have seen" in capsys.readouterr().err
    # ... and so is one trained on other windows (here: whole trials instead of sliding windows)
    code = main(["train-student", "--config", str(tiny["config"]), "--protocol", "kfold", "--fold", "1",
                 "--set", "data.segmentation=trial", "--teacher", str(folder / "t.pt"),
                 "--out", str(folder / "s_trial.pt")])
    assert code == 2 and "trained on other windows" in capsys.readouterr().err
    assert main(["profile", "--checkpoint", str(folder / "s.pt"), str(folder / "t.pt")]) == 0
    assert "MFLOPs" in capsys.readouterr().out
    assert main(["profile", "--checkpoint", str(folder / "s.pt"), str(folder / "t.pt"), "--latency",
                 "--runs", "5"]) == 0
    text = capsys.readouterr().out
    student_part, teacher_part = text.split("\nteacher")
    for runtime in ("PyTorch eager", "ONNX Runtime fp32", "ONNX Runtime int8", "peak inference memory"):
        assert runtime in student_part
    assert "ONNX Runtime" not in teacher_part and "PyTorch eager" in teacher_part   # no teacher export


def test_stale_tokens_are_refused(tiny, tmp_path, capsys):
    raw = yaml.safe_load(tiny["config"].read_text())
    raw["data"]["stride"] = 25
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump(raw))
    code = main(["cv", "--config", str(other), "--tokens", str(tiny["tokens"]), "--out", str(tmp_path / "r")])
    assert code == 2 and "stale token cache" in capsys.readouterr().err


def test_explain_command_writes_every_output(tiny, tmp_path, capsys):
    fold = tiny["run"] / "folds" / "0"
    out = tmp_path / "xai"
    args = ["explain", "--checkpoint", str(fold / "student.pt"), "--teacher", str(fold / "teacher.pt"),
            "--config", str(tiny["config"]), "--tokens", str(tiny["tokens"]), "--out", str(out),
            "--max-windows", "12", "--steps", "8"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "attention similarity to the teacher" in text and "deletion AUC" in text
    names = {p.name for p in out.iterdir()}
    assert {"rollout_layers.png", "rollout.npz", "similarity.json", "similarity_per_class.png",
            "deletion.png", "deletion.json", "summary.json"} <= names
    assert any(n.startswith("ig_") and n.endswith(".png") for n in names)
    deletion = json.loads((out / "deletion.json").read_text())
    assert set(deletion["auc"]) == {"IG", "rollout", "random"}
    assert deletion["accuracy"]["IG"][0] == deletion["accuracy"]["random"][0]   # nothing removed yet
    rollout = np.load(out / "rollout.npz")
    np.testing.assert_allclose(rollout["relevance"].sum(1), 1.0, atol=1e-5)
    assert main([*args[:-4], "--classes", "not_a_class"]) == 2
    assert "unknown class" in capsys.readouterr().err


def test_resume_accepts_a_run_saved_before_a_new_config_key(tiny, tmp_path):
    """A key added to the package later (here model.student.arch) takes its default, so a run
    started by an older version still resumes; a real change of value is still refused."""
    import shutil

    run = tmp_path / "old_run"
    shutil.copytree(tiny["run"], run)
    saved = yaml.safe_load((run / "config.yaml").read_text())
    del saved["config"]["model"]["student"]["arch"]
    (run / "config.yaml").write_text(yaml.safe_dump(saved, sort_keys=False))
    summary = run_cv(tiny["cfg"], tiny["cache"], protocol="kfold", run_dir=run, resume=True)
    assert summary["student_trial"] == tiny["summary"]["student_trial"]
    with pytest.raises(Exception, match="started with another config, KD setting or protocol"):
        run_cv(tiny["cfg"], tiny["cache"], protocol="loso", run_dir=run, resume=True)
    saved["config"]["train"]["epochs"] = 99
    (run / "config.yaml").write_text(yaml.safe_dump(saved, sort_keys=False))
    with pytest.raises(Exception, match="started with another config"):
        run_cv(tiny["cfg"], tiny["cache"], protocol="kfold", run_dir=run, resume=True)


def test_resume_refuses_a_teacher_that_saw_the_folds_test_subjects(tiny, tmp_path):
    """A fold resumed with another fold's teacher.pt in its folder (it trained on this
    fold's test subjects) is a one-line error naming the file, not a leaky student."""
    import shutil

    from xtinyhar.errors import XTinyHARError

    run = tmp_path / "swapped"
    shutil.copytree(tiny["run"], run)
    fold = run / "folds" / "0"
    for name in ("done.json", "metrics.json", "student.pt"):   # fold 0 unfinished: it reloads its teacher
        (fold / name).unlink()
    shutil.copy(run / "folds" / "1" / "teacher.pt", fold / "teacher.pt")
    with pytest.raises(XTinyHARError, match=r"folds/0/teacher.pt: trained on subjects .* must not have seen"):
        run_cv(tiny["cfg"], tiny["cache"], protocol="kfold", run_dir=run, resume=True)


def test_parallel_folds_give_the_sequential_numbers(tiny, tmp_path):
    """--jobs 2: folds trained in worker processes; with one thread per fold either way
    (the tiny config trains on 1 thread) every fold's metrics are identical."""
    summary = run_cv(tiny["cfg"], tiny["cache"], protocol="kfold", run_dir=tmp_path / "par", jobs=2)
    assert summary["jobs"] == 2 and summary["folds"] == 3
    for fold in range(3):
        seq = json.loads((tiny["run"] / "folds" / str(fold) / "metrics.json").read_text())
        par = json.loads((tmp_path / "par" / "folds" / str(fold) / "metrics.json").read_text())
        assert par["student"] == seq["student"] and par["teacher"] == seq["teacher"]
        # determinism: the same config and seed give the same weights and probabilities
        for name in ("student.pt", "teacher.pt"):
            weights = [load_checkpoint(run / "folds" / str(fold) / name)["state_dict"]
                       for run in (tiny["run"], tmp_path / "par")]
            assert weights[0].keys() == weights[1].keys()
            assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
        predictions = [np.load(run / "folds" / str(fold) / "predictions.npz")
                       for run in (tiny["run"], tmp_path / "par")]
        assert all(np.array_equal(predictions[0][k], predictions[1][k]) for k in predictions[0].files)
        # teacher and student ran as separate tasks; the fold still reports both fits
        assert par["teacher_fit"]["epochs_run"] == seq["teacher_fit"]["epochs_run"]
        # wall time includes the teacher's fit (an inclusion, not a speed: >= holds on any CPU)
        assert par["seconds"] >= par["teacher_fit"]["seconds"] >= 0
        history = (tmp_path / "par" / "folds" / str(fold) / "history.csv").read_text()
        assert "teacher," in history and "student," in history
        assert not (tmp_path / "par" / "folds" / str(fold) / "teacher_fit.json").exists()
    with pytest.raises(Exception, match="--jobs 0"):
        run_cv(tiny["cfg"], tiny["cache"], protocol="kfold", run_dir=tmp_path / "bad", jobs=0)


def test_a_cache_the_teacher_cannot_use_fails_before_the_run_folder_exists(tiny, tmp_path):
    """A teacher that cannot train (no skeleton windows) is found when the models are built
    before any fold runs: one line, and no run folder to block the corrected rerun."""
    import dataclasses

    from xtinyhar.errors import DataError

    no_skeleton = dataclasses.replace(tiny["cache"], skeleton=None)
    with pytest.raises(DataError, match="no skeleton windows"):
        run_cv(tiny["cfg"], no_skeleton, protocol="kfold", run_dir=tmp_path / "fail", jobs=2)
    assert not (tmp_path / "fail").exists()


def test_a_failing_task_in_a_worker_is_the_error_of_the_call(tiny, tmp_path):
    """Two unfinished folds holding each other's teacher (each saw the other's test subjects):
    the student task in a worker refuses it; run_cv raises that error (one line for the
    CLI), it does not hang or hide it."""
    import shutil

    from xtinyhar.errors import XTinyHARError

    run = tmp_path / "swapped"
    shutil.copytree(tiny["run"], run)
    folds = run / "folds"
    for k in (0, 1):
        for name in ("done.json", "metrics.json", "student.pt"):
            (folds / str(k) / name).unlink()
    (folds / "0" / "teacher.pt").rename(tmp_path / "teacher0.pt")
    shutil.copy(folds / "1" / "teacher.pt", folds / "0" / "teacher.pt")
    shutil.copy(tmp_path / "teacher0.pt", folds / "1" / "teacher.pt")
    with pytest.raises(XTinyHARError, match=r"teacher.pt: trained on subjects .* must not have seen"):
        run_cv(tiny["cfg"], tiny["cache"], protocol="kfold", run_dir=run, resume=True, jobs=2)


def test_trial_segmentation_end_to_end(tiny, tmp_path):
    """data.segmentation trial: one stretched window per trial through the same cv code;
    a trial's prediction is its one window's, and the models learn."""
    from xtinyhar.data import load_dataset
    from xtinyhar.preprocess.tokens import build_token_cache

    cfg = load_config(tiny["config"], {"data.segmentation": "trial", "train.epochs": 30})
    report = load_dataset(cfg)
    cache = build_token_cache(cfg, report.trials, report.class_names)
    assert len(cache.label) == len(report.trials)
    summary = run_cv(cfg, cache, protocol="kfold", run_dir=tmp_path / "run", max_folds=1)
    chance = 1 / len(cache.class_names)
    assert summary["student_trial"]["accuracy"]["mean"] > 3 * chance
    assert summary["teacher_trial"]["accuracy"]["mean"] > 3 * chance
    assert summary["student_trial"]["accuracy"]["mean"] == summary["student_window"]["accuracy"]["mean"]
    from xtinyhar.export.to_onnx import export_metadata    # a device learns it from the export
    _, payload = load_model(tmp_path / "run" / "folds" / "0" / "student.pt", "student")
    assert export_metadata(payload, "onnx", "fp32")["segmentation"] == "trial"


def test_report_of_a_real_run(tiny, tmp_path, capsys):
    """`xtinyhar report` on the run: its tables hold the run's numbers, its figures exist."""
    out = tmp_path / "report"
    assert main(["report", "--run", str(tiny["run"]), "--label", "tiny_kd", "--out", str(out)]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["folds.png", "summary.tex", "tiny_kd_history.png", "tiny_kd_student_confusion.png",
                     "tiny_kd_student_per_class.tex", "tiny_kd_teacher_confusion.png",
                     "tiny_kd_teacher_per_class.tex"]
    assert all((out / n).read_bytes()[:4] == b"\x89PNG" for n in names if n.endswith(".png"))
    summary = (out / "summary.tex").read_text()
    for model in ("student", "teacher"):
        entry = tiny["summary"][f"{model}_trial"]
        assert (f"tiny\\_kd & kfold & 3 & {model} & {entry['accuracy']['mean']:.3f} $\\pm$ "
                f"{entry['accuracy']['std']:.3f}") in summary
    rows = [line for line in (out / "tiny_kd_student_per_class.tex").read_text().splitlines()
            if line.endswith(r"\\") and not line.startswith("Class")]
    trials = len(np.unique(tiny["cache"].trial_index))
    assert len(rows) == len(tiny["cache"].class_names)
    assert sum(int(row.split("&")[-1].strip(" \\")) for row in rows) == trials   # every trial tested once


def _fold_results(fold) -> tuple[dict, dict]:
    """A fold's metrics without its timings, and its predictions."""
    def untimed(value):
        if isinstance(value, dict):
            return {k: untimed(v) for k, v in value.items() if k != "seconds"}
        return value

    record = untimed(json.loads((fold / "metrics.json").read_text()))
    with np.load(fold / "predictions.npz") as pred:
        return record, {name: pred[name] for name in pred.files}


def _assert_same_fold(fold, reference) -> None:
    record, predictions = _fold_results(fold)
    expected, expected_predictions = _fold_results(reference)
    assert record == expected
    assert predictions.keys() == expected_predictions.keys()
    for name, values in predictions.items():
        np.testing.assert_array_equal(values, expected_predictions[name], err_msg=name)


def _stamps(fold) -> dict:
    return {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in fold.iterdir() if p.is_file()}


def _truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.parametrize("damage", [
    lambda fold: _truncate(fold / "predictions.npz"),
    lambda fold: (fold / "predictions.npz").unlink(),
    lambda fold: _truncate(fold / "student.pt"),
    lambda fold: (fold / "done.json").write_text("{not json"),
], ids=["truncated-predictions", "deleted-predictions", "truncated-student", "damaged-marker"])
def test_resume_redoes_a_damaged_fold_and_skips_the_intact_ones(tiny, tmp_path, caplog, damage):
    """Only metrics.json used to be checked: a fold with a truncated or deleted artefact was
    skipped and summary.json rewritten from it. done.json (written last) lists every
    artefact with its size and sha256; a fold that does not match it is redone, saying why."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny["run"], run)
    intact = {k: _stamps(run / "folds" / str(k)) for k in (0, 2)}
    damage(run / "folds" / "1")
    with caplog.at_level("INFO"):
        code = main(["cv", "--config", str(tiny["config"]), "--tokens", str(tiny["tokens"]),
                     "--out", str(run), "--resume"])
    assert code == 0
    redone = [r.getMessage() for r in caplog.records if "redoing the fold from scratch" in r.getMessage()]
    assert len(redone) == 1 and redone[0].startswith("fold 1: ") and "folds/1/" in redone[0]
    assert caplog.text.count("finished earlier; skipping") == 2
    for k in (0, 2):
        assert _stamps(run / "folds" / str(k)) == intact[k]
    _assert_same_fold(run / "folds" / "1", tiny["run"] / "folds" / "1")   # same seed, same fold
    summary = json.loads((run / "summary.json").read_text())
    assert summary["student_trial"] == tiny["summary"]["student_trial"]
    assert summary["teacher_trial"] == tiny["summary"]["teacher_trial"]


def test_more_folds_than_subjects_fails_before_the_run_folder_exists(tiny, tmp_path, capsys):
    """eval.folds=20 with 6 subjects used to fail after config.yaml was written, so the
    corrected rerun was refused ("run directory exists") and so was --resume."""
    run = tmp_path / "run"
    common = ["cv", "--config", str(tiny["config"]), "--tokens", str(tiny["tokens"]), "--out", str(run)]
    assert main([*common, "--set", "eval.folds=20"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: eval.folds (20) is more than the number of subjects (6)"
    assert not run.exists()
    assert main([*common, "--max-folds", "1"]) == 0


def test_a_fold_killed_mid_training_resumes_to_the_uninterrupted_result(tiny, tmp_path, caplog):
    """`xtinyhar cv` killed (SIGKILL) while fold 1 trains, then --resume: fold 0 is not
    touched, fold 1 continues from its last finished epoch, and every fold's metrics and
    predictions equal those of the uninterrupted run with the same seed."""
    import signal
    import subprocess
    import sys
    import time

    run = tmp_path / "run"
    args = ["cv", "--config", str(tiny["config"]), "--tokens", str(tiny["tokens"]), "--out", str(run)]
    proc = subprocess.Popen([sys.executable, "-m", "xtinyhar.cli", *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    fold1 = run / "folds" / "1"
    deadline = time.time() + 120
    try:
        while not ((run / "folds" / "0" / "done.json").exists()
                   and (fold1 / "fit_teacher" / "last.pt").exists()):
            assert proc.poll() is None and time.time() < deadline, "cv ended before fold 1 trained"
            time.sleep(0.005)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert not (fold1 / "done.json").exists()   # killed mid-fold
    teacher_fit_killed = not (fold1 / "teacher.pt").exists()   # almost always: 8 epochs to go
    before = _stamps(run / "folds" / "0")
    with caplog.at_level("INFO"):
        assert main([*args, "--resume"]) == 0
    assert "fold 0 finished earlier; skipping" in caplog.text
    assert "fold 1: not finished" in caplog.text and "saved training state" in caplog.text
    assert not teacher_fit_killed or "fold 1 teacher: resuming after epoch" in caplog.text
    assert _stamps(run / "folds" / "0") == before
    for k in range(3):
        _assert_same_fold(run / "folds" / str(k), tiny["run"] / "folds" / str(k))
    summary = json.loads((run / "summary.json").read_text())
    for key in ("student_trial", "teacher_trial", "student_window", "teacher_window"):
        assert summary[key] == tiny["summary"][key]
