"""Integrated Gradients (completeness, agreement with Captum), attention rollout (row sums,
masking), relevance over time, teacher-student similarity (a model with itself = 1)."""

import numpy as np
import pytest
import torch

from xtinyhar.models.student import InertialTransformer, StudentModelConfig
from xtinyhar.models.teacher import STConvTeacher, TeacherModelConfig
from xtinyhar.xai.integrated_gradients import integrated_gradients, make_baseline, path_weights
from xtinyhar.xai.rollout import attention_rollout, relevance_over_time
from xtinyhar.xai.similarity import attention_similarity, cosine, imu_time_relevance

W = 60


def student(dynamic=True, seed=0):
    torch.manual_seed(seed)
    cfg = StudentModelConfig(n_classes=5, window=W, dim=32, depth=2, heads=2, p_default=6,
                             p_min=4, p_max=12, dynamic_patching=dynamic, stem_channels=8,
                             dropout=0.0)
    model = InertialTransformer(cfg)
    model.set_normalization([0.0, 0.0, 1.0, 0.0, 0.0, 0.0], [0.5, 0.5, 0.5, 50.0, 50.0, 50.0])
    return model.eval()


def windows(n=4, seed=0):
    """Wrist-like raw windows: gravity on z, motion of varying vigour (so patch lengths vary)."""
    rng = np.random.default_rng(seed)
    t = np.arange(W) / 50.0
    out = np.zeros((n, W, 6), dtype=np.float32)
    for i in range(n):
        amp = 0.05 + 0.6 * i / max(n - 1, 1)
        out[i, :, :3] = amp * np.sin(2 * np.pi * (1 + i) * t[:, None] + rng.uniform(0, 6, 3))
        out[i, :, 2] += 1.0
        out[i, :, 3:] = 80 * amp * np.cos(2 * np.pi * (1 + i) * t[:, None] + rng.uniform(0, 6, 3))
    return out


@pytest.mark.parametrize("method", ["riemann_left", "riemann_right", "riemann_middle", "trapezoid"])
def test_path_weights_sum_to_one(method):
    alphas, weights = path_weights(10, method)
    assert weights.sum() == pytest.approx(1.0) and alphas.min() >= 0 and alphas.max() <= 1


def test_baselines():
    imu = windows()
    assert not make_baseline(imu, "zero").any()
    mean = make_baseline(imu, "mean", train_mean=np.arange(6.0))
    assert mean.shape == imu.shape and np.all(mean[..., 5] == 5.0)
    blur = make_baseline(imu, "blur", blur_sigma=5)
    assert blur.shape == imu.shape and blur[..., 0].std(axis=1).mean() < imu[..., 0].std(axis=1).mean()
    with pytest.raises(ValueError, match="unknown baseline"):
        make_baseline(imu, "noise")


@pytest.mark.parametrize("baseline", ["zero", "mean", "blur"])
def test_completeness_with_dynamic_patching(baseline):
    model = student()
    imu = windows()
    base = make_baseline(imu, baseline, train_mean=model.tokenizer.norm_mean.numpy(), blur_sigma=5)
    assert len(np.unique(model.tokenizer.patcher.patch_length(torch.from_numpy(imu)).numpy())) > 1
    ig = integrated_gradients(model, imu, base, steps=256)
    assert ig.values.shape == imu.shape
    gap = np.abs(ig.output - ig.baseline_output)
    assert np.all(np.abs(ig.delta) <= 0.01 * np.maximum(gap, 1e-3))


def test_completeness_improves_with_steps():
    model, imu = student(), windows()
    base = make_baseline(imu, "zero")
    coarse = integrated_gradients(model, imu, base, steps=4, method="riemann_left")
    fine = integrated_gradients(model, imu, base, steps=128, method="riemann_left")
    assert np.abs(fine.delta).mean() < np.abs(coarse.delta).mean()


def test_agrees_with_captum():
    from captum.attr import IntegratedGradients

    model, imu = student(dynamic=False), windows()
    base = make_baseline(imu, "mean", train_mean=model.tokenizer.norm_mean.numpy())
    # Riemann middle: the same points and weights in both. (Captum's "riemann_trapezoid"
    # weights sum to (n-1)/n, not 1, so its totals are smaller by 1/n than the trapezoid
    # rule's; ours sums to 1, which completeness needs.)
    ours = integrated_gradients(model, imu, base, steps=50, method="riemann_middle", batch_size=64)
    theirs = IntegratedGradients(model).attribute(
        torch.from_numpy(imu), baselines=torch.from_numpy(base), target=torch.from_numpy(ours.target),
        n_steps=50, method="riemann_middle").detach().numpy()
    np.testing.assert_allclose(ours.values, theirs, rtol=1e-3, atol=1e-5 * np.abs(theirs).max())


