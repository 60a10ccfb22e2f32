"""Nodes for tests/test_logs.py: a talker that logs at INFO and DEBUG every step (and in setup
and close), and a reactive listener that logs what it hears."""

from __future__ import annotations

from typing import Any

from catbus.node import Node


class Talker(Node):
    outputs = ["~/out"]
    period = 0.01

    def setup(self, params: dict[str, Any]) -> None:
        self.log.info("setting up")

    def step(self, t: float, inputs: dict[str, Any]) -> dict[str, Any]:
        self.log.info("tick %d", self.tick)
        self.log.debug("detail %d", self.tick)
        return {"~/out": {"n": self.tick}}

    def close(self) -> None:
        self.log.info("closing")


class Listener(Node):
    inputs = ["talker/out"]
    period = None

    def on_message(self, topic: str, message: Any) -> None:
        self.log.warning("heard %d", message["n"])
