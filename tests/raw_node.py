#!/usr/bin/env python3
"""A catbus node written with plain pyzmq, msgpack and numpy -- no ``import catbus`` -- from
``docs/protocol.md`` alone, to show (and test, ``tests/test_raw_node.py``) that the protocol
document is enough to join a run from any language.

It does what ``nodes.demo:Listener`` does: at every step it reads the newest message on its input
(``talker/chatter`` unless the launch file remaps it: ``{"count", "t", "values": float64[4]}``),
adds its ``values`` to a running total and publishes ``{"heard": n, "mean": total / n}`` on its
output ``<name>/mean``. Nothing is published before the first message. Its period is 0.1 s
unless the launch file says otherwise.

    python tests/raw_node.py --name listener [--bus ADDR] [--protocol 2] [--advertise IP]

Without ``--bus`` it joins the newest run on this machine (its ``run.json``). Exit codes: 0 done
(the run ended, or the registry said stop), 1 refused by the registry / registry lost / error,
130 or 143 when SIGINT or SIGTERM stopped it (gracefully: it still says ``done``).

Everything a node must do, in the order of docs/protocol.md: register, welcome, subscribe, graph,
connect, hello barrier, ready, start, run (stepped: lockstep by progress; parallel: wall-clock
period), heartbeats both ways, catbus/stats, final progress, done, close.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import zmq

# -- protocol constants (docs/protocol.md, "Constants") ---------------------------------------------
PROTOCOL_VERSION = 4
HEADER_VERSION = 3
WINDOW = 8
HEARTBEAT_INTERVAL = 0.5
REGISTRY_TIMEOUT = 10.0
EVERY_TOPIC = "*"
PROGRESS_TOPIC = "catbus/progress"
STATS_TOPIC = "catbus/stats"
HELLO_PREFIX = "catbus/hello/"
CLOSING_STATE = "closing"
EXT_NDARRAY, EXT_NPSCALAR, EXT_NDARRAY_INLINE = 1, 2, 3
INLINE_MAX_BYTES = 1024
HWM = 100_000
#: The longest this node blocks on its data socket before it looks at its control link.
WAIT_MS = 50


# -- codec (docs/protocol.md, "Data messages") ------------------------------------------------------
def topic_frame(topic: str) -> bytes:
    return topic.encode() + b"\0"


def envelope(topic: str, header: bytes, payload: bytes) -> bytes:
    """The first frame: topic, NUL, the header's length in two bytes (big-endian), header,
    payload."""
    return topic_frame(topic) + len(header).to_bytes(2, "big") + header + payload


def open_envelope(frame: bytes) -> tuple[str, bytes, bytes] | None:
    """``(topic, header, payload)`` of a first frame, or None if it is not an envelope."""
    end = frame.find(b"\0")
    if end < 0 or len(frame) < end + 3:
        return None
    stop = end + 3 + int.from_bytes(frame[end + 1:end + 3], "big")
    if stop > len(frame):
        return None
    return frame[:end].decode(errors="replace"), frame[end + 3:stop], frame[stop:]


def _descr(dtype: np.dtype) -> Any:
    return np.lib.format.dtype_to_descr(dtype)


def _dtype(descr: Any) -> np.dtype:
    def as_tuple(field: list) -> tuple:
        name, sub = field[0], field[1]
        sub = [as_tuple(f) for f in sub] if isinstance(sub, list) else sub
        return (name, sub, tuple(field[2])) if len(field) > 2 else (name, sub)

    if isinstance(descr, list):   # a structured dtype: msgpack turned its tuples into lists
        descr = [as_tuple(f) for f in descr]
    return np.lib.format.descr_to_dtype(descr)


def encode_payload(value: Any) -> tuple[bytes, list[bytes]]:
    """msgpack of ``value``; numpy arrays and scalars as extension types 1, 2 and 3."""
    buffers: list[bytes] = []

    def default(obj: Any) -> Any:
        if isinstance(obj, np.ndarray):
            if obj.dtype.hasobject:
                raise TypeError("arrays of dtype object have no wire encoding")
            if obj.nbytes <= INLINE_MAX_BYTES:
                return msgpack.ExtType(EXT_NDARRAY_INLINE, msgpack.packb(
                    [_descr(obj.dtype), list(obj.shape), obj.tobytes()]))
            buffers.append(np.ascontiguousarray(obj).tobytes())
            return msgpack.ExtType(EXT_NDARRAY, msgpack.packb(
                [_descr(obj.dtype), list(obj.shape), len(buffers) - 1]))
        if isinstance(obj, np.generic):
            return msgpack.ExtType(EXT_NPSCALAR, msgpack.packb(
                [_descr(obj.dtype), np.asarray(obj).tobytes()]))
        if isinstance(obj, tuple):
            return list(obj)
        raise TypeError(f"cannot send a value of type {type(obj).__name__}")

    # strict_types: a numpy float64 (a subclass of float) must become extension type 2, and a
    # tuple a list, exactly as catbus encodes them.
    payload = msgpack.packb(value, default=default, strict_types=True)
    return payload, buffers


def decode_payload(payload: bytes, buffers: list[bytes]) -> Any:
    def ext_hook(code: int, data: bytes) -> Any:
        if code == EXT_NDARRAY_INLINE:
            descr, shape, raw = msgpack.unpackb(data)
            return np.frombuffer(raw, dtype=_dtype(descr)).reshape(shape)
        if code == EXT_NDARRAY:
            descr, shape, index = msgpack.unpackb(data)
            return np.frombuffer(buffers[index], dtype=_dtype(descr)).reshape(shape)
        if code == EXT_NPSCALAR:
            descr, raw = msgpack.unpackb(data)
            dtype = _dtype(descr)
            if dtype.itemsize == 0:
                return dtype.type(b"" if dtype.kind in "SV" else "")
            return np.frombuffer(raw, dtype=dtype)[0]
        return msgpack.ExtType(code, data)

    return msgpack.unpackb(payload, ext_hook=ext_hook, strict_map_key=False)


def pack_header(publisher: str, incarnation: int, seq: int, tick: int, sim_time: float,
                through: int | None) -> bytes:
    return msgpack.packb([HEADER_VERSION, publisher, incarnation, seq, tick, float(sim_time),
                          time.time(), through])


def unpack_header(data: bytes) -> list | None:
    """``[publisher, incarnation, seq, tick, sim_time, wall_time, through]``, or None if the
    header is not one this node understands (then the message is dropped and counted)."""
    try:
        fields = msgpack.unpackb(data)
    except Exception:
        return None
    if type(fields) is not list or len(fields) < 8 or fields[0] != HEADER_VERSION:
        return None
    publisher, incarnation, seq, tick, sim_time, wall_time, through = fields[1:8]
    if not (type(publisher) is str and type(incarnation) is int and type(seq) is int
            and type(tick) is int and type(sim_time) in (int, float)
            and type(wall_time) in (int, float) and (through is None or type(through) is int)):
        return None
    return [publisher, incarnation, seq, tick, float(sim_time), float(wall_time), through]


# -- finding a run (docs/protocol.md, "Finding a run") ------------------------------------------
def _start_time(pid: int) -> float | None:
    """Seconds since boot the process started at (Linux), or None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_bytes().decode(errors="replace")
    except OSError:
        return None
    return int(text[text.rfind(")") + 2:].split()[19]) / os.sysconf("SC_CLK_TCK")


