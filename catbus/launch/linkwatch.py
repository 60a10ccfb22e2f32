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
from typing import Any, Iterable

import zmq
from zmq.utils.monitor import recv_monitor_message

class LinkWatch:
    """Connections of the registry's ROUTER socket, by descriptor, and whose they are."""

    def __init__(self, socket: zmq.Socket) -> None:
        self.monitor = socket.get_monitor_socket(zmq.EVENT_DISCONNECTED)
        #: descriptor -> node name, from the last message each connection carried
        self.owner: dict[int, str] = {}
        #: node name -> monotonic time its connection closed (None: up)
        self.down_since: dict[str, float] = {}

    def heard(self, name: str, frame: Any) -> float | None:
        """A control message of node ``name`` came in ``frame`` (a ``zmq.Frame``): its
        connection is up. Returns how long it had been down, if it had."""
        try:
            fd = frame.get(zmq.SRCFD)
        except (zmq.ZMQError, AttributeError, TypeError):
            fd = None
        if fd is not None:
            self.owner[int(fd)] = name
        since = self.down_since.pop(name, None)
        return None if since is None else time.monotonic() - since

    def closed(self) -> Iterable[str]:
        """Names whose connection closed since the last call."""
        gone = []
        while True:
            try:
                event = recv_monitor_message(self.monitor, zmq.NOBLOCK)
            except zmq.Again:
                return gone
            name = self.owner.pop(int(event["value"]), None)
            if name is not None and name not in self.down_since:
                self.down_since[name] = time.monotonic()
                gone.append(name)

    def is_down(self, name: str) -> bool:
        return name in self.down_since

    def forget(self, name: str) -> None:
        self.down_since.pop(name, None)

    def close(self) -> None:
        self.monitor.close(0)


__all__ = ["LinkWatch"]
