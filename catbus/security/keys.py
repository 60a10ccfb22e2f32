"""Keys folders on disk: writing them (``catbus keys generate``), loading them (``--keys``,
``security: {keys: DIR}``) and the allow-list they hold.

A keys folder holds::

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
top folder (with ``bus.key_secret`` and ``allow.yaml``) can host a run. Every file is the
owner's only: a secret key anyone else can read is no secret, so it is refused.
"""

from __future__ import annotations

import datetime
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

import zmq
import zmq.auth

from catbus.errors import ConfigError

BUS_PUBLIC, BUS_SECRET = "bus.key", "bus.key_secret"
CLIENT_PUBLIC, CLIENT_SECRET = "client.key", "client.key_secret"
ALLOW_FILE = "allow.yaml"
CLIENTS = "clients"
#: The client of the keys folder itself: the run's own host (its nodes and tools).
LOCAL = "local"
ANY_NODE = "*"
_NAME_OK = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.")

#: The allow-list as loaded: public key (Z85 bytes) -> (client name, node names it may register).
AllowList = Mapping[bytes, tuple[str, frozenset]]


@dataclass(frozen=True)
class Keys:
    """A loaded keys folder: this host's client key pair and the bus public key; on the run's
    own host also the bus secret and the allow-list (``{public key (z85): (client, names)}``)."""

    folder: Path
    public: bytes
    secret: bytes
    bus_public: bytes
    bus_secret: bytes | None = None
    allowed: AllowList | None = None

    @property
    def can_host(self) -> bool:
        """Whether a run can be hosted with these keys: serving the bus takes its secret, and
        admitting clients takes the allow-list."""
        return self.bus_secret is not None and self.allowed is not None

    def client_of(self, key: bytes) -> str:
        """The client name ``key`` has in the allow-list, for messages ("?" if none)."""
        entry = (self.allowed or {}).get(key)
        return entry[0] if entry else "?"

    def client_for_node(self, name: str) -> str | None:
        """The client folder (``clients/NAME``) whose key may register ``name``, if one: the
        folder to copy to the host that runs that node."""
        for client, names in (self.allowed or {}).values():
            if client != LOCAL and name in names:
                return client
        return None


def short(key: bytes | str) -> str:
    """A public key as people see it in messages: its first 8 characters."""
    text = key.decode(errors="replace") if isinstance(key, bytes) else str(key)
    return text[:8] + "..."


def for_bus(keys: Keys | None, bus: str) -> Keys | None:
    """The keys a connection to ``bus`` uses: none over ipc (the run folder is the owner's)."""
    return keys if keys is not None and str(bus).startswith("tcp://") else None


# ------------------------------------------------------------------------------------------------
# Writing
# ------------------------------------------------------------------------------------------------
def key_file_text(public: bytes, secret: bytes | None) -> str:
    """A ZeroMQ certificate (readable with ``zmq.auth.load_certificate``): the public key, and
    the secret one in a secret file."""
    kind = "**Secret** Certificate" if secret else "Public Certificate"
    return (f"#   ****  Generated on {datetime.datetime.now():%Y-%m-%d %H:%M} by catbus  ****\n"
            f"#   ZeroMQ CURVE {kind}\n"
            + ("#   DO NOT PROVIDE THIS FILE TO OTHER USERS nor change its permissions.\n"
               if secret else "")
            + f"\nmetadata\ncurve\n    public-key = \"{public.decode()}\"\n"
            + (f"    secret-key = \"{secret.decode()}\"\n" if secret else ""))


