import math

import numpy as np
import pytest
import torch

from xtinyhar.train.kd import attention_transfer_loss, distillation_loss, imu_attention


def pytest_approx(value):
    return pytest.approx(value, rel=1e-9, abs=1e-12)


def hand_kd(s, t, y, T, alpha):
    """alpha * T^2 * KL(softmax(t/T) || softmax(s/T)) + (1 - alpha) * CE(s, y), by hand."""
    total = 0.0
    for si, ti, yi in zip(s, t, y):
        ps = np.exp(si / T) / np.exp(si / T).sum()
        pt = np.exp(ti / T) / np.exp(ti / T).sum()
        kl = float((pt * np.log(pt / ps)).sum())
        ce = -math.log(np.exp(si[yi]) / np.exp(si).sum())
        total += alpha * T * T * kl + (1 - alpha) * ce
    return total / len(s)


def test_kd_loss_matches_a_hand_computation():
    s = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]])
    t = np.array([[3.0, -1.0, 0.0], [-0.5, 1.5, 0.2]])
    y = np.array([0, 2])
    got = distillation_loss(torch.tensor(s), torch.tensor(t), torch.tensor(y), T=3.0, alpha=0.7)
    assert float(got) == pytest_approx(hand_kd(s, t, y, 3.0, 0.7))


def test_kd_loss_limits():
    s = torch.tensor([[1.0, 2.0, 0.0]])
    y = torch.tensor([1])
    # alpha 0: plain cross-entropy; identical logits: the soft term vanishes
    ce = torch.nn.functional.cross_entropy(s, y)
    assert float(distillation_loss(s, torch.randn(1, 3), y, T=3, alpha=0.0)) == pytest_approx(float(ce))
    assert float(distillation_loss(s, s.clone(), y, T=3, alpha=1.0)) == pytest_approx(0.0)


def test_kd_gradient_does_not_reach_the_teacher():
    s = torch.randn(4, 5, requires_grad=True)
    t = torch.randn(4, 5, requires_grad=True)
    distillation_loss(s, t, torch.tensor([0, 1, 2, 3]), T=2, alpha=0.5).backward()
    assert s.grad is not None and t.grad is None


def test_attention_transfer_is_zero_for_identical_maps_and_positive_otherwise():
    torch.manual_seed(0)
    n_skel, n_imu = 3, 4
    student = torch.softmax(torch.randn(2, 2, n_imu, n_imu), -1)
    teacher = torch.zeros(2, 2, n_skel + n_imu, n_skel + n_imu)
    teacher[:, :, n_skel:, n_skel:] = student
    mask = torch.ones(2, n_imu, dtype=torch.bool)
    assert float(attention_transfer_loss([student], [teacher], n_skel, mask)) < 1e-12
    other = torch.softmax(torch.randn(2, 2, n_imu, n_imu), -1)
    assert float(attention_transfer_loss([other], [teacher], n_skel, mask)) > 0
    rows = imu_attention([teacher], n_skel).sum(-1)
    torch.testing.assert_close(rows, torch.ones_like(rows))


def test_consistent_views_give_the_teacher_logits_of_the_window_the_student_sees():
    """distill.views: each batch row is one of K augmented copies, paired with the teacher's
    logits on exactly that copy (not on the clean window): the teacher saw that copy's IMU
    and its skeleton augmented alike (replayed here with the same random stream)."""
    import numpy as np

    from xtinyhar.config import config_from_dict
    from xtinyhar.models.teacher import STConvTeacher, TeacherModelConfig
    from xtinyhar.train.tasks import consistent_views

    rng = np.random.default_rng(0)
    n, W, T, J = 6, 50, 25, 20
    full = {"imu": rng.normal(size=(n, W, 6)).astype(np.float32),
            "skeleton": rng.normal(size=(n, T, J, 3)).astype(np.float32),
            "label": np.arange(n) % 3}
    cfg = config_from_dict({"data": {"window": W}, "model": {"teacher": {"skeleton_tokens": 5}},
                            "preproc": {"augment": {"rotation_deg": 30}}})
    teacher = STConvTeacher(TeacherModelConfig(n_classes=3, window=W, skeleton_frames=T, joints=J,
                                               dim=16, depth=1, heads=2, skeleton_tokens=5,
                                               stem_channels=4)).eval()
    apply = consistent_views(teacher, full, cfg, np.ones(6, np.float32), views=3)
    batch = {"imu": full["imu"], "label": full["label"], "row": np.arange(n),
             "teacher_logits": np.zeros((n, 3), np.float32)}
    out = apply(batch, np.random.default_rng(1))
    assert not np.allclose(out["imu"], full["imu"])            # augmented, not the clean window
    from xtinyhar.train.augmentation import make_augment
    replay = np.random.default_rng(cfg.train.seed + 7919)
    copies = [make_augment(cfg, np.ones(6, np.float32))(full, replay) for _ in range(3)]
    pick = [next(k for k in range(3) if np.array_equal(copies[k]["imu"][i], out["imu"][i]))
            for i in range(n)]
    skeleton = np.stack([copies[k]["skeleton"][i] for i, k in enumerate(pick)])
    assert not np.allclose(skeleton, full["skeleton"])          # the teacher's skeleton is augmented too
    with torch.no_grad():
        expected = teacher(torch.from_numpy(out["imu"]), torch.from_numpy(skeleton)).numpy()
    np.testing.assert_allclose(out["teacher_logits"], expected, rtol=1e-4, atol=1e-4)
    again = apply(batch, np.random.default_rng(2))
    assert not np.array_equal(again["imu"], out["imu"])          # another copy for some rows


