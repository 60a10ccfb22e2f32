"""The peer-to-peer data plane of one node: one XPUB socket it publishes on, one SUB socket that
connects straight to its peers. No broker sits between two nodes.

Who connects to whom: a node's SUB connects to every *neighbour*, i.e. every node that publishes a
topic it reads (to get the data) and every node that reads a topic it publishes (to get their
``catbus/progress`` for flow control). Its subscriptions are its input topics (each with the NUL
terminator, so prefixes match exactly), ``catbus/progress`` and, last, ``catbus/hello/<own name>``.

The hello is how a publisher knows that a subscriber is really connected (ZeroMQ gives no
connect callback): XPUB_VERBOSE hands every subscription to the publisher, subscriptions on one
connection arrive in order, so once a node has seen ``catbus/hello/robot`` it has seen all of
robot's subscriptions and nothing it publishes from now on is lost to robot. The run starts only
when every node has seen the hello of every neighbour -- never after a sleep.
"""

from __future__ import annotations

import os
import socket as pysocket
import time
from collections import defaultdict
from typing import Any, Iterable
from urllib.parse import urlparse

import msgpack
import zmq

from catbus import codec

HELLO_PREFIX = "catbus/hello/"
PROGRESS_TOPIC = "catbus/progress"
PROGRESS_FRAME = codec.topic_frame(PROGRESS_TOPIC)
#: Queue bounds. Stepped mode bounds queues by its window; this only caps a runaway parallel node.
HWM = 100_000
# Plain ints: pyzmq's enum flags cost microseconds per ``|`` on the per-message hot path.
_SNDMORE, _NOBLOCK = int(zmq.SNDMORE), int(zmq.NOBLOCK)
_EVENTS, _POLLIN, _RCVMORE = int(zmq.EVENTS), int(zmq.POLLIN), int(zmq.RCVMORE)
#: Frames below this size are copied (cheaper than a zero-copy frame object); larger ones are not.
ZERO_COPY_MIN = 64 * 1024


def send_frames(sock: zmq.Socket, frames: list) -> None:
    """``send_multipart`` without its per-frame overhead; large buffers go out without a copy."""
    last = len(frames) - 1
    send = sock.send
    for index, frame in enumerate(frames):
        flags = _SNDMORE if index < last else 0
        if len(frame) >= ZERO_COPY_MIN:
            send(frame, flags, copy=False)
        else:
            send(frame, flags)


def receive_frames(sock: zmq.Socket) -> list | None:
    """One multipart message if one is waiting, else None (no exception on the hot path).

    Topic, header and payload arrive as bytes; array buffer frames as zero-copy ``zmq.Frame``
    objects whose memory numpy then views without copying.
    """
    if not sock.getsockopt(_EVENTS) & _POLLIN:
        return None
    recv, more = sock.recv, sock.getsockopt
    frames = [recv(_NOBLOCK)]
    while more(_RCVMORE):
        frames.append(recv(_NOBLOCK) if len(frames) < 3 else recv(_NOBLOCK, copy=False))
    return frames


def data_endpoint_for(bus: str, name: str, advertise: str | None = None) -> str:
    """Where a node binds its publishing socket, derived from the registry address.

    ``ipc``: a socket file next to the registry's, in the run's private folder. ``tcp``: an
    ephemeral port on the local address that routes towards the registry (or ``advertise``), so
    nodes on other hosts can reach it.
    """
    if bus.startswith("ipc://"):
        folder = bus[len("ipc://"):].rsplit("/", 1)[0]
        return f"ipc://{folder}/{name}-{os.getpid()}.sock"
    parsed = urlparse(bus)
    host = advertise or local_address_towards(parsed.hostname or "127.0.0.1", parsed.port or 7700)
    return f"tcp://{host}:*"


def local_address_towards(host: str, port: int) -> str:
    """The local IP the kernel would use to reach ``host`` (a UDP connect sends no packet)."""
    probe = pysocket.socket(pysocket.AF_INET, pysocket.SOCK_DGRAM)
    try:
        probe.connect((host, port))
        return probe.getsockname()[0]
    except OSError:
        return "127.0.0.1"
    finally:
        probe.close()


