"""The live Foxglove bridge's listening port, open to clients of both WebSocket subprotocols.

foxglove-sdk's server (0.30) speaks the subprotocol ``foxglove.sdk.v1`` only and refuses a
handshake that offers just ``foxglove.websocket.v1`` with HTTP 400; the older Foxglove Studio,
Lichtblick before its update, and other tools built on ``@foxglove/ws-protocol`` offer only that
one. The two protocols are the same messages under two names (Foxglove's own statement, and
what ``foxglove.sdk.v1``-aware clients assume when they offer both), so no second
implementation of the protocol is needed: only the name has to be negotiated.

:class:`SubprotocolFront` therefore owns the public port. The SDK's server listens on a
loopback port of its own, and every connection to the public port is passed through to it
byte for byte, except for the HTTP upgrade handshake: a request that offers
``foxglove.websocket.v1`` but not ``foxglove.sdk.v1`` is forwarded offering ``foxglove.sdk.v1``,
and the server's answer is passed back naming ``foxglove.websocket.v1``, as the client asked.
(``Sec-WebSocket-Accept`` depends on the key alone, so the handshake stays valid.) Both kinds
of client talk to the same server and see the same channels at the same moment; a client that
offers ``foxglove.sdk.v1`` (with or without the old name) is not touched at all.

Threads: one accepts; one per connection forwards (the Foxglove app opens one or two
connections, so a thread each costs nothing). :meth:`SubprotocolFront.close` stops accepting,
closes the listening socket (the port is free when it returns) and ends every connection.
"""

from __future__ import annotations

import selectors
import socket
import threading
from typing import Sequence

#: The subprotocol foxglove-sdk's server speaks.
SDK_SUBPROTOCOL = "foxglove.sdk.v1"
#: The older name of the same protocol (``@foxglove/ws-protocol``, Foxglove Studio, Lichtblick).
LEGACY_SUBPROTOCOL = "foxglove.websocket.v1"
#: The longest HTTP head (request or response) the front reads before it gives up.
HEAD_LIMIT = 64 * 1024
#: Seconds a client (or the server) may take to send its handshake.
HANDSHAKE_TIMEOUT = 10.0
_HEADER = b"sec-websocket-protocol"


def offered_subprotocols(head: bytes) -> list[str]:
    """The subprotocols an HTTP head names in its ``Sec-WebSocket-Protocol`` headers (one
    header with a comma-separated list, or several headers), in order."""
    offered: list[str] = []
    for line in head.split(b"\r\n")[1:]:
        name, sep, value = line.partition(b":")
        if sep and name.strip().lower() == _HEADER:
            offered += [t.strip().decode("latin-1") for t in value.split(b",") if t.strip()]
    return offered


def _replace_subprotocols(head: bytes, value: str) -> bytes:
    """``head`` with its ``Sec-WebSocket-Protocol`` headers replaced by one naming ``value``."""
    lines = head.split(b"\r\n")
    kept = [lines[0]]
    placed = False
    for line in lines[1:]:
        name, sep, _ = line.partition(b":")
        if sep and name.strip().lower() == _HEADER:
            if not placed:
                kept.append(b"Sec-WebSocket-Protocol: " + value.encode("latin-1"))
                placed = True
            continue
        kept.append(line)
    return b"\r\n".join(kept)


def rewrite_request(head: bytes) -> tuple[bytes, bool]:
    """The upgrade request to forward to the SDK's server, and whether the client speaks only
    the older name (its answer must then be renamed back, :func:`rewrite_response`)."""
    offered = offered_subprotocols(head)
    if SDK_SUBPROTOCOL in offered or LEGACY_SUBPROTOCOL not in offered:
        return head, False
    return _replace_subprotocols(head, SDK_SUBPROTOCOL), True


def rewrite_response(head: bytes) -> bytes:
    """The server's handshake answer for a client that asked for the older name: the
    subprotocol it accepted named as the client knows it (anything else is untouched)."""
    if SDK_SUBPROTOCOL not in offered_subprotocols(head):
        return head
    return _replace_subprotocols(head, LEGACY_SUBPROTOCOL)


