"""Exceptions with one-line messages that name the file or key at fault.

The CLI catches :class:`XTinyHARError` and prints its message on one line, so every
problem a user can cause by bad input (a missing file, a wrong shape, a NaN, an unknown
config key) surfaces as ``error: <file>: <what is wrong>`` and never as a deep traceback.
"""


class XTinyHARError(Exception):
    """Base class of every error caused by user input."""


class ConfigError(XTinyHARError):
    """A config file has an unknown key, a wrong type or an out-of-range value."""


class DataError(XTinyHARError):
    """A data file is missing, unpaired, corrupt, of the wrong shape or holds NaN/inf."""


class StaleCacheError(XTinyHARError):
    """A token cache was built from a different config than the one in use."""


def require_file(path, what: str, hint: str = "", error: type[XTinyHARError] = DataError):
    """``path`` as a ``Path`` if it is a file; else ``error`` naming it: a directory is
    called one, anything else is "<what> not found" (plus ``hint``, e.g. how to make it)."""
    from pathlib import Path

    path = Path(path)
    if path.is_dir():
        raise error(f"{path}: is a directory, not a {what}")
    if not path.is_file():
        raise error(f"{path}: {what} not found{hint}")
    return path
