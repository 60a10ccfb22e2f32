"""Options every catbus socket shares, so that both ends of a link agree on them, and how a
listening socket binds.

ZeroMQ-level heartbeats (ZMTP ``PING``/``PONG``, answered by a process's ZeroMQ I/O thread, not
by its Python code) close a connection whose peer has not answered for :data:`LINK_TIMEOUT`
seconds: a pulled cable, a frozen host or a stopped process. The connecting side then
reconnects every :data:`RECONNECT_MAX` seconds at most, taking its identity and subscriptions
with it (``docs/protocol.md``, "Lost links"). A node busy in a long step keeps its links.

A connection attempt made while the link is down sends a SYN nobody answers, and the kernel
alone would send it again only 1, 3, 7, 15 ... seconds later, so data could come back that long
after the link does. :data:`CONNECT_TIMEOUT` abandons such an attempt, so the next one,
:data:`RECONNECT_MAX` later at most, goes out on the link that is back: data flows again within
about a second of the link's return.

A socket that connects speaks IPv6 too (``ZMQ_IPV6``: dual stack), so a bus or a peer at
``tcp://[fd00::1]:7700`` is reached like one at ``tcp://10.0.0.1:7700``. A listening socket binds
through :func:`bind`, which turns IPv6 on only for an address that needs it: with it on, libzmq
binds an IPv4 address as ``tcp://[::ffff:10.0.0.1]:PORT`` and reports that endpoint, which a
peer that does not set ``ZMQ_IPV6`` (a node in another language) cannot connect to.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from typing import Final

import zmq

LINK_INTERVAL: Final = 1.0
LINK_TIMEOUT: Final = 3.0
#: Seconds between reconnection attempts: the first wait, and the most it grows to.
RECONNECT_MIN: Final = 0.1
RECONNECT_MAX: Final = 0.25
#: Seconds a TCP connection attempt may take before it is abandoned and tried again: a
#: handshake takes one round trip, so links of up to this round-trip time connect; with
#: :data:`RECONNECT_MAX` it bounds how long after a link's return its data flows again.
CONNECT_TIMEOUT: Final = 0.75


#: Socket types catbus only binds (the registry's ROUTER, a node's XPUB): :func:`bind` sets
#: their IPv6 option from the address they bind.
LISTENERS: Final = frozenset({zmq.ROUTER, zmq.XPUB})


# pyzmq's compiled send, recv and getsockopt, called without the Python methods of ``zmq.Socket``
# around them: that wrapper (routing_id/group handling, then ``super().send``) doubled the cost of
# sending a small frame, ~0.2 us per frame on each side. For copied (small) frames only: a
# zero-copy send still goes through ``zmq.Socket.send``, which applies the socket's
# ``copy_threshold`` (and is what bench/transport.py watches to check that nothing is copied).
try:
    raw_send = zmq.backend.Socket.send
    raw_recv = zmq.backend.Socket.recv
    raw_get = zmq.backend.Socket.get
except AttributeError:   # a pyzmq backend without the compiled class
    raw_send = zmq.Socket.send
    raw_recv = zmq.Socket.recv
    raw_get = zmq.Socket.get


def keep_links_alive(*sockets: zmq.Socket) -> None:
    """Set ZeroMQ heartbeats, the reconnect interval and the connect timeout on these sockets
    (before connect or bind), and IPv6 on those that connect (a listener gets it from
    :func:`bind`, which knows its address)."""
    for sock in sockets:
        sock.setsockopt(zmq.HEARTBEAT_IVL, int(LINK_INTERVAL * 1000))
        sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, int(LINK_TIMEOUT * 1000))
        sock.setsockopt(zmq.HEARTBEAT_TTL, int(LINK_TIMEOUT * 1000))
        sock.setsockopt(zmq.RECONNECT_IVL, int(RECONNECT_MIN * 1000))
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, int(RECONNECT_MAX * 1000))
        sock.setsockopt(zmq.CONNECT_TIMEOUT, int(CONNECT_TIMEOUT * 1000))
        if sock.type not in LISTENERS:
            dual_stack(sock)


def dual_stack(sock: zmq.Socket) -> None:
    """Let ``sock`` connect to IPv6 addresses as well as IPv4 ones (for a socket that needs no
    heartbeats: a tool asking a run once)."""
    sock.setsockopt(zmq.IPV6, 1)


def tcp_host(address: str) -> str | None:
    """The host of a ``tcp://HOST:PORT`` endpoint, brackets removed (``fd00::1`` for
    ``tcp://[fd00::1]:7700``); None for another transport."""
    if not address.startswith("tcp://"):
        return None
    host = address[len("tcp://"):].rsplit(":", 1)[0]
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def is_ipv6(host: str) -> bool:
    """Whether ``host`` (no brackets; a ``%zone`` allowed) is an IPv6 address."""
    try:
        return isinstance(ipaddress.ip_address(host), ipaddress.IPv6Address)
    except ValueError:
        return False


