"""Own data (data.dataset: custom): CSV folder + manifest, .npz in both layouts, a UEA .ts
pair, bad input as one-line errors, the protocols chosen for it, and real UTD-MHAD trials
converted to the CSV layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from xtinyhar.config import load_config
from xtinyhar.data import load_dataset
from xtinyhar.data.splits import splits_for_cache
from xtinyhar.errors import ConfigError, DataError, XTinyHARError
from xtinyhar.preprocess.tokens import build_token_cache

# by path, not `from tests.conftest import`: a site-packages `tests` package (xdsl, from the
# tflite extra) would shadow this folder
CONFIGS = Path(__file__).resolve().parents[2] / "configs"
RATE = 50


def _config(root, **overrides):
    base = {"data.dataset": "custom", "data.root": str(root), "data.imu_sr": RATE,
            "data.window": 50, "data.stride": 25, "model.student.p_default": 10}
    return load_config(CONFIGS / "synthetic.yaml", {**base, **overrides})


def _recording(rng, label: int, n: int = 120, channels: int = 6) -> np.ndarray:
    t = np.arange(n) / RATE
    base = np.sin(2 * np.pi * (0.5 + label) * t)[:, None] * (1 + np.arange(channels))[None]
    return (base + 0.05 * rng.normal(size=(n, channels))).astype(np.float32)


def write_csv_folder(folder, labels=("walk", "sit", "walk", "sit", "run", "run"),
                     subjects=(1, 1, 2, 2, 3, 3), splits=None, manifest_extra=None):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    header = "file,label" + (",subject" if subjects else "") + (",split" if splits else "")
    rows = [header]
    for i, label in enumerate(labels):
        imu = _recording(rng, ["walk", "sit", "run"].index(label) if label in ("walk", "sit", "run") else 0)
        lines = ["time,ax,ay,az,gx,gy,gz"] + [f"{k / RATE:.3f}," + ",".join(f"{v:.5f}" for v in row)
                                             for k, row in enumerate(imu)]
        (folder / f"r{i}.csv").write_text("\n".join(lines) + "\n")
        row = f"r{i}.csv,{label}" + (f",{subjects[i]}" if subjects else "") + (f",{splits[i]}" if splits else "")
        rows.append(row)
    rows += manifest_extra or []
    (folder / "manifest.csv").write_text("\n".join(rows) + "\n")
    return folder


# --------------------------------------------------------------------------- formats

def test_csv_folder_loads_sorted_classes_subjects_and_drops_time(tmp_path):
    folder = write_csv_folder(tmp_path / "rec")
    report = load_dataset(_config(folder))
    assert report.class_names == ["run", "sit", "walk"]       # sorted, not first appearance
    assert [t.label for t in report.trials] == [2, 1, 2, 1, 0, 0]
    assert [t.subject for t in report.trials] == [1, 1, 2, 2, 3, 3]
    assert all(t.imu.shape == (120, 6) and t.skeleton is None for t in report.trials)
    assert all(t.subject_known and t.split is None for t in report.trials)
    # the manifest itself may be data.root too
    assert len(load_dataset(_config(folder / "manifest.csv")).trials) == 6


def test_csv_channels_picked_by_name_and_units_converted(tmp_path):
    folder = write_csv_folder(tmp_path / "rec")
    raw = load_dataset(_config(folder)).trials[0].imu
    cfg = _config(folder, **{"data.imu_channels": 3, "data.custom.layout": "acc",
                             "data.custom.channels": ["az", "ay", "ax"], "data.custom.acc_unit": "m/s2"})
    picked = load_dataset(cfg).trials[0].imu
    np.testing.assert_allclose(picked, raw[:, [2, 1, 0]] / 9.80665, rtol=1e-5)
    cache = build_token_cache(cfg, *_trials_names(cfg))
    assert cache.meta["channels"] == ["az", "ay", "ax"] and cache.imu.shape[2] == 3


def _trials_names(cfg):
    report = load_dataset(cfg)
    return report.trials, report.class_names


def test_npz_both_layouts_with_integer_labels_and_split(tmp_path):
    rng = np.random.default_rng(1)
    labels = np.array([10, 2, 10, 2, 1, 1])
    fixed = np.stack([_recording(rng, i % 3) for i in range(6)])
    np.savez(tmp_path / "fixed.npz", X=fixed, y=labels, subject=np.arange(6) // 2)
    report = load_dataset(_config(tmp_path / "fixed.npz"))
    assert report.class_names == ["1", "2", "10"]               # integers sorted numerically
    assert [t.label for t in report.trials] == [2, 1, 2, 1, 0, 0]

    ragged = np.empty(6, dtype=object)
    for i in range(6):
        ragged[i] = _recording(rng, i % 3, n=80 + 10 * i)
    split = np.array(["train", "train", "train", "test", "test", "train"])
    np.savez(tmp_path / "ragged.npz", X=ragged, y=np.array(["a", "b", "c"] * 2), split=split)
    report = load_dataset(_config(tmp_path / "ragged.npz"))
    assert [len(t.imu) for t in report.trials] == [80 + 10 * i for i in range(6)]
    assert [t.split for t in report.trials] == list(split)
    assert not any(t.subject_known for t in report.trials)


def _write_ts(path, cases, labels, name="Toy"):
    """A UEA multivariate .ts file written by hand: channels separated by ':', values by ','."""
    lines = [f"@problemName {name}", "@timeStamps false", "@missing false", "@univariate false",
             f"@dimensions {cases[0].shape[1]}", f"@equalLength {str(len({len(c) for c in cases}) == 1).lower()}",
             f"@classLabel true {' '.join(sorted(set(labels)))}", "@data"]
    for case, label in zip(cases, labels):
        lines.append(":".join(",".join(f"{v:.5f}" for v in case[:, c]) for c in range(case.shape[1]))
                     + f":{label}")
    path.write_text("\n".join(lines) + "\n")


def test_ts_pair_is_a_predefined_split(tmp_path):
    rng = np.random.default_rng(2)
    train = [_recording(rng, i % 2, n=100 + 5 * i, channels=3) for i in range(6)]
    test = [_recording(rng, i % 2, n=100, channels=3) for i in range(4)]
    _write_ts(tmp_path / "Toy_TRAIN.ts", train, ["up", "down"] * 3)
    _write_ts(tmp_path / "Toy_TEST.ts", test, ["up", "down"] * 2)
    cfg = _config(tmp_path / "Toy_TRAIN.ts", **{"data.imu_channels": 3, "data.custom.layout": "acc"})
    report = load_dataset(cfg)
    assert report.class_names == ["down", "up"]
    assert [t.split for t in report.trials] == ["train"] * 6 + ["test"] * 4
    np.testing.assert_allclose(report.trials[1].imu, train[1], atol=1e-4)
    assert len(load_dataset(_config(tmp_path, **{"data.imu_channels": 3,
                                                 "data.custom.layout": "acc"})).trials) == 10
    cache = build_token_cache(cfg, report.trials, report.class_names)
    protocol, splits = splits_for_cache(cache, "auto", folds=2, seed=0, val_subjects=1)
    assert protocol == "predefined" and len(splits) == 1
    test_trials = set(cache.trial_index[splits[0].test].tolist())
    assert test_trials == set(range(6, 10))
    assert not set(cache.trial_index[splits[0].train]) & test_trials


# --------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("damage, message", [
    ("missing", "r0.csv: named on line 2 of manifest.csv, not found"),
    ("ragged", "r1.csv: line 3 has 6 cell(s), the header has 7 (a ragged CSV)"),
    ("nan", "r1.csv: 1 empty or NaN value(s)"),
    ("short", "r1.csv: recording holds 1 sample(s); a recording needs at least 2"),
    ("nolabel", "manifest.csv: no 'label' column"),
])
def test_bad_csv_input_is_one_line_naming_the_file(tmp_path, damage, message):
    folder = write_csv_folder(tmp_path / "rec")
    r1 = folder / "r1.csv"
    lines = r1.read_text().splitlines()
    if damage == "missing":
        (folder / "r0.csv").unlink()
    elif damage == "ragged":
        lines[2] = ",".join(lines[2].split(",")[:-1])
    elif damage == "nan":
        lines[5] = lines[5].rsplit(",", 1)[0] + ",nan"
    elif damage == "short":
        lines = lines[:2]
    elif damage == "nolabel":
        text = (folder / "manifest.csv").read_text().replace("file,label", "file,activity")
        (folder / "manifest.csv").write_text(text)
    r1.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as err:
        load_dataset(_config(folder))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_bad_npz_input(tmp_path):
    rng = np.random.default_rng(3)
    np.savez(tmp_path / "a.npz", X=np.stack([_recording(rng, 0) for _ in range(4)]), y=np.array([0, 1, 0]))
    with pytest.raises(DataError, match=r"a.npz: y has shape \(3,\), X holds 4 recording"):
        load_dataset(_config(tmp_path / "a.npz"))
    np.savez(tmp_path / "b.npz", X=np.stack([_recording(rng, 0) for _ in range(4)]))
    with pytest.raises(DataError, match="b.npz: no array 'y'"):
        load_dataset(_config(tmp_path / "b.npz"))
    x = np.stack([_recording(rng, 0) for _ in range(4)])
    x[2, 5, 1] = np.nan
    np.savez(tmp_path / "c.npz", X=x, y=np.array([0, 1, 0, 1]))
    with pytest.raises(DataError, match=r"c.npz: X\[2\]: recording holds 1 NaN"):
        load_dataset(_config(tmp_path / "c.npz"))
    np.savez(tmp_path / "d.npz", X=np.stack([_recording(rng, 0) for _ in range(4)]), y=np.array([0, 1, 0, 1]))
    with pytest.raises(DataError, match=r"d.npz: X\[0\]: 6 channel\(s\), config data.imu_channels is 4"):
        load_dataset(_config(tmp_path / "d.npz", **{"data.imu_channels": 4, "data.custom.layout": "acc"}))


def test_config_checks_layout_against_channels(tmp_path):
    with pytest.raises(ConfigError, match="layout acc_gyro needs data.imu_channels 6"):
        _config(tmp_path, **{"data.imu_channels": 3})
    with pytest.raises(ConfigError, match="dynamic_patch.enabled: false"):
        _config(tmp_path, **{"data.imu_channels": 2, "data.custom.layout": "other"})
    _config(tmp_path, **{"data.imu_channels": 2, "data.custom.layout": "other",
                         "preproc.dynamic_patch.enabled": False})


# --------------------------------------------------------------------------- protocols

def test_no_subjects_gives_stratified_kfold_with_a_warning(tmp_path, caplog):
    labels = ("walk", "sit", "run") * 4
    folder = write_csv_folder(tmp_path / "rec", labels=labels, subjects=None)
    cfg = _config(folder)
    cache = build_token_cache(cfg, *_trials_names(cfg))
    assert cache.meta["subjects_known"] is False
    with caplog.at_level("WARNING"):
        protocol, splits = splits_for_cache(cache, "auto", folds=2, seed=0, val_subjects=1)
    assert protocol == "kfold" and "not subject-independent" in caplog.text
    for split in splits:   # a recording's windows never straddle train and test
        assert not set(cache.trial_index[split.test]) & set(cache.trial_index[split.train])
        assert len(np.unique(cache.label[split.test])) == 3   # stratified
    with pytest.raises(XTinyHARError, match="protocol loso needs subjects"):
        splits_for_cache(cache, "loso", folds=2, seed=0, val_subjects=1)


def test_subjects_give_subject_independent_kfold_and_loso(tmp_path):
    folder = write_csv_folder(tmp_path / "rec", labels=("walk", "sit", "run") * 3,
                              subjects=(1, 1, 1, 2, 2, 2, 3, 3, 3))
    cfg = _config(folder)
    cache = build_token_cache(cfg, *_trials_names(cfg))
    _, folds = splits_for_cache(cache, "loso", folds=3, seed=0, val_subjects=1)
    assert [s.test_subjects for s in folds] == [(1,), (2,), (3,)]
    protocol, folds = splits_for_cache(cache, "auto", folds=3, seed=0, val_subjects=1)
    assert protocol == "kfold"
    assert all(not set(s.test_subjects) & set(s.train_subjects + s.val_subjects) for s in folds)


# --------------------------------------------------------------------------- real data

def test_utd_mhad_trials_as_csv_folder(tmp_path, utd_root):
    """A few real UTD-MHAD recordings written in the CSV layout load back unchanged and
    prepare into a token cache."""
    from xtinyhar.cli import main
    from xtinyhar.data.utd_mhad import UTD_MHAD_CLASSES, read_inertial

    folder = tmp_path / "utd"
    folder.mkdir()
    rows, originals = ["file,label,subject"], {}
    for action in (1, 2):
        for subject in (1, 2, 3):
            name = f"a{action}_s{subject}_t1"
            imu = read_inertial(utd_root / "Inertial" / f"{name}_inertial.mat"
                                if (utd_root / "Inertial").is_dir()
                                else utd_root / "inertial" / f"{name}_inertial.mat")
            originals[name] = imu
            lines = ["timestamp,acc_x,acc_y,acc_z,gyro_x,gyro_y,gyro_z"] + [
                f"{k * 0.02:.2f}," + ",".join(repr(float(v)) for v in row) for k, row in enumerate(imu)]
            (folder / f"{name}.csv").write_text("\n".join(lines) + "\n")
            rows.append(f"{name}.csv,{UTD_MHAD_CLASSES[action - 1]},{subject}")
    (folder / "manifest.csv").write_text("\n".join(rows) + "\n")
    report = load_dataset(_config(folder, **{"data.window": 100, "data.stride": 50,
                                             "model.student.p_default": 20}))
    assert len(report.trials) == 6 and len(report.class_names) == 2
    for trial in report.trials:
        np.testing.assert_array_equal(trial.imu, originals[trial.trial_id])
    config = tmp_path / "own.yaml"
    config.write_text(f"data: {{dataset: custom, root: {folder}, imu_sr: 50}}\n")
    out = tmp_path / "tokens.npz"
    assert main(["prepare", "--config", str(config), "--out", str(out)]) == 0
    from xtinyhar.preprocess.tokens import load_token_cache
    cache = load_token_cache(out, load_config(config))
    assert cache.skeleton is None and len(cache.trial_id) == 6 and cache.imu.shape[1:] == (100, 6)
