from pathlib import Path

import pytest

from xtinyhar.config import Config, cache_hash, config_from_dict, load_config
from xtinyhar.errors import ConfigError

from conftest import CONFIGS, REPO


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(text)
    return path


def test_paper_config_keeps_the_seed_values():
    cfg = load_config(CONFIGS / "utd_mhad_paper.yaml")
    assert (cfg.data.imu_sr, cfg.data.window, cfg.data.stride, cfg.data.imu_channels) == (50, 100, 50, 6)
    assert cfg.preproc.resample_hz == 50 and cfg.preproc.norm == "zscore"
    dp = cfg.preproc.dynamic_patch
    assert (dp.p_min, dp.p_max, dp.tau_low, dp.tau_high) == (10, 30, 0.08, 0.20)
    s = cfg.model.student
    assert (s.L, s.D, s.heads, s.mlp_ratio, s.p_default) == (2, 128, 4, 2.0, 20)
    assert (cfg.model.teacher.D, cfg.model.teacher.L) == (256, 4)
    t = cfg.train
    assert (t.batch_size, t.lr, t.weight_decay, t.seed) == (64, 1e-4, 1e-5, 42)
    assert isinstance(t.lr, float)  # YAML reads "1e-4" as a string; we convert it
    assert (cfg.distill.T, cfg.distill.alpha, cfg.eval.folds) == (3.0, 0.7, 5)


def test_default_utd_config_has_the_seed_keys():
    import yaml

    def keys(tree, prefix=""):
        out = set()
        for key, value in tree.items():
            out.add(prefix + key)
            if isinstance(value, dict):
                out |= keys(value, prefix + key + ".")
        return out

    ours = keys(yaml.safe_load((CONFIGS / "utd_mhad.yaml").read_text()))
    seed = keys(yaml.safe_load((CONFIGS / "utd_mhad_paper.yaml").read_text()))
    assert seed <= ours


def test_data_root_resolves_against_the_project_root_from_any_cwd(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    cfg = load_config(CONFIGS / "utd_mhad.yaml")
    assert Path(cfg.data.root) == (REPO / ".." / "shared" / "data" / "utd_mhad").resolve()


@pytest.mark.parametrize("name", ["utd_mhad.yaml", "utd_mhad_paper.yaml", "synthetic.yaml", "mm_fit.yaml"])
def test_every_shipped_config_loads(name):
    assert isinstance(load_config(CONFIGS / name), Config)


def test_override_by_dotted_key():
    cfg = load_config(CONFIGS / "utd_mhad.yaml", {"data.root": "/elsewhere", "train.epochs": 3})
    assert cfg.data.root == "/elsewhere" and cfg.train.epochs == 3


@pytest.mark.parametrize("text, fragment", [
    ("train:\n  lrr: 0.1\n", "unknown key 'train.lrr'"),
    ("trian:\n  lr: 0.1\n", "unknown key 'trian'"),
    ("model:\n  student:\n    d: 64\n", "did you mean 'D'"),
    ("train:\n  epochs: ten\n", "train.epochs: expected int"),
    ("train:\n  lr: fast\n", "train.lr: expected float"),
    ("data:\n  window: 0\n", "data.window: 0 must be >= 2"),
    ("data:\n  stride: 150\n", "data.stride (150) must be <= data.window (100)"),
    ("distill:\n  alpha: 1.5\n", "distill.alpha: 1.5 must be <= 1"),
    ("eval:\n  averaging: weighted\n", "eval.averaging: 'weighted' is not one of micro, macro"),
    ("preproc:\n  dynamic_patch:\n    p_min: 40\n    p_max: 30\n", "p_min (40) must be <= p_max (30)"),
    ("preproc:\n  dynamic_patch:\n    tau_low: 0.3\n", "tau_low (0.3) must be < tau_high"),
    ("model:\n  student:\n    D: 130\n", "divisible by model.student.heads"),
    ("preproc:\n  dynamic_patch: 5\n", "preproc.dynamic_patch: expected a mapping"),
    ("preproc:\n  dynamic_patch:\n    enabled: false\nmodel:\n  teacher:\n    p_default: 10\n",
     "differs from model.student.p_default (20) with fixed patching"),
    ("distill:\n  views: 4\n  attention_weight: 0.1\n", "cannot be combined"),
    ("data:\n  segmentation: chunks\n", "data.segmentation: 'chunks' is not one of sliding, trial"),
    ("data:\n  window: [1\n", "not valid YAML"),
    ("- a\n- b\n", "mapping of sections"),
    ("train:\n  lr: .nan\n", "train.lr: nan is not a finite number"),
    ("train:\n  weight_decay: .inf\n", "train.weight_decay: inf is not a finite number"),
    ("train:\n  lr: nan\n", "train.lr: nan is not a finite number"),         # a numeric string
    ("preproc:\n  dynamic_patch:\n    tau_low: .nan\n", "tau_low: nan is not a finite number"),
    ("train:\n  average: ema\n  ema_decay: 1.0\n", "train.ema_decay: 1.0 must be < 1"),
    ("train:\n  ema_decay: 0\n", "train.ema_decay: 0.0 must be > 0"),
    ("train:\n  average: polyak\n", "train.average: 'polyak' is not one of none, ema, uniform"),
])
def test_bad_config_is_a_one_line_error_naming_file_and_key(tmp_path, text, fragment):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert fragment in message
    assert str(path) in message and "\n" not in message


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="is a directory, not a config file"):
        load_config(tmp_path)


def test_binary_config_is_a_one_line_error(tmp_path):
    path = tmp_path / "model.pt"
    path.write_bytes(b"PK\x03\x04\x80\x81\xfe binary")
    with pytest.raises(ConfigError, match=r"model.pt: not a text YAML config"):
        load_config(path)


