"""CURVE security for runs over TCP: the whole policy in one place (``docs/protocol.md``,
"Security").

A keys folder (``catbus keys generate DIR``) holds::

    DIR/                      0700   the run's own host (where `catbus launch` runs)
      bus.key                 0600   the bus public key: the registry's CURVE server key
      bus.key_secret          0600   its secret; never leaves this host
      client.key              0600   this host's client key ("local"): the launcher's own nodes
      client.key_secret       0600     and tools; it may register any node
      allow.yaml              0600   the allow-list: each client's public key -> the node names
                                     it may register ("*": any)
      clients/NAME/           0700   one per client: copy it to that host, `--keys clients/NAME`
        bus.key, client.key, client.key_secret

Any folder with ``bus.key``, ``client.key`` and ``client.key_secret`` is a *client* folder
(``--keys DIR`` of ``catbus node``, ``catbus topic`` ...); the top folder is one too. Only the
top folder (with ``bus.key_secret`` and ``allow.yaml``) can host a run.

With keys, every TCP socket of a run uses CURVE: the registry's ROUTER is a server with the bus
key pair; each node's XPUB is a server with the node's own client key pair (a remote host does
not hold the bus secret), whose public key the registry announces in the graph (``key``,
``standby_key``); DEALER and SUB sockets are clients. A ZAP handler (:class:`Authenticator`, a
``zmq.auth`` ThreadAuthenticator) in the launcher's process and in every node process admits only
keys of the allow-list (nodes learn it from the welcome's ``run_info["security"]``); the registry
(:class:`Guard`) lets a key register only the node names the allow-list gives it, reading the
ZAP User-Id of each ``register``. Every refusal is said once on stderr with its address; a
client refused in the handshake gets a clear error from its socket monitor (:class:`Handshake`).
"""

from __future__ import annotations

import datetime
import os
import stat
import sys
import threading
import uuid
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils import z85
from zmq.utils.monitor import parse_monitor_message

from catbus.errors import CatbusError, ConfigError

BUS_PUBLIC, BUS_SECRET = "bus.key", "bus.key_secret"
CLIENT_PUBLIC, CLIENT_SECRET = "client.key", "client.key_secret"
ALLOW_FILE = "allow.yaml"
CLIENTS = "clients"
#: The client of the keys folder itself: the run's own host (its nodes and tools).
LOCAL = "local"
ANY_NODE = "*"
#: Seconds a node's ZAP handler holds a handshake while it waits for the allow-list (the
#: registry's welcome), before it decides on what it has.
ALLOW_LIST_WAIT = 10
ZAP_DOMAIN = b"catbus"
_NAME_OK = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.")


class Refused(CatbusError):
    """A handshake with a run was refused (key not allowed, keys missing, wrong bus key)."""

    exit_code = 1


# ------------------------------------------------------------------------------------------------
# Keys on disk
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Keys:
    """A loaded keys folder: this host's client key pair and the bus public key; on the run's
    own host also the bus secret and the allow-list (``{public key (z85): (client, names)}``)."""

    folder: Path
    public: bytes
    secret: bytes
    bus_public: bytes
    bus_secret: bytes | None = None
    allowed: Mapping[bytes, tuple[str, frozenset]] | None = None

    @property
    def can_host(self) -> bool:
        return self.bus_secret is not None and self.allowed is not None

    def client_of(self, key: bytes) -> str:
        entry = (self.allowed or {}).get(key)
        return entry[0] if entry else "?"

    def client_for_node(self, name: str) -> str | None:
        """The client folder (``clients/NAME``) whose key may register ``name``, if one."""
        for client, names in (self.allowed or {}).values():
            if client != LOCAL and name in names:
                return client
        return None


def _write_key(path: Path, public: bytes, secret: bytes | None) -> None:
    kind = "**Secret** Certificate" if secret else "Public Certificate"
    text = (f"#   ****  Generated on {datetime.datetime.now():%Y-%m-%d %H:%M} by catbus  ****\n"
            f"#   ZeroMQ CURVE {kind}\n"
            + ("#   DO NOT PROVIDE THIS FILE TO OTHER USERS nor change its permissions.\n"
               if secret else "")
            + f"\nmetadata\ncurve\n    public-key = \"{public.decode()}\"\n"
            + (f"    secret-key = \"{secret.decode()}\"\n" if secret else ""))
    _write_private(path, text)


