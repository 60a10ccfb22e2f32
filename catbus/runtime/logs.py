"""Node logs: ``self.log`` records reach the terminal and the recording, in every mode.

* Terminal: every record of the ``catbus.node`` logger tree at or above the run's level is
  written to stderr as ``[NODE] LEVEL message`` (:func:`install_terminal`). A node process
  installs it once it knows the run's level (after the registry's ``welcome``); an inline run
  installs it in the launching process for the duration of the run. It is attached to the
  ``catbus.node`` logger, never to the root logger, and while it is attached that logger does
  not propagate (no record is printed twice by a root handler).
* Recording: :class:`LogPublisher`, attached by :class:`~catbus.runtime.driver.NodeDriver` to
  its node's logger, publishes each record on :data:`~catbus.wire.protocol.LOG_TOPIC` as a
  ``foxglove.Log``-shaped message, stamped with the node's current tick and sim time. Only
  records emitted by the node's own thread while the node runs (from its first step or message
  until ``close()``) travel: one emitted in ``setup()`` or ``close()`` reaches the terminal
  only (as scores reported in ``close()``). Publishing never fails the node: an error is
  swallowed, and a record emitted while a record is being published is not published again.

The level: ``--log-level`` of ``catbus launch`` (default INFO), ``log_level=`` of
``catbus.run``/``start`` (default WARNING) and ``catbus sweep`` (default WARNING). It travels
to node processes in the run's ``run_info["log_level"]``; ``catbus node --log-level`` overrides
it for that one node.
"""

from __future__ import annotations

import logging
import sys
import threading
from typing import Any

from catbus.errors import ConfigError

#: The levels ``--log-level`` accepts (case-insensitive).
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
#: ``catbus launch`` and ``catbus node``.
CLI_DEFAULT_LEVEL = "INFO"
#: ``catbus.run``, ``catbus.start``, ``catbus sweep``: a library call (often many episodes in a
#: loop) prints only warnings and errors unless asked.
API_DEFAULT_LEVEL = "WARNING"
#: The parent of every node's logger (``catbus.node.<name>``).
NODE_LOGGER = "catbus.node"
_PREFIX = NODE_LOGGER + "."


def check_level(value: Any, where: str = "log_level") -> str:
    """``value`` as one of :data:`LEVELS` (any case); a ConfigError names the choices."""
    text = str(value).strip().upper() if isinstance(value, str) else None
    if text == "WARN":
        text = "WARNING"
    if text not in LEVELS:
        raise ConfigError(where, str(value), f"not a log level; use one of "
                                             f"{', '.join(LEVELS)} (any case)")
    return text


def argparse_level(value: str) -> str:
    """``type=`` of a ``--log-level`` option: a clear argparse error for a bad value."""
    import argparse

    try:
        return check_level(value)
    except ConfigError:
        raise argparse.ArgumentTypeError(
            f"invalid log level {value!r} (choose from {', '.join(LEVELS)}, any case)") from None


def node_name(record: logging.LogRecord) -> str:
    name = record.name
    return name[len(_PREFIX):] if name.startswith(_PREFIX) else name


def foxglove_level(levelno: int) -> int:
    """Foxglove's ``LogLevel``: 1 DEBUG, 2 INFO, 3 WARNING, 4 ERROR, 5 FATAL."""
    if levelno <= logging.DEBUG:
        return 1
    if levelno <= logging.INFO:
        return 2
    if levelno <= logging.WARNING:
        return 3
    if levelno <= logging.ERROR:
        return 4
    return 5


def log_message(record: logging.LogRecord, name: str, sim_time: float) -> dict[str, Any]:
    """The ``foxglove.Log`` message of a record; ``timestamp`` is the sim time of the tick it was
    emitted at (the message's own time in the recording)."""
    try:
        text = record.getMessage()
    except Exception as exc:   # a bad format string: say so rather than lose the record
        text = f"{record.msg!r} (unformattable log message: {type(exc).__name__}: {exc})"
    if record.exc_info:
        text = f"{text}\n{logging.Formatter().formatException(record.exc_info)}"
    ns = max(0, round(sim_time * 1e9))
    return {"timestamp": {"sec": ns // 1_000_000_000, "nsec": ns % 1_000_000_000},
            "level": foxglove_level(record.levelno), "message": text, "name": name,
            "file": str(record.pathname or ""), "line": int(record.lineno or 0)}


class TerminalFormatter(logging.Formatter):
    """``[NODE] LEVEL message`` (and the traceback of ``log.exception``)."""

    def format(self, record: logging.LogRecord) -> str:
        text = f"[{node_name(record)}] {record.levelname} {record.getMessage()}"
        if record.exc_info:
            text = f"{text}\n{self.formatException(record.exc_info)}"
        if record.stack_info:
            text = f"{text}\n{self.formatStack(record.stack_info)}"
        return text


class _StderrHandler(logging.StreamHandler):
    """Writes to the current ``sys.stderr`` (looked up per record, so a replaced stderr, e.g.
    pytest's capture, gets them)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)
        self.setFormatter(TerminalFormatter())

    @property   # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


_lock = threading.Lock()
_installed: list[tuple[object, int]] = []       # (token, level) of every active install
_handler: _StderrHandler | None = None
_saved: tuple[int, bool] | None = None           # catbus.node's level and propagate before


def install_terminal(level: str) -> object:
    """Print node records at ``level`` and above on stderr; returns a token for
    :func:`uninstall_terminal`. Installs nest (concurrent inline runs in one process): the
    handler stays until the last is removed, at the most verbose level asked for."""
    global _handler, _saved
    levelno = logging.getLevelName(check_level(level))
    token = object()
    logger = logging.getLogger(NODE_LOGGER)
    with _lock:
        if _handler is None:
            _saved = (logger.level, logger.propagate)
            _handler = _StderrHandler()
            logger.addHandler(_handler)
            logger.propagate = False
        _installed.append((token, levelno))
        lowest = min(n for _, n in _installed)
        logger.setLevel(lowest)
        _handler.setLevel(lowest)
    return token


def uninstall_terminal(token: object) -> None:
    """Undo one :func:`install_terminal`; the last one restores the ``catbus.node`` logger."""
    global _handler, _saved
    logger = logging.getLogger(NODE_LOGGER)
    with _lock:
        _installed[:] = [(t, n) for t, n in _installed if t is not token]
        if _handler is None:
            return
        if _installed:
            lowest = min(n for _, n in _installed)
            logger.setLevel(lowest)
            _handler.setLevel(lowest)
            return
        logger.removeHandler(_handler)
        _handler = None
        if _saved is not None:
            logger.setLevel(_saved[0])
            logger.propagate = _saved[1]
            _saved = None


class LogPublisher(logging.Handler):
    """Publishes a node's records on ``catbus/log`` through its driver (see the module doc)."""

    def __init__(self, driver: Any, level: str) -> None:
        super().__init__(logging.getLevelName(check_level(level)))
        self.driver = driver
        self.thread = threading.get_ident()
        self._busy = False

    def handle(self, record: logging.LogRecord) -> bool:
        # No handler lock (emit is only ever run by the node's own thread; see emit).
        if self.filter(record):
            self.emit(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:
        if self._busy or threading.get_ident() != self.thread:
            return
        driver = self.driver
        if not driver.running:
            return
        self._busy = True
        try:
            driver.publish_log(record)
        except Exception as exc:
            if _must_pass(exc):
                raise
        finally:
            self._busy = False


def _must_pass(exc: BaseException) -> bool:
    """A failure that is not about the log message (inline: another node's handler failed)."""
    from catbus.errors import NodeFailed

    return isinstance(exc, NodeFailed)
