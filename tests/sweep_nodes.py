"""Tiny nodes for tests/test_sweep.py: a score that is a function of the seed and a parameter,
and failures on demand (for one seed only, so the rest of a sweep runs normally)."""

from __future__ import annotations

import ctypes
import os
import signal
import threading

from catbus import Node, Param


class Scored(Node):
    """Reports ``score = 10 * seed + gain`` at every step; ``fail`` at tick 2 of seed
    ``fail_seed``: raise, hang, segv (SIGSEGV to itself), exit (``os._exit(3)``)."""

    outputs = ["~/state"]
    params = {"gain": Param(float, 1.0, "added to the score"),
              "fail": Param(str, "none", "none, raise, hang, segv, exit"),
              "fail_seed": Param(int, -1, "the seed that fails")}
    period = 0.01

    def setup(self, params):
        self.gain, self.fail, self.fail_seed = params["gain"], params["fail"], params["fail_seed"]

    def step(self, t, inputs):
        if self.tick == 2 and self.seed == self.fail_seed:
            if self.fail == "raise":
                raise RuntimeError(f"boom at seed {self.seed}")
            if self.fail == "hang":
                threading.Event().wait()
            if self.fail == "segv":
                os.kill(os.getpid(), signal.SIGSEGV)
            if self.fail == "cstring":
                ctypes.string_at(0)
            if self.fail == "exit":
                os._exit(3)
        self.report(score=10 * self.seed + self.gain, pid=os.getpid())
        return {"~/state": {"tick": self.tick}}


class OwnProcess(Scored):
    """Asks a sweep for a fresh worker process per episode."""

    one_per_process = True


class Listener(Node):
    """Reads ``env/state`` (a second node, so stepped runs have node processes to clean up)."""

    inputs = ["env/state"]
    period = 0.01

    def step(self, t, inputs):
        return None
