"""What security says to people: refusals on stderr (each once, so that a port scan or a
stranger retrying does not flood the log), the open-bus warning, and the ``--keys`` a remote
node's command needs."""

from __future__ import annotations

import sys
import threading
from typing import Any, Hashable, TextIO

from catbus.security.keys import CLIENTS, Keys

#: At most this many distinct refusal lines per process: a stranger cycling through addresses or
#: keys fills neither the log nor the memory (the refusals are still counted).
SAY_AT_MOST = 100


class Once:
    """Lines said once per key, at most ``limit`` distinct ones (then one line saying so, and
    silence). Thread-safe: ZAP handlers, monitors and the registry say refusals from their own
    threads."""

    def __init__(self, limit: int = SAY_AT_MOST, stream: TextIO | None = None) -> None:
        self.limit = limit
        #: None: the process's stderr at the time of each line (it may be replaced).
        self.stream = stream
        self._said: set = set()
        self._lock = threading.Lock()

    def say(self, key: Hashable, line: str) -> None:
        """``line`` on the stream unless ``key`` was said already or the limit is reached."""
        with self._lock:
            if key in self._said or len(self._said) > self.limit:
                return
            self._said.add(key)
            if len(self._said) > self.limit:
                line = (f"catbus: security: {self.limit} refusals said; more are refused "
                        f"without a word")
        try:
            print(line, file=self.stream or sys.stderr, flush=True)
        except (OSError, ValueError):
            pass


#: The process's refusals.
_once = Once()


def say_once(key: Any, line: str) -> None:
    """One line on stderr, once per ``key`` in this process (at most :data:`SAY_AT_MOST`)."""
    _once.say(key, line)


def open_bus_warning(bus: str) -> str:
    """The warning for a TCP bus without keys: anyone who reaches it is in."""
    return (f"catbus: warning: the bus {bus} is open: anyone who reaches it can join, read and "
            f"publish; secure it with security: {{keys: DIR}} (catbus keys generate DIR)")


def announce(bus: str, keys: Keys | None, named: Any = None) -> None:
    """One line on stderr for a run's host: a TCP bus without keys is open; keys named for an
    ipc bus are not used (its run folder is the owner's only)."""
    if str(bus).startswith("tcp://") and keys is None:
        print(open_bus_warning(bus), file=sys.stderr, flush=True)
    elif not str(bus).startswith("tcp://") and named is not None:
        print(f"catbus: security: keys {named} not used: the bus is ipc (private to this user)",
              file=sys.stderr, flush=True)


def node_option(keys: Keys | None, name: str) -> str:
    """`` --keys DIR`` for the command that starts node ``name`` on another host: the client
    folder allowed to register it (copied to that host), else a placeholder."""
    if keys is None:
        return ""
    client = keys.client_for_node(name)
    folder = keys.folder / CLIENTS / client if client else "CLIENT_DIR"
    return f" --keys {folder}"


__all__ = ["Once", "SAY_AT_MOST", "say_once", "open_bus_warning", "announce", "node_option"]