def newest_run() -> str:
    """The registry address of the newest live run on this machine."""
    root = Path(tempfile.gettempdir()) / f"catbus-{os.getuid()}"
    found = []
    for run_file in root.glob("*/run.json"):
        try:
            info = json.loads(run_file.read_text())
            started = _start_time(int(info["pid"]))
            # Live: that pid started no later than the launcher did (a reused pid started later).
            if started is not None and started <= float(info["created"]) + 1:
                found.append((run_file.stat().st_mtime, info["registry"]))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    if not found:
        raise SystemExit(f"raw_node: no catbus run on this machine (looked in {root}); "
                         "give --bus ADDR")
    return max(found)[1]


def data_endpoint(bus: str, name: str, advertise: str | None) -> str:
    if bus.startswith("ipc://"):
        folder = bus[len("ipc://"):].rsplit("/", 1)[0]
        return f"ipc://{folder}/{name}-{os.getpid()}.sock"
    if advertise:
        return f"tcp://{advertise}:*"
    host, _, port = bus[len("tcp://"):].rpartition(":")
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:   # the local address the kernel would use towards the registry (no packet is sent)
        probe.connect((host.strip("[]"), int(port)))
        address = probe.getsockname()[0]
    except OSError:
        address = "127.0.0.1"
    finally:
        probe.close()
    return f"tcp://{address}:*"


