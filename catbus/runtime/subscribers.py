"""A node's subscribing side: one SUB socket per neighbour, so that the transport says who sent
each message (``docs/design.md``, "Data plane").

Why a socket per neighbour: a message's header names its publisher, but the header is the
sender's own word, and on the subscribing side libzmq gives a message no proof of its sender --
only the peer's IP address, the same for every node of a host. A socket connected to one
neighbour's endpoint (on a keyed bus: with that neighbour's CURVE server key, which only its
holder can serve) receives only what that neighbour sends, so every message comes tagged with
its socket's neighbour (:class:`~catbus.runtime.inbox.Frames`) and the inbox refuses a header
that names someone else. Each socket subscribes only to what its neighbour publishes and this
node reads, then ``catbus/progress``, then -- last -- ``catbus/hello/<own name>``.

Receiving polls the sockets together (``zmq_poll``) and takes one message from each socket it
found ready, so no neighbour waits behind another's burst; a node with a single neighbour
blocks in one receive on its socket, as a plain pyzmq subscriber does.
"""

from __future__ import annotations

from typing import Any, Callable, Collection, Iterable, Mapping

import zmq

from catbus.runtime.inbox import Frames
from catbus.wire import codec
from catbus.wire.protocol import PROGRESS_TOPIC, hello_topic
# pyzmq's compiled calls, without the Python wrappers (see catbus.wire.sockets).
from catbus.wire.sockets import raw_get as _raw_get, raw_recv as _raw_recv

_NOBLOCK = int(zmq.NOBLOCK)
_EVENTS, _POLLIN = int(zmq.EVENTS), int(zmq.POLLIN)
_PROGRESS_FRAME = codec.topic_frame(PROGRESS_TOPIC)
_zmq_poll = zmq.zmq_poll
#: :meth:`Subscribers.drain` asks a socket "anything more?" for this many messages, then receives
#: until zmq.Again: 2-3 asks cost what the one Again costs (see there).
_BURST = 4


def receive_from(sock: zmq.Socket, source: str | None, wait: bool = False) -> Frames | None:
    """One multipart message of ``sock`` as :class:`Frames` from ``source``, or None if none is
    waiting (with ``wait``: none came within the socket's ``RCVTIMEO``). The envelope arrives as
    bytes, array buffers as zero-copy ``zmq.Frame`` objects (see
    :func:`catbus.runtime.dataplane.receive_frames`)."""
    try:
        frame = _raw_recv(sock, 0 if wait else _NOBLOCK, False)
    except zmq.Again:
        return None
    frames = Frames((frame.bytes,), source)
    while frame.more:
        frame = _raw_recv(sock, _NOBLOCK, False)
        frames.append(frame)
    return frames


