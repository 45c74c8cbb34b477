"""Errors a user fixes from the message alone: the CLI prints them without a traceback
(exit code 2). Standard library only, so the CLI can catch them without importing torch."""
from __future__ import annotations


class SubmissionError(ValueError):
    """What the submitter must fix (a file that does not load or registers no method, a
    method without a Config, a failed trial run); printed without a traceback, exit code 2."""