def test_jitter_follows_the_training_channels_std_even_without_normalisation(utd_config, utd_cache,
                                                                             monkeypatch):
    """preproc.norm: none must not shrink the jitter to 0.05 raw units (0.05 deg/s on a gyro
    whose std is ~100 deg/s): augmentation always scales by the training windows' std."""
    import dataclasses

    import numpy as np

    from xtinyhar.train import tasks

    seen = []
    monkeypatch.setattr(tasks, "make_augment", lambda cfg, std: seen.append(np.asarray(std)))
    monkeypatch.setattr(tasks, "fit", lambda *args, **kwargs: None)
    cfg = dataclasses.replace(utd_config, preproc=dataclasses.replace(utd_config.preproc, norm="none"))
    train = np.flatnonzero(np.isin(utd_cache.subject, [1, 3]))
    tasks.fit_student(cfg, utd_cache, train, np.array([], dtype=np.int64))
    expected = utd_cache.imu[train].reshape(-1, 6).std(axis=0)
    np.testing.assert_allclose(seen[0], expected, rtol=1e-3)
    assert seen[0][3:].min() > 10                                # gyro channels in deg/s


def test_attention_transfer_step_updates_the_students_batchnorm_once(monkeypatch):
    """With distill.attention_weight the student's padding mask must come without a second
    train-mode pass through its tokenizer: that pass moved the conv stem's BatchNorm running
    statistics twice per batch (num_batches_tracked 2 after one step)."""
    import copy
    from types import SimpleNamespace

    from xtinyhar.config import config_from_dict
    from xtinyhar.models.teacher import STConvTeacher, TeacherModelConfig
    from xtinyhar.train import tasks
    from xtinyhar.train.loop import to_tensors

    rng = np.random.default_rng(0)
    n, W, T, J = 8, 50, 25, 20
    cache = SimpleNamespace(imu=rng.normal(size=(n, W, 6)).astype(np.float32),
                            skeleton=rng.normal(size=(n, T, J, 3)).astype(np.float32),
                            label=np.arange(n) % 3, class_names=list("abc"), meta={"config_hash": "x"})
    cfg = config_from_dict({"data": {"window": W}, "model": {"teacher": {"skeleton_tokens": 5}},
                            "distill": {"attention_weight": 0.5}})
    torch.manual_seed(0)
    teacher = STConvTeacher(TeacherModelConfig(n_classes=3, window=W, skeleton_frames=T, joints=J,
                                               dim=16, depth=1, heads=2, skeleton_tokens=5,
                                               stem_channels=4)).eval()
    seen = {}
    monkeypatch.setattr(tasks, "fit", lambda model, train, val, step, *a, **k:
                        seen.update(model=model, train=train, step=step))
    tasks.fit_student(cfg, cache, np.arange(n), np.array([], dtype=np.int64), teacher=teacher)
    model, batch = seen["model"].train(), to_tensors(seen["train"])
    reference = copy.deepcopy(model)
    seen["step"](model, batch)
    reference(batch["imu"])
    stem = dict(model.tokenizer.stem.named_buffers())
    assert stem, "the student needs a BatchNorm stem for this test to mean anything"
    for name, value in reference.tokenizer.stem.named_buffers():
        torch.testing.assert_close(stem[name], value, msg=name)
