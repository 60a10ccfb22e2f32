"""Which nodes' connections to the registry are up: a node that is silent because its link is
down (a cable pulled, a host frozen, a process stopped) is *lost* and may come back; a node that
is silent with its link up is *stuck* in a step. The two get different bounds: ``--rejoin-timeout``
and ``--deadline``.

ZeroMQ's own heartbeats (``ZMQ_HEARTBEAT_IVL``/``_TIMEOUT``, set on every catbus socket by
:func:`catbus.wire.sockets.keep_links_alive`) close a connection whose peer stops answering -- its I/O thread, not its
Python code, answers them, so a node busy in a long step keeps its link. The registry's socket
monitor reports the closed connection by file descriptor, and every control message says which
descriptor it came on (``ZMQ_SRCFD``), so the watch maps one to the other.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import zmq
from zmq.utils.monitor import recv_monitor_message

class LinkWatch:
    """Connections of the registry's ROUTER socket, by descriptor, and whose they are."""

    def __init__(self, socket: zmq.Socket,
                 on_handshake_failure: Callable[[dict], None] | None = None) -> None:
        # A socket has one monitor: failed handshakes (a keyed run's refusals) come through it
        # too, for ``on_handshake_failure``.
        events = zmq.EVENT_DISCONNECTED | zmq.EVENT_ACCEPTED
        if on_handshake_failure is not None:
            events |= zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
        self.monitor = socket.get_monitor_socket(events)
        self.on_handshake_failure = on_handshake_failure
        #: descriptor -> (node name, routing id), from the last message each connection
        #: carried: a closed connection counts only while it is the node's current process's
        #: (an old process of a swap closing its link is no loss)
        self.owner: dict[int, tuple[str, bytes]] = {}
        #: node name -> monotonic time its connection closed (None: up)
        self.down_since: dict[str, float] = {}

    def heard(self, name: str, identity: bytes, frame: Any) -> float | None:
        """A control message of node ``name``'s process ``identity`` came in ``frame`` (a
        ``zmq.Frame``): its connection is up. Returns how long it had been down, if it had."""
        try:
            fd = frame.get(zmq.SRCFD)
        except (zmq.ZMQError, AttributeError, TypeError):
            fd = None
        if fd is not None:
            self.owner[int(fd)] = (name, identity)
        since = self.down_since.pop(name, None)
        return None if since is None else time.monotonic() - since

    def update(self, current: Callable[[str], bytes | None]) -> None:
        """Read the socket's connection events: call before reading its messages, so that a
        descriptor closed and reused by a new connection is never taken for the new one's
        (``current`` gives a name's current routing id)."""
        while True:
            try:
                event = recv_monitor_message(self.monitor, zmq.NOBLOCK)
            except zmq.Again:
                return
            kind = event["event"]
            if kind not in (zmq.EVENT_DISCONNECTED, zmq.EVENT_ACCEPTED):
                if self.on_handshake_failure is not None and \
                        kind != zmq.EVENT_MONITOR_STOPPED:
                    self.on_handshake_failure(event)
                continue
            owner = self.owner.pop(int(event["value"]), None)
            if owner is None or kind != zmq.EVENT_DISCONNECTED:
                continue
            name, identity = owner
            if current(name) == identity and name not in self.down_since:
                self.down_since[name] = time.monotonic()

    def is_down(self, name: str) -> bool:
        return name in self.down_since

    def forget(self, name: str) -> None:
        self.down_since.pop(name, None)

    def close(self) -> None:
        self.monitor.close(0)


__all__ = ["LinkWatch"]
