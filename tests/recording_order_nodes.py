"""Nodes for ``tests/test_recording_order.py``: two independent publishers, one of which can be
made to leave the run well before the other has finished its last tick.

``Leaver`` writes its process id to ``pid_file`` in ``setup``. ``Lingerer``, given that file as
``wait_for``, waits in its last step until that process has exited -- an event (a pidfd becomes
readable), not a sleep. By then the leaver's ``catbus/stats`` (sent as it leaves, before its
final progress) is at the recorder, while the recorder cannot have delivered the last tick yet
(the lingerer has not completed it): the arrival order that used to put the leaver's statistics
first in the recording, ahead of nodes listed before it.
"""

from __future__ import annotations

import os
import select
from pathlib import Path
from typing import Any

from catbus import Node, Param

#: How long the lingerer waits for the leaver to exit before failing the run (not a timing
#: assertion: only a bound so a broken run fails instead of hanging the test).
WAIT_LIMIT_S = 60.0


class Leaver(Node):
    """Publishes its tick on ``~/out``; tells the lingerer its process id."""

    period = 0.01
    outputs = ["~/out"]
    params = {"pid_file": Param(str, "", "write this process's id here in setup ('' = no)")}

    def setup(self, params: dict[str, Any]) -> None:
        if params["pid_file"]:
            path = Path(params["pid_file"])
            partial = path.with_name(path.name + ".part")
            partial.write_text(str(os.getpid()))
            partial.replace(path)   # the reader never sees half a number

    def step(self, t: float, inputs: dict[str, Any]) -> dict[str, Any]:
        return {"~/out": {"tick": self.tick}}


class Lingerer(Node):
    """Publishes its tick on ``~/out``; in its last step, waits for the process named by the
    file ``wait_for`` to exit ('' = no wait)."""

    period = 0.01
    outputs = ["~/out"]
    params = {"wait_for": Param(str, "", "a pid file: in the last step, wait for that process "
                                         "to exit ('' = no wait)")}

    def setup(self, params: dict[str, Any]) -> None:
        self.wait_for = params["wait_for"]

    def step(self, t: float, inputs: dict[str, Any]) -> dict[str, Any]:
        if self.wait_for and self.tick == self.run_info.get("last_tick"):
            wait_for_exit(int(Path(self.wait_for).read_text()))
        return {"~/out": {"tick": self.tick}}


def wait_for_exit(pid: int) -> None:
    """Block until process ``pid`` has exited (a zombie counts): its pidfd turns readable."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return   # already gone and reaped
    try:
        readable, _, _ = select.select([fd], [], [], WAIT_LIMIT_S)
    finally:
        os.close(fd)
    if not readable:
        raise RuntimeError(f"process {pid} did not exit within {WAIT_LIMIT_S:g} s")