def write_private(path: Path, text: str) -> None:
    """Write ``path`` readable by the owner only (0600), whatever the umask; replaced at once,
    so a reader never sees half a key."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def _private_dir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)


def _check_client_name(client: str) -> None:
    if not client or not set(client) <= _NAME_OK or client == LOCAL:
        raise ConfigError("catbus keys", "--node", f"{client!r} is not a usable client name "
                                                   f"(letters, digits, '_', '-', '.'; not "
                                                   f"{LOCAL!r})")


def allow_text(allow: Mapping[str, Mapping]) -> str:
    """The text of ``allow.yaml`` for ``{client: {key, nodes}}``."""
    import yaml

    return ("# catbus allow-list: the client keys that may join this run, and the node names each\n"
            "# may register (\"*\": any). Written by `catbus keys generate`; keep it 0600.\n"
            + yaml.safe_dump({"clients": dict(allow)}, sort_keys=False))


def generate(folder: str | os.PathLike, nodes: Mapping[str, Iterable[str]] = {}) -> dict:
    """Create (or extend) a keys folder: the bus key pair and the local client key if missing,
    and for each ``client -> node names`` a client key pair in ``clients/CLIENT/`` allowed to
    register those names. Existing keys are kept, so folders already copied to other hosts stay
    valid; node names are added to a client's.
    Returns ``{"created": [...paths], "allow": {client: [names]}}``."""
    root = Path(folder).absolute()
    _private_dir(root)
    created: list[str] = []

    def pair(public: Path, secret: Path) -> tuple[bytes, bytes]:
        if public.exists() and secret.exists():
            loaded = zmq.auth.load_certificate(secret)
            return loaded[0], loaded[1]
        pub, sec = zmq.curve_keypair()
        write_private(public, key_file_text(pub, None))
        write_private(secret, key_file_text(pub, sec))
        created.extend([str(public), str(secret)])
        return pub, sec

    bus_pub, _ = pair(root / BUS_PUBLIC, root / BUS_SECRET)
    local_pub, _ = pair(root / CLIENT_PUBLIC, root / CLIENT_SECRET)
    allow = read_allow(root / ALLOW_FILE) if (root / ALLOW_FILE).exists() else {}
    allow[LOCAL] = {"key": local_pub.decode(), "nodes": [ANY_NODE]}
    for client, names in nodes.items():
        _check_client_name(client)
        where = root / CLIENTS / client
        _private_dir(root / CLIENTS)
        _private_dir(where)
        pub, _ = pair(where / CLIENT_PUBLIC, where / CLIENT_SECRET)
        write_private(where / BUS_PUBLIC, key_file_text(bus_pub, None))
        entry = allow.setdefault(client, {"key": pub.decode(), "nodes": []})
        entry["key"] = pub.decode()
        entry["nodes"] = sorted(set(entry.get("nodes") or []) | set(names))
    write_private(root / ALLOW_FILE, allow_text(allow))
    return {"created": created, "allow": {c: list(e["nodes"]) for c, e in allow.items()}}


# ------------------------------------------------------------------------------------------------
# Reading
# ------------------------------------------------------------------------------------------------
def parse_allow(data: object, where: str) -> dict[str, dict]:
    """The ``clients`` of a loaded ``allow.yaml`` (``{client: {key, nodes}}``), checked: a
    malformed entry is one line naming it, never a half-read allow-list."""
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


def read_allow(path: Path) -> dict[str, dict]:
    """``allow.yaml`` at ``path``, checked (:func:`parse_allow`)."""
    import yaml

    where = str(path)
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(where, "", f"cannot read the allow-list: {exc}") from None
    return parse_allow(data, where)


def allow_list(clients: Mapping[str, Mapping]) -> AllowList:
    """The allow-list by key, as the registry and the ZAP handlers look it up."""
    return {entry["key"].encode(): (client, frozenset(entry["nodes"]))
            for client, entry in clients.items()}


def check_private(path: Path, where: str) -> None:
    """Refuse a key file others can read or write: its secret would not be one."""
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
        check_private(root / CLIENT_SECRET, where)
        public, secret = zmq.auth.load_certificate(root / CLIENT_SECRET)
        bus_public, _ = zmq.auth.load_certificate(root / BUS_PUBLIC)
        bus_secret = allowed = None
        if (root / BUS_SECRET).is_file() and (root / ALLOW_FILE).is_file():
            check_private(root / BUS_SECRET, where)
            check_private(root / ALLOW_FILE, where)
            bus_secret = zmq.auth.load_certificate(root / BUS_SECRET)[1]
            allowed = allow_list(read_allow(root / ALLOW_FILE))
    except (OSError, ValueError) as exc:
        raise ConfigError(where, "keys", f"cannot read the keys in {root}: {exc}") from None
    if not secret:
        raise ConfigError(where, "keys", f"{root / CLIENT_SECRET} holds no secret key")
    return Keys(root, public, secret, bus_public, bus_secret, allowed)


def not_a_host(keys: Keys) -> str:
    """Why ``keys`` cannot host a run (a client folder), and which folder can."""
    return (f"{keys.folder} is a client folder (no {BUS_SECRET} or {ALLOW_FILE}); the run's "
            f"host needs the folder `catbus keys generate` wrote")


def host_keys(folder: str | os.PathLike | None, bus: str, where: str) -> Keys | None:
    """The keys of a run this process hosts on ``bus`` (None: no keys, or an ipc bus); a
    client folder cannot host one (it has no bus secret and no allow-list)."""
    keys = for_bus(load_keys(folder, where) if folder else None, bus)
    if keys is not None and not keys.can_host:
        raise ConfigError(where, "security.keys", not_a_host(keys))
    return keys


def load_option(folder: str | os.PathLike | None) -> Keys | None:
    """``--keys DIR`` of a command, loaded (None if not given: the command runs unsecured)."""
    return load_keys(folder, "--keys") if folder else None


__all__ = ["Keys", "AllowList", "generate", "load_keys", "load_option", "host_keys", "for_bus",
           "short", "parse_allow", "read_allow", "allow_list", "allow_text", "key_file_text",
           "write_private", "check_private", "not_a_host", "BUS_PUBLIC", "BUS_SECRET",
           "CLIENT_PUBLIC", "CLIENT_SECRET", "ALLOW_FILE", "CLIENTS", "LOCAL", "ANY_NODE"]
