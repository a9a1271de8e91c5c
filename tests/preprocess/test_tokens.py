"""The token cache built from real UTD-MHAD: contents, alignment, atomic writes, staleness."""

import numpy as np
import pytest

from xtinyhar.config import load_config
from xtinyhar.errors import DataError, StaleCacheError
from xtinyhar.preprocess import tokens as tokens_module
from xtinyhar.preprocess.tokens import build_token_cache, load_token_cache, save_token_cache
from xtinyhar.preprocess.arrays import window_starts

from conftest import CONFIGS


def test_cache_contents_on_real_data(utd_cache, utd_trials):
    trials, classes = utd_trials
    cache = utd_cache
    expected = sum(len(window_starts(len(t.imu), 100, 50)) for t in trials)
    assert len(cache) == expected
    assert cache.imu.shape == (expected, 100, 6) and cache.skeleton.shape == (expected, 50, 20, 3)
    assert cache.tokens.shape == (expected, 10, 20, 6) and cache.token_mask.shape == (expected, 10)
    assert len(cache.trial_id) == 861 and cache.class_names == classes
    assert set(np.unique(cache.subject)) == set(range(1, 9))
    assert np.array_equal(cache.label, cache.trial_label[cache.trial_index])
    assert np.array_equal(cache.subject, cache.trial_subject[cache.trial_index])
    # physical units are kept: acc about 1 g, gyro far larger
    assert 0.8 < np.median(np.linalg.norm(cache.imu[:, :, :3], axis=-1)) < 1.2
    # the seed's thresholds spread windows over the whole p range, both ends present
    assert cache.patch_len.min() == 10 and cache.patch_len.max() == 30
    assert 0.1 < np.mean(cache.patch_len == 10) < 0.7
    # number of real tokens follows the patch length
    assert np.array_equal(cache.token_mask.sum(1), np.ceil(100 / cache.patch_len))


def test_first_window_equals_the_raw_trial(utd_cache, utd_trials):
    trials, _ = utd_trials
    index = 5
    first = np.flatnonzero(utd_cache.trial_index == index)[0]
    np.testing.assert_allclose(utd_cache.imu[first], trials[index].imu[:100], atol=1e-6)


def test_skeleton_window_covers_the_imu_window_span(utd_cache, utd_trials):
    """Both modalities are aligned on the trial's normalised time axis."""
    trials, _ = utd_trials
    trial = trials[100]
    rows = np.flatnonzero(utd_cache.trial_index == 100)
    n_imu, n_frames = len(trial.imu), len(trial.skeleton)
    n_skel = int(round((n_imu - 1) * 0.5)) + 1
    for row in rows:
        start = utd_cache.start[row]
        # normalised time of the IMU window start; the skeleton value there, interpolated
        t_norm = start / (n_imu - 1)
        skel_start = min(int(round(start * 0.5)), n_skel - 50)
        position = skel_start / (n_skel - 1) * (n_frames - 1)
        lo = int(np.floor(position))
        hi = min(lo + 1, n_frames - 1)
        expect = trial.skeleton[lo] * (1 - (position - lo)) + trial.skeleton[hi] * (position - lo)
        np.testing.assert_allclose(utd_cache.skeleton[row, 0], expect, atol=1e-5)
        assert abs(skel_start * 2 - start) <= 1  # skeleton frame j sits at IMU sample 2j


def test_fixed_patching_tokens_are_the_window_cut_in_pieces(utd_config, utd_trials):
    trials, classes = utd_trials
    cfg = load_config(CONFIGS / "utd_mhad_paper.yaml", {"data.root": utd_config.data.root,
                                                  "preproc.dynamic_patch.enabled": False})
    cache = build_token_cache(cfg, trials[:20], classes)
    assert cache.tokens.shape[1:] == (5, 20, 6) and cache.token_mask.all()
    np.testing.assert_allclose(cache.tokens.reshape(len(cache), 100, 6), cache.imu, atol=1e-6)


def test_save_load_round_trip(utd_cache, utd_config, tmp_path):
    path = tmp_path / "sub" / "cache.npz"
    save_token_cache(path, utd_cache)
    loaded = load_token_cache(path, utd_config)
    assert np.array_equal(loaded.tokens, utd_cache.tokens)
    assert np.array_equal(loaded.skeleton, utd_cache.skeleton)
    assert list(loaded.trial_id) == list(utd_cache.trial_id)
    assert loaded.meta == utd_cache.meta
    assert [p.name for p in path.parent.iterdir()] == ["cache.npz"]  # no temp files left


