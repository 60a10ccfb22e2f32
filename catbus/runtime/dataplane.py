"""The peer-to-peer data plane of one node: one XPUB socket it publishes on, and one SUB socket
per neighbour, connected straight to it. No broker sits between two nodes.

Who connects to whom: a node connects a SUB to every *neighbour*, i.e. every node that publishes
a topic it reads (to get the data) and every node that reads a topic it publishes (to get their
``catbus/progress`` for flow control). A socket per neighbour, so that who sent a message is the
transport's word, not the header's (:mod:`catbus.runtime.subscribers`). Each subscribes to what
its neighbour publishes and this node reads (each topic with the NUL terminator, so prefixes
match exactly; everything for a reader of ``*``), ``catbus/progress`` and, last,
``catbus/hello/<own name>``.

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

What a peer may cost a node is bounded: a frame's size (``ZMQ_MAXMSGSIZE``,
:data:`catbus.wire.codec.MAX_FRAME_BYTES`), a payload's decoding (:data:`catbus.wire.codec.
MAX_ELEMENTS`), and what one connection may subscribe (:mod:`catbus.runtime.floodguard`).
"""

from __future__ import annotations

import os
import time
from collections import defaultdict, deque
from typing import Any, Callable, Collection, Iterable, Mapping

import msgpack
import zmq

from catbus import security
from catbus.errors import CatbusError
from catbus.runtime.floodguard import MAX_SUBSCRIPTION_BYTES, SUBSCRIPTION_HWM
from catbus.runtime.hostaddr import reachable_host, tcp_endpoint
# Host and interface discovery is catbus.runtime.hostaddr's; importable from here as well.
from catbus.runtime.hostaddr import host_address as host_address, \
    interface_addresses as interface_addresses, reachable_bus as reachable_bus
from catbus.runtime.inbox import Frames
from catbus.runtime.subscribers import Subscribers
from catbus.runtime.subscriptiongate import SubscriptionGate
from catbus.security.client import set_client_keys
from catbus.wire import codec, sockets
from catbus.wire.sockets import keep_links_alive, raw_recv as _raw_recv, \
    raw_send as _raw_send
from catbus.wire.protocol import PROGRESS_TOPIC

PROGRESS_FRAME = codec.topic_frame(PROGRESS_TOPIC)
_pack_header, _encode_payload, _envelope = codec.pack_header, codec.encode_payload, codec.envelope
_time = time.time
#: Queue bounds. Stepped mode bounds queues by its window; this only caps a runaway parallel node.
HWM = 100_000
# Plain ints: pyzmq's enum flags cost microseconds per ``|`` on the per-message hot path.
_SNDMORE, _NOBLOCK = int(zmq.SNDMORE), int(zmq.NOBLOCK)
#: Frames below this size are copied (cheaper than a zero-copy frame object); larger ones are not.
ZERO_COPY_MIN = 64 * 1024
def send_frames(sock: zmq.Socket, frames: list) -> None:
    """``send_multipart`` without its per-frame overhead; large buffers go out without a copy."""
    last = len(frames) - 1
    for index, frame in enumerate(frames):
        flags = _SNDMORE if index < last else 0
        if len(frame) >= ZERO_COPY_MIN:
            sock.send(frame, flags, copy=False)
        else:
            _raw_send(sock, frame, flags)


