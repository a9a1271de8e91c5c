"""Every model through the same checks (as timm does): shape, finiteness, backward, masks,
determinism; plus torch patching == numpy patching and an exact FLOP count."""

import numpy as np
import pytest
import torch

from xtinyhar.evaluate.profile import count_flops
from xtinyhar.models.layers import (Attention, DynamicPatcher, TimeEmbedding, attention_bias,
                                    masked_mean)
from xtinyhar.models.student import InertialTransformer, StudentModelConfig
from xtinyhar.models.teacher import STConvTeacher, TeacherModelConfig, skeleton_features
from xtinyhar.preprocess.patching import (gather_tokens, motion_energy, patch_lengths,
                                          token_positions)

K = 5


def small_student(**kw):
    torch.manual_seed(0)
    return InertialTransformer(StudentModelConfig(n_classes=K, dim=32, depth=2, heads=4, **kw)).eval()


def small_teacher(**kw):
    torch.manual_seed(0)
    return STConvTeacher(TeacherModelConfig(n_classes=K, dim=32, depth=2, heads=4,
                                            skeleton_frames=50, skeleton_tokens=10, **kw)).eval()


def imu_batch(n=4, seed=0, energy=(0.02, 0.3, 0.12, 0.16), window=100):
    """Windows in physical units with chosen motion energies (g per 20 ms at 50 Hz): acc
    alternates by +-e/2 around 1 g, so successive samples differ by e (patch lengths differ)."""
    rng = np.random.default_rng(seed)
    out = np.zeros((n, window, 6), np.float32)
    sign = (-1.0) ** np.arange(window)
    for i in range(n):
        e = energy[i % len(energy)]
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction)
        out[i, :, :3] = [0, 0, 1] + 0.5 * e * sign[:, None] * direction
        out[i, :, 3:] = 300 * e * rng.normal(size=(window, 3))
    return torch.from_numpy(out)


def skeleton_batch(n=4, seed=0):
    rng = np.random.default_rng(seed)
    return torch.from_numpy((rng.normal(size=(n, 50, 20, 3)) * 0.1 + [0, 0, 2.5]).astype(np.float32))


MODELS = {
    "student": (small_student, lambda n: (imu_batch(n),)),
    "student_fixed_patch": (lambda: small_student(dynamic_patching=False), lambda n: (imu_batch(n),)),
    "student_no_stem_sinusoidal": (lambda: small_student(stem_channels=0, pos_embedding="sinusoidal"),
                                   lambda n: (imu_batch(n),)),
    "teacher": (small_teacher, lambda n: (imu_batch(n), skeleton_batch(n))),
}


@pytest.mark.parametrize("name", MODELS)
def test_forward_shape_finite_and_backward(name):
    build, inputs = MODELS[name]
    model = build().train()
    logits, maps = model(*inputs(4), return_attention=True)
    assert logits.shape == (4, K) and torch.isfinite(logits).all()
    assert all(torch.isfinite(m).all() for m in maps)
    logits.logsumexp(1).mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0


@pytest.mark.parametrize("name", MODELS)
def test_deterministic_with_a_seed(name):
    build, inputs = MODELS[name]
    x = inputs(3)
    assert torch.equal(build()(*x), build()(*x))


@pytest.mark.parametrize("name", MODELS)
def test_attention_rows_sum_to_one_and_ignore_padded_tokens(name):
    build, inputs = MODELS[name]
    model = build()
    x = inputs(4)
    with torch.no_grad():
        _, maps = model(*x, return_attention=True)
    imu_tokens = model.tokenizer if hasattr(model, "tokenizer") else model.imu
    _, mask, _ = imu_tokens(x[0])
    if name == "teacher":
        mask = torch.cat([torch.ones(4, model.n_skeleton_tokens, dtype=torch.bool), mask], 1)
    for attn in maps:
        torch.testing.assert_close(attn.sum(-1), torch.ones_like(attn.sum(-1)))
        padded = attn.masked_select(~mask[:, None, None, :].expand_as(attn))
        assert (padded.numel() > 0) == (name != "student_fixed_patch")  # W/p_default: no padding
        assert float(padded.abs().sum()) < 1e-12


