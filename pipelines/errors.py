"""Exceptions the pipelines raise. The CLI prints ``str(exc)`` as one line and exits non-zero."""

from __future__ import annotations


class BackscoreError(Exception):
    """Base class for every error a user can cause or fix."""

    exit_code = 1


class InputError(BackscoreError):
    """The input is missing, unreadable, not a video, empty or truncated."""

    exit_code = 2


class OutputError(BackscoreError):
    """The output cannot be written where asked (same as input, unwritable, bad extension)."""

    exit_code = 3


class OptionError(BackscoreError):
    """An option has an invalid value (unknown style, bad window length, ...)."""

    exit_code = 2


class LibraryError(BackscoreError):
    """A music library (catalog or user SQLite index) is missing, empty or has no such track."""

    exit_code = 2


class DataError(BackscoreError):
    """A training/evaluation file (pairs CSV, model file) is malformed; the message names the line."""

    exit_code = 2
