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

A hello seen once the run is going means a neighbour (re)subscribed: a replacement or a restarted
process of that name, or the same process whose connection came back. ZeroMQ drops what was queued
for a connection that broke, so the publisher then sends again what it retains (its last messages
per topic, see :meth:`DataPlane.retain`) and announces its progress; receivers drop what they
already have (:class:`catbus.runtime.inbox.Inbox`, by publisher process and sequence number).
"""

from __future__ import annotations

import os
import time
from collections import defaultdict, deque
from typing import Any, Iterable

import msgpack
import zmq

from catbus import security
from catbus.errors import CatbusError
from catbus.runtime.hostaddr import reachable_host
# Host and interface discovery is catbus.runtime.hostaddr's; importable from here as well.
from catbus.runtime.hostaddr import host_address as host_address, \
    interface_addresses as interface_addresses, reachable_bus as reachable_bus
from catbus.wire import codec
from catbus.wire.sockets import keep_links_alive
from catbus.wire.protocol import HELLO_PREFIX, LOG_TOPIC, PROGRESS_TOPIC, SCORES_TOPIC, \
    STATS_TOPIC, SWAP_TOPIC, hello_topic

PROGRESS_FRAME = codec.topic_frame(PROGRESS_TOPIC)
_pack_header, _encode_payload, _envelope = codec.pack_header, codec.encode_payload, codec.envelope
_time = time.time
#: Queue bounds. Stepped mode bounds queues by its window; this only caps a runaway parallel node.
HWM = 100_000
#: The most subscription messages one :meth:`DataPlane.drain_subscriptions` handles: a flood of
#: them never keeps a node from its steps and its control link.
SUBSCRIPTION_BATCH = 10_000
_HELLO_FRAME = HELLO_PREFIX.encode()
# Plain ints: pyzmq's enum flags cost microseconds per ``|`` on the per-message hot path.
_SNDMORE, _NOBLOCK = int(zmq.SNDMORE), int(zmq.NOBLOCK)
_EVENTS, _POLLIN = int(zmq.EVENTS), int(zmq.POLLIN)
#: Frames below this size are copied (cheaper than a zero-copy frame object); larger ones are not.
ZERO_COPY_MIN = 64 * 1024
# pyzmq's compiled send and recv, called without the Python method of ``zmq.Socket`` around
# them: that wrapper (routing_id/group handling, then ``super().send``) doubled the cost of
# sending a small frame, ~0.2 us per frame on each side. Used for copied (small) frames only:
# a zero-copy send still goes through ``zmq.Socket.send``, which applies the socket's
# ``copy_threshold`` (and is what bench/transport.py watches to check that nothing is copied).
try:
    _raw_send = zmq.backend.Socket.send
    _raw_recv = zmq.backend.Socket.recv
except AttributeError:   # a pyzmq backend without the compiled class
    _raw_send = zmq.Socket.send
    _raw_recv = zmq.Socket.recv


def send_frames(sock: zmq.Socket, frames: list) -> None:
    """``send_multipart`` without its per-frame overhead; large buffers go out without a copy."""
    last = len(frames) - 1
    for index, frame in enumerate(frames):
        flags = _SNDMORE if index < last else 0
        if len(frame) >= ZERO_COPY_MIN:
            sock.send(frame, flags, copy=False)
        else:
            _raw_send(sock, frame, flags)


def receive_frames(sock: zmq.Socket, wait: bool = False) -> list | None:
    """One multipart message if one is waiting, else None. With ``wait``, block for up to the
    socket's ``RCVTIMEO`` for it first.

    The envelope (topic, header and payload) arrives as bytes; array buffer frames as zero-copy
    ``zmq.Frame`` objects whose memory numpy then views without copying.

    Every frame is received as a ``zmq.Frame`` and asked ``more`` (a field of the message, no
    system call), and "nothing waiting" is the ``zmq.Again`` of a non-blocking receive. The
    obvious alternative, ``getsockopt(EVENTS)`` before each message and ``getsockopt(RCVMORE)``
    after each frame, costs about 1 us per call in pyzmq (it builds an enum per call) plus, in
    libzmq, a ``poll`` and a ``getpid`` system call per call: more than receiving the frames.

    ``wait`` is for a node that mostly waits for its next message (lockstep, reactive nodes):
    one blocking receive is one call into libzmq that sleeps until the message is there, where
    ``poll`` then a receive (then the ``zmq.Again`` ending a drain) costs two to three calls and
    their system calls per message. Signals still interrupt it (pyzmq runs the Python handler
    on EINTR).
    """
    try:
        frame = _raw_recv(sock, 0 if wait else _NOBLOCK, False)
    except zmq.Again:
        return None
    frames = [frame.bytes]
    while frame.more:
        frame = _raw_recv(sock, _NOBLOCK, False)
        frames.append(frame)
    return frames


def data_endpoint_for(bus: str, name: str, advertise: str | None = None) -> str:
    """Where a node binds its publishing socket, derived from the registry address.

    ``ipc``: a socket file next to the registry's, in the run's private folder. ``tcp``: an
    ephemeral port on ``advertise`` if given, else on the local address this node reaches the
    registry from, so that peers -- on other hosts too -- reach it where it registers. A
    registry bound on every interface (``tcp://0.0.0.0:PORT``: the launcher's own nodes get that
    address and reach it through loopback) says nothing about where other hosts reach this one,
    and loopback would be unreachable for them: then :func:`host_address`.
    """
    if bus.startswith("ipc://"):
        folder = bus[len("ipc://"):].rsplit("/", 1)[0]
        return f"ipc://{folder}/{name}-{os.getpid()}.sock"
    return f"tcp://{advertise or reachable_host(bus)}:*"


def parse_ports(text: str) -> tuple[int, int]:
    """``--data-ports FIRST-LAST`` (``7710-7799``) as ``(first, last)``; ValueError if not."""
    first, _, last = text.partition("-")
    low, high = int(first), int(last or first)
    if not 0 < low <= high < 65536:
        raise ValueError(f"{text}: expected FIRST-LAST, ports 1-65535, e.g. 7710-7799")
    return low, high


def bind_data(sock: zmq.Socket, bind: str, ports: tuple[int, int] | None) -> None:
    """Bind a node's publishing socket: on ``bind`` (``tcp://HOST:*``: any free port), or with
    ``ports`` (``--data-ports``, for a lab whose firewall opens only a range) on a free port of
    that range of ``tcp://HOST``."""
    if ports is None or not bind.startswith("tcp://"):
        sock.bind(bind)
        return
    host = bind.rsplit(":", 1)[0]
    low, high = ports
    for port in range(low, high + 1):
        try:
            sock.bind(f"{host}:{port}")
            return
        except zmq.ZMQError as exc:
            if exc.errno != zmq.EADDRINUSE:
                raise
    raise CatbusError(f"no free port in the data port range {low}-{high} on {host[6:]} "
                      f"(--data-ports): widen it, or stop what uses those ports")