def test_round_trip_through_dict_and_cache_hash():
    cfg = load_config(CONFIGS / "utd_mhad.yaml")
    again = config_from_dict(cfg.to_dict())
    assert again == cfg
    assert cache_hash(again) == cache_hash(cfg)
    changed = load_config(CONFIGS / "utd_mhad.yaml", {"data.stride": 30})
    assert cache_hash(changed) != cache_hash(cfg)
    # training keys and the data location do not change what prepare writes
    same = load_config(CONFIGS / "utd_mhad.yaml", {"train.epochs": 99, "data.root": "/x"})
    assert cache_hash(same) == cache_hash(cfg)


def test_teacher_tokenizer_keys_default_to_the_student_and_can_differ():
    """model.teacher.{p_default,stem_channels,stem_layers}: None follows the student; set,
    the teacher keeps its own while the student's changes, and the IMU token grid (what
    attention transfer and the similarity compare) stays the same."""
    import torch

    from xtinyhar.models.student import InertialTransformer
    from xtinyhar.models.teacher import STConvTeacher
    from xtinyhar.models.factory import student_config, teacher_config

    same = load_config(CONFIGS / "utd_mhad_paper.yaml")   # no teacher tokenizer keys
    t = teacher_config(same, n_classes=4, joints=20)
    s = same.model.student
    assert (t.p_default, t.stem_channels, t.stem_layers) == (s.p_default, s.stem_channels, s.stem_layers)

    own = load_config(CONFIGS / "utd_mhad.yaml", {
        "model.student.p_default": 10, "model.student.stem_channels": 8,
        "model.teacher.p_default": 20, "model.teacher.stem_channels": 16, "model.teacher.stem_layers": 3})
    t, st = teacher_config(own, n_classes=4, joints=20), student_config(own, n_classes=4)
    assert (t.p_default, t.stem_channels, t.stem_layers) == (20, 16, 3)
    assert (st.p_default, st.stem_channels, st.stem_layers) == (10, 8, 2)
    torch.manual_seed(0)
    teacher, student = STConvTeacher(t).eval(), InertialTransformer(st).eval()
    imu = torch.randn(2, own.data.window, 6)
    skeleton = torch.randn(2, t.skeleton_frames, 20, 3)
    _, teacher_mask, teacher_centre = teacher.imu(imu)
    _, student_mask, student_centre = student.tokenizer(imu)
    assert torch.equal(teacher_mask, student_mask) and torch.equal(teacher_centre, student_centre)
    assert teacher(imu, skeleton).shape == (2, 4)

    with pytest.raises(ConfigError, match="model.teacher.p_default"):
        load_config(CONFIGS / "utd_mhad.yaml", {"model.teacher.p_default": 1000})


def test_consistent_views_combine_with_crop(tmp_path):
    """Views augment both of the teacher's streams alike (one crop, one warp), so a crop no
    longer misaligns them: the combination is a valid config."""
    cfg = load_config(write(tmp_path, "preproc:\n  augment:\n    crop: 0.1\ndistill:\n  views: 4\n"))
    assert cfg.distill.views == 4 and cfg.preproc.augment.crop == 0.1


def test_a_duplicate_key_is_refused_naming_it_and_the_file(tmp_path):
    """PyYAML keeps the last of two equal keys, so a repeated key overrode the first silently."""
    path = write(tmp_path, "train:\n  epochs: 3\n  lr: 1e-3\n  epochs: 50\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert message.startswith(str(path)) and "duplicate key 'epochs' (line 4; first on line 2)" in message
    assert "\n" not in message
    with pytest.raises(ConfigError, match="duplicate key 'window'"):
        load_config(write(tmp_path, "data: {window: 100, window: 50}\n"))
    anchors = "eval: &e {folds: 4}\n"   # an anchor reused through a merge key is no duplicate
    assert load_config(write(tmp_path, anchors)).eval.folds == 4


@pytest.mark.parametrize("text", ["", "# nothing but a comment\n"])
def test_an_empty_config_warns_that_every_key_is_a_default(tmp_path, caplog, text):
    path = write(tmp_path, text)
    with caplog.at_level("WARNING"):
        cfg = load_config(path)
    assert (cfg.train, cfg.model, cfg.eval) == (Config().train, Config().model, Config().eval)
    assert f"{path}: the config file holds no settings" in caplog.text
    assert "every key takes its default" in caplog.text


@pytest.mark.parametrize("overrides, nyquist", [
    ({"preproc.lowpass_hz": 25}, "25 Hz (preproc.resample_hz/2)"),
    ({"preproc.lowpass_hz": 40}, "25 Hz (preproc.resample_hz/2)"),
    ({"preproc.lowpass_hz": 30, "preproc.resample_hz": 100, "data.window": 200,
      "preproc.skeleton_hz": 50}, "25 Hz (data.imu_sr/2)"),
])
def test_a_lowpass_at_or_above_nyquist_is_refused(overrides, nyquist):
    """lowpass() returns its input unchanged at or above Nyquist: such a setting was no filter."""
    with pytest.raises(ConfigError, match="preproc.lowpass_hz") as err:
        load_config(CONFIGS / "utd_mhad_paper.yaml", overrides)
    assert f"must be below the Nyquist frequency {nyquist}" in str(err.value)
    assert str(CONFIGS / "utd_mhad_paper.yaml") in str(err.value)
    assert load_config(CONFIGS / "utd_mhad_paper.yaml", {"preproc.lowpass_hz": 20}).preproc.lowpass_hz == 20
