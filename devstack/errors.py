"""The local stack's errors: one root type, and a hint on what to do about each.

Like the engine's errors, each class says through ``retriable`` whether running the same
command again may succeed; ``python -m devstack`` prints an error as one line, its hint
included, followed by the output of the tool that failed when there is one.
"""

from __future__ import annotations


class DevStackError(Exception):
    """Root of every error the local stack raises on purpose."""

    retriable: bool = False

    def __init__(self, message: str, *, hint: str = "", output: str = "") -> None:
        super().__init__(message)
        self.message = message
        #: What to do about it: a command to run, a variable to set, a log to read.
        self.hint = hint
        #: What the failed tool printed (its last lines), for the reader who needs it.
        self.output = output

    def __str__(self) -> str:
        return f"{self.message}; {self.hint}" if self.hint else self.message


class StackConfigError(DevStackError):
    """A ``TECHX_*`` variable the stack reads is malformed: fix the environment."""


class StackError(DevStackError):
    """The local Kafka/PostgreSQL stack could not be installed, started or stopped."""


class StackTimeoutError(StackError):
    """A server or a tool did not answer in time; a slow first start may well succeed later."""

    retriable = True


class MissingToolError(StackError):
    """A program the local stack needs (java, mvn, PostgreSQL) is not installed."""
