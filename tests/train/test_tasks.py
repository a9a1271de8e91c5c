"""tasks.py on bad input: a checkpoint that does not rebuild is a one-line error naming it."""

import pytest
import torch

from xtinyhar.config import config_from_dict
from xtinyhar.errors import DataError
from xtinyhar.train.tasks import build_student, load_model, save_model


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
