"""What one connection to a node's publishing socket may cost it: a subscription flood costs the
flooder its connection, not the node its memory (``docs/design.md``, "Floods and bad input").

libzmq's XPUB keeps every subscription a connection sent until that connection closes (about
800 bytes each: 2 million of them took a node from 48 MB to 1.5 GB), ``XPUB_MANUAL`` or not,
and has no per-connection limit nor a way to close one connection of a bound socket. Two things
it does have make one:

* every subscription message read from the XPUB carries its connection's metadata, including
  the connection's file descriptor (``ZMQ_SRCFD``) and the peer's address (``Peer-Address``:
  the IP address; on ipc ``:uid:gid:pid`` of the peer process);
* a connection whose socket is shut down (``shutdown(2)`` on that descriptor, which libzmq keeps
  open) ends in libzmq as if the peer had left: its pipe is terminated, and its subscriptions
  with it.

So :class:`FloodGuard` counts the subscription messages of each connection and cuts one that
sends more than any honest peer needs (:data:`SUBSCRIPTIONS_PER_PEER`; an honest peer sends at
most one per topic of the run, plus its progress and hello) or more than a few to topics the
run does not have (:data:`OUTSIDE_PER_PEER`). Each cut is counted by the peer's address and
said once on stderr.

A flooder that is cut comes back: a libzmq peer reconnects within 100 ms and sends again every
subscription it ever made, and every cut connection costs libzmq a walk of its whole
subscription table -- cut after cut, a 2-million flood kept a node at one step a second. So
the address of a connection cut for flooding is barred for :data:`BARRED_FOR` seconds (renewed
while it keeps trying): the socket's monitor reports each connection as it is accepted
(``ZMQ_EVENT_ACCEPTED``, with its descriptor), and one from a barred address is cut before it
has subscribed anything much. The address is the peer's IP address, or on ipc its process
(``SO_PEERCRED``): on TCP, an honest node on the flooder's host cannot connect again (a lost
link, a restart) while the flooder keeps trying -- its established connection is untouched.
After cuts, freed memory is handed back to the system (glibc's ``malloc_trim``), which a
fragmented heap would otherwise keep.

Why not the alternatives (measured or read in libzmq 4.3): ``ZMQ_MAXMSGSIZE`` bounds the size
of one subscription (set too: :data:`MAX_SUBSCRIPTION_BYTES`), not their number; closing and
binding the XPUB again frees everything but cuts every honest subscriber too, each time, and
the flooder comes back as fast; ZAP sees a connection before it subscribes and could bar an
address, but an unsecured run (ipc, an open TCP bus) has no ZAP handler.

A socket has one monitor: the guard reads it and hands the handshake failures a keyed run's
ZAP handler reports to that handler (:meth:`FloodGuard.watch`).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import socket
import struct
import time
import uuid
from collections import defaultdict
from typing import Any, Callable

import zmq
from zmq.utils.monitor import parse_monitor_message

from catbus.security.messages import say_once

#: The most subscription messages (subscribe or unsubscribe) one connection may send, at the
#: least: the guard allows twice the run's topics plus this, whichever is more.
SUBSCRIPTIONS_PER_PEER = 256
#: The most subscriptions to topics the run does not have one connection may send (a tool asking
#: for a topic by a wrong name sends one; the graph changing under a late joiner a few).
OUTSIDE_PER_PEER = 16
#: The longest subscription message a publishing socket accepts (``ZMQ_MAXMSGSIZE`` on it):
#: libzmq closes a connection that sends a longer one, before storing it.
MAX_SUBSCRIPTION_BYTES = 64 * 1024
#: The subscription messages libzmq holds for one connection before it stops reading it
#: (``ZMQ_RCVHWM`` of a publishing socket): what it stores from a flooding connection before
#: the node has read enough of it to cut it.
SUBSCRIPTION_HWM = 16
#: Seconds an address whose connection was cut for flooding may not connect (renewed by each
#: attempt meanwhile).
BARRED_FOR = 10.0
#: Seconds between two hand-backs of freed memory to the system (:func:`trim_memory`).
TRIM_EVERY = 1.0

_SRCFD = int(getattr(zmq, "SRCFD", 2))
_ACCEPTED = int(zmq.EVENT_ACCEPTED)
#: The monitor events a keyed publisher's ZAP handler reports (catbus.security.zap.watch).
_HANDSHAKE_FAILED = int(zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL) | \
    int(zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)


def _libc_trim() -> Any:
    """glibc's ``malloc_trim``, or None (another C library: nothing to call)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim
    except (OSError, AttributeError):
        return None


_malloc_trim = _libc_trim()


def trim_memory() -> None:
    """Hand the heap's free pages back to the system: libzmq's subscription tables are many
    small blocks, and what a cut connection frees would otherwise stay in the process."""
    if _malloc_trim is not None:
        _malloc_trim(0)