class DataPlane:
    """The sockets of one node plus per-topic sequence numbers and receive counters."""

    def __init__(self, ctx: zmq.Context, name: str, bind: str,
                 keys: "security.Keys | None" = None,
                 ports: tuple[int, int] | None = None) -> None:
        self.name = name
        self.pub = ctx.socket(zmq.XPUB)
        self.sub = ctx.socket(zmq.SUB)
        #: CURVE on both sockets when the run is keyed (catbus.security), else None.
        self.curve = security.publisher(ctx, self.pub, self.sub, keys, bind, name)
        self.pub.setsockopt(zmq.XPUB_VERBOSE, 1)
        self.pub.setsockopt(zmq.XPUB_MANUAL, 1)   # see allow_subscriptions
        keep_links_alive(self.pub)
        self.pub.setsockopt(zmq.SNDHWM, HWM)
        self.pub.setsockopt(zmq.LINGER, 2000)
        bind_data(self.pub, bind, ports)
        self.endpoint = self.pub.getsockopt(zmq.LAST_ENDPOINT).decode()
        self.sub.setsockopt(zmq.RCVHWM, HWM)
        self.sub.setsockopt(zmq.LINGER, 0)
        keep_links_alive(self.sub)
        self.connected: set[str] = set()
        self.subscriptions: list[bytes] = []
        self.hellos: set[str] = set()
        self.seq: dict[str, int] = defaultdict(int)
        self._topic_frames: dict[str, bytes] = {}
        #: This process's identity beside its name, from the registry's welcome.
        self.incarnation = 1
        self.sent = 0
        self.malformed = 0
        #: Names whose hello this socket has seen since :meth:`take_hellos` (repeats included:
        #: a hello seen again is a neighbour that subscribed again).
        self.hellos_seen: list[str] = []
        #: topic -> the messages kept to send again: ``(tick, envelope, buffers)``, the newest
        #: message always, and every one of the last :attr:`retain_ticks` ticks.
        self.retained: dict[str, deque] = {}
        self.retain_ticks = 0
        #: The last progress this node announced: explicitly, or carried by its data (stepped).
        self.last_progress: tuple[int, int, int | None, bool] = (-1, -1, None, False)
        self.last_publish = 0.0   # wall time of the last data message sent
        #: Topic frames peers may subscribe to (None: any, until allow_subscriptions) and how
        #: many subscriptions were refused.
        self.allowed: set[bytes] | None = None
        self.known: set[bytes] = set()
        self.refused = 0

    # -- subscribing ----------------------------------------------------------------------------
    def subscribe(self, topics: Iterable[str], *, everything: bool = False) -> None:
        """Set the subscriptions (before connecting): inputs, progress, then our hello."""
        prefixes = [b""] if everything else [codec.topic_frame(t) for t in topics]
        prefixes += [PROGRESS_FRAME, codec.topic_frame(hello_topic(self.name))]
        for prefix in prefixes:
            if prefix not in self.subscriptions:
                self.sub.setsockopt(zmq.SUBSCRIBE, prefix)
                self.subscriptions.append(prefix)

    def connect(self, endpoints: Iterable[str]) -> None:
        for endpoint in endpoints:
            if endpoint not in self.connected and endpoint != self.endpoint:
                security.connect(self.sub, endpoint, self.curve)
                self.connected.add(endpoint)

    def disconnect(self, endpoint: str) -> None:
        if endpoint in self.connected:
            self.connected.discard(endpoint)
            try:
                self.sub.disconnect(endpoint)
            except zmq.ZMQError:
                pass

    def allow_subscriptions(self, topics: Iterable[str]) -> None:
        """Accept subscriptions only to what this node publishes: these topics, the framework's
        own (progress, scores, logs, swaps), every topic at once (a recorder) and hellos. Any
        other subscription is refused and counted in ``refused`` (``XPUB_MANUAL``): it never
        enters the socket's matching, so it costs no time per message sent, and reading them is
        bounded per call (:data:`SUBSCRIPTION_BATCH`), so a flood never stops the node's steps.
        libzmq itself still keeps every subscription a connection sent (about 300 bytes each)
        until that connection closes; on a TCP bus CURVE keeps strangers from connecting."""
        self.allowed = {codec.topic_frame(topic) for topic in
                        (*topics, PROGRESS_TOPIC, SCORES_TOPIC, LOG_TOPIC, SWAP_TOPIC,
                         STATS_TOPIC)}

    def know_topics(self, topics: Iterable[str]) -> None:
        """The run's topics (from the graph): a neighbour subscribes to every input it has on
        every connection, so subscriptions to topics of the run that this node does not
        publish are normal -- not applied, and not counted as refused."""
        self.known = {codec.topic_frame(topic) for topic in topics}

    def drain_subscriptions(self) -> None:
        """Read pending subscription messages on the XPUB (at most :data:`SUBSCRIPTION_BATCH`
        per call), apply those it accepts (``XPUB_MANUAL``) and note every hello seen."""
        pub = self.pub
        allowed = self.allowed
        for _ in range(SUBSCRIPTION_BATCH):
            if not pub.getsockopt(_EVENTS) & _POLLIN:
                return
            event = pub.recv(_NOBLOCK)
            kind, prefix = event[:1], event[1:]
            hello = prefix.startswith(_HELLO_FRAME) and prefix.endswith(codec.TOPIC_TERMINATOR)
            if kind not in (b"\x00", b"\x01") or not (
                    hello or not prefix or allowed is None or prefix in allowed):
                if self.known and prefix not in self.known:   # (before the graph: unknown)
                    self.refused += 1
                continue
            pub.setsockopt(zmq.SUBSCRIBE if kind == b"\x01" else zmq.UNSUBSCRIBE, prefix)
            if hello and kind == b"\x01":
                name = prefix[len(_HELLO_FRAME):-1].decode(errors="replace")
                self.hellos.add(name)
                self.hellos_seen.append(name)

    def take_hellos(self) -> list[str]:
        """The hellos seen since the last call (see :attr:`hellos_seen`)."""
        seen, self.hellos_seen = self.hellos_seen, []
        return seen

    # -- publishing -----------------------------------------------------------------------------
    def publish(self, topic: str, value: Any, tick: int, sim_time: float,
                through: int | None = None) -> None:
        """Encode and send one message; large array buffers go out without a copy. ``through``
        makes it carry progress too (see :class:`catbus.wire.codec.Header`).

        The frames of :func:`catbus.wire.codec.encode_message`, built and sent here without the
        intermediate Header object and frame list (a publisher sends one per message): the
        topic's prefix comes from a per-topic cache, the header from
        :func:`catbus.wire.codec.pack_header`.
        """
        seq = self.seq[topic]
        self.seq[topic] = seq + 1
        head = self._topic_frames.get(topic)
        if head is None:
            head = self._topic_frames[topic] = codec.topic_frame(topic)
        now = _time()
        header = _pack_header(self.name, self.incarnation, seq, tick, sim_time, now, through)
        payload, buffers = _encode_payload(value)
        first = _envelope(head, header, payload)
        if buffers:
            send_frames(self.pub, [first, *buffers])
        else:
            _raw_send(self.pub, first, 0)
        self.sent += 1
        self.last_publish = now
        if through is not None and through > self.last_progress[1]:
            self.last_progress = (tick, through, None, False)
        self.retain(topic, tick, first, buffers)

    def retain(self, topic: str, tick: int, envelope: bytes, buffers: list) -> None:
        """Keep a sent message to send again to a neighbour that subscribes again: the newest
        one of each topic, and those of the last :attr:`retain_ticks` ticks (stepped mode: what
        a subscriber up to the lockstep window behind may still need). Array buffers are kept
        by reference, as a zero-copy send keeps them: a node must not modify an array it
        returned (docs/design.md, "Zero-copy")."""
        kept = self.retained.get(topic)
        if kept is None:
            kept = self.retained[topic] = deque()
        kept.append((tick, envelope, buffers))
        oldest = tick - self.retain_ticks
        while len(kept) > 1 and kept[1][0] <= oldest:
            kept.popleft()

    def send_retained(self) -> int:
        """Send every retained message again, oldest tick first per topic; returns how many.
        Receivers that have one already drop it (same process, same sequence number)."""
        count = 0
        for kept in self.retained.values():
            for _tick, envelope, buffers in kept:
                if buffers:
                    send_frames(self.pub, [envelope, *buffers])
                else:
                    _raw_send(self.pub, envelope, 0)
                count += 1
        return count

    def publish_progress(self, tick: int, through: int, end: int | None, final: bool) -> None:
        """``catbus/progress``: "I have sent everything I will send for ticks <= through".

        Its payload is ``[name, tick, through, end_tick_or_None, final, {topic: messages_sent}]``;
        ZeroMQ keeps each connection in order, so whoever has this has all our data before it.
        """
        self.last_progress = (tick, max(through, self.last_progress[1]), end, final)
        self._send_progress(tick, through, end, final, None)

    def announce(self, heard: dict[str, int]) -> None:
        """Send the last progress again, with ``heard``: ``{node: through}``, how far this node
        has received from those nodes (a restarted process of such a name goes on from there)."""
        tick, through, end, final = self.last_progress
        self._send_progress(tick, through, end, final, heard)

    def _send_progress(self, tick: int, through: int, end: int | None, final: bool,
                       heard: dict[str, int] | None) -> None:
        fields = [self.name, tick, through, end, final, dict(self.seq)]
        if heard is not None:
            fields.append(heard)
        header = codec.pack_header(self.name, self.incarnation, 0, tick, 0.0, time.time(), None)
        _raw_send(self.pub, codec.envelope(PROGRESS_FRAME, header, msgpack.packb(fields)), 0)

    def close(self) -> None:
        self.sub.close(0)
        self.pub.close()
        security.close(self.curve)
