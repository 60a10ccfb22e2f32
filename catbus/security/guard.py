"""The registry's side of a secured run: its ROUTER is a CURVE server with the bus key pair,
the context's ZAP handler admits the allow-list, and a key registers (or swaps) only the node
names the allow-list gives it.

:func:`registry_guard` gives a :class:`Guard` on a keyed TCP bus and an :class:`OpenGuard` (which
lets everything through and changes nothing) otherwise, so that the registry reads, checks and
closes alike on both.
"""

from __future__ import annotations

from typing import Any

import zmq

from catbus.errors import ConfigError
from catbus.security.keys import ALLOW_FILE, ANY_NODE, AllowList, Keys, for_bus, not_a_host, short
from catbus.security.messages import say_once
from catbus.security.zap import NO_AUTH, Authenticator, NoAuthenticator, authenticator, serve


class Permissions:
    """What each key may do at the registry, decided from the allow-list and the ZAP User-Id of
    each message (no socket): :meth:`sender` notes who sent a message, :meth:`register_problem`
    and :meth:`swap_problem` say why that key may not do it."""

    def __init__(self, allowed: AllowList) -> None:
        self.allowed = allowed
        #: The User-Id (public key, z85) of the message being handled.
        self.user = b""
        #: data endpoint -> public key of the process that registered it
        self.endpoint_keys: dict[str, str] = {}
        #: routing id -> the key its connection authenticated with
        self.identity_keys: dict[bytes, bytes] = {}
        self.refused = 0

    def sender(self, frames: list) -> tuple[bytes, bytes]:
        """``[identity, data]`` frames (received with ``copy=False``) as bytes; notes the
        sender's key."""
        identity, data = frames
        try:
            self.user = (data.get("User-Id") or "").encode()
        except (zmq.ZMQError, AttributeError):
            self.user = b""
        identity = identity.bytes
        # A connection keeps the key it first spoke with: another key taking over its routing
        # id (ROUTER_HANDOVER) is refused, not believed (ValueError: counted as malformed).
        if self.identity_keys.setdefault(identity, self.user) != self.user:
            self.refused += 1
            say_once(("handover", self.user), f"catbus: security: the registry refused messages "
                                              f"of client key {short(self.user)} sent under "
                                              f"another connection's identity")
            raise ValueError("a routing id taken over by another key")
        return identity, data.bytes

    def _names(self) -> tuple[str, frozenset]:
        return self.allowed.get(self.user, ("?", frozenset()))

    def register_problem(self, message: Any) -> str | None:
        """Why the sender's key may not register ``message.name``, else None (and the key of the
        endpoint it registers is noted for the graph)."""
        client, names = self._names()
        if ANY_NODE in names or message.name in names:
            self.endpoint_keys[str(message.endpoint)] = self.user.decode()
            return None
        self.refused += 1
        allowed = ", ".join(sorted(names)) or "none"
        reason = (f"client key {short(self.user)} ({client!r} in {ALLOW_FILE}) may register only "
                  f"{allowed}, not {message.name!r}; add the name to its entry with `catbus keys "
                  f"generate DIR --node {message.name}={client}`, or use that node's key")
        say_once(("register", self.user, message.name), f"catbus: security: refused to register "
                                                        f"{message.name!r}: {reason}")
        return reason

    def swap_problem(self, node: str) -> str | None:
        """Why the sender's key may not ask to replace ``node``, else None: replacing a node is
        registering its name."""
        client, names = self._names()
        if ANY_NODE in names or node in names:
            return None
        self.refused += 1
        return (f"client key {short(self.user)} ({client!r}) may not replace {node!r} (it may "
                f"register only {', '.join(sorted(names)) or 'none'})")

    def graph(self, entries: list[dict]) -> list[dict]:
        """Graph entries with the public key of each endpoint (``key``, ``standby_key``): a
        node's XPUB is a CURVE server with its own key pair."""
        for entry in entries:
            entry["key"] = self.endpoint_keys.get(entry.get("endpoint") or "", "")
            entry["standby_key"] = self.endpoint_keys.get(entry.get("standby") or "", "")
        return entries


