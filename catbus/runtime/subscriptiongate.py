"""Who may subscribe to what a node publishes: its publishing socket's subscriptions, read one by
one (``XPUB_MANUAL``), applied only when they ask for what the node publishes or for a hello,
and counted against their connection's budget (:mod:`catbus.runtime.floodguard`), so that a
stranger's or a careless peer's subscriptions cost it its connection, not the node its memory
or its steps. The hellos seen here are how a publisher knows its subscribers are connected
(:mod:`catbus.runtime.dataplane`).
"""

from __future__ import annotations

from typing import Any, Iterable

import zmq

from catbus.runtime.floodguard import FloodGuard, peer_address
from catbus.wire import codec
from catbus.wire.sockets import raw_recv as _raw_recv
from catbus.wire.protocol import HELLO_PREFIX, LOG_TOPIC, PARAMS_TOPIC, PROGRESS_TOPIC, \
    SCORES_TOPIC, STATS_TOPIC, SWAP_TOPIC

#: The most subscription messages one :meth:`SubscriptionGate.drain` handles: a flood of them
#: never keeps a node from its steps and its control link.
SUBSCRIPTION_BATCH = 2_000
#: :meth:`SubscriptionGate.drain` reads the connections accepted every this many + 1
#: subscription messages (a mask).
_EVENTS_EVERY = 63
_HELLO_FRAME = HELLO_PREFIX.encode()
_NOBLOCK = int(zmq.NOBLOCK)


class SubscriptionGate:
    """The subscriptions of one node's publishing socket ``pub`` (bound at ``endpoint``)."""

    def __init__(self, name: str, ctx: zmq.Context, pub: zmq.Socket, endpoint: str,
                 curve: Any) -> None:
        self.pub = pub
        #: Topic frames peers may subscribe to (None: any, until :meth:`allow`), the run's
        #: topics (:meth:`know_topics`) and how many subscriptions were refused.
        self.allowed: set[bytes] | None = None
        self.known: set[bytes] = set()
        self.refused = 0
        #: Every name whose hello was seen, and those seen since :meth:`take_hellos` (repeats
        #: included: a hello seen again is a neighbour that subscribed again).
        self.hellos: set[str] = set()
        self.hellos_seen: list[str] = []
        #: What one connection may subscribe (catbus.runtime.floodguard); it reads the
        #: publishing socket's monitor, and hands a keyed run's failed handshakes on.
        self.guard = FloodGuard(name, endpoint)
        auth = getattr(curve, "auth", None)
        self.guard.watch(ctx, pub, getattr(auth, "handshake_failed", None)
                         if getattr(curve, "keys", None) is not None else None)

    def allow(self, topics: Iterable[str]) -> None:
        """Accept subscriptions only to what this node publishes: these topics, the framework's
        own (progress, scores, logs, swaps), every topic at once (a recorder) and hellos. Any
        other subscription is refused and counted in ``refused`` (``XPUB_MANUAL``): it never
        enters the socket's matching, so it costs no time per message sent, and reading them is
        bounded per call (:data:`SUBSCRIPTION_BATCH`), so a flood never stops the node's steps.
        What a connection may subscribe at all is bounded too (:attr:`guard`)."""
        self.allowed = {codec.topic_frame(topic) for topic in
                        (*topics, PROGRESS_TOPIC, SCORES_TOPIC, LOG_TOPIC, SWAP_TOPIC,
                         STATS_TOPIC, PARAMS_TOPIC)}

    def know_topics(self, topics: Iterable[str]) -> None:
        """The run's topics (from the graph): a neighbour in another language may subscribe to
        every input it has on every connection, so subscriptions to topics of the run that
        this node does not publish are normal -- not applied, and not counted as refused."""
        self.known = {codec.topic_frame(topic) for topic in topics}
        self.guard.know_topics(len(self.known))

    def drain(self) -> None:
        """Read pending subscription messages on the XPUB (at most :data:`SUBSCRIPTION_BATCH`
        per call), apply those it accepts (``XPUB_MANUAL``), note every hello seen, and count
        each against its connection's budget (:attr:`guard`: a flooding connection is cut)."""
        pub = self.pub
        allowed = self.allowed
        known = self.known
        admit = self.guard.admit
        read_events = self.guard.read_events
        for count in range(SUBSCRIPTION_BATCH):
            if not count & _EVENTS_EVERY:
                # Connections first, and often: one from a barred address is cut before it
                # has sent much (a flooder reconnects at once and sends everything again).
                read_events()
            # Received until zmq.Again, not asked first (EVENTS): each EVENTS lets libzmq take
            # in more subscriptions from every connection (it processes its commands), a
            # receive only every hundredth time -- under a flood, asking fed the flood.
            try:
                frame = _raw_recv(pub, _NOBLOCK, False)
            except zmq.Again:
                self.guard.queue_empty()
                return
            event = frame.bytes
            kind, prefix = event[:1], event[1:]
            hello = prefix.startswith(_HELLO_FRAME) and prefix.endswith(codec.TOPIC_TERMINATOR)
            mine = kind in (b"\x00", b"\x01") and (
                hello or not prefix or allowed is None or prefix in allowed)
            # (before the graph, every topic is unknown: nothing is outside the run yet)
            outside = not mine and bool(known) and prefix not in known
            if not admit(frame, outside):   # its connection is over budget: cut
                self._refuse(frame)
                continue
            if not mine:
                if outside:
                    self._refuse(frame)
                continue
            pub.setsockopt(zmq.SUBSCRIBE if kind == b"\x01" else zmq.UNSUBSCRIBE, prefix)
            if hello and kind == b"\x01":
                name = prefix[len(_HELLO_FRAME):-1].decode(errors="replace")
                self.hellos.add(name)
                self.hellos_seen.append(name)

    def _refuse(self, frame: zmq.Frame) -> None:
        """Count one refused subscription, and against the address it came from."""
        self.refused += 1
        self.guard.refused_from[peer_address(frame)] += 1

    @property
    def refused_from(self) -> dict[str, int]:
        """Subscriptions refused, by the address they came from (an IP address; ``pid N`` on
        ipc): who floods or asks for topics outside the run."""
        return dict(self.guard.refused_from)

    def take_hellos(self) -> list[str]:
        """The hellos seen since the last call (see :attr:`hellos_seen`)."""
        seen, self.hellos_seen = self.hellos_seen, []
        return seen

    def close(self) -> None:
        self.guard.close()
