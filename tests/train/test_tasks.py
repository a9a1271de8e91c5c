"""tasks.py on bad input: a checkpoint that does not rebuild is a one-line error naming it."""

import pytest
import torch

from xtinyhar.config import config_from_dict
from xtinyhar.errors import DataError
from xtinyhar.models.factory import build_student
from xtinyhar.train.checkpoints import load_model, save_model


@pytest.mark.parametrize("change", [{"dim": 48}, {"no_such_key": 1}])
def test_a_checkpoint_whose_weights_do_not_fit_its_config_is_a_one_line_error(tmp_path, change):
    cfg = config_from_dict({"data": {"window": 50}, "model": {"teacher": {"skeleton_tokens": 5}}})
    torch.manual_seed(0)
    model = build_student(cfg, 3)
    path = tmp_path / "student.pt"
    save_model(path, model, cfg=cfg, class_names=list("abc"), cache_hash="x", train_subjects=[1])
    payload = torch.load(path, weights_only=True)
    payload["model_config"] = {**payload["model_config"], **change}
    torch.save(payload, path)
    with pytest.raises(DataError, match="student.pt") as err:
        load_model(path, "student")
    assert "\n" not in str(err.value)


def _saved_student(tmp_path):
    cfg = config_from_dict({"data": {"window": 50}, "model": {"teacher": {"skeleton_tokens": 5}}})
    torch.manual_seed(0)
    path = tmp_path / "student.pt"
    save_model(path, build_student(cfg, 3), cfg=cfg, class_names=list("abc"), cache_hash="x",
               train_subjects=[1])
    assert load_model(path, "student")[1]["class_names"] == list("abc")   # the intact file loads
    return path, torch.load(path, weights_only=True)


@pytest.mark.parametrize("damage, message", [
    (lambda p: p["state_dict"]["head.weight"].fill_(float("nan")),
     r"student.pt: 1 weight tensor\(s\) hold NaN or inf \(first: head.weight\)"),
    (lambda p: p.update(class_names=["a", "b"]), r"student.pt: 2 class names for a model with 3 outputs"),
    (lambda p: p.update(kind="banana"), r"student.pt: kind 'banana' is neither teacher nor student"),
])
def test_a_damaged_checkpoint_is_refused_when_loaded(tmp_path, damage, message):
    path, payload = _saved_student(tmp_path)
    damage(payload)
    torch.save(payload, path)
    with pytest.raises(DataError, match=message) as err:
        load_model(path)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("arch, key, index, channel", [
    ("transformer", "tokenizer.norm_std", 3, "channel 3 (gyro_x)"),
    ("cnn1d", "normalize.std", 0, "channel 0 (acc_x)"),
])
def test_a_zero_normalization_std_is_refused_naming_the_checkpoint_and_channel(
        tmp_path, arch, key, index, channel):
    """Training never stores a zero std (a constant channel gets 1); a checkpoint holding one
    divided by zero and surfaced at export as a parity error instead."""
    cfg = config_from_dict({"data": {"window": 48, "stride": 24},
                            "model": {"student": {"arch": arch}, "teacher": {"skeleton_tokens": 4}}})
    path = tmp_path / "student.pt"
    save_model(path, build_student(cfg, 3), cfg=cfg, class_names=list("abc"), cache_hash="x",
               train_subjects=[1])
    payload = torch.load(path, weights_only=True)
    payload["state_dict"][key][index] = 0.0
    torch.save(payload, path)
    with pytest.raises(DataError) as err:
        load_model(path)
    message = str(err.value)
    assert message.startswith(str(path)) and f"{key} is 0 for {channel}" in message
    assert "\n" not in message


def test_a_zero_skeleton_std_in_a_teacher_is_refused(tmp_path):
    from xtinyhar.models.teacher import STConvTeacher
    from xtinyhar.models.factory import teacher_config

    cfg = config_from_dict({"data": {"window": 50}, "model": {"teacher": {"skeleton_tokens": 5}}})
    path = tmp_path / "teacher.pt"
    save_model(path, STConvTeacher(teacher_config(cfg, 3, 20)), cfg=cfg, class_names=list("abc"),
               cache_hash="x", train_subjects=[1])
    payload = torch.load(path, weights_only=True)
    payload["state_dict"]["skeleton.norm_std"][2, 1] = -1.0
    torch.save(payload, path)
    with pytest.raises(DataError, match=r"teacher.pt: normalization std skeleton.norm_std is -1 "
                                        r"for joint 2 axis y"):
        load_model(path, "teacher")


def test_min_steps_raises_epochs_and_patience_for_few_windows():
    from xtinyhar.train.tasks import settings_from

    cfg = config_from_dict({"train": {"epochs": 30, "batch_size": 64, "patience": 10,
                                      "min_steps": 1400}})
    few = settings_from(cfg, teacher=False, n_train=50)          # 1 step per epoch
    assert (few.epochs, few.patience) == (1400, 467)
    many = settings_from(cfg, teacher=False, n_train=64 * 100)   # 100 steps x 30 epochs > 1400
    assert (many.epochs, many.patience) == (30, 10)
    off = settings_from(config_from_dict({"train": {"epochs": 30}}), teacher=False, n_train=50)
    assert off.epochs == 30