# -- the node's own logic: nodes.demo:Listener ----------------------------------------------------
class MeanListener:
    INPUT = "talker/chatter"     # declared input
    OUTPUT = "~/mean"            # declared output
    PERIOD = 0.1

    def __init__(self) -> None:
        self.total = np.zeros(4)
        self.heard = 0

    def step(self, t: float, message: Any) -> dict[str, Any] | None:
        if message is None:
            return None
        self.heard += 1
        self.total += message["values"]
        return {self.OUTPUT: {"heard": self.heard, "mean": self.total / self.heard}}


# -- the node process ---------------------------------------------------------------------------
class Stopped(Exception):
    """The registry said ``stop``."""


class Interrupted(BaseException):
    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.code = 128 + signum


class Refused(Exception):
    """The registry answered ``reject``, or stopped answering."""


class PeerState:
    """What this node knows of one peer's progress."""

    def __init__(self) -> None:
        self.through = -1          # complete through this tick
        self.carried: dict[str, int] = {}   # topic -> newest ``through`` in a data header
        self.end: int | None = None
        self.final = False


class RawNode:
    def __init__(self, args: argparse.Namespace) -> None:
        self.name = args.name
        self.bus = args.bus or newest_run()
        self.protocol = args.protocol
        self.logic = MeanListener()
        self.ctx = zmq.Context()
        self.dealer = self.ctx.socket(zmq.DEALER)
        self.dealer.setsockopt(zmq.LINGER, 1000)
        self.dealer.connect(self.bus)
        self.pub = self.ctx.socket(zmq.XPUB)
        self.pub.setsockopt(zmq.XPUB_VERBOSE, 1)
        self.pub.setsockopt(zmq.SNDHWM, HWM)
        self.pub.setsockopt(zmq.LINGER, 2000)
        self.pub.bind(data_endpoint(self.bus, self.name, args.advertise))
        self.endpoint = self.pub.getsockopt(zmq.LAST_ENDPOINT).decode()
        self.sub = self.ctx.socket(zmq.SUB)
        self.sub.setsockopt(zmq.RCVHWM, HWM)
        self.sub.setsockopt(zmq.LINGER, 0)
        self.poller = zmq.Poller()
        for sock in (self.dealer, self.pub, self.sub):
            self.poller.register(sock, zmq.POLLIN)
        self.last_heard = self.last_sent = time.monotonic()
        self.hellos: set[str] = set()
        self.connected: set[str] = set()
        self.graph: list[dict] | None = None
        self.graph_complete = False
        self.started: float | None = None
        self.last_progress = (-1, -1)   # (tick, through) of our last progress
        self.end_tick: int | None = None      # from the registry's ``end``
        self.stop_reason: str | None = None
        self.peers: dict[str, PeerState] = {}
        self.queue: list[tuple[int, bytes, list[bytes]]] = []   # (tick, payload, buffers)
        self.current: tuple[bytes, list[bytes]] | None = None   # newest selected input
        self.seq: dict[str, int] = {}
        self.incarnation = 1
        # statistics for ``done``
        self.steps = 0
        self.tick = -1
        self.sim_time = 0.0   # of the last step: what catbus/stats carries
        self.completed = -1
        self.overruns = 0
        self.wait_s = 0.0
        self.step_times: list[float] = []
        self.first_step: float | None = None
        self.last_step = 0.0
        self.sent = self.received = self.dropped = self.malformed = 0
        self.last_seq: dict[tuple[str, str], int] = {}
        self.state = "starting"
        self.finishing = False

    # -- control plane ----------------------------------------------------------------------
    def send(self, op: str, **fields: Any) -> None:
        self.dealer.send(msgpack.packb({"op": op, **fields}))
        self.last_sent = time.monotonic()

    def handle_control(self) -> list[dict]:
        """Read every waiting control message; act on graph/start/end/stop/reject, return all."""
        messages = []
        while True:
            try:
                data = self.dealer.recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            self.last_heard = time.monotonic()
            try:
                message = msgpack.unpackb(data, strict_map_key=False)
            except Exception:
                continue
            if not isinstance(message, dict):
                continue
            messages.append(message)
            op = message.get("op")
            if op == "reject":
                raise Refused(f"the registry refused node {self.name}: {message.get('reason')}")
            if op == "graph":
                self.on_graph(message)
            elif op == "start":
                self.started = time.monotonic() + float(message.get("delay", 0.0))
            elif op == "end":
                tick = int(message["tick"])
                self.end_tick = tick if self.end_tick is None else min(self.end_tick, tick)
            elif op == "stop":
                self.stop_reason = message.get("reason", "")
                raise Stopped()
        return messages

    def keep_alive(self) -> None:
        now = time.monotonic()
        if now - self.last_sent >= HEARTBEAT_INTERVAL:
            self.send("hb", tick=self.tick, steps=self.steps, state=self.state)
        if now - self.last_heard > REGISTRY_TIMEOUT:
            raise Refused(f"the registry at {self.bus} has been silent for "
                          f"{REGISTRY_TIMEOUT:g} s; the run is gone")

    def service(self, timeout_ms: float) -> None:
        """Wait up to ``timeout_ms`` for anything, then handle everything waiting."""
        events = dict(self.poller.poll(timeout_ms))
        if self.pub in events:
            self.read_subscriptions()
        if self.sub in events:
            self.drain_data()
        if self.dealer in events:
            self.handle_control()
        self.keep_alive()

    # -- joining ------------------------------------------------------------------------------
    def join(self) -> None:
        logic = self.logic
        self.send("register", name=self.name, pid=os.getpid(), host=socket.gethostname(),
                  cls="tests/raw_node.py (pyzmq + msgpack + numpy)", endpoint=self.endpoint,
                  period=logic.PERIOD, inputs=[[logic.INPUT, logic.INPUT, "latest"]],
                  outputs=[[logic.OUTPUT, logic.OUTPUT.replace("~", self.name, 1)]], params={},
                  protocol=self.protocol)
        deadline = time.monotonic() + REGISTRY_TIMEOUT
        welcome = None
        while welcome is None:
            if time.monotonic() > deadline:
                raise Refused(f"no answer from the registry at {self.bus} within "
                              f"{REGISTRY_TIMEOUT:g} s")
            self.poller.poll(100)
            while welcome is None:
                try:
                    data = self.dealer.recv(zmq.NOBLOCK)
                except zmq.Again:
                    break
                self.last_heard = time.monotonic()
                message = msgpack.unpackb(data, strict_map_key=False)
                if isinstance(message, dict) and message.get("op") == "welcome":
                    welcome = message
                elif isinstance(message, dict) and message.get("op") == "reject":
                    raise Refused(f"the registry refused node {self.name}: "
                                  f"{message.get('reason')}")
        # The launch file wins over what we registered: topics, period, parameters.
        self.mode = welcome["mode"]
        self.incarnation = int(welcome.get("incarnation", 1))
        self.period = welcome.get("period", logic.PERIOD)
        inputs = welcome.get("inputs") or [[logic.INPUT, logic.INPUT, "latest"]]
        outputs = welcome.get("outputs") or [[logic.OUTPUT, self.name + "/mean"]]
        self.input_topic = next(topic for declared, topic, _ in inputs if declared == logic.INPUT)
        self.output_topic = dict((d, t) for d, t in outputs)[logic.OUTPUT]
        self.schedule = welcome.get("schedule")
        self.duration = welcome.get("duration")
        self.order = list(welcome.get("order") or [])
        # Subscribe before connecting: inputs, progress, and last our hello.
        for topic in (self.input_topic, PROGRESS_TOPIC, HELLO_PREFIX + self.name):
            self.sub.setsockopt(zmq.SUBSCRIBE, topic_frame(topic))

    def on_graph(self, message: dict) -> None:
        self.graph = message["nodes"]
        self.graph_complete = bool(message.get("complete", True))
        me = self.input_topic
        mine = {self.output_topic}
        self.publishers, self.subscribers = [], []
        self.sources: dict[str, set[str]] = {}
        self.reads_from_me: dict[str, set[str]] = {}
        for node in self.graph:
            other = node["name"]
            if other == self.name:
                continue
            their_outputs = {topic for _, topic in node["outputs"]}
            their_inputs = {topic for _, topic, _ in node["inputs"]}
            if me in their_outputs:
                self.publishers.append(other)
                self.sources[other] = {me}
            reads = mine if EVERY_TOPIC in their_inputs else their_inputs & mine
            if EVERY_TOPIC in their_inputs or reads:
                self.subscribers.append(other)
            if other in self.publishers or other in self.subscribers:
                self.reads_from_me[other] = reads
                endpoint = node["endpoint"]
                if endpoint not in self.connected:
                    self.sub.connect(endpoint)
                    self.connected.add(endpoint)

    @property
    def neighbours(self) -> set[str]:
        return set(self.reads_from_me)

    def read_subscriptions(self) -> None:
        """Subscriptions arriving on our XPUB; a ``catbus/hello/X`` means X has all of its."""
        while self.pub.poll(0):
            event = self.pub.recv()
            if event[:1] == b"\x01" and event.endswith(b"\0"):
                topic = event[1:-1].decode(errors="replace")
                if topic.startswith(HELLO_PREFIX):
                    name = topic[len(HELLO_PREFIX):]
                    self.hellos.add(name)
                    if self.started is not None:
                        # A neighbour (re)subscribed mid-run (a replacement, a restart): answer
                        # with our last progress and how far we heard from it. (A full node also
                        # sends its retained messages again; this one keeps none.)
                        tick, through = self.last_progress
                        heard = self.peers[name].through if name in self.peers else -1
                        self.publish_progress(tick, through, None, False, heard={name: heard})

    def connect_and_wait_start(self) -> None:
        ready_sent = False
        while self.started is None:
            self.service(100)
            if self.graph_complete and not ready_sent and self.neighbours <= self.hellos:
                self.send("ready")
                ready_sent = True
        while time.monotonic() < self.started:
            self.service(max(0.0, (self.started - time.monotonic()) * 1000))

    # -- data plane ---------------------------------------------------------------------------
    def drain_data(self) -> None:
        while True:
            try:
                frames = self.sub.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            self.add(frames)

    def receive_one(self) -> None:
        """Wait up to WAIT_MS for one data message, and look at everything else."""
        if self.sub.poll(WAIT_MS):
            self.add(self.sub.recv_multipart())
        self.service(0)

    def add(self, frames: list[bytes]) -> None:
        opened = open_envelope(frames[0]) if frames else None
        header = unpack_header(opened[1]) if opened is not None else None
        if header is None:
            self.malformed += 1
            return
        topic, _, payload = opened
        publisher, _incarnation, seq, tick, _sim, _wall, through = header
        if topic == PROGRESS_TOPIC:
            try:
                name, _tick, done, end, final, _counts = msgpack.unpackb(
                    payload, strict_map_key=False)
            except Exception:
                self.malformed += 1
                return
            peer = self.peers.setdefault(name, PeerState())
            peer.through = max(peer.through, done)
            if end is not None:
                peer.end = end if peer.end is None else min(peer.end, end)
            peer.final = peer.final or bool(final)
            return
        if topic.startswith(HELLO_PREFIX):
            return
        previous = self.last_seq.get((publisher, topic))
        if previous is not None and seq > previous + 1:
            self.dropped += seq - previous - 1
        self.last_seq[(publisher, topic)] = seq
        self.received += 1
        if through is not None:
            peer = self.peers.setdefault(publisher, PeerState())
            peer.carried[topic] = max(peer.carried.get(topic, -1), through)
            wanted = self.sources.get(publisher) if self.graph is not None else None
            if wanted:
                peer.through = max(peer.through, min(peer.carried.get(t, -1) for t in wanted))
        if topic == self.input_topic:
            self.queue.append((tick, payload, frames[1:]))

    def publish(self, outputs: dict[str, Any] | None, tick: int, sim_time: float,
                through: int | None) -> set[str]:
        published = set()
        for declared, value in (outputs or {}).items():
            topic = self.output_topic if declared == self.logic.OUTPUT else None
            if topic is None:
                raise ValueError(f"{declared!r} is not a declared output")
            payload, buffers = encode_payload(value)
            seq = self.seq.get(topic, 0)
            self.seq[topic] = seq + 1
            header = pack_header(self.name, self.incarnation, seq, tick, sim_time, through)
            self.pub.send_multipart([envelope(topic, header, payload), *buffers])
            self.sent += 1
            published.add(topic)
            if through is not None and through > self.last_progress[1]:
                self.last_progress = (tick, through)
        return published

    def publish_progress(self, tick: int, through: int, end: int | None, final: bool,
                         heard: dict[str, int] | None = None) -> None:
        fields = [self.name, tick, through, end, final, dict(self.seq)]
        if heard is not None:
            fields.append(heard)
        else:
            self.last_progress = (tick, max(through, self.last_progress[1]))
        payload = msgpack.packb(fields)
        header = msgpack.packb([HEADER_VERSION, self.name, self.incarnation, 0, tick, 0.0,
                                time.time(), None])
        self.pub.send(envelope(PROGRESS_TOPIC, header, payload))

    def publish_stats(self) -> None:
        """``catbus/stats`` as it leaves, before the final progress: its counters of refused
        and lost input, at the last tick it stepped (0 if none), ``through`` nil."""
        counters = {"malformed": self.malformed, "dropped": self.dropped, "duplicates": 0,
                    "received": self.received}
        payload, _ = encode_payload({"node": self.name, "incarnation": self.incarnation,
                                     "stats": counters})
        seq = self.seq.get(STATS_TOPIC, 0)
        self.seq[STATS_TOPIC] = seq + 1
        header = pack_header(self.name, self.incarnation, seq, max(self.tick, 0),
                             self.sim_time, None)
        self.pub.send(envelope(STATS_TOPIC, header, payload))

    # -- stepping -----------------------------------------------------------------------------
    def step(self, tick: int, t: float, limit: int | None, through: int | None) -> set[str]:
        """Select the input (``limit``: newest tick it may show; None: everything received),
        step, publish."""
        keep = []
        for entry in self.queue:
            if limit is None or entry[0] <= limit:
                self.current = (entry[1], entry[2])
            else:
                keep.append(entry)
        self.queue = keep
        message = None
        if self.current is not None:
            try:
                message = decode_payload(*self.current)
            except Exception:
                self.malformed += 1
                self.current = None
        self.state = f"stepping tick {tick}"
        began = time.perf_counter()
        outputs = self.logic.step(t, message)
        seconds = time.perf_counter() - began
        now = time.perf_counter()
        if self.first_step is None:
            self.first_step = now - seconds
        self.last_step = now
        self.steps += 1
        self.step_times.append(seconds)
        self.tick = tick
        self.sim_time = t
        return self.publish(outputs, tick, t, through)

    def known_end(self, last: int) -> int:
        ends = [last] + [e for e in [self.end_tick] + [p.end for p in self.peers.values()]
                         if e is not None]
        return min(ends)

    def run_stepped(self) -> None:
        schedule = self.schedule
        k = schedule["ticks_per_period"][self.name]
        last = schedule["last_tick"]
        num, den = schedule["base_tick"]
        order = schedule["order"]
        me = order.index(self.name)
        offset = {}   # peer -> the tick (relative to t) it must have completed before we step t
        for publisher in self.publishers:
            offset[publisher] = 0 if order.index(publisher) < me else -1
        for subscriber in self.subscribers:
            offset[subscriber] = max(offset.get(subscriber, -WINDOW), -WINDOW)
        # At tick t the input shows messages of ticks <= t from a publisher listed earlier in
        # the launch file, <= t - 1 from one listed later.
        source = next((p for p in self.publishers if self.input_topic in self.sources[p]), None)
        input_offset = 0 if source is not None and order.index(source) < me else -1
        tick = 0
        while tick <= self.known_end(last):
            self.state = f"waiting for tick {tick}"
            waited = time.perf_counter()
            while not all(self.peers.get(p, PeerState()).through >= tick + off
                          for p, off in offset.items()):
                self.receive_one()
                if tick > self.known_end(last):
                    return
            self.wait_s += time.perf_counter() - waited
            through = min(tick + k - 1, last)
            published = self.step(tick, tick * num / den, tick + input_offset, through)
            if not all(reads and reads <= published for reads in self.reads_from_me.values()):
                self.publish_progress(tick, through, None, False)
            self.completed = through
            tick += k
            self.service(0)

    def run_parallel(self) -> None:
        period = float(self.period)
        start = self.started
        cycle = 0
        while True:
            due = start + cycle * period
            now = time.monotonic()
            if now < due:
                self.service((due - now) * 1000)
                continue
            self.service(0)
            late = int((now - due) / period)
            if late:
                self.overruns += late
                cycle += late
            if self.duration is not None and cycle * period > self.duration + 1e-9:
                return
            if self.end_tick is not None or any(p.end is not None for p in self.peers.values()):
                return
            self.drain_data()
            self.step(cycle, now - start, None, None)
            self.completed = cycle
            cycle += 1

    # -- leaving ------------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        p50, p99 = (np.percentile(self.step_times, [50, 99]).tolist() if self.step_times
                    else (0.0, 0.0))
        active = self.last_step - self.first_step if self.first_step is not None else 0.0
        return {"steps": self.steps, "tick": self.tick, "overruns": self.overruns,
                "active_s": round(active, 6), "wait_s": round(self.wait_s, 6),
                "step_s": round(sum(self.step_times), 6), "p50_ms": p50 * 1e3,
                "p99_ms": p99 * 1e3, "sent": self.sent, "received": self.received,
                "dropped": self.dropped, "malformed": self.malformed}

    def finish(self, code: int) -> int:
        self.finishing = True
        self.state = CLOSING_STATE
        try:
            self.send("hb", tick=self.tick, steps=self.steps, state=CLOSING_STATE)
            ends = [e for e in [self.end_tick] + [p.end for p in self.peers.values()]
                    if e is not None]
            end = min(ends) if ends else None
            through = self.completed if end is None else min(self.completed, end)
            self.publish_stats()
            self.publish_progress(self.tick, through, end, True)
            self.send("done", code=code, stats=self.stats(), end=self.stop_reason,
                      end_tick=self.end_tick)
        except zmq.ZMQError:
            pass
        self.sub.close(0)
        self.pub.close()       # LINGER 2 s: the final progress still goes out
        self.dealer.close()    # LINGER 1 s: so does ``done``
        self.ctx.term()
        return code

    def run(self) -> int:
        code = 0
        registered = False
        try:
            self.join()
            registered = True
            self.connect_and_wait_start()
            if self.mode == "stepped":
                self.run_stepped()
            else:
                self.run_parallel()
        except Stopped:
            pass
        except Interrupted as exc:
            code = exc.code
        except Refused as exc:
            print(f"raw_node: {exc}", file=sys.stderr, flush=True)
            if not registered:
                self.sub.close(0)
                self.pub.close(0)
                self.dealer.close(0)
                self.ctx.term()
                return 1
            code = 1
            try:
                self.send("error", message=str(exc), traceback="", where="run")
            except zmq.ZMQError:
                pass
        except Exception as exc:
            import traceback

            code = 1
            try:
                self.send("error", message=f"{type(exc).__name__}: {exc}",
                          traceback=traceback.format_exc(), where="run")
            except zmq.ZMQError:
                pass
        return self.finish(code)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--name", required=True)
    parser.add_argument("--bus", help="registry address (default: the newest run here)")
    parser.add_argument("--protocol", type=int, default=PROTOCOL_VERSION,
                        help="protocol version to announce (tests: an old one is refused)")
    parser.add_argument("--advertise", help="IP to bind the data socket on (tcp buses)")
    args = parser.parse_args(argv)
    node = RawNode(args)

    def interrupt(signum: int, frame: Any) -> None:
        if not node.finishing:
            raise Interrupted(signum)

    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)
    return node.run()


if __name__ == "__main__":
    sys.exit(main())
