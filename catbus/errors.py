"""Errors that catbus reports to people: one line that names the file, the field and the fix."""

from __future__ import annotations


class CatbusError(Exception):
    """Base class; the CLI prints ``str(error)`` without a traceback and exits non-zero."""

    exit_code = 2


class ConfigError(CatbusError):
    """A launch file, parameter or command-line value is wrong. Raised before any process starts.

    Formatted as ``FILE: dotted.field: what is wrong (and how to fix it)``.
    """

    def __init__(self, where: str, field: str, message: str) -> None:
        self.where, self.field, self.message = where, field, message
        prefix = f"{where}: " if where else ""
        field_part = f"{field}: " if field else ""
        super().__init__(f"{prefix}{field_part}{message}")


class NodeFailed(CatbusError):
    """A node raised or died during a run; the message names it and carries its traceback.

    ``result`` holds what the run produced up to the failure (per-node statistics), if anything.
    """

    exit_code = 1

    def __init__(self, message: str, result: object = None) -> None:
        super().__init__(message)
        self.result = result


class RunTimeout(CatbusError):
    """Something the run waited for (a remote node, a tick) did not come within its deadline."""

    exit_code = 1
