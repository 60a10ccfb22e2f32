"""The processes a launcher starts, by pid: starting them (their own session, knowing their
launcher), seeing them exit, and the shutdown ladder that stops every one of them.

Which node a process serves, and what its exit means, is the control plane's business; this
module only keeps the processes (``docs/design.md``, "Processes").
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from typing import Callable

#: Seconds given to children for each step of the shutdown ladder.
STOP_GRACE = 5.0
SIGNAL_GRACE = 2.0


def exit_signal(code: int) -> int:
    """The signal a process's exit code says ended it (killed by it, or exited on SIGINT or
    SIGTERM as a node does), else 0."""
    if code < 0:
        return -code
    if code in (128 + signal.SIGINT, 128 + signal.SIGTERM):
        return code - 128
    return 0


def describe_exit(code: int) -> str:
    """``was killed by signal 9``, ``exited on SIGINT (code 130)``, ``exited with code 1``."""
    if code < 0:
        return f"was killed by signal {-code}"
    if code in (128 + signal.SIGINT, 128 + signal.SIGTERM):
        return f"exited on {signal.Signals(code - 128).name} (code {code})"
    return f"exited with code {code}"


class Children:
    """Every process this launcher started (a node's first, a swap's or a restart's)."""

    def __init__(self, data_ports: tuple[int, int] | None = None) -> None:
        #: ``--data-ports``: the node processes started here bind their data sockets there.
        self.data_ports = data_ports
        self.processes: dict[int, subprocess.Popen] = {}
        #: Pids whose exit has been reported (see :meth:`exited`).
        self.reported: set[int] = set()
        #: Pids this launcher sent a signal (a kill, the shutdown ladder): a signal ending one
        #: of them is ours, not a crash.
        self.signalled: set[int] = set()

    def start(self, command: list[str]) -> subprocess.Popen:
        """Start a node process of this run: its own session (Ctrl-C reaches the launcher
        only), and it knows its launcher (it exits if the launcher dies)."""
        env = dict(os.environ, CATBUS_PARENT_PID=str(os.getpid()))
        if self.data_ports is not None:
            command = [*command, "--data-ports", "%d-%d" % self.data_ports]
        process = subprocess.Popen(command, env=env, start_new_session=True,
                                   stdin=subprocess.DEVNULL)
        self.processes[process.pid] = process
        return process

    def exited(self) -> list[tuple[int, str, int]]:
        """The processes that exited since the last call: ``(pid, how, signal)``; the signal
        that ended it if catbus did not send it (an abort, a kill from outside), else 0."""
        found = []
        for pid, process in self.processes.items():
            code = process.poll()
            if code is not None and pid not in self.reported:
                self.reported.add(pid)
                ours = pid in self.signalled
                found.append((pid, describe_exit(code), 0 if ours else exit_signal(code)))
        return found

    def kill(self, pid: int) -> None:
        """SIGKILL one of ours (stuck or lost: its restart is waiting for it to go)."""
        process = self.processes.get(pid)
        if process is not None and process.poll() is None:
            self.signalled.add(pid)
            process.send_signal(signal.SIGKILL)

    def returncode(self, pid: int) -> int | None:
        process = self.processes.get(pid)
        return None if process is None else process.returncode

    def stop_all(self, waiting: Callable[[], None]) -> None:
        """Stop every child: the caller has sent ``stop``; then SIGINT, SIGTERM and SIGKILL,
        each after a grace period; ``waiting`` runs while the ladder waits (the registry goes
        on reading the nodes' last words)."""
        processes = list(self.processes.values())
        ladder = [(None, STOP_GRACE), (signal.SIGINT, SIGNAL_GRACE),
                  (signal.SIGTERM, SIGNAL_GRACE), (signal.SIGKILL, SIGNAL_GRACE)]
        for sig, grace in ladder:
            alive = [c for c in processes if c.poll() is None]
            if not alive:
                break
            for child in alive:
                if sig is not None:
                    self.signalled.add(child.pid)
                    try:
                        child.send_signal(sig)
                    except ProcessLookupError:
                        pass
            until = time.monotonic() + grace
            while time.monotonic() < until and any(c.poll() is None for c in alive):
                waiting()
        for child in processes:
            child.wait()


__all__ = ["Children", "describe_exit", "exit_signal", "STOP_GRACE", "SIGNAL_GRACE"]
