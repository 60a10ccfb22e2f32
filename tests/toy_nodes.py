"""Tiny nodes for tests: fast, deterministic, and small enough to reason about in an assertion.

``Talker`` publishes a counter on ``~/out``; ``Listener`` reads ``talker/out`` (the default name
of a Talker instance); ``Relay`` forwards ``~/in`` to ``~/out`` as messages arrive; ``Tap`` reads
every topic, like the recorder. Other test modules reuse them, so keep their behaviour stable.
"""

from __future__ import annotations

from typing import Any

from catbus.node import Input, Node
from catbus.params import Param


class Talker(Node):
    """Publishes ``{"n": count, "x": gain * count, "t": t}`` every period; may end the episode."""

    outputs = ["~/out"]
    params = {
        "gain": Param(float, 1.0, "scale of x"),
        "nested": {"k": Param(int, 3, "a nested parameter, for override tests")},
        "stop_after": Param(int, 0, "end the episode after this many steps (0: never)"),
    }
    period = 0.1

    def setup(self, params: dict[str, Any]) -> None:
        self.gain = params["gain"]
        self.stop_after = params["stop_after"]
        self.n = 0

    def step(self, t: float, inputs: dict[str, Any]) -> dict[str, Any]:
        message = {"n": self.n, "x": self.gain * self.n, "t": t}
        self.n += 1
        if self.stop_after and self.n >= self.stop_after:
            self.end_episode(f"{self.name} said {self.n} things")
        return {"~/out": message}


class Listener(Node):
    """Keeps what it hears on ``talker/out`` (``self.heard``) and publishes how much on ``~/count``."""

    inputs = ["talker/out"]
    outputs = ["~/count"]
    period = 0.1

    def setup(self, params: dict[str, Any]) -> None:
        self.heard: list[Any] = []

    def step(self, t: float, inputs: dict[str, Any]) -> dict[str, Any]:
        message = inputs["talker/out"]
        if message is not None:
            self.heard.append(message)
        return {"~/count": len(self.heard)}


class Relay(Node):
    """Reactive (no period): forwards every message on ``~/in`` to ``~/out``, scaled."""

    inputs = [Input("~/in", "all")]
    outputs = ["~/out"]
    params = {"scale": Param(float, 1.0)}
    period = None

    def setup(self, params: dict[str, Any]) -> None:
        self.scale = params["scale"]

    def on_message(self, topic: str, message: Any) -> dict[str, Any]:
        if isinstance(message, dict) and "x" in message:
            message = {**message, "x": message["x"] * self.scale}
        return {"~/out": message}


class Tap(Node):
    """Reactive, reads every topic (``*``, policy ``all``) and counts messages per topic."""

    inputs = [Input("*", "all")]
    period = None

    def setup(self, params: dict[str, Any]) -> None:
        self.counts: dict[str, int] = {}

    def on_message(self, topic: str, message: Any) -> None:
        self.counts[topic] = self.counts.get(topic, 0) + 1


class NotANode:
    """A class that is not a Node, for the loader's error path."""


class BadPeriod(Talker):
    """Declares an impossible period, for the loader's error path."""

    period = -1.0  # type: ignore[assignment]


class BadOutput(Talker):
    """Declares an invalid topic name, for the loader's error path."""

    outputs = ["~/has space"]
