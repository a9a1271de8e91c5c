"""The fit loop on a tiny problem: it learns, it is reproducible, resume gives the same."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from xtinyhar.io import load_checkpoint
from xtinyhar.train.loop import FitSettings, fit, warmup_cosine


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(20, 16),
                                       torch.nn.ReLU(), torch.nn.Dropout(0.1), torch.nn.Linear(16, 3))

    def forward(self, x):
        return self.net(x)


def step(model, batch):
    logits = model(batch["imu"])
    return F.cross_entropy(logits, batch["label"]), logits


def data(n, seed):
    rng = np.random.default_rng(seed)
    label = rng.integers(0, 3, n)
    imu = rng.normal(size=(n, 10, 2)).astype(np.float32) + label[:, None, None].astype(np.float32)
    return {"imu": imu, "label": label}


SETTINGS = FitSettings(epochs=8, batch_size=16, lr=1e-2, weight_decay=0.0, seed=3,
                       warmup_epochs=1, patience=100, threads=1)


def trained(workdir=None, resume=False, epochs=8):
    torch.manual_seed(0)
    model = Tiny()
    settings = FitSettings(**{**SETTINGS.__dict__, "epochs": epochs})
    result = fit(model, data(200, 0), data(60, 1), step, settings, workdir=workdir, resume=resume)
    return model, result


def test_fit_learns_and_writes_history(tmp_path):
    model, result = trained(tmp_path)
    assert result.history[-1]["val_acc"] > 0.8 and result.best_score > 0.8
    header = (tmp_path / "history.csv").read_text().splitlines()[0].split(",")
    assert header[:7] == ["epoch", "train_loss", "train_acc", "train_f1", "val_loss", "val_acc", "val_f1"]
    assert len((tmp_path / "history.csv").read_text().splitlines()) == 9
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 7


def test_same_seed_same_result():
    a, _ = trained()
    b, _ = trained()
    for pa, pb in zip(a.state_dict().values(), b.state_dict().values()):
        assert torch.equal(pa, pb)


def test_resume_continues_to_the_same_result(tmp_path):
    full, full_result = trained(tmp_path / "full")
    # interrupt during epoch 4 (the augment hook raises), then resume
    torch.manual_seed(0)
    model = Tiny()
    calls = {"n": 0}
    steps_per_epoch = 200 // 16 + 1

    def interrupting(batch, rng):
        calls["n"] += 1
        if calls["n"] > 3 * steps_per_epoch:
            raise KeyboardInterrupt
        return batch

    with pytest.raises(KeyboardInterrupt):
        fit(model, data(200, 0), data(60, 1), step, SETTINGS, augment=interrupting,
            workdir=tmp_path / "cut")
    assert load_checkpoint(tmp_path / "cut" / "last.pt")["epoch"] == 2
    resumed, result = trained(tmp_path / "cut", resume=True)
    assert len(result.history) == 8
    for pa, pb in zip(full.state_dict().values(), resumed.state_dict().values()):
        torch.testing.assert_close(pa, pb)


def test_resume_refuses_the_state_of_another_fit(tmp_path):
    """last.pt remembers what it was fitting: resuming it with another fingerprint (config,
    windows, teacher) is a one-line error naming the file; the same fingerprint resumes."""
    from xtinyhar.errors import XTinyHARError

    settings = FitSettings(**{**SETTINGS.__dict__, "epochs": 2})
    torch.manual_seed(0)
    fit(Tiny(), data(200, 0), data(60, 1), step, settings, workdir=tmp_path, fingerprint="a")
    longer = FitSettings(**{**SETTINGS.__dict__, "epochs": 3})
    with pytest.raises(XTinyHARError, match=r"last.pt: an interrupted fit of another config"):
        fit(Tiny(), data(200, 0), data(60, 1), step, longer, workdir=tmp_path, resume=True,
            fingerprint="b")
    result = fit(Tiny(), data(200, 0), data(60, 1), step, longer, workdir=tmp_path, resume=True,
                 fingerprint="a")
    assert len(result.history) == 3                              # epochs 1-2 kept, 3 trained


def test_fit_fingerprint_follows_config_windows_and_teacher(utd_config, utd_cache):
    import dataclasses

    from xtinyhar.train.tasks import fit_fingerprint

    rows = np.arange(10)
    base = fit_fingerprint(utd_config, utd_cache, rows)
    threads = dataclasses.replace(utd_config, train=dataclasses.replace(utd_config.train, threads=7))
    epochs = dataclasses.replace(utd_config, train=dataclasses.replace(utd_config.train, epochs=3))
    assert fit_fingerprint(threads, utd_cache, rows) == base       # threads change no result
    assert fit_fingerprint(epochs, utd_cache, rows) != base
    assert fit_fingerprint(utd_config, utd_cache, rows + 1) != base
    torch.manual_seed(0)
    one, two = Tiny(), Tiny()
    assert (fit_fingerprint(utd_config, utd_cache, rows, one)
            != fit_fingerprint(utd_config, utd_cache, rows, two))


def test_early_stopping_and_best_weights_restored():
    torch.manual_seed(0)
    model = Tiny()
    settings = FitSettings(**{**SETTINGS.__dict__, "epochs": 50, "patience": 2})
    result = fit(model, data(200, 0), data(60, 1), step, settings)
    assert len(result.history) < 50
    best = max(result.history, key=lambda r: (r["val_f1"], -r["val_loss"]))
    assert result.best_epoch == best["epoch"]


def test_warmup_cosine_schedule():
    assert warmup_cosine(0, 10, 100) == pytest.approx(0.1)
    assert warmup_cosine(9, 10, 100) == pytest.approx(1.0)
    assert warmup_cosine(55, 10, 100) == pytest.approx(0.5)
    assert warmup_cosine(100, 10, 100) == pytest.approx(0.0)


def test_without_validation_the_last_epoch_is_kept():
    torch.manual_seed(0)
    model = Tiny()
    empty = {k: v[:0] for k, v in data(10, 1).items()}
    result = fit(model, data(200, 0), empty, step, SETTINGS)
    assert len(result.history) == SETTINGS.epochs and result.best_epoch == SETTINGS.epochs
    assert np.isnan(result.best_score)
    assert not model.training            # returned ready to predict (dropout off), as with validation


def _fit_recording(settings, val):
    """Fit Tiny; return it and the weights each training step saw (before its update)."""
    torch.manual_seed(0)
    model = Tiny()
    seen = []

    def recording(model, batch):
        if model.training:
            seen.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        return step(model, batch)

    fit(model, data(200, 0), val, recording, settings)
    return model, seen


def test_uniform_average_is_the_mean_of_the_weights_after_each_step():
    """train.average=uniform keeps the mean of the weights after every step from
    average_start on (SWA-like), not the last ones."""
    empty = {k: v[:0] for k, v in data(10, 1).items()}
    epochs, per_epoch = 4, 200 // 16 + 1
    plain = FitSettings(**{**SETTINGS.__dict__, "epochs": epochs})
    live, seen = _fit_recording(plain, empty)
    averaged, _ = _fit_recording(FitSettings(**{**plain.__dict__, "average": "uniform",
                                                "average_start": 0.5}), empty)
    first = 2 * per_epoch                       # updates from epoch 3 on: after steps first..last
    after_step = seen[first + 1:] + [live.state_dict()]
    assert len(after_step) == epochs * per_epoch - first
    for name, value in averaged.state_dict().items():
        expected = torch.stack([w[name] for w in after_step]).mean(0)
        torch.testing.assert_close(value, expected)
        assert not torch.allclose(value, live.state_dict()[name])


def test_ema_average_validates_and_resumes(tmp_path):
    """train.average=ema: the averaged weights are what is validated and kept, and an
    interrupted fit resumes to the same averaged weights."""
    settings = FitSettings(**{**SETTINGS.__dict__, "average": "ema", "ema_decay": 0.9})
    torch.manual_seed(0)
    full = Tiny()
    result = fit(full, data(200, 0), data(60, 1), step, settings, workdir=tmp_path / "full")
    assert result.history[-1]["val_acc"] > 0.75        # it learns (the live weights: > 0.8)
    torch.manual_seed(0)
    live = Tiny()
    fit(live, data(200, 0), data(60, 1), step, SETTINGS)
    assert not torch.allclose(full.net[1].weight, live.net[1].weight)

    torch.manual_seed(0)
    cut = Tiny()
    calls = {"n": 0}

    def interrupting(batch, rng):
        calls["n"] += 1
        if calls["n"] > 3 * (200 // 16 + 1):
            raise KeyboardInterrupt
        return batch

    with pytest.raises(KeyboardInterrupt):
        fit(cut, data(200, 0), data(60, 1), step, settings, augment=interrupting,
            workdir=tmp_path / "cut")
    torch.manual_seed(0)
    resumed = Tiny()
    fit(resumed, data(200, 0), data(60, 1), step, settings, workdir=tmp_path / "cut", resume=True)
    for pa, pb in zip(full.state_dict().values(), resumed.state_dict().values()):
        torch.testing.assert_close(pa, pb)


def test_unknown_average_is_a_clear_error():
    from xtinyhar.errors import XTinyHARError

    bad = FitSettings(**{**SETTINGS.__dict__, "average": "polyak"})
    with pytest.raises(XTinyHARError, match="train.average: 'polyak'"):
        fit(Tiny(), data(20, 0), data(6, 1), step, bad)


def test_a_diverging_fit_stops_with_a_one_line_error(tmp_path):
    """NaN inputs (or a learning rate that blows up) end the fit with an error instead of
    returning NaN weights for the caller to save."""
    from xtinyhar.errors import XTinyHARError

    train = data(200, 0)
    train["imu"][5, 0, 0] = np.nan
    with pytest.raises(XTinyHARError, match=r"^student: training diverged \(loss nan in epoch 1\)"):
        fit(Tiny(), train, data(60, 1), step, SETTINGS, desc="student")


def test_resume_refuses_a_file_that_is_not_a_fit_state(tmp_path):
    from xtinyhar.errors import XTinyHARError
    from xtinyhar.io import save_checkpoint

    save_checkpoint(tmp_path / "last.pt", {"format": "xtinyhar-checkpoint-1", "state_dict": {}})
    with pytest.raises(XTinyHARError, match=r"last.pt: not the state of an interrupted fit; delete it"):
        fit(Tiny(), data(20, 0), data(6, 1), step, SETTINGS, workdir=tmp_path, resume=True)


def test_resuming_a_finished_fit_rewrites_its_history(tmp_path):
    """The history comes from the resume state, not from whatever history.csv holds."""
    trained(tmp_path, epochs=2)
    (tmp_path / "history.csv").write_text("garbage,,,\n")
    _, result = trained(tmp_path, resume=True, epochs=2)
    lines = (tmp_path / "history.csv").read_text().splitlines()
    assert len(result.history) == 2 and lines[0].startswith("epoch,train_loss") and len(lines) == 3