def receive_frames(sock: "zmq.Socket | Subscribers", wait: bool = False) -> list | None:
    """One multipart message if one is waiting, else None. With ``wait``, block for up to the
    socket's ``RCVTIMEO`` for it first. ``sock`` may be a node's :class:`Subscribers` (its
    ``DataPlane.sub``): the message is then :class:`~catbus.runtime.inbox.Frames` that name the
    neighbour they came from.

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
    if type(sock) is Subscribers:
        return sock.receive(wait)
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
    return tcp_endpoint(advertise or reachable_host(bus), "*")


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
        sockets.bind(sock, bind)
        return
    host = bind.rsplit(":", 1)[0]
    low, high = ports
    for port in range(low, high + 1):
        try:
            sockets.bind(sock, f"{host}:{port}")
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
        self.ctx = ctx
        self.pub = ctx.socket(zmq.XPUB)
        # The session secures the XPUB (a CURVE server with this node's key pair) and, through
        # the socket given here, says which client keys a SUB takes; each neighbour's SUB gets
        # them in _make_subscriber.
        keyed = ctx.socket(zmq.SUB)
        try:
            #: CURVE on every socket when the run is keyed (catbus.security), else open.
            self.curve = security.publisher(ctx, self.pub, keyed, keys, bind, name)
        finally:
            keyed.close(0)
        self.pub.setsockopt(zmq.XPUB_VERBOSE, 1)
        self.pub.setsockopt(zmq.XPUB_MANUAL, 1)   # see SubscriptionGate.allow
        self.pub.setsockopt(zmq.MAXMSGSIZE, MAX_SUBSCRIPTION_BYTES)   # its input: subscriptions
        keep_links_alive(self.pub)
        # No pings of its own: libzmq 4.3 aborts (stream_engine_base.cpp, "!_io_error") when the
        # ping timer fires on a connection that failed while its input was held back by a full
        # pipe -- what a subscription flood, then a cut or a reset connection, leaves behind.
        # Every subscriber pings with a time-to-live (HEARTBEAT_TTL), and libzmq closes a
        # connection silent for that long on this side too: a dead subscriber is still let go.
        self.pub.setsockopt(zmq.HEARTBEAT_IVL, 0)
        # What libzmq takes in from one connection at a time (into its subscription table, in
        # this process's thread): a flood is read -- and its connection cut -- before much of
        # it is stored. An honest subscriber sends a handful.
        self.pub.setsockopt(zmq.RCVHWM, SUBSCRIPTION_HWM)
        self.pub.setsockopt(zmq.SNDHWM, HWM)
        self.pub.setsockopt(zmq.LINGER, 2000)
        bind_data(self.pub, bind, ports)
        self.endpoint = self.pub.getsockopt(zmq.LAST_ENDPOINT).decode()
        #: One SUB per neighbour (see catbus.runtime.subscribers): ``sub`` receives from them
        #: all (receive_frames accepts it as it accepted the single SUB of before).
        self.sub = Subscribers(name, self._make_subscriber,
                               lambda sock, endpoint: security.connect(sock, endpoint,
                                                                       self.curve))
        #: This node's inputs (set by :meth:`subscribe`): what its sockets subscribe to.
        self.inputs: set[str] = set()
        self.everything = False
        self._following: tuple[Mapping, Mapping] | None = None   # the last follow()'s
        self.seq: dict[str, int] = defaultdict(int)
        self._topic_frames: dict[str, bytes] = {}
        #: This process's identity beside its name, from the registry's welcome.
        self.incarnation = 1
        self.sent = 0
        self.malformed = 0
        #: topic -> the messages kept to send again: ``(tick, envelope, buffers)``, the newest
        #: message always, and every one of the last :attr:`retain_ticks` ticks.
        self.retained: dict[str, deque] = {}
        self.retain_ticks = 0
        #: The last progress this node announced: explicitly, or carried by its data (stepped).
        self.last_progress: tuple[int, int, int | None, bool] = (-1, -1, None, False)
        #: The newest tick this node has published data for: an end of the episode below it is
        #: in its past, and never relayed (see :meth:`publish_progress`).
        self.newest_tick = -1
        self.last_publish = 0.0   # wall time of the last data message sent
        #: A group process (:mod:`catbus.runtime.group`): the endpoints of the nodes of this
        #: process (one set shared by all of them), whose messages reach us without a socket,
        #: and ``local(topic, envelope, buffers)`` handing each message we send to those of
        #: them that read it (None: no group). A neighbour's process elsewhere (a replacement
        #: of a node of the group) is followed over a socket as any other.
        self.local_endpoints: set[str] = set()
        self.local: Callable[[str, bytes, list], None] | None = None
        #: Who may subscribe to what this node publishes, and the hellos seen
        #: (:class:`~catbus.runtime.subscriptiongate.SubscriptionGate`).
        self.gate = SubscriptionGate(name, ctx, self.pub, self.endpoint, self.curve)

    def _make_subscriber(self) -> zmq.Socket:
        """A SUB for one neighbour, with the options every data SUB shares."""
        sock = self.ctx.socket(zmq.SUB)
        sock.setsockopt(zmq.RCVHWM, HWM)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.MAXMSGSIZE, codec.MAX_FRAME_BYTES)
        keep_links_alive(sock)
        keys = getattr(self.curve, "keys", None)
        if keys is not None:   # a keyed run: this host's client key pair
            set_client_keys(sock, keys)
        return sock

    # -- subscribing ----------------------------------------------------------------------------
    def subscribe(self, topics: Iterable[str], *, everything: bool = False) -> None:
        """This node's inputs (every topic, with ``everything``): what each neighbour's socket
        subscribes to of what that neighbour publishes (see :meth:`follow`)."""
        self.inputs |= set(topics)
        self.everything = self.everything or everything
        if self._following is not None:   # a graph came first: its sockets subscribe now
            self.follow(*self._following)

    @property
    def subscriptions(self) -> list[bytes]:
        """Every prefix some neighbour's socket subscribed to, once each."""
        return list(dict.fromkeys(prefix for prefixes in self.sub.prefixes.values()
                                  for prefix in prefixes))

    @property
    def connected(self) -> set[str]:
        """Every endpoint a socket of this node is connected to."""
        return self.sub.connected

    def follow(self, endpoints: Mapping[str, Collection[str]],
               sources: Mapping[str, Collection[str]],
               add: Callable[[Frames], Any] | None = None) -> None:
        """Have a socket for each neighbour in ``endpoints`` (name -> its endpoints: two while
        it is swapped), subscribed to what it publishes of our inputs (``sources``: name -> the
        topics we read from it; all it sends for a reader of everything) and connected; close
        the sockets of nodes no longer neighbours (what they hold goes to ``add``)."""
        self._following = (endpoints, sources)
        wanted = {}
        for name, where in endpoints.items():
            where = [e for e in where if e and e != self.endpoint
                     and e not in self.local_endpoints]   # (in this process: see local)
            if not where and name not in self.sub.sockets and self.local_endpoints:
                continue   # a node of this process: no socket
            if self.everything and name in sources:
                prefixes = [b""]
            else:
                prefixes = [self._frame(topic) for topic in sorted(sources.get(name, ()))
                            if topic in self.inputs]
            wanted[name] = (where, prefixes)
        self.sub.follow(wanted, add)

    def _frame(self, topic: str) -> bytes:
        head = self._topic_frames.get(topic)
        if head is None:
            head = self._topic_frames[topic] = codec.topic_frame(topic)
        return head

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
        if self.local is not None:
            self.local(topic, first, buffers)
        self.sent += 1
        self.last_publish = now
        if tick > self.newest_tick:
            self.newest_tick = tick
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

        An end of the episode below what this node has already announced or published data for
        is one it learnt from another node, in its own past: it is left out (None). Readers
        refuse an end in its sender's past (docs/protocol.md, "Progress values") -- that is
        how a forged one is told -- and learn this one from the node that ended the episode, or
        from the registry.
        """
        if end is not None and end < max(self.last_progress[1], self.newest_tick):
            end = None
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
        envelope = codec.envelope(PROGRESS_FRAME, header, msgpack.packb(fields))
        _raw_send(self.pub, envelope, 0)
        if self.local is not None:
            self.local(PROGRESS_TOPIC, envelope, [])

    def close(self) -> None:
        self.sub.close()
        self.pub.close()
        self.gate.close()
        security.close(self.curve)
