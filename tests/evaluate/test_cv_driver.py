"""The cross-validation driver (xtinyhar.evaluate.cv) without training: what --resume
accepts as a finished fold, and arguments refused before any work starts."""

import json

import pytest
import yaml

from xtinyhar.config import load_config
from xtinyhar.data import load_dataset
from xtinyhar.data.splits import make_splits
from xtinyhar.errors import XTinyHARError
from xtinyhar.evaluate.cv import _fold_record, fold_artefacts, run_cv, write_done
from xtinyhar.preprocess.tokens import build_token_cache

from conftest import CONFIGS


@pytest.fixture(scope="module")
def small():
    cfg = load_config(CONFIGS / "synthetic.yaml", {
        "eval.folds": 3, "train.threads": 1, "data.synthetic.subjects": 6,
        "data.synthetic.trials_per_class": 2})
    report = load_dataset(cfg)
    return cfg, build_token_cache(cfg, report.trials, report.class_names)


def finished_run(run, cfg, records):
    """A run directory whose folds all look finished: metrics.json, stand-ins for the other
    artefacts, and the done.json marker that lists them."""
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump(
        {"config": cfg.to_dict(), "protocol": "kfold", "kd": True}, sort_keys=False))
    for k, record in enumerate(records):
        fold = run / "folds" / str(k)
        fold.mkdir(parents=True)
        for name in fold_artefacts(cfg, kd=True):
            (fold / name).write_bytes(b"stand-in")
        (fold / "metrics.json").write_text(json.dumps(record))
        write_done(fold, fold_artefacts(cfg, kd=True))


def test_resume_skips_a_finished_fold_only_if_it_ran_on_this_splits_subjects(small, tmp_path):
    cfg, cache = small
    splits = make_splits(cache.subject, "kfold", folds=cfg.eval.folds, seed=cfg.train.seed,
                         val_subjects=cfg.eval.val_subjects)
    records = [{**_fold_record(s), "seconds": 1.0} for s in splits]
    finished_run(tmp_path / "same", cfg, records)
    summary = run_cv(cfg, cache, protocol="kfold", run_dir=tmp_path / "same", resume=True)
    assert summary["folds"] == 3
    # folds 0 and 1 swapped (another partition of the subjects, e.g. from another library
    # version): reusing them would test some subjects twice and others never
    finished_run(tmp_path / "swapped", cfg, [records[1], records[0], records[2]])
    with pytest.raises(XTinyHARError, match=r"folds/0/metrics.json: .*other subjects"):
        run_cv(cfg, cache, protocol="kfold", run_dir=tmp_path / "swapped", resume=True)


@pytest.mark.parametrize("max_folds", [0, -1])
def test_max_folds_below_one_is_refused_before_anything_runs(small, tmp_path, max_folds):
    """--max-folds -1 used to drop the last fold silently (splits[:-1]) and report the rest
    as the protocol's mean +- std; 0 ended in a traceback from an empty summary."""
    cfg, cache = small
    with pytest.raises(XTinyHARError, match=f"--max-folds {max_folds}: must be at least 1"):
        run_cv(cfg, cache, protocol="kfold", run_dir=tmp_path / "run", max_folds=max_folds)
    assert not (tmp_path / "run").exists()


def test_a_run_path_that_is_a_file_is_a_one_line_error(small, tmp_path):
    """--out pointing at a file ended in a NotADirectoryError traceback."""
    cfg, cache = small
    path = tmp_path / "summary.json"
    path.write_text("{}")
    for resume in (False, True):
        with pytest.raises(XTinyHARError, match="summary.json: --out must be a directory"):
            run_cv(cfg, cache, protocol="kfold", run_dir=path, resume=resume)
    assert path.read_text() == "{}"


def test_resume_with_damaged_run_files_is_a_one_line_error(small, tmp_path):
    """A truncated metrics.json or a corrupted config.yaml in a run folder used to end
    --resume in a JSON or YAML parser traceback."""
    cfg, cache = small
    splits = make_splits(cache.subject, "kfold", folds=cfg.eval.folds, seed=cfg.train.seed,
                         val_subjects=cfg.eval.val_subjects)
    records = [{**_fold_record(s), "seconds": 1.0} for s in splits]
    finished_run(tmp_path / "truncated", cfg, records)
    metrics = tmp_path / "truncated" / "folds" / "0" / "metrics.json"
    metrics.write_text(metrics.read_text()[:20])
    write_done(metrics.parent, fold_artefacts(cfg, kd=True))   # a marker that vouches for it
    with pytest.raises(XTinyHARError, match=r"folds/0/metrics.json: unreadable .*delete it to rerun") as err:
        run_cv(cfg, cache, protocol="kfold", run_dir=tmp_path / "truncated", resume=True)
    assert "\n" not in str(err.value)
    finished_run(tmp_path / "config", cfg, records)
    (tmp_path / "config" / "config.yaml").write_text("config: [unclosed\n")
    with pytest.raises(XTinyHARError, match=r"config.yaml: unreadable .*choose another --out"):
        run_cv(cfg, cache, protocol="kfold", run_dir=tmp_path / "config", resume=True)
