"""File output that never leaves a half-written file, and safe checkpoint loading."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch

from xtinyhar.errors import DataError, XTinyHARError, require_file

try:
    import fcntl
except ImportError:   # not on Windows: stale temp files are then told by their age alone
    fcntl = None

STARTED = time.time()   # about when this process started: older temp files are not its own


@contextlib.contextmanager
def quiet_output():
    """Silence a third-party converter's progress output for the duration: Python-level
    prints and whatever its C++ parts write straight to file descriptors 1 and 2."""
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    saved = [os.dup(1), os.dup(2)]
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, devnull):
            os.close(fd)


def usual_permissions(path: str | Path) -> None:
    """Give a file made by ``tempfile.mkstemp`` (0600) the permissions a new file gets
    (0666 less the umask), so what we write is readable like any other file."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def _is_locked(path: Path) -> bool:
    """Whether a live writer holds the lock ``atomic_write`` takes on its temp file."""
    if fcntl is None:
        return False
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return True   # gone or unreadable: leave it alone
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except OSError:
        return True
    finally:
        os.close(fd)   # closing releases a lock this call took


def remove_stale_temps(path: str | Path) -> list[Path]:
    """Delete temp files that an earlier, killed ``atomic_write`` of ``path`` left beside it.

    Only files of our own pattern for this target (``.<name>.XXXXXXXX.tmp``), last written
    before this process started and not locked by a live writer, are removed."""
    path = Path(path)
    pattern = re.compile(re.escape(f".{path.name}.") + r"[A-Za-z0-9_]{8}" + re.escape(".tmp"))
    removed = []
    try:
        candidates = [p for p in path.parent.iterdir() if pattern.fullmatch(p.name)]
    except OSError:
        return removed
    for tmp in candidates:
        try:
            if not tmp.is_file() or tmp.stat().st_mtime >= STARTED or _is_locked(tmp):
                continue
            tmp.unlink()
            removed.append(tmp)
        except OSError:
            continue
    return removed


def check_writable(folder: str | Path, what: str) -> None:
    """Create and remove a probe file in ``folder``, so an output that cannot be written
    fails before any work is done (permission bits alone do not tell: root, read-only mounts)."""
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".xtinyhar-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise XTinyHARError(f"{what}: cannot write into {folder} ({exc.strerror or exc})") from None


def atomic_write(path: str | Path, write: Callable) -> None:
    """Call ``write(binary_file)`` on a temp file beside ``path``, then rename over it.

    A crash or Ctrl-C leaves any earlier file at ``path`` untouched and no partial file; the
    temp file is locked while written, so a later write of ``path`` can tell one that a
    killed process left behind (and removes it) from one still being written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        usual_permissions(tmp)
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.replace(tmp, path)   # still locked: never taken for a stale file meanwhile
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode()))


def write_json(path: str | Path, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2) + "\n")


def save_png(fig, path: str | Path, dpi: int = 150) -> Path:
    """A matplotlib figure as a PNG (DESIGN: 150 dpi), atomically; the figure is closed."""
    import matplotlib.pyplot as plt

    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=dpi, bbox_inches="tight"))
    plt.close(fig)
    return Path(path)


def write_csv(path: str | Path, rows: list[dict]) -> None:
    """Rows of dicts with the same keys -> CSV with a header, atomically."""
    text = io.StringIO()
    if rows:
        writer = csv.DictWriter(text, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    write_text(path, text.getvalue())


def save_checkpoint(path: str | Path, payload: dict) -> None:
    """torch.save of plain data (tensors, numbers, strings, lists, dicts), atomically."""
    atomic_write(path, lambda f: torch.save(payload, f))


def load_checkpoint(path: str | Path) -> dict:
    """Load with ``weights_only=True``: a checkpoint from a stranger cannot run code."""
    path = require_file(path, "checkpoint")
    with open(path, "rb") as f:
        magic = f.read(2)
    if magic not in (b"PK", b"\x80\x02"):   # torch.save's zip archive, or its legacy pickle
        what = "an empty file" if not magic else "not a PyTorch file"
        raise DataError(f"{path}: not a readable checkpoint ({what})")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt or unsafe files
        text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip()
        if text.startswith("Weights only load failed"):
            reason = "it holds Python objects, not only tensors and plain data; a weights-only load refuses it"
        else:
            reason = text.splitlines()[0] if text else type(exc).__name__
            if "zip archive" in reason or isinstance(exc, EOFError):
                reason = "truncated or damaged: its archive cannot be read"
        raise DataError(f"{path}: not a readable checkpoint ({reason[:200]})") from None
    if not isinstance(payload, dict):
        raise DataError(f"{path}: not an XTinyHAR checkpoint")
    return payload
