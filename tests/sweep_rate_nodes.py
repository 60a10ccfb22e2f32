"""A node for tests/test_sweep.py's summary of boolean scores and float parameters written as
text: it reports ``success`` (a boolean: false for seeds divisible by 3), ``distance`` (a number)
and the ``threshold`` it was given (default ``float("inf")``)."""

from __future__ import annotations

from catbus import Node, Param


class Trial(Node):
    outputs = ["~/state"]
    period = 0.01
    params = {"threshold": Param(float, float("inf"), "a float whose default is infinite")}

    def setup(self, params):
        self.threshold = params["threshold"]

    def step(self, t, inputs):
        self.report(success=self.seed % 3 != 0, distance=float(self.seed),
                    threshold=str(self.threshold))
        return {"~/state": {"tick": self.tick}}