class DataPlane:
    """The sockets of one node plus per-topic sequence numbers and receive counters."""

    def __init__(self, ctx: zmq.Context, name: str, bind: str) -> None:
        self.name = name
        self.pub = ctx.socket(zmq.XPUB)
        self.pub.setsockopt(zmq.XPUB_VERBOSE, 1)
        self.pub.setsockopt(zmq.SNDHWM, HWM)
        self.pub.setsockopt(zmq.LINGER, 2000)
        self.pub.bind(bind)
        self.endpoint = self.pub.getsockopt(zmq.LAST_ENDPOINT).decode()
        self.sub = ctx.socket(zmq.SUB)
        self.sub.setsockopt(zmq.RCVHWM, HWM)
        self.sub.setsockopt(zmq.LINGER, 0)
        self.connected: set[str] = set()
        self.subscriptions: list[bytes] = []
        self.hellos: set[str] = set()
        self.seq: dict[str, int] = defaultdict(int)
        self.sent = 0
        self.malformed = 0

    # -- subscribing ----------------------------------------------------------------------------
    def subscribe(self, topics: Iterable[str], *, everything: bool = False) -> None:
        """Set the subscriptions (before connecting): inputs, progress, then our hello."""
        prefixes = [b""] if everything else [codec.topic_frame(t) for t in topics]
        prefixes += [PROGRESS_FRAME, codec.topic_frame(HELLO_PREFIX + self.name)]
        for prefix in prefixes:
            if prefix not in self.subscriptions:
                self.sub.setsockopt(zmq.SUBSCRIBE, prefix)
                self.subscriptions.append(prefix)

    def connect(self, endpoints: Iterable[str]) -> None:
        for endpoint in endpoints:
            if endpoint not in self.connected and endpoint != self.endpoint:
                self.sub.connect(endpoint)
                self.connected.add(endpoint)

    def disconnect(self, endpoint: str) -> None:
        if endpoint in self.connected:
            self.connected.discard(endpoint)
            try:
                self.sub.disconnect(endpoint)
            except zmq.ZMQError:
                pass

    def drain_subscriptions(self) -> None:
        """Read pending subscription messages on the XPUB and note every hello seen."""
        while self.pub.getsockopt(_EVENTS) & _POLLIN:
            event = self.pub.recv(_NOBLOCK)
            if event[:1] == b"\x01" and event.endswith(codec.TOPIC_TERMINATOR):
                topic = event[1:-1].decode(errors="replace")
                if topic.startswith(HELLO_PREFIX):
                    self.hellos.add(topic[len(HELLO_PREFIX):])

    # -- publishing -----------------------------------------------------------------------------
    def publish(self, topic: str, value: Any, tick: int, sim_time: float,
                through: int | None = None) -> None:
        """Encode and send one message; large array buffers go out without a copy. ``through``
        makes it carry progress too (see :class:`catbus.codec.Header`)."""
        seq = self.seq[topic]
        self.seq[topic] = seq + 1
        header = codec.Header(self.name, seq, tick, sim_time, time.time(), through)
        send_frames(self.pub, codec.encode_message(topic, header, value))
        self.sent += 1

    def publish_progress(self, tick: int, through: int, end: int | None, final: bool) -> None:
        """``catbus/progress``: "I have sent everything I will send for ticks <= through".

        Its payload is ``[name, tick, through, end_tick_or_None, final, {topic: messages_sent}]``;
        ZeroMQ keeps each connection in order, so whoever has this has all our data before it.
        """
        payload = msgpack.packb([self.name, tick, through, end, final, dict(self.seq)])
        header = codec.Header(self.name, 0, tick, 0.0, time.time()).pack()
        send_frames(self.pub, [PROGRESS_FRAME, header, payload])

    def close(self) -> None:
        self.sub.close(0)
        self.pub.close()