def peer_address(frame: zmq.Frame) -> str:
    """Who is at the other end of the connection ``frame`` came on, for people: the IP
    address (TCP), ``pid N`` (ipc: the peer process, from the kernel), or ``?``."""
    try:
        address = frame.get("Peer-Address")
    except zmq.ZMQError:
        return "?"
    if not isinstance(address, str):
        address = bytes(address).decode(errors="replace")
    host, sep, credentials = address.partition(":")
    parts = credentials.split(":") if sep else []
    if len(parts) == 3 and all(part.isdigit() for part in parts):   # ipc: host:uid:gid:pid
        return f"pid {parts[2]}"
    return address or "?"


class _Connection:
    """What one connection has sent: its descriptor's socket identity (inode, to tell a new
    connection on a reused descriptor), subscription messages, those outside the run."""

    __slots__ = ("inode", "messages", "outside", "address")

    def __init__(self, inode: int, address: str) -> None:
        self.inode = inode
        self.messages = 0
        self.outside = 0
        self.address = address


class FloodGuard:
    """Per-connection budgets of one publishing socket (see the module docstring).

    ``endpoint`` is the socket's bound endpoint: a descriptor is cut only if it is a connection
    accepted on it (its local address is that endpoint's), never one of the process's own.
    """

    def __init__(self, name: str, endpoint: str) -> None:
        self.name = name
        self.endpoint = endpoint
        self._local = _local_address(endpoint)
        self.budget = SUBSCRIPTIONS_PER_PEER
        self._connections: dict[int, _Connection] = {}
        #: address -> until when (monotonic) its connections are cut as they come
        self.barred: dict[str, float] = {}
        #: The monitor's socket (see :meth:`watch`), and who hears of failed handshakes.
        self.monitor: zmq.Socket | None = None
        self._handshake_failed: Callable[[str, dict], None] | None = None
        #: peer address -> subscriptions refused (outside the run, or past a budget)
        self.refused_from: defaultdict[str, int] = defaultdict(int)
        #: peer address -> connections cut
        self.cut_from: defaultdict[str, int] = defaultdict(int)
        self.cut = 0
        self._trim_due = 0.0
        self._trim_wanted = False

    def watch(self, ctx: zmq.Context, sock: zmq.Socket,
              handshake_failed: Callable[[str, dict], None] | None = None) -> None:
        """Read the monitor of publishing socket ``sock`` (bound to :attr:`endpoint`): the
        connections it accepts, and its failed handshakes, which go to ``handshake_failed``
        (a keyed run's ZAP handler: the socket's one monitor is this one)."""
        address = f"inproc://catbus-floodguard-{uuid.uuid4().hex}"
        sock.monitor(address, _ACCEPTED | (_HANDSHAKE_FAILED if handshake_failed else 0))
        self.monitor = ctx.socket(zmq.PAIR)
        self.monitor.setsockopt(zmq.LINGER, 0)
        self.monitor.connect(address)
        self._handshake_failed = handshake_failed

    def read_events(self) -> None:
        """Handle what the monitor reported: a connection accepted from a barred address is
        cut at once; one from anywhere else starts with a clean count."""
        monitor = self.monitor
        if monitor is None:
            return
        while True:
            try:
                event = parse_monitor_message(monitor.recv_multipart(zmq.NOBLOCK))
            except zmq.Again:
                return
            except (zmq.ZMQError, ValueError):
                continue
            kind, fd = int(event["event"]), int(event["value"])
            if kind == _ACCEPTED:
                self._accepted(fd)
            elif kind & _HANDSHAKE_FAILED and self._handshake_failed is not None:
                self._handshake_failed(self.endpoint, event)

    def _accepted(self, fd: int) -> None:
        address = _peer_of(fd)
        connection = self._connections[fd] = _Connection(_inode(fd), address)
        until = self.barred.get(address)
        if until is not None:
            now = time.monotonic()
            if now < until:
                self.barred[address] = now + BARRED_FOR
                self._cut(fd, connection, "barred")
            else:
                del self.barred[address]

    def know_topics(self, count: int) -> None:
        """The run has ``count`` topics: an honest peer subscribes to each at most once."""
        self.budget = max(SUBSCRIPTIONS_PER_PEER, 2 * count + 64)

    def admit(self, frame: zmq.Frame, outside: bool) -> bool:
        """Count one subscription message (``outside``: to a topic the run does not have);
        False if its connection is over budget -- the message is refused and the connection
        cut."""
        try:
            fd = frame.get(_SRCFD)
        except zmq.ZMQError:   # no connection behind it (inproc): nothing to count
            return True
        if fd < 0:
            return True
        # What is still queued from a cut connection counts against whatever connection has
        # its number now: most often the same peer, back (a libzmq peer reconnects at once);
        # an honest one that got the number is at worst cut once, and reconnects.
        connection = self._connections.get(fd)
        if connection is None:   # accepted before the monitor was read (or no monitor)
            connection = self._connections[fd] = _Connection(_inode(fd), peer_address(frame))
        connection.messages += 1
        connection.outside += outside
        if connection.messages <= self.budget and connection.outside <= OUTSIDE_PER_PEER:
            return True
        if _inode(fd) != connection.inode:
            # A new connection on a number an earlier one had: it starts over.
            connection = self._connections[fd] = _Connection(_inode(fd), peer_address(frame))
            connection.messages, connection.outside = 1, int(outside)
            return True
        self._cut(fd, connection)
        return False

    def queue_empty(self) -> None:
        """The socket has no subscription message left: what cut connections held can be
        handed back to the system."""
        if self._trim_wanted and time.monotonic() >= self._trim_due:
            self._trim_wanted = False
            self._trim_due = time.monotonic() + TRIM_EVERY
            trim_memory()

    def forget(self, fd: int) -> None:
        self._connections.pop(fd, None)

    def _cut(self, fd: int, connection: _Connection, why: str = "") -> None:
        """Shut the connection's socket down (libzmq then closes it as if the peer had left),
        count it, bar its address for a while, and say so once per address."""
        self._connections.pop(fd, None)
        if not _shutdown_if_accepted(fd, self._local):
            return
        self.cut += 1
        self.cut_from[connection.address] += 1
        self._trim_wanted = True
        if why:   # barred: said when it was first cut
            return
        self.barred[connection.address] = time.monotonic() + BARRED_FOR
        why = (f"{connection.outside} subscriptions to topics outside the run"
               if connection.outside > OUTSIDE_PER_PEER
               else f"more than {self.budget} subscriptions")
        say_once(("flood", self.name, self.endpoint, connection.address),
                 f"catbus: node {self.name}: cut a connection from {connection.address} to its "
                 f"publisher: {why} (a flood); new connections from there are refused for "
                 f"{BARRED_FOR:g} s after its last attempt. Counted in the node's "
                 f"malformed_by.subscriptions; said once per address")

    def close(self) -> None:
        if self.monitor is not None:
            self.monitor.close(0)
            self.monitor = None


