"""Nodes that cannot be reproduced, for ``catbus verify RUN.mcap`` (tests/test_reproduce.py):
one draws from a generator seeded by the operating system, one publishes the wall clock. Each
reads ``source/count`` so that its step log has something to say."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from catbus import Node


class Unseeded(Node):
    period = 0.01
    inputs = ["~/in"]
    outputs = ["~/out"]

    def setup(self, params: dict[str, Any]) -> None:
        self.generator = np.random.default_rng()   # not self.rng: another stream every run

    def step(self, t: float, inputs: dict[str, Any]) -> dict[str, Any]:
        return {"~/out": {"x": float(self.generator.random()), "in": inputs["~/in"]}}


class WallClock(Node):
    period = 0.01
    inputs = ["~/in"]
    outputs = ["~/out"]

    def step(self, t: float, inputs: dict[str, Any]) -> dict[str, Any]:
        return {"~/out": {"now": time.time(), "in": inputs["~/in"]}}
