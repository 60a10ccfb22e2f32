"""Nodes for the live-parameter tests (``tests/test_params_live.py``): ``Gain`` publishes
``{"n": count, "x": gain * count}`` every period and takes a new ``gain`` live
(``on_params``); ``Fixed`` is the same without ``on_params`` (it refuses live changes)."""

from __future__ import annotations

from typing import Any

from catbus.node import Node
from catbus.params import Param


class Fixed(Node):
    """Publishes ``gain * count`` on ``~/out``; no ``on_params``."""

    outputs = ["~/out"]
    params = {"gain": Param(float, 1.0, "scale of x"),
              "limits": {"high": Param(float, 10.0, "a nested parameter")}}
    period = 0.01

    def setup(self, params: dict[str, Any]) -> None:
        self.gain = params["gain"]
        self.n = 0

    def step(self, t: float, inputs: dict[str, Any]) -> dict[str, Any]:
        self.n += 1
        return {"~/out": {"n": self.n, "x": self.gain * self.n, "tick": self.tick}}


class Gain(Fixed):
    """:class:`Fixed` that takes a new ``gain`` live; ``self.changes`` counts the calls."""

    def setup(self, params: dict[str, Any]) -> None:
        super().setup(params)
        self.changes = 0

    def on_params(self, changed: dict[str, Any]) -> None:
        self.changes += 1
        if "gain" in changed:
            self.gain = changed["gain"]


class Shaped(Gain):
    """Its outputs come from its ``names`` parameter: a live change of it is refused."""

    params = {**Gain.params, "names": Param(list, ["out"], "its outputs")}

    @classmethod
    def declared_outputs(cls, params: dict[str, Any]) -> list[str]:
        return [f"~/{name}" for name in params["names"]]