def test_failed_write_keeps_the_old_file(utd_cache, tmp_path, monkeypatch):
    path = tmp_path / "cache.npz"
    path.write_bytes(b"previous content")

    def broken(handle, **arrays):
        handle.write(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(tokens_module.np, "savez", broken)
    with pytest.raises(OSError):
        save_token_cache(path, utd_cache)
    assert path.read_bytes() == b"previous content"
    assert [p.name for p in tmp_path.iterdir()] == ["cache.npz"]


def test_stale_cache_is_refused(utd_cache, utd_config, tmp_path):
    path = tmp_path / "cache.npz"
    save_token_cache(path, utd_cache)
    other = load_config(CONFIGS / "utd_mhad_paper.yaml", {"data.stride": 25})
    with pytest.raises(StaleCacheError, match="stale token cache") as err:
        load_token_cache(path, other)
    assert str(path) in str(err.value) and "xtinyhar prepare" in str(err.value)


def test_missing_and_corrupt_cache(tmp_path):
    with pytest.raises(DataError, match="token cache not found"):
        load_token_cache(tmp_path / "none.npz")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"garbage")
    with pytest.raises(DataError, match="bad.npz: not a readable token cache"):
        load_token_cache(bad)
    partial = tmp_path / "partial.npz"
    np.savez(partial, imu=np.zeros((1, 2, 6)), meta=np.array("{}"))
    with pytest.raises(DataError, match="lacks"):
        load_token_cache(partial)


def test_file_that_is_not_a_token_cache(tmp_path):
    single = tmp_path / "single.npy"       # a plain .npy array, not an .npz archive
    np.save(single, np.zeros(3))
    with pytest.raises(DataError, match="single.npy: not a readable token cache"):
        load_token_cache(single)
    alien = tmp_path / "alien.npz"          # an .npz from elsewhere: extra arrays, odd meta
    fields = {name: np.zeros(1) for name in ("imu", "label", "subject", "trial_index", "start",
                                             "n_valid", "energy", "patch_len", "tokens",
                                             "token_mask", "token_centre", "token_width",
                                             "trial_id", "trial_label", "trial_subject",
                                             "trial_placement")}
    np.savez(alien, meta=np.array("{}"), extra=np.zeros(1), **fields)
    with pytest.raises(DataError, match="alien.npz: .*extra"):
        load_token_cache(alien)
    odd_meta = tmp_path / "odd_meta.npz"
    np.savez(odd_meta, meta=np.array("3"), **fields)
    with pytest.raises(DataError, match="odd_meta.npz: not a readable token cache"):
        load_token_cache(odd_meta)


def test_empty_or_directory_cache(tmp_path):
    empty = tmp_path / "empty.npz"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match=r"empty.npz: not a readable token cache \(an empty file\)"):
        load_token_cache(empty)
    with pytest.raises(DataError, match="is a directory, not a token cache"):
        load_token_cache(tmp_path)


def _damaged(utd_cache, tmp_path, change):
    import dataclasses
    cache = dataclasses.replace(utd_cache, **{k: v for k, v in change(utd_cache).items()})
    path = tmp_path / "damaged.npz"
    save_token_cache(path, cache)
    return path


@pytest.mark.parametrize("change, message", [
    (lambda c: {"imu": np.where(np.arange(len(c.imu))[:, None, None] == 3, np.nan, c.imu)},
     r"imu holds NaN or inf in 1 window\(s\) \(first: window 3\)"),
    (lambda c: {"skeleton": np.full_like(c.skeleton, np.inf)}, r"skeleton holds NaN or inf in"),
    (lambda c: {"imu": c.imu[..., :5]}, r"imu has 5 channels, its meta names 6"),
    (lambda c: {"label": c.label[:-1]}, r"label has \d+ rows for \d+ windows"),
    (lambda c: {"label": np.where(np.arange(len(c.label)) == 0, 99, c.label)},
     r"label holds 99, outside 0\.\.26 \(27 class names\)"),
    (lambda c: {"label": np.where(np.arange(len(c.label)) == 0, -1, c.label)}, r"label holds -1"),
])
def test_damaged_cache_contents_are_one_line_errors(utd_cache, tmp_path, change, message):
    """A cache that unpacks but holds NaN, a wrong shape or a label out of range stops at
    load time, naming the file, instead of failing deep inside a model."""
    path = _damaged(utd_cache, tmp_path, change)
    with pytest.raises(DataError, match=message) as err:
        load_token_cache(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)
