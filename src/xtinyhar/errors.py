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
