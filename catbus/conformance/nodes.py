"""The catbus nodes the kit puts around the node under test, and the class that stands for it.

* :class:`Feeder` publishes what the node reads (by default the demo talker's message), one
  feeder per declared input;
* :class:`Reader` reads the node's first output and publishes how many messages it has had, so
  that a recording shows *when* the node's data reached a reader, not only what it was;
* :func:`stand_in` makes the class the launch file names for the node: the launcher checks
  topics against a class, and the node in another language has none.

Both kit nodes sleep a random 0 to ``jitter`` seconds in every step, from the operating system's
randomness rather than the run's seed: two runs then differ in timing, which is the point of
comparing their recordings. The feeder can also hold one step (``gate``) until the kit says go,
so the kit can probe the node while it waits, started, for that step.
"""

from __future__ import annotations

import random
import time
from typing import Any, Sequence

import numpy as np

from catbus.node import Input, Node
from catbus.params import Param

_timing = random.SystemRandom()


def jitter(seconds: float) -> None:
    """Sleep a random time up to ``seconds``."""
    if seconds > 0:
        time.sleep(_timing.uniform(0.0, seconds))


class Gate:
    """A one-time wait on the kit: a PULL socket connected to the kit's PUSH at ``endpoint``;
    :meth:`wait` returns when the kit sends, or after ``timeout`` seconds."""

    def __init__(self, endpoint: str, timeout: float) -> None:
        import zmq

        self.timeout = timeout
        self.context = zmq.Context()
        self.socket = self.context.socket(zmq.PULL)
        self.socket.linger = 0
        self.socket.connect(endpoint)
        self.opened = False

    def wait(self) -> None:
        if not self.opened:
            self.opened = True
            if self.socket.poll(self.timeout * 1000):
                self.socket.recv()

    def close(self) -> None:
        self.socket.close()
        self.context.term()


class KitNode(Node):
    """What both kit nodes share: the random delay, the gate, ending the episode."""

    params = {
        "jitter": Param(float, 0.0, "sleep a random 0..jitter seconds in every step"),
        "gate": Param(str, "", "the kit's PUSH endpoint to wait on once ('': none)"),
        "gate_tick": Param(int, 0, "the tick whose step waits on the gate"),
        "gate_timeout": Param(float, 5.0, "seconds the gate waits at most"),
        "end_at": Param(int, -1, "end the episode at this tick (-1: never)"),
    }

    def setup(self, params: dict[str, Any]) -> None:
        self.delay = params["jitter"]
        self.gate_tick = params["gate_tick"]
        self.gate = Gate(params["gate"], params["gate_timeout"]) if params["gate"] else None
        self.end_at = params["end_at"]

    def before_step(self) -> None:
        jitter(self.delay)
        if self.gate is not None and self.tick >= self.gate_tick:
            self.gate.wait()
        if 0 <= self.end_at <= self.tick:   # >=: a late parallel node skips cycles
            self.end_episode(f"{self.name} ended the episode at tick {self.tick} (the kit)")

    def close(self) -> None:
        if self.gate is not None:
            self.gate.close()


class Feeder(KitNode):
    """Publishes ``{"count", "t", "values": float64[4]}`` on ``~/out``, as ``nodes.demo:Talker``
    does (noise from the node's seeded generator: the same in every run)."""

    outputs = ["~/out"]
    period = 0.05

    def setup(self, params: dict[str, Any]) -> None:
        super().setup(params)
        self.count = 0

    def step(self, t: float, inputs: dict[str, Any]) -> dict[str, Any]:
        self.before_step()
        self.count += 1
        values = np.arange(4.0) + self.rng.normal(0.0, 0.3, 4)
        return {"~/out": {"count": self.count, "t": t, "values": values}}


class Reader(KitNode):
    """Reads ``in`` (every message since its previous step) and publishes on ``~/count`` how
    many it has had so far."""

    inputs = [Input("in", "all")]
    outputs = ["~/count"]
    period = 0.05

    def setup(self, params: dict[str, Any]) -> None:
        super().setup(params)
        self.count = 0

    def step(self, t: float, inputs: dict[str, Any]) -> dict[str, Any]:
        self.before_step()
        self.count += len(inputs["in"])
        return {"~/count": {"count": self.count}}


def stand_in(name: str, inputs: Sequence[Sequence[str]], outputs: Sequence[Sequence[str]],
             period: float | None) -> type[Node]:
    """A class declaring what the node under test registered (``[[declared, topic, policy],
    ...]``, ``[[declared, topic], ...]``, its period), for the launch file's checks. Only the
    kit's process sees it: the node is ``remote``, nobody starts or imports it."""
    declared_inputs = [Input(row[0], row[2] if row[2] in ("latest", "all") else "latest")
                       for row in inputs]
    return type(f"StandIn_{name}", (Node,), {
        "__module__": __name__, "__doc__": f"The node under test, {name}, as it registered.",
        "inputs": declared_inputs, "outputs": [row[0] for row in outputs], "period": period})


__all__ = ["Feeder", "Reader", "KitNode", "Gate", "stand_in", "jitter"]
