"""Grids of runs on a real Ray cluster (xtinyhar.evaluate.executors.RayExecutor): a local
head started with `ray start --head` on 127.0.0.1, 2 CPUs, usage stats and dashboard off.
A tiny synthetic study through `ablate --address` gives exactly the table of a serial run
(no Ray); a cv whose worker process dies in the middle still completes, with the numbers
of the serial run; bad addresses and a missing extra are one-line errors."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from xtinyhar.cli import main
from xtinyhar.errors import XTinyHARError
from xtinyhar.evaluate.ablate import load_study, run_study, study_caches, study_configs
from xtinyhar.evaluate.cv import DONE, run_cv
from xtinyhar.io import load_checkpoint

from conftest import CONFIGS

import importlib.util

if importlib.util.find_spec("ray") is None:   # found, not imported: Ray reads its settings on import
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail("CI must test the Ray scheduler: install the extra (pip install -e '.[ray]')",
                    pytrace=False)
    pytest.skip("the ray extra is not installed: pip install -e '.[ray]'", allow_module_level=True)

HEAD_START_S = 90     # bound on `ray start --head` becoming reachable
HEAD_STOP_S = 20      # bound on the head shutting down before it is killed

TINY = {
    "data": {"synthetic": {"subjects": 6, "trials_per_class": 2, "seconds": 3.0, "seed": 1}},
    "model": {"student": {"D": 16, "L": 1, "heads": 2, "stem_channels": 8},
              "teacher": {"D": 32, "L": 1, "heads": 2}},
    "train": {"epochs": 3, "teacher_epochs": 2, "batch_size": 32, "lr": 3e-3, "warmup_epochs": 1,
              "threads": 1},
    "eval": {"folds": 2},
}
STUDY = {"base": "full", "protocol": "kfold", "seeds": [42],
         "variants": {"full": [], "no_kd": {"kd": False}}}


def merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        out[key] = merge(base.get(key, {}), value) if isinstance(value, dict) else value
    return out


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def ray_head():
    """A Ray head of 2 CPUs on 127.0.0.1 with token authentication (a fresh token, given to
    the head and to this process, the driver), run in the foreground (`--block`) in its own
    process group, so that teardown stops exactly the processes it started (SIGTERM, then
    SIGKILL to the group after a bound) and no other Ray on the machine."""
    import uuid

    ray_bin = Path(sys.executable).parent / "ray"
    port = free_port()
    temp_dir = tempfile.mkdtemp(prefix="xr", dir="/tmp")   # short: Ray's socket paths have a length limit
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": uuid.uuid4().hex}
    saved = {key: os.environ.get(key) for key in auth}
    os.environ.update(auth)
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    log = open(Path(temp_dir) / "head.log", "w")
    head = subprocess.Popen(
        [str(ray_bin), "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={port}",
         "--num-cpus=2", "--disable-usage-stats", "--include-dashboard=false", f"--temp-dir={temp_dir}"],
        stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + HEAD_START_S
        while True:
            assert head.poll() is None, f"ray start exited: {(Path(temp_dir) / 'head.log').read_text()[-2000:]}"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the Ray head did not come up in time"
                time.sleep(0.5)
        yield f"127.0.0.1:{port}"
    finally:
        import ray
        if ray.is_initialized():
            ray.shutdown()
        head.send_signal(signal.SIGTERM)
        try:
            head.wait(timeout=HEAD_STOP_S)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(head.pid, signal.SIGKILL)   # whatever of its group is left
        except ProcessLookupError:
            pass
        head.wait()
        log.close()
        shutil.rmtree(temp_dir, ignore_errors=True)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="module")
def serial(tmp_path_factory):
    """The tiny study run here, one model after another (no Ray)."""
    folder = tmp_path_factory.mktemp("ray")
    config = folder / "tiny.yaml"
    config.write_text(yaml.safe_dump(merge(yaml.safe_load((CONFIGS / "synthetic.yaml").read_text()), TINY)))
    tokens = folder / "tokens.npz"
    assert main(["prepare", "--config", str(config), "--out", str(tokens)]) == 0
    study_file = folder / "study.yaml"
    study_file.write_text(yaml.safe_dump(STUDY, sort_keys=False))
    study = load_study(study_file)
    cfgs = study_configs(study, config, study.seeds)
    caches = study_caches(cfgs, tokens)
    run = folder / "serial"
    table = run_study(study, cfgs, caches, run_dir=run, protocol="kfold", seeds=study.seeds,
                      config=config, jobs=1)
    return {"folder": folder, "config": config, "tokens": tokens, "study": study_file, "run": run,
            "table": table, "cfgs": cfgs, "caches": caches}


def without_times(record):
    """A metrics.json without its wall times (they differ run to run)."""
    if isinstance(record, dict):
        return {k: without_times(v) for k, v in record.items() if k != "seconds"}
    if isinstance(record, list):
        return [without_times(v) for v in record]
    return record


def assert_same_fold(fold, reference):
    """Identical metrics, predictions and weights; a complete done.json; no scratch files."""
    assert without_times(json.loads((fold / "metrics.json").read_text())) == \
        without_times(json.loads((reference / "metrics.json").read_text()))
    mine, theirs = np.load(fold / "predictions.npz"), np.load(reference / "predictions.npz")
    assert mine.files == theirs.files and all(np.array_equal(mine[k], theirs[k]) for k in mine.files)
    for name in ("student.pt", "teacher.pt"):
        if (reference / name).exists():
            a, b = (load_checkpoint(f / name)["state_dict"] for f in (fold, reference))
            assert a.keys() == b.keys() and all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in a)
    listed = {e["name"] for e in json.loads((fold / DONE).read_text())["artefacts"]}
    assert listed == {e["name"] for e in json.loads((reference / DONE).read_text())["artefacts"]}
    assert sorted(p.name for p in fold.iterdir()) == sorted(p.name for p in reference.iterdir())


def test_a_study_through_address_gives_the_serial_table(ray_head, serial, capsys):
    """`ablate --address`: every fold a Ray task (inputs through the object store, the fold's
    files written here by the driver), on the cluster's 2 CPUs; the table equals the serial
    one exactly (training is deterministic per seed, one thread per model either way)."""
    run = serial["folder"] / "on_ray"
    code = main(["ablate", "--config", str(serial["config"]), "--study", str(serial["study"]),
                 "--tokens", str(serial["tokens"]), "--out", str(run), "--jobs", "2",
                 "--address", ray_head])
    assert code == 0, capsys.readouterr().err
    table = json.loads((run / "ablation.json").read_text())
    for row, reference in zip(table["variants"], serial["table"]["variants"], strict=True):
        assert row["name"] == reference["name"]
        for metric in ("accuracy", "f1_macro"):
            assert row[metric] == reference[metric]
            assert row["difference"].get(metric) == reference["difference"].get(metric)
    for variant in STUDY["variants"]:
        for fold in (0, 1):
            assert_same_fold(run / variant / "seed_42" / "folds" / str(fold),
                             serial["run"] / variant / "seed_42" / "folds" / str(fold))
    assert not list(run.rglob("*.tmp"))


def test_a_cv_completes_when_a_worker_dies_mid_run(ray_head, serial, tmp_path):
    """The first student task's worker process exits (os._exit) after the teachers are done:
    Ray runs the task again on a new worker, from the same inputs in the object store, and
    the run completes with the serial run's numbers."""
    from xtinyhar.evaluate.executors import RayExecutor

    marker, attempts = tmp_path / "killed", tmp_path / "attempts"

    def dies_once(cache, *args, fn, marker, attempts):
        with open(attempts, "a") as f:
            f.write(f"{fn.__name__} {os.getpid()}\n")
        if fn.__name__ == "fold_task":
            try:
                os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                pass
            else:
                os._exit(1)     # the worker process dies; no exception, no cleanup
        return fn(cache, *args)

    class DiesOnce(RayExecutor):
        def submit(self, fn, cache_key, *args):
            import functools
            return super().submit(functools.partial(dies_once, fn=fn, marker=str(marker),
                                                    attempts=str(attempts)), cache_key, *args)

    cfg = serial["cfgs"]["full", 42]
    cache = next(iter(serial["caches"].values()))
    summary = run_cv(cfg, cache, protocol="kfold", run_dir=tmp_path / "run", jobs=2,
                     executor=DiesOnce(ray_head, jobs=2))
    assert marker.exists()
    tried = attempts.read_text().split()
    names, pids = tried[0::2], tried[1::2]
    assert names.count("teacher_task") == 2 and names.count("fold_task") == 3   # one ran twice
    killed = pids[names.index("fold_task")]
    assert killed not in pids[names.index("fold_task") + 1:]   # its retry ran in another process
    reference = serial["run"] / "full" / "seed_42"
    for fold in (0, 1):
        assert_same_fold(tmp_path / "run" / "folds" / str(fold), reference / "folds" / str(fold))
    expected = json.loads((reference / "summary.json").read_text())
    for key in ("student_trial", "teacher_trial", "student_window", "teacher_window"):
        assert summary[key] == expected[key]