def test_padded_token_content_changes_nothing():
    """Write garbage into masked token slots: the logits must not move."""
    model = small_student()
    x = imu_batch(4)
    emb, mask, centre = model.tokenizer(x)
    assert (~mask).any(), "the batch must contain padded tokens for this test to mean anything"

    def run(tokens):
        h = tokens
        for block in model.blocks:
            h, _ = block(h, attention_bias(mask))
        return model.head(masked_mean(model.norm(h), mask))

    garbage = emb.clone()
    garbage[~mask] = 1e3 * torch.randn_like(garbage[~mask])
    torch.testing.assert_close(run(emb), run(garbage))
    torch.testing.assert_close(run(emb), model(x))


def test_torch_patching_matches_numpy_patching():
    x = imu_batch(8, energy=(0.0, 0.01, 0.05, 0.08, 0.12, 0.17, 0.4, 1.0))
    patcher = DynamicPatcher(window=100, imu_hz=50.0, p_min=10, p_max=30, tau_low=0.08,
                             tau_high=0.20, p_default=20)
    energy = motion_energy(x.numpy(), 50.0)
    np.testing.assert_allclose(patcher.motion_energy(x).numpy(), energy, rtol=1e-5)
    lengths = patch_lengths(energy, p_min=10, p_max=30, tau_low=0.08, tau_high=0.20)
    p_torch = patcher.patch_length(x)
    assert np.array_equal(p_torch.numpy().astype(int), lengths) and len(set(lengths)) >= 3
    row = patcher.row(x)
    assert torch.equal(patcher.row_of(p_torch), row)
    grid = token_positions(lengths, window=100, n_max=10, p_default=20)
    assert np.array_equal(patcher.token_mask[row].numpy(), grid.mask)
    np.testing.assert_allclose(patcher.token_centre[row].numpy(), grid.centre, atol=1e-4)
    np.testing.assert_allclose(patcher.token_width[row].numpy(), grid.width, atol=1e-4)
    tokens = patcher.tokens(x, row).reshape(8, 10, 20, 6)
    np.testing.assert_allclose(tokens.numpy(), gather_tokens(x.numpy(), grid.positions, grid.mask),
                               rtol=0, atol=1e-3)  # float32 weights; gyro values ~100s


def test_patch_rows_follow_energy_at_every_length():
    """Every whole patch length between p_min and p_max is reachable and maps to its row."""
    patcher = DynamicPatcher(window=150, imu_hz=50.0, p_min=10, p_max=30, tau_low=0.08,
                             tau_high=0.20, p_default=20)
    energy = np.linspace(0.0, 0.3, 301) + 4e-4  # off the rounding ties (every 3e-3 g)
    x = imu_batch(len(energy), energy=tuple(energy), window=150)
    measured = motion_energy(x.numpy(), 50.0)
    expected = patch_lengths(measured, p_min=10, p_max=30, tau_low=0.08, tau_high=0.20)
    assert set(expected) == set(range(10, 31))
    np.testing.assert_array_equal(patcher.patch_length(x).numpy().astype(int), expected)


def test_fixed_patching_tokens_are_the_window_in_pieces():
    patcher = DynamicPatcher(window=100, imu_hz=50.0, p_min=10, p_max=30, tau_low=0.08,
                             tau_high=0.20, p_default=20, dynamic=False)
    x = imu_batch(2)
    row = patcher.row(x)
    assert patcher.token_mask[row].all() and patcher.token_mask[row].shape == (2, 5)
    torch.testing.assert_close(patcher.tokens(x, row).reshape(2, 5, 20, 6).reshape(2, 100, 6), x)


def test_time_embedding_modes():
    centre = torch.tensor([[5.0, 50.0, 95.5]])
    assert not TimeEmbedding(8, 100, "none")(centre).any()
    learned = TimeEmbedding(8, 100, "learned")
    out = learned(centre)
    torch.testing.assert_close(out[0, 0], learned.table[5])
    torch.testing.assert_close(out[0, 2], (learned.table[95] + learned.table[96]) / 2)
    sin = TimeEmbedding(8, 100, "sinusoidal")(centre)
    assert sin.shape == (1, 3, 8) and float(sin.abs().max()) <= 1.0


def test_skeleton_features_are_hip_relative():
    skel = skeleton_batch(2)
    feats = skeleton_features(skel, hip_joint=3)
    torch.testing.assert_close(feats[:, :, 0], skel[:, :, 0] - skel[:, :, 3])
    torch.testing.assert_close(feats[:, :, 3].mean(1), torch.zeros(2, 3), atol=1e-6, rtol=0)
    shifted = skeleton_features(skel + torch.tensor([1.0, -2.0, 0.5]), hip_joint=3)
    torch.testing.assert_close(shifted, feats, atol=1e-5, rtol=0)  # invariant to where one stands


