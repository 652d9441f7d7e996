"""Errors of the ingestor."""

from __future__ import annotations

from nox.errors import FailedPrecondition, InvalidArgument


class InvalidIngestorSettings(InvalidArgument):
    """Ingestor settings that cannot work."""


class CursorMissing(FailedPrecondition):
    """No stored cursor and no initial block: the ingestor refuses to guess where to start."""


class CursorMismatch(FailedPrecondition):
    """The stored cursor belongs to another NoxCompute contract than the one configured."""


class EventMalformed(InvalidArgument):
    """A NoxCompute log that does not decode as an Operation event of the expected shape."""
