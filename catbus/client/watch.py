"""Watching a live run: seeing that it ended, and reading a topic straight from its publishers.

A tool that follows a run (``catbus topic echo|hz``, the Foxglove bridge) must end by itself when
the run does, also when its launcher was killed or it runs on another host: :class:`RunWatch`.
:func:`subscribe` connects a SUB socket straight to a topic's publishers, like any node, so
reading a topic never slows the run down through a broker.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import zmq

from catbus import security
from catbus.client.runs import client_keys, topics_of
from catbus.errors import CatbusError
from catbus.supervise.rundir import RUN_FILE
from catbus.wire import codec
from catbus.wire import messages as msg
from catbus.wire.sockets import dual_stack

#: How often a watch asks the registry whether the run is still there, and how long it may leave
#: the question unanswered before the run is taken for gone.
WATCH_EVERY = 0.5
REGISTRY_SILENCE = 3.0


class RunWatch:
    """Tells a tool watching a run (``echo``, ``hz``) that the run has ended: its run folder was
    removed (a run on this machine; the launcher removes it last), or its registry has not
    answered a ``graph?`` for :data:`REGISTRY_SILENCE` seconds (any run, also one whose launcher
    was killed, or one on another host). Cheap to call often: it asks at most every
    :data:`WATCH_EVERY` seconds and never blocks."""

    def __init__(self, run: dict[str, Any], keys: Any = None) -> None:
        self.address, self.name = run["registry"], run.get("name") or run["registry"]
        self.run_file = Path(run["folder"]) / RUN_FILE if run.get("folder") else None
        self.socket = zmq.Context.instance().socket(zmq.DEALER)
        self.socket.setsockopt(zmq.LINGER, 0)
        dual_stack(self.socket)
        self.socket.setsockopt(zmq.SNDHWM, 4)
        self.handshake = security.dial(self.socket, self.address, keys)
        self.answered = self.asked = time.monotonic()
        #: Why the run is taken for ended, once it is.
        self.reason: str | None = None

    def ended(self) -> bool:
        """Whether the run has ended (then :attr:`reason` says how it was seen)."""
        if self.reason is not None:
            return True
        now = time.monotonic()
        if self.run_file is not None and not self.run_file.exists():
            self.reason = f"run {self.name} ended"
            return True
        while self.socket.poll(0):
            try:
                msg.decode(self.socket.recv())
                self.answered = now
            except msg.MalformedMessage:
                pass
        refused = self.handshake.problem()
        if refused or now - self.answered > REGISTRY_SILENCE:
            self.reason = refused or (f"run {self.name} ended (its registry at "
                                      f"{self.address} has not answered for "
                                      f"{REGISTRY_SILENCE:g} s)")
            return True
        if now - self.asked >= WATCH_EVERY:
            self.asked = now
            try:
                self.socket.send(msg.encode(msg.GraphQuery()), zmq.NOBLOCK)
            except zmq.Again:
                pass
        return False

    def close(self) -> None:
        self.handshake.close()
        self.socket.close()


def subscribe(topic: str, run: dict[str, Any], graph: dict[str, Any], keys: Any = None
              ) -> tuple[zmq.Socket, RunWatch]:
    """A SUB socket on ``topic``'s publishers in ``graph`` (a
    :func:`~catbus.client.runs.query_graph` answer of ``run``, a
    :func:`~catbus.client.runs.find_run` result), and a watch on that run; close both.

    Raises:
        CatbusError: No node of the run publishes ``topic``.
    """
    keys = client_keys(keys)
    topics = topics_of(graph)
    if topic not in topics:
        known = ", ".join(sorted(topics)) or "none"
        raise CatbusError(f"no node publishes {topic!r} in this run (topics: {known})")
    sock = zmq.Context.instance().socket(zmq.SUB)
    sock.setsockopt(zmq.LINGER, 0)
    dual_stack(sock)
    sock.setsockopt(zmq.SUBSCRIBE, codec.topic_frame(topic))
    for endpoint, key in zip(topics[topic]["endpoints"], topics[topic]["keys"]):
        security.dial(sock, endpoint, keys, key.encode() or None).close()   # each publisher's key
    return sock, RunWatch(run, keys)


__all__ = ["RunWatch", "subscribe", "WATCH_EVERY", "REGISTRY_SILENCE"]
