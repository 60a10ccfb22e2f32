"""Options every catbus socket shares, so that both ends of a link agree on them.

ZeroMQ-level heartbeats (ZMTP ``PING``/``PONG``, answered by a process's ZeroMQ I/O thread, not
by its Python code) close a connection whose peer has not answered for :data:`LINK_TIMEOUT`
seconds: a pulled cable, a frozen host or a stopped process. The connecting side then
reconnects every :data:`RECONNECT_MAX` seconds at most, taking its identity and subscriptions
with it (``docs/protocol.md``, "Lost links"). A node busy in a long step keeps its links.
"""

from __future__ import annotations

from typing import Final

import zmq

LINK_INTERVAL: Final = 1.0
LINK_TIMEOUT: Final = 3.0
RECONNECT_MAX: Final = 1.0


def keep_links_alive(*sockets: zmq.Socket) -> None:
    """Set ZeroMQ heartbeats and the reconnect interval on these sockets (before connect or
    bind)."""
    for sock in sockets:
        sock.setsockopt(zmq.HEARTBEAT_IVL, int(LINK_INTERVAL * 1000))
        sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, int(LINK_TIMEOUT * 1000))
        sock.setsockopt(zmq.HEARTBEAT_TTL, int(LINK_TIMEOUT * 1000))
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, int(RECONNECT_MAX * 1000))


__all__ = ["keep_links_alive", "LINK_INTERVAL", "LINK_TIMEOUT", "RECONNECT_MAX"]
