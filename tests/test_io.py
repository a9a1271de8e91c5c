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
