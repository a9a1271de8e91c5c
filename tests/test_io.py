"""Checkpoint files that cannot be loaded: one line naming the file and why."""

import pytest
import torch

from xtinyhar.errors import DataError
from xtinyhar.io import load_checkpoint, save_checkpoint


def test_unreadable_checkpoints_are_one_line_errors(tmp_path):
    save_checkpoint(tmp_path / "ok.pt", {"weights": torch.zeros(1000)})
    whole = (tmp_path / "ok.pt").read_bytes()
    assert torch.equal(load_checkpoint(tmp_path / "ok.pt")["weights"], torch.zeros(1000))
    (tmp_path / "truncated.pt").write_bytes(whole[:len(whole) // 2])
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "text.pt").write_text("weights: none")
    torch.save(torch.nn.Linear(2, 2), tmp_path / "module.pt")    # a pickled module, not plain data
    (tmp_path / "folder.pt").mkdir()
    cases = {"truncated.pt": "truncated or damaged", "empty.pt": "an empty file",
             "text.pt": "not a PyTorch file", "module.pt": "a weights-only load refuses it",
             "folder.pt": "is a directory", "missing.pt": "checkpoint not found"}
    for name, fragment in cases.items():
        with pytest.raises(DataError) as err:
            load_checkpoint(tmp_path / name)
        message = str(err.value)
        assert message.startswith(str(tmp_path / name)) and fragment in message, message
        assert "\n" not in message and "\x1b" not in message


def _temp_beside(target, middle="abcd1234", age_s=3600.0):
    """A file named like atomic_write's temp files for ``target``, last written age_s ago."""
    import os
    import time

    path = target.parent / f".{target.name}.{middle}.tmp"
    path.write_bytes(b"half a file")
    os.utime(path, (time.time() - age_s, time.time() - age_s))
    return path


def test_a_write_removes_only_its_own_stale_temp_files(tmp_path):
    """A killed write leaves .NAME.XXXXXXXX.tmp beside its target; the next write of that
    target removes it, and nothing else: not another target's, not a newer one, not one a
    live writer holds locked, not a file of another pattern."""
    import fcntl

    from xtinyhar.io import write_text

    target = tmp_path / "tokens.npz"
    stale = _temp_beside(target)
    other_target = _temp_beside(tmp_path / "other.npz")
    fresh = _temp_beside(target, "fresh123", age_s=-5.0)   # written after this process started
    locked = _temp_beside(target, "locked12")
    unrelated = tmp_path / f".{target.name}.keep"
    unrelated.write_text("mine")
    with open(locked, "rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        write_text(target, "done")
    assert target.read_text() == "done" and not stale.exists()
    assert other_target.exists() and fresh.exists() and locked.exists() and unrelated.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [target.name, other_target.name, fresh.name, locked.name, unrelated.name])


def test_check_writable_names_the_folder(tmp_path):
    from xtinyhar.errors import XTinyHARError
    from xtinyhar.io import check_writable

    check_writable(tmp_path, "--out x")
    assert list(tmp_path.iterdir()) == []   # the probe is gone
    with pytest.raises(XTinyHARError, match=r"--out x: cannot write into .*missing"):
        check_writable(tmp_path / "missing", "--out x")
