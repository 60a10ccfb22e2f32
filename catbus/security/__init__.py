"""CURVE security for runs over TCP (``docs/protocol.md``, "Security"; ``docs/design.md``,
"Security").

With keys, every TCP socket of a run uses CURVE: the registry's ROUTER is a server with the bus
key pair; each node's XPUB is a server with the node's own client key pair (a remote host does
not hold the bus secret), whose public key the registry announces in the graph (``key``,
``standby_key``); DEALER and SUB sockets are clients. A ZAP handler (:class:`Authenticator`, a
``zmq.auth`` ThreadAuthenticator) in the launcher's process and in every node process admits only
keys of the allow-list (nodes learn it from the welcome's ``run_info["security"]``); the registry
(:class:`Guard`) lets a key register only the node names the allow-list gives it, reading the
ZAP User-Id of each ``register``. Every refusal is said once on stderr with its address; a
client refused in the handshake gets a clear error from its socket monitor (:class:`Handshake`).

Without keys (ipc, or an open TCP bus) the same code runs against stand-ins that do nothing:
:class:`OpenGuard` for the registry, :class:`OpenSession` for a node's data plane,
:class:`PlainClient` for a dialing socket, :data:`NO_AUTH` for a ZAP handler.

By job:

* :mod:`catbus.security.keys` -- keys folders: generating, loading, the allow-list;
* :mod:`catbus.security.messages` -- what is said to people (refusals once, the open-bus warning);
* :mod:`catbus.security.zap` -- server sockets and the ZAP handler;
* :mod:`catbus.security.guard` -- the registry's permissions;
* :mod:`catbus.security.client` -- dialing a run and reading the handshake;
* :mod:`catbus.security.session` -- a node's publisher and subscriber.
"""

from catbus.security.client import (PLAIN, CurveClient, Handshake, PlainClient, Refused,
                                    client_for, dial, wait)
from catbus.security.guard import (Guard, OpenGuard, Permissions, registry_guard, run_info,
                                   serve_registry)
from catbus.security.keys import (ALLOW_FILE, ANY_NODE, BUS_PUBLIC, BUS_SECRET, CLIENT_PUBLIC,
                                  CLIENT_SECRET, CLIENTS, LOCAL, Keys, for_bus, generate,
                                  host_keys, load_keys, load_option, short)
from catbus.security.messages import (SAY_AT_MOST, announce, node_option, open_bus_warning,
                                      say_once)
from catbus.security.session import (OpenSession, Session, close, connect, learn, publisher,
                                     trust)
from catbus.security.zap import (ALLOW_LIST_WAIT, NO_AUTH, ZAP_DOMAIN, Authenticator,
                                 NoAuthenticator, authenticator)

__all__ = ["Keys", "load_keys", "load_option", "host_keys", "generate", "for_bus", "short",
           "Guard", "OpenGuard", "Permissions", "registry_guard", "serve_registry", "run_info",
           "Session", "OpenSession", "publisher", "connect", "learn", "trust", "close",
           "Handshake", "Refused", "CurveClient", "PlainClient", "PLAIN", "client_for", "dial",
           "wait", "Authenticator", "NoAuthenticator", "NO_AUTH", "authenticator",
           "say_once", "SAY_AT_MOST", "announce", "node_option", "open_bus_warning",
           "BUS_PUBLIC", "BUS_SECRET", "CLIENT_PUBLIC", "CLIENT_SECRET", "ALLOW_FILE", "CLIENTS",
           "LOCAL", "ANY_NODE", "ALLOW_LIST_WAIT", "ZAP_DOMAIN"]
