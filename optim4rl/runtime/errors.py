"""Errors a command line reports in one line, without a traceback."""

from __future__ import annotations


class UsageError(Exception):
    """The user asked for something that cannot be done as asked (a run folder that already holds
    a run, a `--resume` with nothing to resume, ...). Commands print `error: <message>`, exit 2."""


class Interrupted(Exception):
    """A run stopped by Ctrl-C. The message gives the step reached, the last checkpointed step and
    the command that resumes it. Commands print it in one line and exit 130."""
