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

from typing import Any, Callable

import zmq
from zmq.utils.monitor import recv_monitor_message


class LinkWatch:
    """Connections of the registry's ROUTER socket, by descriptor, and whose they are. Which
    process a closed connection leaves without a link is the control plane's to judge (a
    swap's old process closing its link is no loss)."""

    def __init__(self, socket: zmq.Socket,
                 on_handshake_failure: Callable[[dict], None] | None = None) -> None:
        # A socket has one monitor: failed handshakes (a keyed run's refusals) come through it
        # too, for ``on_handshake_failure``.
        events = zmq.EVENT_DISCONNECTED | zmq.EVENT_ACCEPTED
        if on_handshake_failure is not None:
            events |= zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
        self.monitor = socket.get_monitor_socket(events)
        self.on_handshake_failure = on_handshake_failure
        #: descriptor -> the routing id of the process whose message it last carried
        self.owner: dict[int, bytes] = {}

    def heard(self, identity: bytes, frame: Any) -> None:
        """A control message of process ``identity`` came in ``frame`` (a ``zmq.Frame``): note
        the connection it came on."""
        try:
            fd = frame.get(zmq.SRCFD)
        except (zmq.ZMQError, AttributeError, TypeError):
            return
        if fd is not None:
            self.owner[int(fd)] = identity

    def closed(self) -> list[bytes]:
        """The processes whose connection closed since the last call. Call before reading the
        socket's messages, so that a descriptor closed and reused by a new connection is never
        taken for the new one's."""
        gone = []
        while True:
            try:
                event = recv_monitor_message(self.monitor, zmq.NOBLOCK)
            except zmq.Again:
                return gone
            kind = event["event"]
            if kind not in (zmq.EVENT_DISCONNECTED, zmq.EVENT_ACCEPTED):
                if self.on_handshake_failure is not None and \
                        kind != zmq.EVENT_MONITOR_STOPPED:
                    self.on_handshake_failure(event)
                continue
            owner = self.owner.pop(int(event["value"]), None)
            if owner is not None and kind == zmq.EVENT_DISCONNECTED:
                gone.append(owner)

    def close(self) -> None:
        self.monitor.close(0)


__all__ = ["LinkWatch"]