class Subscribers:
    """The SUB sockets of one node, one per neighbour, and receiving from them together.

    ``make`` builds a socket with the options every data SUB shares (high-water mark, linger,
    link heartbeats, the largest frame, CURVE client keys); ``connect(sock, endpoint)`` connects
    one (with the neighbour's key on a keyed bus).
    """

    def __init__(self, name: str, make: Callable[[], zmq.Socket],
                 connect: Callable[[zmq.Socket, str], None]) -> None:
        self.name = name
        self._make = make
        self._connect = connect
        #: neighbour -> its socket; and back
        self.sockets: dict[str, zmq.Socket] = {}
        self.names: dict[zmq.Socket, str] = {}
        #: neighbour -> the endpoints its socket is connected to (two while it is swapped)
        self.endpoints: dict[str, set[str]] = {}
        #: neighbour -> the prefixes its socket subscribed, in order
        self.prefixes: dict[str, list[bytes]] = {}
        #: Counts changes of the set of sockets, for whoever polls them with other sockets.
        self.version = 0
        #: What a waiting :meth:`receive` blocks for at most (ms; -1: until a message comes).
        self.timeout_ms = -1
        self._items: list[tuple[zmq.Socket, int]] = []
        self._only: zmq.Socket | None = None
        self._only_name: str | None = None
        #: Messages received from sockets found ready, not yet handed out (see :meth:`receive`).
        self._queue: list[Frames] = []

    # -- which sockets ---------------------------------------------------------------------------
    @property
    def connected(self) -> set[str]:
        """Every endpoint some socket is connected to."""
        return set().union(*self.endpoints.values()) if self.endpoints else set()

    def follow(self, wanted: Mapping[str, tuple[Collection[str], Iterable[bytes]]],
               add: Callable[[Frames], Any] | None = None) -> None:
        """Make the sockets match ``wanted``: neighbour -> (its endpoints, the prefixes to
        subscribe on its socket before ``catbus/progress`` and the hello). A new neighbour
        gets a socket, subscribed then connected; a known one is connected to new endpoints and
        let go of old ones (a process replaced, or restarted elsewhere); the socket of one no
        longer wanted is closed, what it had received handed to ``add`` first."""
        changed = False
        for name in [n for n in self.sockets if n not in wanted]:
            self._close(name, add)
            changed = True
        for name, (endpoints, topics) in wanted.items():
            sock = self.sockets.get(name)
            if sock is None:
                sock = self._make()
                if self.timeout_ms >= 0:
                    sock.setsockopt(zmq.RCVTIMEO, self.timeout_ms)
                self.sockets[name] = sock
                self.names[sock] = name
                self.endpoints[name] = set()
                self.prefixes[name] = []
                changed = True
            self._subscribe(name, sock, topics)
            have = self.endpoints[name]
            for endpoint in have - set(endpoints):
                have.discard(endpoint)
                try:
                    sock.disconnect(endpoint)
                except zmq.ZMQError:
                    pass
            for endpoint in endpoints:
                if endpoint not in have:
                    self._connect(sock, endpoint)
                    have.add(endpoint)
        if changed:
            self._changed()

    def _subscribe(self, name: str, sock: zmq.Socket, topics: Iterable[bytes]) -> None:
        """The neighbour's topics, then progress, then our hello: each prefix once, the hello
        last on a new socket (a publisher that has seen it has seen every subscription before
        it on that connection: docs/design.md, "Hello barrier")."""
        done = self.prefixes[name]
        order = [*topics, _PROGRESS_FRAME, codec.topic_frame(hello_topic(self.name))]
        for prefix in order:
            if prefix not in done:
                sock.setsockopt(zmq.SUBSCRIBE, prefix)
                done.append(prefix)

    def _close(self, name: str, add: Callable[[Frames], Any] | None) -> None:
        sock = self.sockets.pop(name)
        if add is not None:
            while (frames := receive_from(sock, name)) is not None:
                add(frames)
        self._queue = [frames for frames in self._queue if frames.source != name]
        del self.names[sock]
        del self.endpoints[name]
        del self.prefixes[name]
        sock.close(0)

    def _changed(self) -> None:
        self.version += 1
        self._items = [(sock, _POLLIN) for sock in self.sockets.values()]
        if len(self.sockets) == 1:
            (self._only_name, self._only), = self.sockets.items()
        else:
            self._only = self._only_name = None

    @property
    def pending(self) -> bool:
        """Whether messages received earlier wait to be handed out (see :meth:`receive`)."""
        return bool(self._queue)

    def set_timeout(self, timeout_ms: int) -> None:
        """A waiting :meth:`receive` blocks for at most ``timeout_ms``."""
        self.timeout_ms = timeout_ms
        for sock in self.sockets.values():
            sock.setsockopt(zmq.RCVTIMEO, timeout_ms)

    # -- receiving -------------------------------------------------------------------------------
    def receive(self, wait: bool = False) -> Frames | None:
        """One message from any neighbour, or None if none is waiting (with ``wait``: none
        came within :attr:`timeout_ms`).

        One neighbour: one (blocking) receive on its socket. Several: messages received
        earlier from sockets found ready go first; then one poll of every socket (waiting, if
        asked) and one message from each socket it found ready -- a receive that cannot come
        back empty, where asking each socket whether a message waits costs a call per socket
        and receiving until ``zmq.Again`` an exception."""
        queue = self._queue
        if queue:
            return queue.pop()
        only = self._only
        if only is not None:
            return receive_from(only, self._only_name, wait)
        items = self._items
        if not items:
            if wait and self.timeout_ms != 0:   # nothing to wait on: wait anyway, as a socket would
                _zmq_poll([], self.timeout_ms)
            return None
        ready = _zmq_poll(items, self.timeout_ms if wait else 0)
        if not ready:
            return None
        names = self.names
        for sock, _ in reversed(ready):   # popped from the end: the first ready goes first
            frames = receive_from(sock, names[sock])
            if frames is not None:
                queue.append(frames)
        return queue.pop() if queue else None

    def drain(self, add: Callable[[Frames], Any], ready: Iterable[zmq.Socket] | None = None
              ) -> None:
        """Hand every waiting message to ``add``: those received already, then each socket's
        in order -- of the sockets in ``ready`` (a poll's answer), else of every socket found
        ready by one poll."""
        queue = self._queue
        while queue:
            add(queue.pop())
        if ready is None:
            only = self._only
            if only is not None:
                ready = (only,)
            elif self._items:
                ready = [sock for sock, _ in _zmq_poll(self._items, 0)]
            else:
                return
        names = self.names
        for sock in ready:
            name = names.get(sock)
            if name is None:   # not one of ours (a poll's answer about other sockets too)
                continue
            # "Anything more?" asked of the socket (~1.4 us) rather than learnt from the
            # zmq.Again of an empty receive (~3.7 us): a socket usually holds a message or two.
            # In a burst (a receiver behind its sender) asking per message costs more than the
            # one zmq.Again that ends receiving until empty, so after _BURST it stops asking
            # (a throughput sink: 11.4 -> 10.4 us CPU per small message, alternated runs).
            count = 0
            while count < _BURST and _raw_get(sock, _EVENTS) & _POLLIN:
                frames = receive_from(sock, name)
                if frames is None:
                    break
                add(frames)
                count += 1
            else:
                if count >= _BURST:
                    while (frames := receive_from(sock, name)) is not None:
                        add(frames)

    def close(self) -> None:
        for sock in self.sockets.values():
            sock.close(0)
        self.sockets.clear()
        self.names.clear()
        self.endpoints.clear()
        self.prefixes.clear()
        self._queue.clear()
        self._changed()


__all__ = ["Subscribers", "receive_from"]
