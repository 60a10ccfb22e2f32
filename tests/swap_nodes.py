"""Small nodes for the hot-swap and restart tests (``tests/test_swap.py``).

``Counter`` counts its steps and carries the count across a swap (``snapshot``/``restore``);
``PlainCounter`` publishes the same topic but keeps no state across processes; ``Echo`` is
stateless (its output depends on its input only), so a restarted one equals the one it
replaces. The failing variants fail where their name says, for the swaps that must fail.
"""

from __future__ import annotations

from typing import Any

from catbus import Node, Param


class Counter(Node):
    period = 0.01
    outputs = ["~/count"]
    params = {"offset": Param(int, 0, "added to every count")}

    def setup(self, params: dict[str, Any]) -> None:
        self.offset = params["offset"]
        self.count = 0

    def step(self, t: float, inputs: dict[str, Any]) -> dict[str, Any]:
        self.count += 1
        return {"~/count": {"count": self.count, "value": self.count + self.offset,
                            "tick": self.tick}}

    def snapshot(self) -> dict[str, Any]:
        return {"count": self.count}

    def restore(self, state: dict[str, Any]) -> None:
        self.count = state["count"]


class PlainCounter(Counter):
    """Counter without state across processes (no snapshot/restore): restarts from 0."""

    snapshot = None   # type: ignore[assignment]
    restore = None    # type: ignore[assignment]


class CounterFailingSetup(Counter):
    def setup(self, params: dict[str, Any]) -> None:
        raise RuntimeError("this replacement cannot start")


class CounterFailingFirstStep(Counter):
    def step(self, t: float, inputs: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError("this replacement fails in its first step")


class Echo(Node):
    """Stateless: publishes its input's value doubled, and the tick it saw it at."""

    period = 0.01
    inputs = ["~/in"]
    outputs = ["~/out"]

    def step(self, t: float, inputs: dict[str, Any]) -> dict[str, Any]:
        seen = inputs["~/in"]
        return {"~/out": {"value": None if seen is None else 2 * seen["value"],
                          "from_tick": None if seen is None else seen["tick"],
                          "tick": self.tick}}


class Other(Node):
    """Declares other topics than Counter: cannot replace it."""

    period = 0.01
    outputs = ["~/something_else"]

    def step(self, t: float, inputs: dict[str, Any]) -> dict[str, Any]:
        return {}


class CounterSlowToStartAsReplacement(Counter):
    """Counter whose replacement process takes long to start: its module sleeps at import in
    a process started with ``--replace`` (the launcher, which imports it to check the swap, is
    not), so a test can kill the replacement before it registers."""


def _slow_when_replacing() -> None:
    import sys
    import time

    if "--replace" in sys.argv and "tests.swap_nodes:CounterSlowToStartAsReplacement" in sys.argv:
        time.sleep(60)


_slow_when_replacing()
