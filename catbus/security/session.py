"""A node's data plane on a secured run: its XPUB is a CURVE server with the node's own key
pair (a remote host does not hold the bus secret), admitting the run's clients; its SUB is a
CURVE client that connects to each publisher with the key the registry announced for it.

:func:`publisher` gives a :class:`Session` on a keyed TCP run and an :class:`OpenSession`
otherwise, which connects plainly and ignores keys, so that the data plane does the same on both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

import zmq

from catbus.security.client import set_client_keys
from catbus.security.keys import LOCAL, Keys, for_bus
from catbus.security.messages import say_once
from catbus.security.zap import NO_AUTH, Authenticator, NoAuthenticator, authenticator, serve


@dataclass
class Session:
    """A node process's data-plane security: its XPUB is a CURVE server with the node's key
    pair; its SUB a client that connects to each peer with that peer's key from the graph."""

    keys: Keys
    auth: Authenticator
    peer_keys: dict = field(default_factory=dict)   # endpoint -> public key (z85 str)

    def connect(self, sock: zmq.Socket, endpoint: str) -> None:
        """Connect SUB ``sock`` to a publisher with its key; without one from the registry,
        not at all (a CURVE client cannot talk to a server whose key it does not know)."""
        key = self.peer_keys.get(endpoint)
        if not key:
            say_once(("no key", endpoint), f"catbus: security: not connecting to {endpoint}: "
                                           f"the registry gave no key for it")
            return
        sock.curve_serverkey = key.encode()
        sock.connect(endpoint)

    def learn(self, nodes: Iterable[Mapping[str, Any]]) -> None:
        """Note the publishers' keys of a graph message."""
        for entry in nodes:
            for where, key in (("endpoint", "key"), ("standby", "standby_key")):
                if entry.get(where) and entry.get(key):
                    self.peer_keys[str(entry[where])] = str(entry[key])

    def trust(self, info: Mapping[str, Any] | None) -> None:
        """Admit to this node's publisher the clients the registry's welcome lists: until then
        its ZAP handler holds their handshakes."""
        clients = ((info or {}).get("security") or {}).get("clients") or []
        self.auth.allow({str(key).encode(): "client" for key in clients
                         if isinstance(key, str) and len(key) == 40})

    def close(self) -> None:
        self.auth.stop()


class OpenSession:
    """A node's data plane on an unsecured run: connects plainly, has no keys to learn, admits
    anyone."""

    auth: NoAuthenticator = NO_AUTH

    def connect(self, sock: zmq.Socket, endpoint: str) -> None:
        """Connect SUB ``sock`` to a publisher."""
        sock.connect(endpoint)

    def learn(self, nodes: Iterable[Mapping[str, Any]]) -> None:
        """Nothing to note: publishers have no keys."""

    def trust(self, info: Mapping[str, Any] | None) -> None:
        """Nothing to admit: the publisher admits anyone."""

    def close(self) -> None:
        """Nothing to stop."""


def publisher(ctx: zmq.Context, pub: zmq.Socket, sub: zmq.Socket, keys: Keys | None,
              bind: str, name: str = "") -> Session | OpenSession:
    """Secure a node's XPUB (before it binds ``bind``) and SUB when the run is keyed and on
    TCP; else an :class:`OpenSession`."""
    keys = for_bus(keys, bind)
    if keys is None:
        return OpenSession()
    serve(pub, keys.public, keys.secret)
    set_client_keys(sub, keys)
    auth = authenticator(ctx, f"node {name}'s publisher" if name else "a node's publisher")
    auth.allow({keys.public: LOCAL}, complete=False)   # the rest: trust(), from the welcome
    auth.watch(pub, bind)
    return Session(keys, auth)


def connect(sock: zmq.Socket, endpoint: str, session: Session | OpenSession) -> None:
    """Connect a data SUB to a peer's endpoint (with its key when the run is keyed)."""
    session.connect(sock, endpoint)


def learn(session: Session | OpenSession, nodes: Iterable[Mapping[str, Any]]) -> None:
    """Note the publishers' keys of a graph message."""
    session.learn(nodes)


def trust(session: Session | OpenSession, info: Mapping[str, Any] | None) -> None:
    """Admit to this node's publisher the clients the registry's welcome lists."""
    session.trust(info)


def close(session: Session | OpenSession) -> None:
    """Stop the session's ZAP handler (after its sockets are closed)."""
    session.close()


__all__ = ["Session", "OpenSession", "publisher", "connect", "learn", "trust", "close"]
