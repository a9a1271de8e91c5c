"""The deployed (folded) student gives the trained student's logits, for every option
that changes what is folded; its ONNX graph is smaller."""

import numpy as np
import pytest
import torch

from xtinyhar.export.fold import DeployStudent, deploy_form
from xtinyhar.models.baselines import build_baseline
from xtinyhar.models.student import InertialTransformer, StudentModelConfig

K = 5


def trained_like(**kw) -> InertialTransformer:
    """A student whose folded parts are not the identity: normalisation statistics, BatchNorm
    running statistics and affine weights, biases all away from their initial values."""
    torch.manual_seed(0)
    cfg = StudentModelConfig(n_classes=K, dim=32, depth=kw.pop("depth", 1), heads=4,
                             norm_mean=[0.1, -0.2, 0.9, 5.0, -3.0, 1.0],
                             norm_std=[0.3, 0.4, 0.5, 80.0, 60.0, 90.0], **kw)
    model = InertialTransformer(cfg)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm1d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.3, 0.3)
        for name, param in model.named_parameters():
            if name.endswith("bias"):
                param.uniform_(-0.2, 0.2)
    return model.eval()


def windows(n=24, window=100, seed=1) -> torch.Tensor:
    """Raw windows whose motion energies span every patch length (table row)."""
    rng = np.random.default_rng(seed)
    out = np.zeros((n, window, 6), np.float32)
    sign = (-1.0) ** np.arange(window)
    for i, energy in enumerate(np.linspace(0.06, 0.22, n)):   # tau_low .. tau_high and past
        direction = rng.normal(size=3)
        out[i, :, :3] = [0, 0, 1] + 0.5 * energy * sign[:, None] * direction / np.linalg.norm(direction)
        out[i, :, 3:] = 200 * energy * rng.normal(size=(window, 3))
    return torch.from_numpy(out)


@pytest.mark.parametrize("by_conv", [True, False])
def test_energy_by_convolution_picks_the_training_forms_rows(by_conv):
    model = trained_like()
    imu = windows(n=200)
    deployed = DeployStudent(model, energy_by_conv=by_conv).eval()
    with torch.no_grad():
        expected = model.tokenizer.patcher.row(imu)
        got = deployed.row(imu.transpose(1, 2))
    assert len(torch.unique(expected)) == 21 and torch.equal(got, expected)
    assert hasattr(deployed, "energy_weight") == by_conv


@pytest.mark.parametrize("options", [
    {},
    {"depth": 2},
    {"pos_embedding": "sinusoidal"},
    {"pos_embedding": "none"},
    {"dynamic_patching": False},
    {"stem_channels": 0},
    {"stem_layers": 3},
])
def test_deployed_student_gives_the_same_logits(options):
    model = trained_like(**options)
    imu = windows()
    rows = model.tokenizer.patcher.row(imu)
    if model.cfg.dynamic_patching:
        assert len(torch.unique(rows)) >= 10          # the windows reach most table rows
    deployed = DeployStudent(model).eval()
    with torch.no_grad():
        expected, got = model(imu), deployed(imu)
        one_by_one = torch.cat([deployed(imu[i:i + 1]) for i in range(len(imu))])
    assert torch.allclose(got, expected, atol=1e-5), float((got - expected).abs().max())
    assert torch.allclose(one_by_one, expected, atol=1e-5)


def test_deploy_form_leaves_baselines_and_the_model_alone():
    model = trained_like()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert isinstance(deploy_form(model), DeployStudent) and not deploy_form(model).training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    cnn = build_baseline({"arch": "cnn1d", "n_classes": K, "window": 100, "channels": 6})
    assert deploy_form(cnn) is cnn


def test_deployed_graph_has_fewer_nodes(tmp_path):
    import onnx

    from xtinyhar.export.to_onnx import export_onnx, onnx_logits

    model = trained_like()
    meta = {"window": model.cfg.window, "channels": model.cfg.channels}
    deployed = onnx.load(str(export_onnx(model, tmp_path / "deployed.onnx", meta)))
    program = torch.onnx.export(model, (windows(2),), dynamo=True, opset_version=20,
                                dynamic_shapes={"imu": {0: torch.export.Dim("batch")}})
    training_nodes = len(program.model_proto.graph.node)
    assert len(deployed.graph.node) < training_nodes - 10, (len(deployed.graph.node), training_nodes)
    with torch.no_grad():
        expected = model(windows()).numpy()
    assert np.abs(onnx_logits(tmp_path / "deployed.onnx", windows().numpy()) - expected).max() < 1e-4


def test_deployed_student_refuses_another_window_length():
    """The folded motion energy is scaled for the trained window length."""
    model = trained_like()
    with pytest.raises(ValueError, match="window of 120 samples, the model expects 100"):
        DeployStudent(model)(windows(window=120))


def test_int8_exclusion_fails_loudly_when_a_float_input_is_not_found(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    from xtinyhar.export.to_onnx import ExportError, _nodes_kept_in_float

    def saved(conv_weight: str, name: str):
        weight = helper.make_tensor("energy_weight", TensorProto.FLOAT, [3, 6, 2], [0.0] * 36)
        other = helper.make_tensor("renamed", TensorProto.FLOAT, [3, 6, 2], [0.0] * 36)
        conv = helper.make_node("Conv", ["x", conv_weight], ["y"], name="energy")
        graph = helper.make_graph([conv], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 6, 100])],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 99])],
                                  [weight, other])
        onnx.save(helper.make_model(graph), tmp_path / name)
        return tmp_path / name

    with pytest.raises(ExportError, match="no Gather/Conv node reads energy_weight"):
        _nodes_kept_in_float(saved("renamed", "renamed.onnx"))
    assert _nodes_kept_in_float(saved("energy_weight", "named.onnx")) == ["energy"]
