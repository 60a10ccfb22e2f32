"""``catbus topic pub``: publishing one topic into a parallel run from the command line.

The publisher is a node of its own (:class:`TopicPublisher`), run in this process by the same
runtime every node uses: it registers with the run's registry, which admits it as a *guest*
(:mod:`catbus.control.guests`: parallel runs only, on a topic no node publishes), the topic's
readers connect to it as they connect to any publisher (the hello barrier: its first message
is not lost), and it leaves with a ``done`` like any node. So what it sends is recorded, shows
in ``catbus topic list|echo`` and counts in the run's summary, and nothing in a node tells it
from a launch-file publisher.

VALUE is YAML flow text (``'{control: [[1.0], [0.0]]}'``) sent as plain msgpack values: maps,
lists, numbers, strings. ``numpy=True`` turns every rectangular list of numbers into a float64
array, for readers that do array arithmetic on what they receive (a reader that calls
``np.asarray`` works either way).
"""

from __future__ import annotations

import os
import re
import signal
from typing import Any, Iterable

from catbus.control.guests import GUEST_CLASS
from catbus.errors import CatbusError
from catbus.node import Node


class TopicPublisher(Node):
    """Publishes :attr:`value` on ``~/out`` (remapped to the topic) every period, :attr:`count`
    times (None: until the run ends or the process is stopped), then leaves the run."""

    outputs = ["~/out"]
    period = 1.0
    #: Set on a subclass made for one command (:func:`publisher_class`).
    value: Any = None
    count: int | None = None

    def setup(self, params: dict[str, Any]) -> None:
        self.sent = 0

    def step(self, t: float, inputs: dict[str, Any]) -> dict[str, Any]:
        from catbus.runtime.orders import Stopped

        if self.count is not None and self.sent >= self.count:
            raise Stopped()   # leave the run as a stopped node does: done, code 0
        self.sent += 1
        return {"~/out": self.value}


def publisher_class(value: Any, count: int | None, rate: float) -> type[TopicPublisher]:
    """A :class:`TopicPublisher` for one command: its message, count and period."""
    return type("TopicPublisher", (TopicPublisher,),
                {"value": value, "count": count, "period": 1.0 / rate,
                 "__module__": TopicPublisher.__module__})


def parse_value(text: str, numpy: bool = False) -> Any:
    """``text`` (YAML flow) as the message to publish; ``numpy``: lists of numbers as arrays.

    Raises:
        CatbusError: ``text`` is not YAML.
    """
    import yaml

    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        problem = str(exc).splitlines()[0]
        raise CatbusError(f"topic pub: VALUE {text!r} is not YAML ({problem}); quote it, e.g. "
                          f"'{{control: [[1.0], [0.0]]}}'") from None
    return as_arrays(value) if numpy else value


def _numbers(value: Any) -> bool:
    if isinstance(value, list):
        return bool(value) and all(_numbers(item) for item in value)
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def as_arrays(value: Any) -> Any:
    """Every rectangular list of numbers in ``value`` as a float64 numpy array."""
    import numpy as np

    if isinstance(value, list) and _numbers(value):
        try:
            return np.array(value, dtype=np.float64)
        except ValueError:   # ragged: not an array
            pass
    if isinstance(value, list):
        return [as_arrays(item) for item in value]
    if isinstance(value, dict):
        return {key: as_arrays(item) for key, item in value.items()}
    return value


def guest_name(topic: str, taken: Iterable[str] = ()) -> str:
    """The publisher's node name for ``topic``: ``pub_`` and the topic as a name
    (``robot/control`` -> ``pub_robot_control``), with ``_2``, ``_3`` ... if a node of the run
    has it (``taken``), e.g. an earlier ``topic pub`` of the same topic. A new name, not a new
    process of the old one: readers treat a later process of a name as a restart and drop
    the ticks its predecessor had sent, and each ``topic pub`` counts its ticks from 0."""
    base = "pub_" + (re.sub(r"[^A-Za-z0-9_]", "_", topic).strip("_") or "topic")
    taken = set(taken)
    name, number = base, 1
    while name in taken:
        number += 1
        name = f"{base}_{number}"
    return name


def publish_problem(graph: dict[str, Any], topic: str) -> str | None:
    """Why ``topic`` cannot be published into the run of ``graph`` (a
    :func:`~catbus.client.runs.query_graph` answer), or None: the control plane checks the
    same, this says it before anything connects."""
    mode = graph.get("mode")
    if mode != "parallel":
        return (f"the run is {mode}: only a parallel run takes a publisher from outside its "
                f"launch file (a {mode} run's schedule is fixed before it starts; put a node "
                f"that publishes {topic} in the launch file, or replay a recording with "
                f"catbus play)")
    from catbus.topics import validate_topic

    problem = validate_topic(topic)
    if problem is not None:
        return problem
    for node in graph.get("nodes", []):
        if topic in (row[1] for row in node.get("outputs", [])):
            guest = node.get("cls") == GUEST_CLASS
            if guest and node.get("state") in ("done", "failed"):
                continue   # an earlier topic pub that has left
            return (f"{topic} is published by {node['name']}"
                    f"{' (another catbus topic pub)' if guest else ''}; a topic has one "
                    f"publisher: publish on a topic no node publishes")
    return None


def publish(run: dict[str, Any], topic: str, value: Any, *, rate: float = 1.0,
            count: int | None = None, keys: Any = None, timeout: float = 10.0,
            name: str | None = None) -> tuple[int, int]:
    """Join ``run`` (a :func:`~catbus.client.runs.find_run` result) as a guest publisher of
    ``topic`` named ``name`` (default: :func:`guest_name`) and publish ``value`` ``rate`` times
    a second, ``count`` times (None: until the run ends or a signal). Returns ``(messages sent,
    exit code)``: 0 when it left cleanly, 128 + the signal that stopped it.

    Raises:
        CatbusError: The registry refused it (the reason), or did not answer.
    """
    from catbus import security
    from catbus.runtime.process import NodeRuntime
    from catbus.runtime.signals import install_signal_handlers

    node_class = publisher_class(value, count, rate)
    name = name or guest_name(topic)
    loaded = security.load_option(keys) if isinstance(keys, (str, os.PathLike)) else keys
    runtime = NodeRuntime(node_class, name, run["registry"], class_path=GUEST_CLASS,
                          outputs=[("~/out", topic)], period=1.0 / rate,
                          registry_timeout=timeout, keys=loaded, log_level="WARNING")
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    install_signal_handlers(runtime)   # Ctrl-C: leave the run as a node does (done, 130)
    try:
        code = runtime.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    node = runtime.driver.node if runtime.driver is not None else None
    return getattr(node, "sent", 0), code


__all__ = ["TopicPublisher", "GUEST_CLASS", "publisher_class", "parse_value", "as_arrays",
           "guest_name", "publish_problem", "publish"]