def _read_head(sock: socket.socket) -> tuple[bytes, bytes] | None:
    """An HTTP head (without its blank line) and the bytes read past it; None if the peer
    closed first or sent more than :data:`HEAD_LIMIT` bytes without ending it."""
    data = b""
    while b"\r\n\r\n" not in data:
        if len(data) > HEAD_LIMIT:
            return None
        chunk = sock.recv(4096)
        if not chunk:
            return None
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


class SubprotocolFront:
    """Listen on ``host:port`` (0: a free port; :attr:`port` is the actual one) and pass every
    connection to the WebSocket server at ``upstream``, negotiating the older subprotocol name
    for clients that only know it (see the module documentation)."""

    def __init__(self, host: str, port: int, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
        listener = socket.socket(family, kind, proto)
        try:
            # A port left in TIME_WAIT by the previous bridge's connections is free to take.
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(address)
            listener.listen(64)
        except OSError:
            listener.close()
            raise
        self._listener = listener
        self.port: int = listener.getsockname()[1]
        #: Connections accepted, and those that asked for the older subprotocol name only.
        self.clients = 0
        self.legacy_clients = 0
        self._wake_read, self._wake_write = socket.socketpair()
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._workers: list[threading.Thread] = []
        self._closed = False
        self._thread = threading.Thread(target=self._accept, name="catbus-foxglove-front",
                                        daemon=True)
        self._thread.start()

    def close(self, timeout: float = 5.0) -> None:
        """Stop accepting and free the port, then end every connection (idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            sockets = list(self._sockets)
        self._wake_write.send(b"x")
        self._thread.join(timeout)
        self._listener.close()
        for sock in sockets:
            _shutdown(sock)
        for worker in list(self._workers):
            worker.join(timeout)
        self._wake_read.close()
        self._wake_write.close()

    # -- internals ------------------------------------------------------------------------------
    def _accept(self) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(self._listener, selectors.EVENT_READ)
            selector.register(self._wake_read, selectors.EVENT_READ)
            while True:
                events = selector.select()
                if any(key.fileobj is self._wake_read for key, _ in events):
                    return
                try:
                    client, _ = self._listener.accept()
                except OSError:
                    continue
                with self._lock:
                    if self._closed:
                        client.close()
                        return
                    self._sockets.add(client)
                    self.clients += 1
                    self._workers = [w for w in self._workers if w.is_alive()]
                    worker = threading.Thread(target=self._serve, args=(client,),
                                              name="catbus-foxglove-client", daemon=True)
                    self._workers.append(worker)
                worker.start()

    def _track(self, sock: socket.socket) -> bool:
        with self._lock:
            if self._closed:
                return False
            self._sockets.add(sock)
            return True

    def _serve(self, client: socket.socket) -> None:
        server: socket.socket | None = None
        try:
            client.settimeout(HANDSHAKE_TIMEOUT)
            request = _read_head(client)
            if request is None:
                return
            head, rest = request
            head, legacy = rewrite_request(head)
            if legacy:
                with self._lock:
                    self.legacy_clients += 1
            server = socket.create_connection(self.upstream, timeout=HANDSHAKE_TIMEOUT)
            if not self._track(server):
                return
            server.sendall(head + b"\r\n\r\n" + rest)
            answer = _read_head(server)
            if answer is None:
                return
            head, rest = answer
            if legacy:
                head = rewrite_response(head)
            client.sendall(head + b"\r\n\r\n" + rest)
            client.settimeout(None)
            server.settimeout(None)
            _splice((client, server))
        except OSError:
            pass   # a client gone, or close(): the connection ends either way
        finally:
            for sock in (client, server):
                if sock is not None:
                    with self._lock:
                        self._sockets.discard(sock)
                    _shutdown(sock)
                    sock.close()


def _splice(pair: Sequence[socket.socket]) -> None:
    """Copy bytes both ways between the two sockets until either side closes."""
    a, b = pair
    other = {a: b, b: a}
    with selectors.DefaultSelector() as selector:
        selector.register(a, selectors.EVENT_READ)
        selector.register(b, selectors.EVENT_READ)
        while True:
            for key, _ in selector.select():
                source = key.fileobj
                data = source.recv(65536)
                if not data:
                    return
                other[source].sendall(data)


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


__all__ = ["SubprotocolFront", "SDK_SUBPROTOCOL", "LEGACY_SUBPROTOCOL", "rewrite_request",
           "rewrite_response", "offered_subprotocols"]