class Guard(Permissions):
    """The registry's security on a keyed TCP bus: :class:`Permissions` over its ROUTER, made a
    CURVE server with the bus key pair, whose ZAP handler admits the allow-list."""

    #: The registry's socket is secured: its monitor reports refused handshakes.
    secured = True

    def __init__(self, ctx: zmq.Context, sock: zmq.Socket, keys: Keys, endpoint: str) -> None:
        if not keys.can_host:
            raise ConfigError("--keys", "keys", not_a_host(keys))
        super().__init__(keys.allowed)
        self.keys = keys
        serve(sock, keys.bus_public, keys.bus_secret)
        self.auth: Authenticator = authenticator(ctx, "the registry")
        self.auth.allow({key: client for key, (client, _) in keys.allowed.items()})
        # (Failed handshakes on this socket are reported through the registry's own monitor,
        # catbus.supervise.linkwatch.LinkWatch: a socket has one monitor.)
        self.endpoint = endpoint

    @property
    def refusals(self) -> int:
        """Everything refused: by key at the registry and in the handshake."""
        return self.refused + self.auth.refused

    def handshake_failed(self, event: dict) -> None:
        """A failed handshake the registry's socket monitor reported: said once, counted."""
        self.auth.handshake_failed(self.endpoint, event)

    def close(self) -> None:
        self.auth.stop()


class OpenGuard:
    """The registry's security on an unsecured bus (ipc, or TCP without keys): any sender may
    register and swap any node, the graph is left as it is, nothing is refused."""

    secured = False
    refused = 0
    refusals = 0
    user = b""
    auth: NoAuthenticator = NO_AUTH

    def __init__(self, endpoint: str = "") -> None:
        self.endpoint = endpoint

    def sender(self, frames: list) -> tuple[bytes, bytes]:
        """``[identity, data]`` frames as bytes (ValueError: not two frames)."""
        identity, data = [frame.bytes for frame in frames]
        return identity, data

    def register_problem(self, message: Any) -> str | None:
        """None: anyone may register any name."""
        return None

    def swap_problem(self, node: str) -> str | None:
        """None: anyone may ask to replace any node."""
        return None

    def graph(self, entries: list[dict]) -> list[dict]:
        """``entries`` unchanged: publishers have no keys to announce."""
        return entries

    def handshake_failed(self, event: dict) -> None:
        """Not a refusal: the socket checks no keys."""

    def close(self) -> None:
        """Nothing to stop."""


def registry_guard(ctx: zmq.Context, sock: zmq.Socket, keys: Keys | None,
                   bind: str) -> Guard | OpenGuard:
    """Secure the registry's ROUTER ``sock`` (before it binds ``bind``) when ``keys`` are given
    and the bus is TCP; else an :class:`OpenGuard`."""
    keys = for_bus(keys, bind)
    return Guard(ctx, sock, keys, bind) if keys is not None else OpenGuard(bind)


def serve_registry(ctx: zmq.Context, sock: zmq.Socket, keys: Keys | None,
                   bind: str) -> Guard | None:
    """:func:`registry_guard`, None for an unsecured bus: for callers that test for None."""
    guard = registry_guard(ctx, sock, keys, bind)
    return guard if guard.secured else None


def run_info(keys: Keys | None) -> dict:
    """What a keyed run tells its nodes in the welcome's ``run_info["security"]``: the public
    keys (z85) its nodes' publishers admit (every allow-listed client; tools included)."""
    allowed = keys.allowed if keys is not None else None
    return {"clients": sorted(key.decode() for key in allowed)} if allowed else {}


__all__ = ["Permissions", "Guard", "OpenGuard", "registry_guard", "serve_registry", "run_info"]
