"""Errors of the batch jobs; both derive from :class:`~stream.errors.KnnStreamError`."""

from __future__ import annotations

from stream.errors import KnnStreamError


class BackfillError(KnnStreamError):
    """A batch job could not finish: unreadable data, a failed write, a broken range read."""


class ReplayStalledError(BackfillError):
    """The broker sent nothing for too long before every partition reached its end offset."""
