"""Ablation studies (xtinyhar.evaluate.ablate): the study file and its errors, the paired
bootstrap, a tiny synthetic study end to end (CLI, shared job pool), resume, and the
report's table and figure."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import yaml

from xtinyhar.cli import main
from xtinyhar.config import load_config
from xtinyhar.errors import ConfigError, XTinyHARError
from xtinyhar.evaluate.ablate import (BOOTSTRAP_RESAMPLES, load_study, paired_bootstrap,
                                      run_study, study_caches, study_configs)
from xtinyhar.report import write_report

from conftest import CONFIGS

TINY = {
    "data": {"synthetic": {"subjects": 6, "trials_per_class": 2, "seconds": 3.0, "seed": 1}},
    "model": {"student": {"D": 16, "L": 1, "heads": 2, "stem_channels": 8},
              "teacher": {"D": 32, "L": 1, "heads": 2}},
    "train": {"epochs": 3, "teacher_epochs": 2, "batch_size": 32, "lr": 3e-3, "warmup_epochs": 1,
              "threads": 1},
    "eval": {"folds": 2},
}
STUDY = {
    "base": "full",
    "protocol": "kfold",
    "seeds": [42, 43],
    "variants": {
        "full": [],
        "no_kd": {"kd": False},
        "fixed_p20": ["preproc.dynamic_patch.enabled=false", "model.student.p_default=20"],
    },
}


def merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        out[key] = merge(base.get(key, {}), value) if isinstance(value, dict) else value
    return out


def write_study(path, content) -> str:
    path.write_text(content if isinstance(content, str) else yaml.safe_dump(content, sort_keys=False))
    return str(path)


# --------------------------------------------------------------------- the study file

def test_the_shipped_utd_mhad_study_loads_and_builds_every_config():
    study = load_study(CONFIGS / "ablations" / "utd_mhad.yaml")
    names = [v.name for v in study.variants]
    assert study.base == "full" and names[0] == "full"
    assert {"no_kd", "no_pos", "sinusoidal_pos", "fixed_p10", "fixed_p20", "fixed_p30"} <= set(names)
    assert study.variant("no_kd").kd is False and study.variant("no_pos").kd is True
    cfgs = study_configs(study, CONFIGS / "utd_mhad.yaml", study.seeds)
    assert len(cfgs) == len(names) * len(study.seeds)
    fixed = cfgs["fixed_p10", 42]
    assert not fixed.preproc.dynamic_patch.enabled and fixed.model.student.p_default == 10
    assert cfgs["no_pos", 43].model.student.pos_embedding == "none"
    assert cfgs["sinusoidal_pos", 43].train.seed == 43


@pytest.mark.parametrize("content, message", [
    ({"variants": {"full": []}, "seed": [1]}, r"unknown key 'seed' \(known: variants"),
    ({"base": "full"}, "variants: expected a mapping"),
    ({"variants": {"a": []}}, r"base: 'full' is not one of the variants \(a\)"),
    ({"variants": {"full": [], "x": {"kd": False, "sett": []}}}, r"variant 'x': unknown key 'sett'"),
    ({"variants": {"full": [], "x": ["model.student.L"]}}, r"variant 'x': .*expected KEY=VALUE"),
    ({"variants": {"full": [], "x": {"kd": "no"}}}, r"variant 'x': kd: expected true or false"),
    ({"variants": {"full": [], "x": ["train.seed=3"]}}, r"train.seed cannot be overridden"),
    ({"variants": {"full": [], "a/b": []}}, r"variant name 'a/b'"),
    ({"variants": {"full": [], "x": "model.student.L=2"}}, r"variant 'x': expected a list"),
    ({"variants": {"full": []}, "protocol": "kfolds"}, r"protocol: 'kfolds' is not one of"),
    ({"variants": {"full": []}, "seeds": [42, 42]}, r"repeats a seed"),
    ("variants:\n  full: []\n  full: []\n", r"duplicate key 'full'"),
])
def test_study_errors_are_one_line_and_name_the_file(tmp_path, content, message):
    path = write_study(tmp_path / "study.yaml", content)
    with pytest.raises(ConfigError, match=message) as info:
        load_study(path)
    assert str(info.value).startswith(path) and "\n" not in str(info.value)


def test_a_variant_with_an_unknown_config_key_names_study_variant_and_key(tmp_path):
    path = write_study(tmp_path / "study.yaml", {"variants": {"full": [], "x": ["model.student.LL=2"]}})
    study = load_study(path)
    with pytest.raises(ConfigError, match=r"study.yaml: variant 'x': .*unknown key 'model.student.LL'"):
        study_configs(study, CONFIGS / "synthetic.yaml", [42])


# --------------------------------------------------------------------- statistics

def test_paired_bootstrap_on_hand_made_differences():
    constant = paired_bootstrap([0.05] * 6)
    assert constant["high"] - constant["low"] == 0.0
    assert constant["mean"] == pytest.approx(0.05)
    known = paired_bootstrap([0.0, 0.1, 0.2, 0.3])
    assert known["mean"] == pytest.approx(0.15)
    assert 0.0 <= known["low"] < 0.15 < known["high"] <= 0.3
    assert paired_bootstrap([0.0, 0.1, 0.2, 0.3]) == known          # fixed RNG seed
    # the same as resampling by hand with the documented RNG and seed
    data = np.array([0.0, 0.1, 0.2, 0.3])
    rng = np.random.default_rng(0)
    means = [data[rng.integers(0, 4, size=4)].mean() for _ in range(BOOTSTRAP_RESAMPLES)]
    assert (known["low"], known["high"]) == pytest.approx(tuple(np.quantile(means, [0.025, 0.975])))
    # the interval of a mean of n pairs narrows about as 1/sqrt(n)
    rng = np.random.default_rng(5)
    few, many = rng.normal(0.02, 0.05, 10), rng.normal(0.02, 0.05, 160)
    width = lambda d: paired_bootstrap(d)["high"] - paired_bootstrap(d)["low"]   # noqa: E731
    assert width(many) < width(few) / 2
    with pytest.raises(ValueError):
        paired_bootstrap([])


# --------------------------------------------------------------------- end to end

@pytest.fixture(scope="module")
def study(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ablate")
    config = folder / "tiny.yaml"
    config.write_text(yaml.safe_dump(merge(yaml.safe_load((CONFIGS / "synthetic.yaml").read_text()), TINY)))
    tokens = folder / "tokens.npz"
    assert main(["prepare", "--config", str(config), "--out", str(tokens)]) == 0
    study_file = write_study(folder / "study.yaml", STUDY)
    run = folder / "study"
    code = main(["ablate", "--config", str(config), "--study", study_file, "--out", str(run),
                 "--tokens", str(tokens), "--jobs", "2"])
    assert code == 0
    return {"folder": folder, "config": config, "tokens": tokens, "study": study_file, "run": run,
            "table": json.loads((run / "ablation.json").read_text())}


def test_every_variant_and_seed_is_a_cv_run_folder(study):
    run = study["run"]
    for name in STUDY["variants"]:
        for seed in STUDY["seeds"]:
            folder = run / name / f"seed_{seed}"
            summary = json.loads((folder / "summary.json").read_text())
            assert summary["folds"] == 2
            saved = yaml.safe_load((folder / "config.yaml").read_text())
            assert saved["config"]["train"]["seed"] == seed and saved["kd"] == (name != "no_kd")
            assert (folder / "folds" / "0" / "done.json").is_file()
            assert (folder / "folds" / "1" / "teacher.pt").is_file() == (name != "no_kd")
    assert not (run / "fixed_p20" / "seed_42" / "folds" / "0" / "nothing").exists()
    fixed = yaml.safe_load((run / "fixed_p20" / "seed_42" / "config.yaml").read_text())
    assert fixed["config"]["preproc"]["dynamic_patch"]["enabled"] is False


def test_the_table_pairs_folds_and_seeds(study, capsys):
    table = study["table"]
    assert table["base"] == "full" and table["seeds"] == [42, 43] and table["folds"] == 2
    assert table["statistics"]["rng_seed"] == 0 and table["statistics"]["resamples"] == BOOTSTRAP_RESAMPLES
    rows = {row["name"]: row for row in table["variants"]}
    assert list(rows) == ["full", "no_kd", "fixed_p20"]
    assert rows["full"]["difference"] == {} and rows["full"]["reference"]
    run = study["run"]

    def fold_score(name, seed, fold, metric):
        record = json.loads((run / name / f"seed_{seed}" / "folds" / str(fold) / "metrics.json").read_text())
        return record["student"]["trial"][metric]
    for name in ("no_kd", "fixed_p20"):
        for metric in ("accuracy", "f1_macro"):
            diff = rows[name]["difference"][metric]
            pairs = [(p["seed"], p["fold"]) for p in diff["pairs"]]
            assert pairs == [(42, 0), (42, 1), (43, 0), (43, 1)]
            for pair in diff["pairs"]:
                expected = (fold_score(name, pair["seed"], pair["fold"], metric)
                            - fold_score("full", pair["seed"], pair["fold"], metric))
                assert pair["value"] == pytest.approx(expected)
            assert diff["mean"] == pytest.approx(np.mean([p["value"] for p in diff["pairs"]]))
            assert diff["low"] <= diff["mean"] <= diff["high"]
        values = [v["value"] for v in rows[name]["accuracy"]["values"]]
        assert rows[name]["accuracy"]["mean"] == pytest.approx(np.mean(values))
        assert rows[name]["accuracy"]["std"] == pytest.approx(np.std(values, ddof=1))
    # each seed's folds hold the same test subjects in every variant (paired)
    for seed in (42, 43):
        tests = {name: [json.loads((run / name / f"seed_{seed}" / "folds" / str(k) / "metrics.json")
                                   .read_text())["test_subjects"] for k in (0, 1)] for name in rows}
        assert tests["no_kd"] == tests["full"] == tests["fixed_p20"]
    assert rows["full"]["params"] > 0 and rows["full"]["mflops"] > 0
    assert rows["fixed_p20"]["params"] == rows["full"]["params"]


def test_existing_study_folder_is_refused_without_resume(study, capsys):
    code = main(["ablate", "--config", str(study["config"]), "--study", study["study"],
                 "--out", str(study["run"]), "--tokens", str(study["tokens"])])
    assert code == 2 and "pass --resume" in capsys.readouterr().err


def _inputs(study):
    s = load_study(study["study"])
    cfgs = study_configs(s, study["config"], s.seeds)
    return s, cfgs, study_caches(cfgs, study["tokens"])


def test_resume_skips_finished_runs_and_redoes_a_damaged_one(study, caplog):
    s, cfgs, caches = _inputs(study)
    run = study["run"]
    kept = run / "fixed_p20" / "seed_43"
    damaged = run / "no_kd" / "seed_42"
    watched = {p: p.stat().st_mtime_ns for p in (kept / "summary.json", kept / "folds" / "0" / "student.pt",
                                                  damaged / "folds" / "0" / "student.pt")}
    (damaged / "folds" / "1" / "student.pt").write_bytes(b"truncated")
    (run / "full" / "seed_43" / "summary.json").write_text("{\"fol")     # half written
    with caplog.at_level("INFO"):
        table = run_study(s, cfgs, caches, run_dir=run, protocol="kfold", seeds=s.seeds,
                          config=study["config"], resume=True)
    assert all(p.stat().st_mtime_ns == t for p, t in watched.items())   # untouched
    assert "fixed_p20/seed_43: finished earlier; skipping" in caplog.text
    assert "redoing the fold from scratch" in caplog.text
    assert (damaged / "folds" / "1" / "student.pt").stat().st_size > 100
    assert json.loads((run / "full" / "seed_43" / "summary.json").read_text())["folds"] == 2
    rows = {row["name"]: row for row in table["variants"]}
    assert rows["full"]["accuracy"]["values"] == {r["name"]: r for r in study["table"]["variants"]}[
        "full"]["accuracy"]["values"]


def test_variants_tabulates_part_of_a_finished_study_without_training(study, capsys):
    run = study["run"]
    before = {p: p.stat().st_mtime_ns for p in run.rglob("*.pt")}
    whole_table = (run / "ablation.json").read_bytes()
    try:
        code = main(["ablate", "--config", str(study["config"]), "--study", study["study"],
                     "--out", str(run), "--tokens", str(study["tokens"]), "--variants", "fixed_p20",
                     "--resume"])
        table = json.loads((run / "ablation.json").read_text())
    finally:   # the other tests read the whole study's table
        (run / "ablation.json").write_bytes(whole_table)
    assert code == 0
    assert {p: p.stat().st_mtime_ns for p in run.rglob("*.pt")} == before   # nothing trained
    rows = {row["name"]: row for row in table["variants"]}
    assert list(rows) == ["full", "fixed_p20"]                 # the reference always comes along
    whole = {row["name"]: row for row in study["table"]["variants"]}
    assert rows["fixed_p20"]["difference"] == whole["fixed_p20"]["difference"]
    assert "2 variant(s) x 2 seed(s)" in capsys.readouterr().out


def test_variants_naming_no_variant_of_the_study_is_one_line(study, capsys):
    code = main(["ablate", "--config", str(study["config"]), "--study", study["study"],
                 "--out", str(study["folder"] / "never"), "--variants", "no_kd", "fixed_p40"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "--variants fixed_p40: not a variant of" in err and "full, no_kd, fixed_p20" in err
    assert not (study["folder"] / "never").exists()


def test_resume_with_a_changed_variant_is_refused_before_anything_is_written(study, tmp_path):
    s, cfgs, caches = _inputs(study)
    s.variant("no_kd").kd = True
    before = sorted(p for p in study["run"].rglob("*"))
    with pytest.raises(XTinyHARError, match=r"no_kd/seed_42/config.yaml: the run was started with another"):
        run_study(s, cfgs, caches, run_dir=study["run"], protocol="kfold", seeds=s.seeds,
                  config=study["config"], resume=True)
    assert sorted(p for p in study["run"].rglob("*")) == before


def test_a_variant_that_changes_the_folds_is_refused(study, tmp_path):
    path = write_study(tmp_path / "s.yaml", {"variants": {"full": [], "three": ["eval.folds=3"]}})
    s = load_study(path)
    cfgs = study_configs(s, study["config"], [42])
    with pytest.raises(ConfigError, match=r"variant 'three' gets other folds than 'full'"):
        run_study(s, cfgs, study_caches(cfgs, study["tokens"]), run_dir=tmp_path / "r",
                  protocol="kfold", seeds=[42], config=study["config"])
    assert not (tmp_path / "r").exists()


def test_report_writes_the_ablation_table_and_figure(study, tmp_path):
    out = tmp_path / "report"
    code = main(["report", "--ablation", str(study["run"]), "--out", str(out)])
    assert code == 0
    tex = (out / "ablation.tex").read_text()
    assert "\\toprule" in tex and "no\\_kd" in tex and "fixed\\_p20" in tex and "reference" in tex
    assert "RNG seed 0" in tex
    png = out / "ablation.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and os.path.getsize(png) > 1000
    assert not list(out.glob("*.tmp*"))


def _part(study, tmp_path, *variants) -> Path:
    """The table of part of the finished study (`--variants`, tabulated without training)."""
    run = study["run"]
    whole_table = (run / "ablation.json").read_bytes()
    try:
        assert main(["ablate", "--config", str(study["config"]), "--study", study["study"],
                     "--out", str(run), "--tokens", str(study["tokens"]), "--variants", *variants,
                     "--resume"]) == 0
        part = tmp_path / f"{'_'.join(variants)}.json"
        part.write_bytes((run / "ablation.json").read_bytes())
    finally:   # the other tests read the whole study's table
        (run / "ablation.json").write_bytes(whole_table)
    return part


def test_report_merges_parts_of_a_study_into_the_whole_study_table(study, tmp_path):
    first, second = _part(study, tmp_path, "no_kd"), _part(study, tmp_path, "fixed_p20")
    out = tmp_path / "report"
    assert main(["report", "--ablation", str(first), "--ablation", str(second), "--out", str(out)]) == 0
    merged = json.loads((out / "ablation.json").read_text())
    whole = study["table"]
    assert [row["name"] for row in merged["variants"]] == [row["name"] for row in whole["variants"]]
    for row, expected in zip(merged["variants"], whole["variants"]):
        for key in ("accuracy", "f1_macro", "difference", "params", "mflops", "kd", "overrides"):
            assert row[key] == expected[key], (row["name"], key)
    assert merged["parts"] == [str(first), str(second)]
    assert "fixed\\_p20" in (out / "ablation.tex").read_text() and (out / "ablation.png").is_file()


def test_merging_parts_that_do_not_pair_is_one_line_and_writes_nothing(study, tmp_path):
    first = _part(study, tmp_path, "no_kd")
    table = json.loads(_part(study, tmp_path, "fixed_p20").read_text())
    table["variants"][0]["accuracy"]["values"][1]["value"] += 0.25      # another reference
    other = tmp_path / "other_reference.json"
    other.write_text(json.dumps(table))
    with pytest.raises(XTinyHARError) as error:
        write_report([], tmp_path / "out", ablation=[first, other])
    message = str(error.value)
    assert len(message.splitlines()) == 1 and str(other) in message
    assert "variant 'full'" in message and "were not trained alike" in message
    table["variants"][0]["accuracy"]["values"][1]["value"] -= 0.25
    table["protocol"] = "loso"
    other.write_text(json.dumps(table))
    with pytest.raises(XTinyHARError, match=r"other_reference.json: protocol 'loso' differs from .*'kfold'"):
        write_report([], tmp_path / "out", ablation=[first, other])
    assert not (tmp_path / "out").exists()


def test_report_refuses_a_file_that_is_not_an_ablation_table(tmp_path):
    bad = tmp_path / "ablation.json"
    bad.write_text(json.dumps({"variants": [{"name": "full", "accuracy": {"mean": "x"}}]}))
    with pytest.raises(Exception, match=r"ablation.json: variant 'full': 'accuracy' is not an entry"):
        write_report([], tmp_path / "out", ablation=bad)
    assert not (tmp_path / "out").exists()


def test_a_kd_variant_on_data_without_skeleton_is_refused(study, tmp_path):
    import dataclasses

    s, cfgs, caches = _inputs(study)
    bare = {key: dataclasses.replace(cache, skeleton=None) for key, cache in caches.items()}
    with pytest.raises(ConfigError, match=r"variant 'full' distils from a teacher.*give it kd: false"):
        run_study(s, cfgs, bare, run_dir=tmp_path / "r", protocol="kfold", seeds=s.seeds,
                  config=study["config"])
    assert not (tmp_path / "r").exists()