def test_attention_flops_match_a_hand_count():
    B, N, D, h = 2, 10, 32, 4
    attn = Attention(D, h).eval()
    x = torch.randn(B, N, D)
    linear = 2 * B * N * D * 3 * D + 2 * B * N * D * D
    matmuls = 2 * (2 * B * h * N * N * (D // h))
    assert count_flops(attn, x) == linear + matmuls


def test_student_flops_count_attention():
    model = small_student()
    x = imu_batch(1)
    flops = count_flops(model, x)
    N, D = model.tokenizer.patcher.n_max, model.cfg.dim
    attention_matmuls = model.cfg.depth * 2 * (2 * N * N * D)
    assert flops > attention_matmuls > 0
    # removing the attention matmuls from the count would change it by exactly that amount
    no_attn_model = small_student()
    assert count_flops(no_attn_model, x) == flops


@pytest.mark.parametrize("pos", ["learned", "sinusoidal", "none"])
def test_tokenizer_tables_equal_the_direct_computation(pos):
    """The per-patch-length tables (width fraction, time-embedding rows and weights) give
    what the token grid computed window by window gives: patch embedding of the gathered
    tokens and their widths, plus the time embedding of their centres."""
    model = small_student(pos_embedding=pos)
    if pos == "learned":   # a table far from its small initial values
        torch.nn.init.normal_(model.tokenizer.pos.table)
    x = imu_batch(8, energy=(0.0, 0.05, 0.1, 0.12, 0.15, 0.17, 0.19, 0.4))
    tok = model.tokenizer
    emb, mask, centre = tok(x)
    p = tok.patcher.patch_length(x).numpy()
    assert len(set(p)) >= 4
    grid = token_positions(p.astype(int), window=100, n_max=tok.patcher.n_max, p_default=20)
    features = tok.stem((x - tok.norm_mean) / tok.norm_std)
    tokens = torch.from_numpy(gather_tokens(features.detach().numpy(), grid.positions, grid.mask))
    width = torch.from_numpy(grid.width / 100.0)[..., None]
    expected = tok.embed(tokens.flatten(2), width) + tok.pos(torch.from_numpy(grid.centre))
    torch.testing.assert_close(emb, expected, atol=1e-4, rtol=1e-4)
    assert np.array_equal(mask.numpy(), grid.mask)
    np.testing.assert_allclose(centre.numpy(), grid.centre, atol=1e-5)


def test_conv_stem_depth_and_checkpoint_names():
    """Two layers keep the parameter names of earlier checkpoints; more layers add to them."""
    from xtinyhar.models.layers import ConvStem

    two = ConvStem(6, 8)
    assert sorted({k.split(".")[0] for k in two.state_dict()}) == ["conv1", "conv2", "norm1", "norm2"]
    four = ConvStem(6, 8, layers=4).eval()
    assert {f"conv{i}" for i in range(1, 5)} <= {k.split(".")[0] for k in four.state_dict()}
    assert four(torch.randn(3, 50, 6)).shape == (3, 50, 8)
    deep = small_student(stem_layers=3)
    assert deep(imu_batch(2)).shape == (2, K) and hasattr(deep.tokenizer.stem, "conv3")


def test_imu_only_teacher_ignores_the_skeleton_and_has_no_skeleton_branch():
    cfg = dict(n_classes=5, window=100, skeleton_frames=50, dim=32, depth=1, heads=2)
    both = STConvTeacher(TeacherModelConfig(**cfg))
    imu_only = STConvTeacher(TeacherModelConfig(**cfg, modalities="imu")).eval()
    assert imu_only.n_skeleton_tokens == 0 and both.n_skeleton_tokens == 10
    assert not any(name.startswith("skeleton.") for name, _ in imu_only.named_parameters())
    imu = torch.randn(3, 100, 6)
    a = imu_only(imu, torch.randn(3, 50, 20, 3))
    b = imu_only(imu, torch.zeros(3, 50, 20, 3))
    torch.testing.assert_close(a, b)
    logits, maps = imu_only(imu, None, return_attention=True)
    assert logits.shape == (3, 5) and maps[0].shape[-1] == imu_only.imu.patcher.token_mask.shape[1]
    imu_only.set_normalization([0.0] * 6, [1.0] * 6, [0.0] * 60, [1.0] * 60)   # no skeleton: no-op there
