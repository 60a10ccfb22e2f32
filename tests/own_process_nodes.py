"""A simulator that allows one simulation per process, as some C-library simulators do, for
tests/test_one_per_process.py: a second ``setup`` in one process raises its own error."""

from __future__ import annotations

import os

from catbus import Node, Param

#: Set by the first simulation of this process.
_simulated: list[int] = []


class OneSim(Node):
    one_per_process = True
    outputs = ["~/state"]
    period = 0.01
    params = {"fail": Param(bool, False, "raise in the step of tick 2"),
              "gain": Param(float, 1.0, "reported back")}

    def setup(self, params):
        if _simulated:
            raise RuntimeError("simulator: already initialised in this process")
        _simulated.append(os.getpid())
        self.fail, self.gain = params["fail"], params["gain"]

    def step(self, t, inputs):
        if self.fail and self.tick == 2:
            raise ValueError("the simulation diverged")
        self.report(pid=os.getpid(), gain=self.gain)
        return {"~/state": {"tick": self.tick}}
