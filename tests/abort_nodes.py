"""A node whose process is killed by a signal after it has said done (``tests/test_control_plane_
runs.py``): an abort in a process's last moments, as libzmq's assertions do."""

from __future__ import annotations

import atexit
import os
import signal
from typing import Any

from catbus import Node


class AbortsAtExit(Node):
    period = 0.01
    outputs = ["~/n"]

    def setup(self, params: dict[str, Any]) -> None:
        # After the node's last word (done) has gone out, as the interpreter exits.
        atexit.register(os.kill, os.getpid(), signal.SIGABRT)

    def step(self, t: float, inputs: dict[str, Any]) -> dict[str, Any]:
        return {"~/n": self.tick}