def test_an_address_nothing_answers_is_a_one_line_error(serial, tmp_path, capsys):
    code = main(["cv", "--config", str(serial["config"]), "--tokens", str(serial["tokens"]),
                 "--out", str(tmp_path / "run"), "--address", f"127.0.0.1:{free_port()}"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: --address 127.0.0.1:") and "no Ray cluster answers" in err
    assert "\n" not in err
    assert not (tmp_path / "run").exists()     # refused before the run folder is made


def test_without_the_extra_the_error_names_it(serial, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)     # what `import ray` meets without the extra
    code = main(["cv", "--config", str(serial["config"]), "--tokens", str(serial["tokens"]),
                 "--out", str(tmp_path / "run"), "--address", "127.0.0.1:6379"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err == ("error: --address needs Ray, which is not installed: "
                                 "pip install 'xtinyhar[ray]'")
    assert not (tmp_path / "run").exists()


def test_usage_stats_are_off_before_ray_is_imported(monkeypatch):
    from xtinyhar.evaluate import executors

    monkeypatch.delenv("RAY_USAGE_STATS_ENABLED", raising=False)
    executors.import_ray()
    assert os.environ["RAY_USAGE_STATS_ENABLED"] == "0"
    with pytest.raises(XTinyHARError, match="--jobs 0"):
        executors.make_executor(jobs=0, address="127.0.0.1:1")


def test_the_executor_follows_address_then_ray_address_then_jobs(monkeypatch):
    from xtinyhar.evaluate import executors

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert isinstance(executors.make_executor(jobs=1), executors.InlineExecutor)
    assert isinstance(executors.make_executor(jobs=2), executors.ProcessExecutor)
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")
    ray_executor = executors.make_executor(jobs=2)
    assert isinstance(ray_executor, executors.RayExecutor) and ray_executor.address == "10.0.0.1:6379"
    assert executors.make_executor(address="local").address == "local"   # the flag wins
    assert not ray_executor.shares_files and executors.ProcessExecutor(2).shares_files