def test_rollout_rows_sum_to_one_and_padding_is_masked():
    model, imu = student(), windows(6)
    x = torch.from_numpy(imu)
    with torch.no_grad():
        _, maps = model(x, return_attention=True)
        _, mask, _ = model.tokenizer(x)
    assert not mask.all()               # still windows get long patches: padded slots exist
    result = attention_rollout(maps, mask)
    real = mask.numpy()
    rows = result.rollout.sum(axis=2)
    np.testing.assert_allclose(rows[real], 1.0, atol=1e-5)
    assert np.all(rows[~real] == 0)
    for b in range(len(real)):
        assert np.all(result.rollout[b][:, ~real[b]] == 0)
    np.testing.assert_allclose(result.relevance.sum(axis=1), 1.0, atol=1e-6)
    assert np.all(result.relevance[~real] == 0)
    assert result.layers.shape == (2, len(imu), mask.shape[1], mask.shape[1])
    maxed = attention_rollout(maps, mask, head_fusion="max")
    np.testing.assert_allclose(maxed.rollout.sum(axis=2)[real], 1.0, atol=1e-5)


def test_rollout_of_identity_attention_is_identity():
    eye = torch.eye(5)[None, None].repeat(2, 3, 1, 1)
    mask = torch.tensor([[True] * 5, [True, True, True, False, False]])
    result = attention_rollout([eye, eye], mask)
    np.testing.assert_allclose(result.rollout[0], np.eye(5), atol=1e-6)
    np.testing.assert_allclose(result.relevance[1], [1 / 3, 1 / 3, 1 / 3, 0, 0], atol=1e-6)


def test_relevance_over_time():
    relevance = np.array([[0.5, 0.3, 0.2, 0.0]])
    curve = relevance_over_time(relevance, np.array([4]), 10)     # tokens of 4, 4 and 2 samples
    assert curve.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(curve[0, :4], 0.125)
    np.testing.assert_allclose(curve[0, 8:], 0.1)


def test_similarity_of_a_model_with_itself_is_one():
    model, imu = student(), windows()
    x = torch.from_numpy(imu)
    with torch.no_grad():
        _, maps = model(x, return_attention=True)
        _, mask, _ = model.tokenizer(x)
    p = model.tokenizer.patcher.patch_length(x).numpy()
    curve = imu_time_relevance(maps, mask, p, W)
    np.testing.assert_allclose(cosine(curve, curve), 1.0, atol=1e-9)


def test_teacher_student_similarity_report():
    torch.manual_seed(1)
    teacher = STConvTeacher(TeacherModelConfig(
        n_classes=5, window=W, skeleton_frames=30, joints=20, hip_joint=0, dim=32, depth=2,
        heads=2, skeleton_tokens=5, p_default=6, p_min=4, p_max=12, stem_channels=8)).eval()
    imu = windows(4)
    skeleton = np.random.default_rng(0).normal(size=(4, 30, 20, 3)).astype(np.float32)
    report = attention_similarity(student(), teacher, imu, skeleton, np.array([0, 0, 1, 2]),
                                  list("abcde"))
    assert -1 <= report["mean"] <= 1 and set(report["per_class"]) == {"a", "b", "c"}
    assert report["windows"] == 4 and report["per_window"].shape == (4,)


def test_mean_baseline_comes_from_training_windows_not_normalisation(utd_cache):
    """With preproc.norm none a model's normalisation mean is 0; the IG 'mean' baseline
    must still be the training windows' mean (about 1 g on some acc axis, not 0)."""
    from xtinyhar.xai.explain import training_mean

    mean = training_mean(utd_cache, [1, 3, 5, 7])
    rows = np.isin(utd_cache.subject, [1, 3, 5, 7])
    np.testing.assert_allclose(mean, utd_cache.imu[rows].reshape(-1, 6).mean(0), rtol=1e-4)
    assert np.abs(mean[:3]).max() > 0.3           # gravity shows: not the zero window


def test_explain_out_that_is_a_file_is_a_one_line_error(tmp_path):
    """--out naming an existing file ended in a FileExistsError traceback from mkdir."""
    from xtinyhar.errors import XTinyHARError
    from xtinyhar.xai.explain import explain

    path = tmp_path / "xai.png"
    path.write_bytes(b"x")
    with pytest.raises(XTinyHARError, match="xai.png: --out must be a folder"):
        explain(student(), {"train_subjects": [1]}, None, path)
    assert path.read_bytes() == b"x"


def test_deletion_keeps_each_windows_patch_length():
    """Deleting steps (by the training mean) changes motion energy and so the patch length
    the model would pick; every point of the curve must use the window's own, as IG does."""
    from xtinyhar.xai.deletion import FRACTIONS, area_under_curve, deletion_curve

    model = student()
    imu = windows(6)
    patcher = model.tokenizer.patcher
    own = patcher.patch_length(torch.from_numpy(imu))
    baseline = make_baseline(imu, "mean", train_mean=np.array([0, 0, 1.0, 0, 0, 0]))
    assert not torch.equal(patcher.patch_length(torch.from_numpy(baseline)), own)

    class Spy(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.tokenizer, self.seen = model.tokenizer, []

        def forward(self, x, patch_len=None):
            self.seen.append(patch_len)
            return model(x, patch_len=patch_len)

    spy = Spy()
    with torch.no_grad():
        labels = model(torch.from_numpy(imu)).argmax(1).numpy()
    importance = np.random.default_rng(0).random(imu.shape[:2])
    curve = deletion_curve(spy, imu, labels, importance, baseline)
    assert len(spy.seen) == len(FRACTIONS)
    assert all(seen is not None and torch.equal(seen, own) for seen in spy.seen)
    assert curve[0] == 1.0                                   # nothing removed: its own predictions
    assert 0.0 <= area_under_curve(FRACTIONS, curve) <= 1.0
