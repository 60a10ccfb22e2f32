"""Trivial nodes for ``bench/step.py``: the shape of flat_evade with no work in any node.

``TrivialEnv`` publishes a small message (the transport benchmark's: a dict with a 4-float array
and a few scalars) to ``a1/obs`` and ``a2/obs`` every tick and reads ``a1/action`` and
``a2/action``; two ``TrivialAgent`` instances named ``a1`` and ``a2`` answer every observation;
``NullRecorder`` is shaped like the built-in recorder (reactive, subscribed to ``*``, raw frames
in schedule order) but writes nothing. What remains is the cost of catbus's lockstep itself, which
``bench/raw_lockstep.py`` compares with a hand-written pyzmq lockstep of the same four processes.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, Sequence

from catbus.node import Input, Node
from catbus.params import Param
from bench.transport_nodes import small_message


class CpuMeter:
    """CPU time (user and system, all threads of this process, ZeroMQ's I/O thread included)
    and wall time between the first and the latest :meth:`mark`: where a lockstep spends its
    processor, per process. One ``os.times()`` per step; the raw baseline does the same."""

    def __init__(self) -> None:
        self.first: tuple[float, float, float] | None = None
        self.last: tuple[float, float, float] | None = None
        self.marks = 0

    def mark(self) -> None:
        times = os.times()
        now = (times.user, times.system, time.perf_counter())
        if self.first is None:
            self.first = now
        self.last = now
        self.marks += 1

    def result(self) -> dict[str, float]:
        if self.first is None or self.last is None:
            return {"user_s": 0.0, "system_s": 0.0, "wall_s": 0.0, "marks": 0}
        return {"user_s": self.last[0] - self.first[0], "system_s": self.last[1] - self.first[1],
                "wall_s": self.last[2] - self.first[2], "marks": self.marks}

    def write(self, path: str) -> None:
        if path:
            with open(path, "w") as file:
                json.dump(self.result(), file)


_CPU_PARAM = {"cpu_out": Param(str, "", "JSON file for this process's CPU time (optional)")}


class TrivialEnv(Node):
    inputs = ["a1/action", "a2/action"]
    outputs = ["a1/obs", "a2/obs"]
    period = 0.01
    params = _CPU_PARAM

    def setup(self, params: dict[str, Any]) -> None:
        self.tick = 0
        self.cpu, self.cpu_out = CpuMeter(), params["cpu_out"]

    def step(self, t: float, inputs: dict[str, Any]) -> dict[str, Any]:
        self.cpu.mark()
        tick = self.tick
        self.tick += 1
        return {"a1/obs": small_message(tick), "a2/obs": small_message(tick)}

    def close(self) -> None:
        self.cpu.write(self.cpu_out)


class TrivialAgent(Node):
    inputs = ["~/obs"]
    outputs = ["~/action"]
    period = 0.01
    params = _CPU_PARAM

    def setup(self, params: dict[str, Any]) -> None:
        self.cpu, self.cpu_out = CpuMeter(), params["cpu_out"]

    def step(self, t: float, inputs: dict[str, Any]) -> dict[str, Any]:
        self.cpu.mark()
        obs = inputs["~/obs"]
        return {"~/action": small_message(obs["seq"] if obs is not None else -1)}

    def close(self) -> None:
        self.cpu.write(self.cpu_out)


class NullRecorder(Node):
    """Receives every message like the recorder does, and does nothing with it."""

    inputs = [Input("*", "all")]
    period = None
    wants_raw = True
    params = _CPU_PARAM

    def setup(self, params: dict[str, Any]) -> None:
        self.cpu, self.cpu_out = CpuMeter(), params["cpu_out"]

    def on_raw(self, topic: str, header: Any, payload: bytes, buffers: Sequence[Any]) -> None:
        self.cpu.mark()

    def close(self) -> None:
        self.cpu.write(self.cpu_out)


class TinyEnv(Node):
    """The env of bench/step.py's inline-overhead row: publishes one small dict per agent and
    does nothing else (no clock read, no array), so what is timed is the framework."""

    inputs = ["a1/action", "a2/action"]
    outputs = ["a1/obs", "a2/obs"]
    period = 0.01

    def setup(self, params: dict[str, Any]) -> None:
        self.tick = 0

    def step(self, t: float, inputs: dict[str, Any]) -> dict[str, Any]:
        self.tick += 1
        return {"a1/obs": {"seq": self.tick, "x": 0.5}, "a2/obs": {"seq": self.tick, "x": 0.5}}


class TinyAgent(Node):
    """An agent of the inline-overhead row: answers each observation with a small dict."""

    inputs = ["~/obs"]
    outputs = ["~/action"]
    period = 0.01

    def step(self, t: float, inputs: dict[str, Any]) -> dict[str, Any]:
        obs = inputs["~/obs"]
        return {"~/action": {"seq": obs["seq"] if obs is not None else -1, "u": 1.0}}


def launch(steps: int, record: str | None = None, null_recorder: bool = True,
           cpu_dir: str | None = None) -> dict[str, Any]:
    """The trivial run as a launch dict: env, a1, a2 and either the null recorder or, with
    ``record``, catbus's MCAP recorder. With ``cpu_dir``, each trivial node writes its CPU time
    to ``cpu_dir/<name>.json``."""
    def params(name: str) -> dict[str, Any]:
        return {"cpu_out": os.path.join(cpu_dir, f"{name}.json")} if cpu_dir else {}

    nodes: dict[str, Any] = {
        "env": {"class": "bench.trivial_nodes:TrivialEnv", "params": params("env")},
        "a1": {"class": "bench.trivial_nodes:TrivialAgent", "params": params("a1")},
        "a2": {"class": "bench.trivial_nodes:TrivialAgent", "params": params("a2")},
    }
    if null_recorder and record is None:
        nodes["rec"] = {"class": "bench.trivial_nodes:NullRecorder", "params": params("rec")}
    document: dict[str, Any] = {"name": "trivial", "mode": "stepped", "steps": steps,
                                "nodes": nodes}
    if record is not None:
        document["record"] = record
    return document
