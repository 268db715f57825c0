"""Exceptions that the command line turns into a one-line message and exit status 2."""

from __future__ import annotations


class KdbenchError(Exception):
    """Base class for errors caused by user input: a config value, a data file, a name.

    The message must name the file, key or value at fault and tell the user what to do next.
    """


class ConfigError(KdbenchError):
    """Invalid matrix file or option value."""


class DataError(KdbenchError):
    """Missing or inconsistent data files (shapes, label values, layout)."""


class UnknownNameError(KdbenchError, KeyError):
    """Name not found in a registry; the message lists close matches."""

    def __str__(self) -> str:  # KeyError would wrap the message in quotes
        return str(self.args[0]) if self.args else ""
