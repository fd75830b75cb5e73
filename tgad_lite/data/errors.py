"""The two ways a data set can fail to load, shared by every loader."""

from __future__ import annotations


class DataUnavailableError(RuntimeError):
    """A data set's files are neither on disk nor downloadable (offline, URL gone, disabled), or
    there is nowhere writable to put them; the message lists the files and the fix."""


class DataFormatError(ValueError):
    """A data file exists but is damaged, truncated, malformed or a different version; the message
    names the file, what was expected and how to recover."""