def binds_ipv6(address: str) -> bool:
    """Whether a socket binding ``address`` must have IPv6 on: an IPv6 address (``[::]`` for
    every interface), or a name that has one -- a connecting catbus socket, dual stack, resolves
    a name to its IPv6 address first, so the listener must be there. An IPv4 address, ``*``,
    an interface name and a name without an IPv6 address bind IPv4 only."""
    host = tcp_host(address)
    if not host or host == "*":
        return False
    if is_ipv6(host):
        return True
    try:
        ipaddress.ip_address(host)
        return False
    except ValueError:
        pass
    try:
        return bool(socket.getaddrinfo(host, None, socket.AF_INET6, socket.SOCK_STREAM))
    except (OSError, UnicodeError):
        return False


def bind(sock: zmq.Socket, address: str) -> str:
    """Bind ``sock`` to ``address`` with IPv6 on exactly when the address needs it
    (:func:`binds_ipv6`); returns the endpoint bound (``ZMQ_LAST_ENDPOINT``: the real port).

    Raises:
        zmq.ZMQError: As ``zmq.Socket.bind``; :func:`bind_problem` says what it means.
    """
    if address.startswith("tcp://"):
        sock.setsockopt(zmq.IPV6, int(binds_ipv6(address)))
    sock.bind(address)
    return sock.getsockopt(zmq.LAST_ENDPOINT).decode()


def bind_problem(address: str, exc: zmq.ZMQError, addresses: list[str] | None = None) -> str:
    """What a failed bind of ``address`` really means, for people: libzmq says "No such device"
    for a name that does not resolve and "Invalid argument" for a link-local IPv6 address
    without its interface. ``addresses``: this machine's, listed when the host is not one."""
    host = tcp_host(address)
    port = address.rsplit(":", 1)[-1] if host is not None else ""
    code = exc.errno
    mine = f" (this machine has {', '.join(addresses)})" if addresses else ""
    if host is None:
        return f"{exc.strerror}"
    if code == errno.EADDRINUSE:
        return (f"port {port} is in use on {host} (another run, or another program); pick "
                f"another port")
    if code == errno.EACCES:
        return f"port {port} needs privileges (ports below 1024); pick a port above 1023"
    if code == errno.EADDRNOTAVAIL:
        return (f"{host} is not an address of this machine{mine}; give one of its addresses, "
                f"or 0.0.0.0 (IPv4) or [::] (IPv6 and IPv4) for every interface")
    if code == errno.EINVAL and is_ipv6(host) and ipaddress.ip_address(host).is_link_local \
            and "%" not in host:
        return (f"{host} is link-local: name its interface too, e.g. [{host}%eth0], or use a "
                f"global or unique-local address")
    if code == errno.ENODEV:
        return (f"{host} is neither an address of this machine nor a name that resolves to "
                f"one{mine}; an IPv6 address goes in brackets: tcp://[fd00::1]:{port}")
    return f"{exc.strerror}"


__all__ = ["keep_links_alive", "dual_stack", "bind", "bind_problem", "binds_ipv6", "tcp_host",
           "is_ipv6", "LINK_INTERVAL", "LINK_TIMEOUT", "RECONNECT_MIN", "RECONNECT_MAX",
           "CONNECT_TIMEOUT"]
