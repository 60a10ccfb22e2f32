"""Nodes for the node driver and lockstep tests (tests/test_node_driver.py)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from catbus.node import Node
from catbus.params import Param


class Cart(Node):
    """Publishes its step count; at tick ``block_at`` writes its pid to ``pid_file`` and blocks
    inside that step until a signal interrupts it (so it completed exactly ticks < block_at)."""

    inputs = ["controller/action"]
    outputs = ["~/state"]
    params = {"block_at": Param(int, -1, "tick at which to block"),
              "pid_file": Param(str, "", "where to write the pid when blocking")}
    period = 0.1

    def setup(self, params: dict[str, Any]) -> None:
        self.block_at, self.pid_file = params["block_at"], params["pid_file"]

    def step(self, t: float, inputs: dict[str, Any]) -> dict[str, Any]:
        if self.tick == self.block_at:
            Path(self.pid_file).write_text(str(os.getpid()))
            while True:
                time.sleep(0.05)
        return {"~/state": {"tick": self.tick}}


class Controller(Node):
    """Reads the cart, answers with an action every tick."""

    inputs = ["cart/state"]
    outputs = ["~/action"]
    period = 0.1

    def step(self, t: float, inputs: dict[str, Any]) -> dict[str, Any]:
        state = inputs["cart/state"]
        return {"~/action": {"u": 0.0 if state is None else float(state["tick"])}}


class Monitor(Node):
    """Reads both, every second tick."""

    inputs = ["cart/state", "controller/action"]
    outputs = ["~/seen"]
    period = 0.2

    def step(self, t: float, inputs: dict[str, Any]) -> dict[str, Any]:
        return {"~/seen": {"tick": self.tick}}


class TickProbe(Node):
    """Publishes what the runtime told it: its tick and whether this is the reset."""

    outputs = ["~/out"]
    period = 0.1

    def step(self, t: float, inputs: dict[str, Any]) -> dict[str, Any]:
        return {"~/out": {"tick": self.tick, "reset": self.is_reset}}


class BadOutputs(Node):
    """Returns something it cannot publish at tick 1: ``kind`` says what."""

    outputs = ["~/action"]
    params = {"kind": Param(str, "set", "set | object | undeclared")}
    period = 0.1

    def setup(self, params: dict[str, Any]) -> None:
        self.kind = params["kind"]

    def step(self, t: float, inputs: dict[str, Any]) -> dict[str, Any]:
        if self.tick < 1:
            return {"~/action": {"u": [0.0, 0.0]}}
        if self.kind == "undeclared":
            return {"~/other": {"u": 1.0}}
        bad: Any = {1, 2} if self.kind == "set" else object()
        return {"~/action": {"u": [0.0, bad]}}