def _write_private(path: Path, text: str) -> None:
    """Write ``path`` readable by the owner only (0600), whatever the umask."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def _private_dir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)


def generate(folder: str | os.PathLike, nodes: Mapping[str, Iterable[str]] = {}) -> dict:
    """Create (or extend) a keys folder: the bus key pair and the local client key if missing,
    and for each ``client -> node names`` a client key pair in ``clients/CLIENT/`` allowed to
    register those names. Existing keys are kept; node names are added to a client's.
    Returns ``{"created": [...paths], "allow": {client: [names]}}``."""
    import yaml

    root = Path(folder).absolute()
    _private_dir(root)
    created: list[str] = []

    def pair(public: Path, secret: Path) -> tuple[bytes, bytes]:
        if public.exists() and secret.exists():
            loaded = zmq.auth.load_certificate(secret)
            return loaded[0], loaded[1]
        pub, sec = zmq.curve_keypair()
        _write_key(public, pub, None)
        _write_key(secret, pub, sec)
        created.extend([str(public), str(secret)])
        return pub, sec

    bus_pub, _ = pair(root / BUS_PUBLIC, root / BUS_SECRET)
    local_pub, _ = pair(root / CLIENT_PUBLIC, root / CLIENT_SECRET)
    allow = _read_allow(root / ALLOW_FILE) if (root / ALLOW_FILE).exists() else {}
    allow[LOCAL] = {"key": local_pub.decode(), "nodes": [ANY_NODE]}
    for client, names in nodes.items():
        if not client or not set(client) <= _NAME_OK or client == LOCAL:
            raise ConfigError("catbus keys", "--node", f"{client!r} is not a usable client name "
                                                       f"(letters, digits, '_', '-', '.'; not "
                                                       f"{LOCAL!r})")
        where = root / CLIENTS / client
        _private_dir(root / CLIENTS)
        _private_dir(where)
        pub, _ = pair(where / CLIENT_PUBLIC, where / CLIENT_SECRET)
        _write_key(where / BUS_PUBLIC, bus_pub, None)
        entry = allow.setdefault(client, {"key": pub.decode(), "nodes": []})
        entry["key"] = pub.decode()
        entry["nodes"] = sorted(set(entry.get("nodes") or []) | set(names))
    text = ("# catbus allow-list: the client keys that may join this run, and the node names each\n"
            "# may register (\"*\": any). Written by `catbus keys generate`; keep it 0600.\n"
            + yaml.safe_dump({"clients": allow}, sort_keys=False))
    _write_private(root / ALLOW_FILE, text)
    return {"created": created, "allow": {c: list(e["nodes"]) for c, e in allow.items()}}


def _read_allow(path: Path) -> dict[str, dict]:
    import yaml

    where = str(path)
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(where, "", f"cannot read the allow-list: {exc}") from None
    clients = data.get("clients") if isinstance(data, dict) else None
    if not isinstance(clients, dict):
        raise ConfigError(where, "clients", "must be a mapping client -> {key, nodes}")
    for client, entry in clients.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("key"), str) or \
                len(entry["key"]) != 40 or not isinstance(entry.get("nodes"), list) or \
                not all(isinstance(n, str) for n in entry["nodes"]):
            raise ConfigError(where, f"clients.{client}", "must be {key: <40-character Z85 "
                                                          "public key>, nodes: [names]}")
    return {str(c): dict(e) for c, e in clients.items()}


def _check_private(path: Path, where: str) -> None:
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(where, "keys", f"{path} is readable by others (mode "
                                         f"{stat.S_IMODE(mode):04o}); a secret key must be the "
                                         f"owner's only: chmod 600 {path}")


def load_keys(folder: str | os.PathLike, where: str = "--keys") -> Keys:
    """Load a keys folder (see the module docstring); a missing or unsafe file is one line."""
    root = Path(folder).expanduser().absolute()
    if not root.is_dir():
        raise ConfigError(where, "keys", f"no such keys folder: {root} (create one with `catbus "
                                         f"keys generate DIR`)")
    missing = [n for n in (BUS_PUBLIC, CLIENT_PUBLIC, CLIENT_SECRET) if not (root / n).is_file()]
    if missing:
        raise ConfigError(where, "keys", f"{root} is not a catbus keys folder (missing "
                                         f"{', '.join(missing)}); use the folder `catbus keys "
                                         f"generate` wrote, or one of its clients/NAME folders")
    try:
        _check_private(root / CLIENT_SECRET, where)
        public, secret = zmq.auth.load_certificate(root / CLIENT_SECRET)
        bus_public, _ = zmq.auth.load_certificate(root / BUS_PUBLIC)
        bus_secret = allowed = None
        if (root / BUS_SECRET).is_file() and (root / ALLOW_FILE).is_file():
            _check_private(root / BUS_SECRET, where)
            _check_private(root / ALLOW_FILE, where)
            bus_secret = zmq.auth.load_certificate(root / BUS_SECRET)[1]
            allowed = {entry["key"].encode(): (client, frozenset(entry["nodes"]))
                       for client, entry in _read_allow(root / ALLOW_FILE).items()}
    except (OSError, ValueError) as exc:
        raise ConfigError(where, "keys", f"cannot read the keys in {root}: {exc}") from None
    if not secret:
        raise ConfigError(where, "keys", f"{root / CLIENT_SECRET} holds no secret key")
    return Keys(root, public, secret, bus_public, bus_secret, allowed)


def for_bus(keys: Keys | None, bus: str) -> Keys | None:
    """The keys a connection to ``bus`` uses: none over ipc (the run folder is the owner's)."""
    return keys if keys is not None and str(bus).startswith("tcp://") else None


def short(key: bytes | str) -> str:
    """A public key as people see it in messages: its first 8 characters."""
    text = key.decode(errors="replace") if isinstance(key, bytes) else str(key)
    return text[:8] + "..."


# ------------------------------------------------------------------------------------------------
# Saying refusals once
# ------------------------------------------------------------------------------------------------
_said: set = set()
_said_lock = threading.Lock()
#: At most this many distinct refusal lines per process: a stranger cycling through addresses or
#: keys fills neither the log nor the memory (the refusals are still counted).
SAY_AT_MOST = 100


def say_once(key: Any, line: str) -> None:
    """One line on stderr, once per ``key`` in this process (at most :data:`SAY_AT_MOST`)."""
    with _said_lock:
        if key in _said or len(_said) > SAY_AT_MOST:
            return
        _said.add(key)
        if len(_said) > SAY_AT_MOST:
            line = (f"catbus: security: {SAY_AT_MOST} refusals said; more are refused without "
                    f"a word")
    try:
        print(line, file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


# ------------------------------------------------------------------------------------------------
# Server side: the ZAP handler and the monitors of server sockets
# ------------------------------------------------------------------------------------------------
_PROTOCOL_ERRORS = {
    getattr(zmq, "PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH", 0x11000003):
        "a peer without CURVE keys",
    getattr(zmq, "PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC", 0x11000001):
        "a CURVE handshake that does not decrypt (the peer has another bus.key, or a stale "
        "key for this node)",
}


class Authenticator(ThreadAuthenticator):
    """The ZAP handler of one ZeroMQ context: CURVE only, keys of :attr:`allowed` only; the
    User-Id of an admitted connection is its public key (Z85). Also watches the monitors of the
    context's server sockets for handshakes that never reached ZAP (no keys, a wrong bus key),
    since libzmq reports those only there. One per context: :func:`authenticator`."""

    def __init__(self, context: zmq.Context, label: str) -> None:
        super().__init__(context)
        self.label = label
        #: public key (z85 bytes) -> client name
        self.allowed: dict[bytes, str] = {}
        self.refused = 0
        self._monitors: list[tuple[str, str]] = []   # (inproc address, endpoint label)
        self._watch_stop = threading.Event()
        self._watcher: threading.Thread | None = None
        #: Set once the allow-list is known (a node learns it from the registry's welcome; a
        #: peer's handshake that comes first waits for it rather than being refused).
        self.ready = threading.Event()

    def allow(self, keys: Mapping[bytes, str], complete: bool = True) -> None:
        self.allowed = {**self.allowed, **keys}
        if complete:
            self.ready.set()

    async def handle_zap_message(self, msg: list[bytes]) -> None:
        import asyncio

        for _ in range(ALLOW_LIST_WAIT * 20):
            if self.ready.is_set() or self._watch_stop.is_set():   # stop(): no more waiting
                break
            await asyncio.sleep(0.05)
        if len(msg) < 6:
            if len(msg) >= 2:
                self._send_zap_reply(msg[1], b"400", b"malformed ZAP request")
            return
        request_id, address, mechanism = msg[1], msg[3].decode(errors="replace"), msg[5]
        if mechanism != b"CURVE" or len(msg) != 7 or len(msg[6]) != 32:
            self.refused += 1
            say_once((address, mechanism), f"catbus: security: {self.label} refused a "
                                           f"connection from {address}: mechanism "
                                           f"{mechanism.decode(errors='replace')}, CURVE required")
            self._send_zap_reply(request_id, b"400", b"CURVE required")
            return
        key = z85.encode(msg[6])
        if key not in self.allowed:
            self.refused += 1
            say_once((address, key), f"catbus: security: {self.label} refused a connection "
                                     f"from {address}: client key {key.decode()} is not on the "
                                     f"allow-list")
            self._send_zap_reply(request_id, b"400", b"key not on the allow-list")
            return
        self._send_zap_reply(request_id, b"200", b"OK", key.decode())

    def watch(self, sock: zmq.Socket, endpoint: str) -> None:
        """Report failed handshakes on server socket ``sock`` (call before it binds)."""
        address = f"inproc://catbus-monitor-{uuid.uuid4().hex}"
        sock.monitor(address, zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL |
                     zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)
        self._monitors.append((address, endpoint))
        if self._watcher is None:
            self._watcher = threading.Thread(target=self._watch, name="catbus-security-watch",
                                             daemon=True)
            self._watcher.start()

    def _watch(self) -> None:
        sockets: dict[zmq.Socket, str] = {}
        poller = zmq.Poller()
        try:
            while not self._watch_stop.is_set():
                while len(sockets) < len(self._monitors):
                    address, endpoint = self._monitors[len(sockets)]
                    pair = self.context.socket(zmq.PAIR)
                    pair.linger = 0
                    pair.connect(address)
                    sockets[pair] = endpoint
                    poller.register(pair, zmq.POLLIN)
                for pair, _ in poller.poll(100):
                    try:
                        event = parse_monitor_message(pair.recv_multipart(zmq.NOBLOCK))
                    except (zmq.ZMQError, ValueError):
                        continue
                    if event["event"] == zmq.EVENT_MONITOR_STOPPED:
                        continue
                    self.handshake_failed(sockets[pair], event)
        except zmq.ZMQError:   # the context was terminated: the process is ending
            pass
        finally:
            for pair in sockets:
                try:
                    pair.close(0)
                except zmq.ZMQError:
                    pass

    def handshake_failed(self, where: str, event: dict) -> None:
        """Count and say (once) a failed handshake on server endpoint ``where`` (a monitor
        event: ``HANDSHAKE_FAILED_PROTOCOL`` or ``_NO_DETAIL``). Called by :meth:`watch`'s
        thread, or by the owner of a socket whose monitor it reads itself (the registry's,
        :class:`catbus.supervise.linkwatch.LinkWatch`: a socket has one monitor)."""
        if event["event"] == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL:
            why = _PROTOCOL_ERRORS.get(event["value"], f"protocol error {event['value']:#x}")
        else:
            why = "a peer without this run's CURVE keys (its handshake failed)"
        self.refused += 1
        say_once((where, event["event"], event["value"]),
                 f"catbus: security: {self.label} refused a connection on {where}: "
                 f"{why} (libzmq does not say the peer's address for this kind)")

    def stop(self) -> None:
        self._watch_stop.set()
        if self._watcher is not None and self._watcher is not threading.current_thread():
            self._watcher.join(timeout=2)
        super().stop()


_authenticators: "weakref.WeakKeyDictionary[zmq.Context, Authenticator]" = \
    weakref.WeakKeyDictionary()
_auth_lock = threading.Lock()


def authenticator(ctx: zmq.Context, label: str) -> Authenticator:
    """The context's ZAP handler, started on first use (ZAP is per context)."""
    with _auth_lock:
        auth = _authenticators.get(ctx)
        if auth is None or not auth.is_alive():
            auth = _authenticators[ctx] = Authenticator(ctx, label)
            auth.start()
        return auth


def _server(sock: zmq.Socket, public: bytes, secret: bytes) -> None:
    sock.curve_server = True
    sock.curve_publickey = public
    sock.curve_secretkey = secret
    sock.zap_domain = ZAP_DOMAIN
    sock.setsockopt(zmq.ZAP_ENFORCE_DOMAIN, 1)   # no ZAP handler: nobody gets in


class Guard:
    """The registry's side: its ROUTER is a CURVE server with the bus key pair, the context's
    ZAP handler admits the allow-list, and a key registers (or swaps) only the node names the
    allow-list gives it. :meth:`sender` reads the ZAP User-Id of each received message."""

    def __init__(self, ctx: zmq.Context, sock: zmq.Socket, keys: Keys, endpoint: str) -> None:
        if not keys.can_host:
            raise ConfigError("--keys", "keys", f"{keys.folder} is a client folder (no "
                                                f"{BUS_SECRET} or {ALLOW_FILE}); the run's host "
                                                f"needs the folder `catbus keys generate` wrote")
        self.keys = keys
        _server(sock, keys.bus_public, keys.bus_secret)
        self.auth = authenticator(ctx, "the registry")
        self.auth.allow({key: client for key, (client, _) in keys.allowed.items()})
        # (Failed handshakes on this socket are reported through the registry's own monitor,
        # catbus.supervise.linkwatch.LinkWatch: a socket has one monitor.)
        self.endpoint = endpoint
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
        return (self.keys.allowed or {}).get(self.user, ("?", frozenset()))

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

    def close(self) -> None:
        self.auth.stop()


def serve_registry(ctx: zmq.Context, sock: zmq.Socket, keys: Keys | None,
                   bind: str) -> Guard | None:
    """Secure the registry's ROUTER ``sock`` (before it binds ``bind``); None without keys."""
    keys = for_bus(keys, bind)
    return Guard(ctx, sock, keys, bind) if keys is not None else None


def run_info(keys: Keys | None) -> dict:
    """What a keyed run tells its nodes in the welcome's ``run_info["security"]``: the public
    keys (z85) its nodes' publishers admit (every allow-listed client; tools included)."""
    if keys is None or not keys.allowed:
        return {}
    return {"clients": sorted(key.decode() for key in keys.allowed)}


# ------------------------------------------------------------------------------------------------
# A node's data plane
# ------------------------------------------------------------------------------------------------
@dataclass
class Session:
    """A node process's data-plane security: its XPUB is a CURVE server with the node's key
    pair; its SUB a client that connects to each peer with that peer's key from the graph."""

    keys: Keys
    auth: Authenticator
    peer_keys: dict = field(default_factory=dict)   # endpoint -> public key (z85 str)

    def connect(self, sock: zmq.Socket, endpoint: str) -> None:
        key = self.peer_keys.get(endpoint)
        if not key:
            say_once(("no key", endpoint), f"catbus: security: not connecting to {endpoint}: "
                                           f"the registry gave no key for it")
            return
        sock.curve_serverkey = key.encode()
        sock.connect(endpoint)


def publisher(ctx: zmq.Context, pub: zmq.Socket, sub: zmq.Socket, keys: Keys | None,
              bind: str, name: str = "") -> Session | None:
    """Secure a node's XPUB (before it binds ``bind``) and SUB; None without keys or on ipc."""
    keys = for_bus(keys, bind)
    if keys is None:
        return None
    _server(pub, keys.public, keys.secret)
    _client(sub, keys)
    auth = authenticator(ctx, f"node {name}'s publisher" if name else "a node's publisher")
    auth.allow({keys.public: LOCAL}, complete=False)   # the rest: trust(), from the welcome
    auth.watch(pub, bind)
    return Session(keys, auth)


def connect(sock: zmq.Socket, endpoint: str, session: Session | None) -> None:
    """Connect a data SUB to a peer's endpoint (with its key when the run is keyed)."""
    if session is None:
        sock.connect(endpoint)
    else:
        session.connect(sock, endpoint)


def learn(session: Session | None, nodes: Iterable[Mapping[str, Any]]) -> None:
    """Note the publishers' keys of a graph message."""
    if session is None:
        return
    for entry in nodes:
        for where, key in (("endpoint", "key"), ("standby", "standby_key")):
            if entry.get(where) and entry.get(key):
                session.peer_keys[str(entry[where])] = str(entry[key])


def trust(session: Session | None, info: Mapping[str, Any] | None) -> None:
    """Admit to this node's publisher the clients the registry's welcome lists."""
    if session is None:
        return
    clients = ((info or {}).get("security") or {}).get("clients") or []
    session.auth.allow({str(key).encode(): "client" for key in clients
                        if isinstance(key, str) and len(key) == 40})


def close(session: Session | None) -> None:
    if session is not None:
        session.auth.stop()


# ------------------------------------------------------------------------------------------------
# Client side: DEALER and SUB sockets of nodes and tools
# ------------------------------------------------------------------------------------------------
def _client(sock: zmq.Socket, keys: Keys, server_key: bytes | None = None) -> None:
    sock.curve_publickey = keys.public
    sock.curve_secretkey = keys.secret
    if server_key is not None:
        sock.curve_serverkey = server_key


class Handshake:
    """Watches the handshakes of one client socket: :meth:`problem` says why the run refused
    it (from the socket's monitor events), else None. Close it before the socket."""

    def __init__(self, sock: zmq.Socket, endpoint: str, keys: Keys | None) -> None:
        self.sock, self.endpoint, self.keys = sock, endpoint, keys
        self.ok = False
        self.failures = 0
        self._problem: str | None = None
        self._pair: zmq.Socket | None = None
        if endpoint.startswith("tcp://"):
            address = f"inproc://catbus-monitor-{uuid.uuid4().hex}"
            sock.monitor(address, zmq.EVENT_HANDSHAKE_SUCCEEDED |
                         zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL |
                         zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_HANDSHAKE_FAILED_AUTH)
            self._pair = sock.context.socket(zmq.PAIR)
            self._pair.linger = 0
            self._pair.connect(address)

    def problem(self) -> str | None:
        pair = self._pair
        while pair is not None and self._problem is None and not self.ok:
            try:
                event = parse_monitor_message(pair.recv_multipart(zmq.NOBLOCK))
            except (zmq.ZMQError, ValueError):   # zmq.Again: nothing new
                break
            self._on(event["event"], event["value"])
            if self._problem is not None:
                # No connection will come: a send must fail (zmq.Again), not block for ever
                # (a node's last messages on its way out).
                self.sock.setsockopt(zmq.SNDTIMEO, 0)
        return self._problem

    def _on(self, event: int, value: int) -> None:
        where = f"the run at {self.endpoint}"
        folder = f" ({self.keys.folder})" if self.keys is not None else ""
        if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
            self.ok = True
        elif event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
            self._problem = (f"{where} refused this host's key{folder}: client key "
                             f"{short(self.keys.public) if self.keys else '?'} is not on its "
                             f"allow-list (add it with `catbus keys generate DIR --node "
                             f"NAME=CLIENT` on the run's host and copy clients/CLIENT here)")
        elif self.keys is None:
            # A plain connection fails against a CURVE server as a mechanism mismatch or, as
            # often, as a dropped handshake (NO_DETAIL): either way the run is secured.
            self._problem = (f"{where} is secured with CURVE keys: give --keys DIR (a client "
                             f"folder from `catbus keys generate`)")
        elif event == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL and \
                value == getattr(zmq, "PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH", 0x11000003):
            self._problem = (f"{where} is not secured, and this command has --keys: drop --keys, "
                             f"or secure the run (security: {{keys: DIR}})")
        else:   # libzmq says no more than this for a wrong server key or an open run
            self.failures += 1
            if self.failures >= 2:
                self._problem = (f"the CURVE handshake with {where} failed: either this host's "
                                 f"{BUS_PUBLIC}{folder} is not that run's bus key, or the run "
                                 f"is not secured (then drop --keys)")

    def check(self) -> None:
        """Raise :class:`Refused` if the handshake was refused."""
        problem = self.problem()
        if problem is not None:
            raise Refused(problem)

    def close(self) -> None:
        if self._pair is not None:
            try:
                self.sock.disable_monitor()
            except zmq.ZMQError:
                pass
            self._pair.close(0)
            self._pair = None


def dial(sock: zmq.Socket, endpoint: str, keys: Keys | None,
         server_key: bytes | None = None) -> Handshake:
    """Connect client socket ``sock`` (DEALER or SUB) to ``endpoint``: with CURVE when the run
    is keyed (the registry's bus key, or ``server_key``), watched either way over TCP."""
    keys = for_bus(keys, endpoint)
    if keys is not None:
        _client(sock, keys, server_key or keys.bus_public)
    handshake = Handshake(sock, endpoint, keys)
    sock.connect(endpoint)
    return handshake


def wait(sock: zmq.Socket, handshake: Handshake, timeout: float) -> bool:
    """Poll ``sock`` for up to ``timeout`` seconds; raise :class:`Refused` as soon as its
    handshake is refused. True if a message is waiting."""
    import time

    end = time.monotonic() + timeout
    while True:
        if sock.poll(min(100, max(0, int((end - time.monotonic()) * 1000)))):
            return True
        handshake.check()
        if time.monotonic() >= end:
            return False


def host_keys(folder: str | os.PathLike | None, bus: str, where: str) -> Keys | None:
    """The keys of a run this process hosts on ``bus`` (None: no keys, or an ipc bus); a
    client folder cannot host one (it has no bus secret and no allow-list)."""
    keys = for_bus(load_keys(folder, where) if folder else None, bus)
    if keys is not None and not keys.can_host:
        raise ConfigError(where, "security.keys", f"{keys.folder} is a client folder (no "
                                                  f"{BUS_SECRET} or {ALLOW_FILE}); the run's "
                                                  f"host needs the folder `catbus keys "
                                                  f"generate` wrote")
    return keys


def load_option(folder: str | os.PathLike | None) -> Keys | None:
    """``--keys DIR`` of a command, loaded (None if not given)."""
    return load_keys(folder, "--keys") if folder else None


def open_bus_warning(bus: str) -> str:
    return (f"catbus: warning: the bus {bus} is open: anyone who reaches it can join, read and "
            f"publish; secure it with security: {{keys: DIR}} (catbus keys generate DIR)")


def announce(bus: str, keys: Keys | None, named: Any = None) -> None:
    """One line on stderr for a run's host: a TCP bus without keys is open; keys named for an
    ipc bus are not used (its run folder is the owner's only)."""
    if str(bus).startswith("tcp://") and keys is None:
        print(open_bus_warning(bus), file=sys.stderr, flush=True)
    elif not str(bus).startswith("tcp://") and named is not None:
        print(f"catbus: security: keys {named} not used: the bus is ipc (private to this user)",
              file=sys.stderr, flush=True)


def node_option(keys: Keys | None, name: str) -> str:
    """`` --keys DIR`` for the command that starts node ``name`` on another host: the client
    folder allowed to register it (copied to that host), else a placeholder."""
    if keys is None:
        return ""
    client = keys.client_for_node(name)
    folder = keys.folder / CLIENTS / client if client else "CLIENT_DIR"
    return f" --keys {folder}"


__all__ = ["Keys", "load_keys", "generate", "Guard", "Session", "Handshake", "Refused",
           "Authenticator", "serve_registry", "publisher", "dial", "wait", "connect", "learn",
           "trust", "run_info", "for_bus", "open_bus_warning"]
