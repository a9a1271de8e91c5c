"""Baselines (1D-CNN, DeepConvLSTM, TinyHAR): shapes, gradients, determinism, checkpoint
round trip through the student's code path, FLOPs (LSTM included), ONNX parity."""

import numpy as np
import pytest
import torch

from xtinyhar.config import load_config
from xtinyhar.errors import ConfigError
from xtinyhar.evaluate.profile import count_flops
from xtinyhar.export.to_onnx import export_onnx, onnx_logits, torch_logits
from xtinyhar.models.baselines import BASELINES, BaselineConfig, build_baseline
from xtinyhar.models.factory import build_student
from xtinyhar.train.checkpoints import load_model, save_model

from conftest import CONFIGS

NAMES = list(BASELINES)


def make(name, window=60, seed=0):
    torch.manual_seed(seed)
    return build_baseline(BaselineConfig(arch=name, n_classes=5, window=window))


@pytest.mark.parametrize("name", NAMES)
def test_forward_backward_and_determinism(name):
    model = make(name)
    imu = torch.randn(4, 60, 6)
    logits = model(imu)
    assert logits.shape == (4, 5) and torch.isfinite(logits).all()
    logits.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all()
               for p in model.parameters() if p.requires_grad)
    a, b = make(name, seed=3).eval(), make(name, seed=3).eval()
    assert torch.equal(a(imu), b(imu))


@pytest.mark.parametrize("name", NAMES)
def test_normalisation_lives_in_the_model(name):
    model = make(name).eval()
    mean, std = np.arange(6.0), np.arange(1.0, 7.0)
    model.set_normalization(mean, std)
    imu = torch.randn(2, 60, 6)
    shifted = imu * torch.tensor(std, dtype=torch.float32) + torch.tensor(mean, dtype=torch.float32)
    identity = make(name).eval()       # same weights, identity statistics
    torch.testing.assert_close(model(shifted), identity(imu), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", NAMES)
def test_config_arch_builds_it_and_checkpoints_round_trip(name, tmp_path):
    cfg = load_config(CONFIGS / "synthetic.yaml", {"model.student.arch": name})
    model = build_student(cfg, 6).eval()
    assert type(model).__name__ == type(make(name)).__name__
    save_model(tmp_path / "m.pt", model, cfg=cfg, class_names=list("abcdef"), cache_hash="x",
               train_subjects=[1, 2])
    again, payload = load_model(tmp_path / "m.pt", "student")
    imu = torch.randn(3, cfg.data.window, 6)
    assert torch.equal(model(imu), again(imu)) and payload["model_config"]["arch"] == name


def test_attention_transfer_needs_the_transformer():
    with pytest.raises(ConfigError, match="needs attention maps"):
        load_config(CONFIGS / "synthetic.yaml", {"model.student.arch": "cnn1d",
                                                 "distill.attention_weight": 0.5})


def test_cnn_flops_match_a_hand_count():
    model = make("cnn1d", window=64)
    # conv (2 FLOPs per multiply-add): 6->64 and 64->64 at W=64, then two 64->64 at W=32
    expected = 2 * 64 * 5 * (6 * 64 + 64 * 64 + 2 * 64 * 32) + 2 * 64 * 5
    assert count_flops(model, torch.zeros(1, 64, 6)) == expected


def test_lstm_flops_are_counted():
    model = make("deepconvlstm", window=20)
    convs = 2 * 5 * 20 * 6 * (64 + 3 * 64 * 64)
    lstm = 2 * 20 * 4 * 128 * ((64 * 6 + 128) + (128 + 128))
    head = 2 * 128 * 5
    assert count_flops(model, torch.zeros(1, 20, 6)) == convs + lstm + head


@pytest.mark.parametrize("name", NAMES)
def test_onnx_export_parity(name, tmp_path):
    model = make(name).eval()
    meta = {"window": 60, "channels": 6, "class_names": list("abcde")}
    export_onnx(model, tmp_path / "m.onnx", meta)
    imu = np.random.default_rng(0).normal(size=(7, 60, 6)).astype(np.float32)
    assert np.abs(onnx_logits(tmp_path / "m.onnx", imu) - torch_logits(model, imu)).max() < 1e-4
