"""Two small nodes to see the bus work (launch/demo.yaml): a talker and a listener."""

from __future__ import annotations

from typing import Any

import numpy as np

from catbus import Node, Param


class Talker(Node):
    """Publishes a counter and a small noisy array on ``~/chatter``."""

    outputs = ["~/chatter"]
    params = {"noise": Param(float, 0.1, "standard deviation of the array's noise")}
    period = 0.05

    def setup(self, params: dict[str, Any]) -> None:
        self.noise = params["noise"]
        self.count = 0

    def step(self, t: float, inputs: dict[str, Any]) -> dict[str, Any]:
        self.count += 1
        values = np.arange(4.0) + self.rng.normal(0.0, self.noise, 4)
        return {"~/chatter": {"count": self.count, "t": t, "values": values}}


class Listener(Node):
    """Reads the talker and publishes the running mean of what it heard on ``~/mean``."""

    inputs = ["talker/chatter"]
    outputs = ["~/mean"]
    period = 0.1

    def setup(self, params: dict[str, Any]) -> None:
        self.total = np.zeros(4)
        self.heard = 0

    def step(self, t: float, inputs: dict[str, Any]) -> dict[str, Any] | None:
        message = inputs["talker/chatter"]
        if message is None:
            return None
        self.heard += 1
        self.total += message["values"]
        return {"~/mean": {"heard": self.heard, "mean": self.total / self.heard}}
