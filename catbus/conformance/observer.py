"""The kit's view of the node under test during a run, from outside the run.

A thread with two sockets of its own: a ``DEALER`` that asks the registry for the graph (where
the node publishes, what its heartbeats said: its tick, steps and state), and a ``SUB`` that
connects to the node's data endpoint and subscribes to everything. It is no member of the run:
nobody waits for it, and the node need not know of it. It sees each of the node's messages --
data, progress, ``catbus/stats`` -- with its header, which a recording does not keep.

On request it subscribes to a hello of a name that is not in the run (``catbus/hello/<probe>``)
and waits for the node's answer: a ``catbus/progress`` whose ``heard`` names the probe.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import msgpack
import zmq
from zmq.utils.monitor import recv_monitor_message

from catbus.runtime.inbox import progress_problem
from catbus.wire import codec
from catbus.wire import messages as msg
from catbus.wire.protocol import HELLO_PREFIX, PROGRESS_TOPIC, STATS_TOPIC

#: The name whose hello the observer subscribes to: no node of a kit run has it.
PROBE = "conformance_probe"
#: Seconds between two graph questions.
GRAPH_EVERY = 0.05


@dataclass(frozen=True)
class Seen:
    """One message of the node, as received: its topic, header (None if it did not read) and,
    for ``catbus/progress`` and ``catbus/stats``, the decoded payload."""

    topic: str
    header: codec.Header | None
    payload: Any = None
    problem: str | None = None

    @property
    def data(self) -> bool:
        return not self.topic.startswith("catbus/")

    @property
    def progress(self) -> list | None:
        return self.payload if self.topic == PROGRESS_TOPIC and self.problem is None else None


@dataclass
class Observation:
    """Everything the observer saw of the node in one run."""

    messages: list[Seen] = field(default_factory=list)
    #: (tick, steps, state) of the node in every graph the registry sent, in order.
    reports: list[tuple[int, int, str]] = field(default_factory=list)
    endpoint: str = ""
    started: bool = False
    #: The progress that answered the probe's hello, once it came.
    answer: list | None = None
    asked: bool = False

    def data(self) -> list[Seen]:
        return [m for m in self.messages if m.data and m.header is not None]

    def progress(self) -> list[list]:
        return [m.progress for m in self.messages if m.progress is not None]

    def finals(self) -> list[list]:
        return [p for p in self.progress() if p[4] is True]


class Observer(threading.Thread):
    """Watches node ``name`` of the run at ``bus`` until :meth:`finish`."""

    def __init__(self, bus: str, name: str) -> None:
        super().__init__(name=f"conformance-observer-{name}", daemon=True)
        self.bus = bus
        self.node = name
        self.seen = Observation()
        #: Set once the SUB's connection to the node completed its handshake (its
        #: subscription travels right behind), once any message of the node came, once the
        #: probe's hello was answered, once a heartbeat showed a tick, once it said final.
        self.connected = threading.Event()
        self.heard = threading.Event()
        self.answered = threading.Event()
        self.reported = threading.Event()   # a graph showed the node with a tick >= 0
        self.finished = threading.Event()   # its final progress came
        self._asking = threading.Event()
        self._finishing = threading.Event()
        self._guard = threading.Lock()

    # -- the kit's side ------------------------------------------------------------------------
    def ask_hello(self) -> None:
        """Subscribe to the probe's hello (the node answers it once it has started)."""
        self._asking.set()

    def finish(self) -> Observation:
        self._finishing.set()
        self.join(timeout=5)
        with self._guard:
            return self.seen

    # -- the thread ----------------------------------------------------------------------------
    def run(self) -> None:
        ctx = zmq.Context()
        dealer, sub = ctx.socket(zmq.DEALER), ctx.socket(zmq.SUB)
        for sock in (dealer, sub):
            sock.linger = 0
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        monitor = sub.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED)
        dealer.connect(self.bus)
        poller = zmq.Poller()
        for sock in (dealer, sub, monitor):
            poller.register(sock, zmq.POLLIN)
        asked_at = 0.0
        try:
            while not self._finishing.is_set():
                now = time.monotonic()
                if now - asked_at >= GRAPH_EVERY:
                    dealer.send(msg.encode(msg.GraphQuery()))
                    asked_at = now
                if self._asking.is_set() and not self.seen.asked:
                    sub.setsockopt(zmq.SUBSCRIBE, codec.topic_frame(HELLO_PREFIX + PROBE))
                    self.seen.asked = True
                events = dict(poller.poll(20))
                if monitor in events:
                    recv_monitor_message(monitor)
                    self.connected.set()
                if dealer in events:
                    self._graph(dealer.recv(), sub)
                while sub in events:
                    try:
                        frames = sub.recv_multipart(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    self._message(frames)
        finally:
            sub.disable_monitor()
            for sock in (dealer, sub, monitor):
                sock.close()
            ctx.term()

    def _graph(self, data: bytes, sub: zmq.Socket) -> None:
        try:
            graph = msg.decode(data)
        except msg.MalformedMessage:
            return
        if not isinstance(graph, msg.Graph):
            return
        entry = next((e for e in graph.nodes if e.get("name") == self.node), None)
        with self._guard:
            self.seen.started = self.seen.started or graph.started
            if entry is None:
                return
            report = (entry.get("tick", -1), entry.get("steps", 0), entry.get("state", ""))
            self.seen.reports.append(report)
            endpoint = entry.get("endpoint") or ""
            if endpoint and not self.seen.endpoint:
                self.seen.endpoint = endpoint
                sub.connect(endpoint)
        if isinstance(report[0], int) and report[0] >= 0:
            self.reported.set()

    def _message(self, frames: list[bytes]) -> None:
        try:
            topic, header_bytes, payload = codec.open_envelope(frames[0])
            header = codec.Header.unpack(header_bytes)
        except (codec.DecodeError, ValueError, TypeError, IndexError) as exc:
            seen = Seen("?", None, problem=f"not a catbus message: {exc}")
        else:
            seen = _read(topic, header, bytes(payload), frames[1:])
        with self._guard:
            self.seen.messages.append(seen)
            answer = seen.progress
            if answer is not None and answer[4] is True:
                self.finished.set()
            if answer is not None and self.seen.asked and len(answer) > 6 and \
                    isinstance(answer[6], dict) and PROBE in answer[6]:
                self.seen.answer = answer
                self.answered.set()
        self.heard.set()


def _read(topic: str, header: codec.Header, payload: bytes, buffers: list) -> Seen:
    """A received message with its payload decoded where the kit judges it."""
    if topic == PROGRESS_TOPIC:
        try:
            fields = msgpack.unpackb(payload)
        except Exception as exc:
            return Seen(topic, header, problem=f"progress payload is not msgpack: {exc}")
        problem = progress_problem(fields)
        if problem is None and fields[0] != header.publisher:
            problem = "its name is not the header's publisher"
        return Seen(topic, header, fields, problem)
    if topic == STATS_TOPIC:
        try:
            return Seen(topic, header, codec.decode_payload(payload, buffers))
        except Exception as exc:
            return Seen(topic, header, problem=f"catbus/stats payload does not decode: {exc}")
    return Seen(topic, header)


__all__ = ["Observer", "Observation", "Seen", "PROBE"]