def _peer_of(fd: int) -> str:
    """The address of the peer of accepted connection ``fd``, as :func:`peer_address` says it
    of a message: ``pid N`` (ipc), the IP address (TCP), or ``?``."""
    try:
        dup = os.dup(fd)
    except OSError:
        return "?"
    try:
        sock = socket.socket(fileno=dup)
    except OSError:
        os.close(dup)
        return "?"
    try:
        if sock.family == socket.AF_UNIX and hasattr(socket, "SO_PEERCRED"):
            pid, _uid, _gid = struct.unpack("3i", sock.getsockopt(
                socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
            return f"pid {pid}"
        host = sock.getpeername()[0]
        return host[len("::ffff:"):] if host.startswith("::ffff:") and "." in host else host
    except OSError:
        return "?"
    finally:
        sock.close()


def _inode(fd: int) -> int:
    try:
        return os.fstat(fd).st_ino
    except OSError:
        return -1


def _local_address(endpoint: str) -> Any:
    """What ``getsockname`` says of a connection accepted on ``endpoint``: the ipc path, or
    the TCP port."""
    if endpoint.startswith("ipc://"):
        return endpoint[len("ipc://"):]
    if endpoint.startswith("tcp://"):
        try:
            return int(endpoint.rsplit(":", 1)[1])
        except ValueError:
            return None
    return None


def _shutdown_if_accepted(fd: int, local: Any) -> bool:
    """``shutdown(fd)`` if ``fd`` is a connection accepted on our endpoint (``local``, see
    :func:`_local_address`); True if it was. The descriptor stays libzmq's: a duplicate is
    shut down (that shuts the socket itself) and closed."""
    if local is None:
        return False
    try:
        dup = os.dup(fd)
    except OSError:
        return False
    try:
        sock = socket.socket(fileno=dup)
    except OSError:
        os.close(dup)
        return False
    try:
        name = sock.getsockname()
        ours = name == local if isinstance(local, str) else (
            isinstance(name, tuple) and len(name) >= 2 and name[1] == local)
        if ours:
            sock.shutdown(socket.SHUT_RDWR)
        return ours
    except OSError:
        return False
    finally:
        sock.close()


__all__ = ["FloodGuard", "BARRED_FOR", "SUBSCRIPTION_HWM", "SUBSCRIPTIONS_PER_PEER", "OUTSIDE_PER_PEER", "MAX_SUBSCRIPTION_BYTES",
           "peer_address", "trim_memory"]
