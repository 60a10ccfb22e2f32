"""Which address of this host other hosts reach it at: where a node binds (and advertises) its data
socket, and how a registry bound on every interface (``tcp://0.0.0.0:PORT``) is written for another
host.

Both questions go to the operating system and nothing is sent: the interfaces and their addresses
come from psutil, and the route from the kernel itself -- a UDP socket ``connect()``-ed to an
address sends no packet, yet the kernel picks the local address it would send from. That works the
same on Linux, macOS and Windows, and asks the routing table what it decides (metrics, policy
rules, several default routes) rather than reading it and guessing.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any, Iterable, Mapping
from urllib.parse import urlparse

import psutil

#: Hosts in a ``tcp://`` address that mean "every interface" (bind) rather than one address.
WILDCARD_HOSTS = ("0.0.0.0", "*", "", "::")

#: Where "the rest of the world" is, to ask which local address the default route goes out from:
#: an address of TEST-NET-2 (RFC 5737), reserved for documentation, so no network uses it and only
#: the default route leads there. Nothing is ever sent to it.
ROUTE_PROBE = ("198.51.100.1", 9)

#: What a host with no usable address (or one asked while its network is down) gives.
LOOPBACK = "127.0.0.1"


def reachable_host(bus: str) -> str:
    """The address of this host that peers reach, for a node whose registry is at ``bus``."""
    parsed = urlparse(bus)
    host = parsed.hostname or ""
    if host in WILDCARD_HOSTS:
        return host_address()
    return local_address_towards(host, parsed.port or 7700)


def reachable_bus(bus: str) -> str:
    """``bus`` as another host must write it: a wildcard host (``tcp://0.0.0.0:7700``, what the
    registry reports when bound on every interface) becomes :func:`host_address`."""
    parsed = urlparse(bus)
    if not bus.startswith("tcp://") or (parsed.hostname or "") not in WILDCARD_HOSTS:
        return bus
    return f"tcp://{host_address()}:{parsed.port}"


def host_address() -> str:
    """This host's IPv4 address for other hosts: the one the default route goes out from, else
    the first address of an interface that is up, else ``127.0.0.1``.

    Several networks and no default route (or the wrong one)? Give the address explicitly: a
    concrete ``bus:`` address, or ``catbus node --advertise IP``.
    """
    return choose_host_address(_source_address(*ROUTE_PROBE), interface_addresses())


def choose_host_address(routed: str | None, addresses: Mapping[str, str]) -> str:
    """The address :func:`host_address` gives, from what the kernel routes the rest of the world
    from (``routed``: None when there is no default route) and ``{interface: address}``.

    A routed address that is loopback or unspecified is no use to another host: the interfaces
    decide then, and with several of them the first in the operating system's order is a guess
    (which is why ``--advertise`` exists).
    """
    if routed is not None and _usable(routed):
        return routed
    return next(iter(addresses.values()), LOOPBACK)


def interface_addresses() -> dict[str, str]:
    """``{interface: IPv4 address}`` of the interfaces that are up, loopback excluded (the first
    IPv4 address of each)."""
    return usable_interfaces(psutil.net_if_addrs(), psutil.net_if_stats())


def usable_interfaces(addresses: Mapping[str, Iterable[Any]],
                      stats: Mapping[str, Any]) -> dict[str, str]:
    """:func:`interface_addresses` from psutil's answers: ``addresses`` as ``net_if_addrs()``
    gives them (entries with ``family`` and ``address``) and ``stats`` as ``net_if_stats()``
    (entries with ``isup``; an interface missing there counts as up, as psutil leaves out those
    it cannot query)."""
    found: dict[str, str] = {}
    for name, entries in addresses.items():
        if name in stats and not stats[name].isup:
            continue
        for entry in entries:
            if entry.family == socket.AF_INET and _usable(entry.address):
                found[name] = entry.address
                break
    return found


def local_address_towards(host: str, port: int) -> str:
    """The local IP the kernel would use to reach ``host`` (``127.0.0.1`` if it has no route)."""
    return _source_address(host, port) or LOOPBACK


def _source_address(host: str, port: int) -> str | None:
    """The local address the kernel picks to send to ``host``, or None if it has no route there.
    Connecting a UDP socket sends no packet: it only fixes the route and the source address."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect((host, port))
            return probe.getsockname()[0]
        except OSError:
            return None


def _usable(address: str) -> bool:
    """An address another host could reach us at: not loopback, not ``0.0.0.0``."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return False
    return not (parsed.is_loopback or parsed.is_unspecified)
