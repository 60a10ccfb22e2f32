"""Nodes for schedule tests: each says exactly what it saw, so a test can compare with a table
computed by hand from the schedule rules (docs/design.md, "Schedule semantics")."""

from __future__ import annotations

import time
from typing import Any

from catbus.node import Node
from catbus.params import Param


class Witness(Node):
    """Publishes ``{"n": its step count, "left": n seen on ~/left, "right": n seen on ~/right}``."""

    inputs = ["~/left", "~/right"]
    outputs = ["~/out"]
    period = 0.1

    def setup(self, params: dict[str, Any]) -> None:
        self.n = 0

    def step(self, t: float, inputs: dict[str, Any]) -> dict[str, Any]:
        seen = {key.removeprefix("~/"): (None if msg is None else msg["n"])
                for key, msg in inputs.items()}
        message = {"n": self.n, **seen}
        self.n += 1
        return {"~/out": message}


class Crasher(Node):
    """Raises in ``step`` at the given tick count."""

    outputs = ["~/out"]
    params = {"crash_at": Param(int, 3, "step count at which to raise")}
    period = 0.1

    def setup(self, params: dict[str, Any]) -> None:
        self.crash_at, self.n = params["crash_at"], 0

    def step(self, t: float, inputs: dict[str, Any]) -> dict[str, Any]:
        if self.n == self.crash_at:
            raise RuntimeError(f"deliberate failure at step {self.n}")
        self.n += 1
        return {"~/out": {"n": self.n}}


class Staller(Node):
    """Never returns from its step at the given count (until a signal interrupts it)."""

    outputs = ["~/out"]
    params = {"stall_at": Param(int, 2, "step count at which to hang")}
    period = 0.1

    def setup(self, params: dict[str, Any]) -> None:
        self.stall_at, self.n = params["stall_at"], 0

    def step(self, t: float, inputs: dict[str, Any]) -> dict[str, Any]:
        if self.n == self.stall_at:
            while True:
                time.sleep(0.05)
        self.n += 1
        return {"~/out": {"n": self.n}}
