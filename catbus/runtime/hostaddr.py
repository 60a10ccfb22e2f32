"""Which address of this host other hosts reach it at: where a node binds (and advertises) its data
socket, and how a registry bound on every interface (``tcp://0.0.0.0:PORT``, ``tcp://[::]:PORT``)
is written for another host.

Both questions go to the operating system and nothing is sent: the interfaces and their addresses
come from psutil, and the route from the kernel itself -- a UDP socket ``connect()``-ed to an
address sends no packet, yet the kernel picks the local address it would send from. That works the
same on Linux, macOS and Windows, and asks the routing table what it decides (metrics, policy
rules, several default routes) rather than reading it and guessing.

IPv6 is asked like IPv4, in its own family: a bus at ``tcp://[fd00::1]:7700`` is reached from an
IPv6 address of this host, and ``[::]`` (every interface, both families) is written with this
host's IPv6 address when it has a usable one. Addresses are returned bare (``fd00::2``);
:func:`endpoint_host` puts an IPv6 one in the brackets a ``tcp://`` endpoint needs.
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
#: The same for IPv6: the documentation prefix 2001:db8::/32 (RFC 3849).
ROUTE_PROBE_V6 = ("2001:db8::1", 9)

#: What a host with no usable address (or one asked while its network is down) gives.
LOOPBACK = "127.0.0.1"
LOOPBACK_V6 = "::1"


def endpoint_host(address: str) -> str:
    """``address`` as the host of a ``tcp://HOST:PORT`` endpoint: an IPv6 address in brackets
    (``[fd00::2]``), anything else as it is."""
    if address.startswith("["):
        return address
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address
    return f"[{address}]" if parsed.version == 6 else address


def tcp_endpoint(address: str, port: int | str) -> str:
    """``tcp://HOST:PORT`` for ``address`` (IPv6 in brackets); ``port`` may be ``*``."""
    return f"tcp://{endpoint_host(address)}:{port}"


def reachable_host(bus: str) -> str:
    """The address of this host that peers reach, for a node whose registry is at ``bus`` (bare:
    :func:`tcp_endpoint` makes it an endpoint)."""
    parsed = urlparse(bus)
    host = parsed.hostname or ""
    if host in WILDCARD_HOSTS:
        return wildcard_address(host)
    return local_address_towards(host, parsed.port or 7700)


def reachable_bus(bus: str) -> str:
    """``bus`` as another host must write it: a wildcard host (``tcp://0.0.0.0:7700``, what the
    registry reports when bound on every interface) becomes :func:`wildcard_address`, and an
    IPv4 address a dual-stack socket reports (``[::ffff:10.0.0.1]``) plain IPv4."""
    if not bus.startswith("tcp://"):
        return bus
    parsed = urlparse(bus)
    host = parsed.hostname or ""
    if host in WILDCARD_HOSTS:
        return tcp_endpoint(wildcard_address(host), parsed.port)
    mapped = _ipv4_mapped(host)
    return tcp_endpoint(mapped, parsed.port) if mapped else bus


def wildcard_address(host: str) -> str:
    """What a registry bound on every interface is reached at: ``::`` (both families) this
    host's IPv6 address if it has a usable one, else its IPv4 one; ``0.0.0.0``, ``*``: IPv4."""
    if host == "::":
        found = host_address(socket.AF_INET6)
        if found != LOOPBACK_V6:
            return found
    return host_address()


def host_address(family: int = socket.AF_INET) -> str:
    """This host's address for other hosts in ``family`` (IPv4 unless told): the one the default
    route goes out from, else the first address of an interface that is up, else loopback.

    Several networks and no default route (or the wrong one)? Give the address explicitly: a
    concrete ``bus:`` address, or ``catbus node --advertise IP``.
    """
    probe = ROUTE_PROBE_V6 if family == socket.AF_INET6 else ROUTE_PROBE
    loopback = LOOPBACK_V6 if family == socket.AF_INET6 else LOOPBACK
    return choose_host_address(_source_address(*probe, family=family),
                               interface_addresses(family), loopback)


def choose_host_address(routed: str | None, addresses: Mapping[str, str],
                        loopback: str = LOOPBACK) -> str:
    """The address :func:`host_address` gives, from what the kernel routes the rest of the world
    from (``routed``: None when there is no default route) and ``{interface: address}``.

    A routed address that is loopback, unspecified or link-local is no use to another host:
    the interfaces decide then, and with several of them the first in the operating system's
    order is a guess (which is why ``--advertise`` exists).
    """
    if routed is not None and _usable(routed):
        return routed
    return next(iter(addresses.values()), loopback)


def interface_addresses(family: int = socket.AF_INET) -> dict[str, str]:
    """``{interface: address}`` of the interfaces that are up, loopback excluded (the first
    address of ``family`` of each: IPv4 unless told)."""
    return usable_interfaces(psutil.net_if_addrs(), psutil.net_if_stats(), family)


def machine_addresses() -> list[str]:
    """Every usable address of this machine's interfaces that are up, IPv4 then IPv6, loopback
    included (what a registry can bind), for messages."""
    addresses = psutil.net_if_addrs()
    stats = psutil.net_if_stats()
    found: list[str] = []
    for family in (socket.AF_INET, socket.AF_INET6):
        for name, entries in addresses.items():
            if name in stats and not stats[name].isup:
                continue
            for entry in entries:
                if entry.family == family and entry.address not in found and \
                        _usable(entry.address, loopback=True):
                    found.append(entry.address)
    return found


def usable_interfaces(addresses: Mapping[str, Iterable[Any]],
                      stats: Mapping[str, Any], family: int = socket.AF_INET) -> dict[str, str]:
    """:func:`interface_addresses` from psutil's answers: ``addresses`` as ``net_if_addrs()``
    gives them (entries with ``family`` and ``address``) and ``stats`` as ``net_if_stats()``
    (entries with ``isup``; an interface missing there counts as up, as psutil leaves out those
    it cannot query)."""
    found: dict[str, str] = {}
    for name, entries in addresses.items():
        if name in stats and not stats[name].isup:
            continue
        for entry in entries:
            if entry.family == family and _usable(entry.address):
                found[name] = entry.address
                break
    return found


def local_address_towards(host: str, port: int) -> str:
    """The local IP the kernel would use to reach ``host`` (loopback if it has no route): an
    IPv6 address for an IPv6 host, or for a name that has one (a dual-stack socket connects
    there first)."""
    family = _family_of(host)
    loopback = LOOPBACK_V6 if family == socket.AF_INET6 else LOOPBACK
    return _source_address(host, port, family=family) or loopback


def _family_of(host: str) -> int:
    """AF_INET6 for an IPv6 address or a name with one, else AF_INET."""
    try:
        return socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    except ValueError:
        pass
    try:
        socket.getaddrinfo(host, None, socket.AF_INET6, socket.SOCK_STREAM)
        return socket.AF_INET6
    except (OSError, UnicodeError):
        return socket.AF_INET


def _source_address(host: str, port: int, family: int = socket.AF_INET) -> str | None:
    """The local address the kernel picks to send to ``host``, or None if it has no route there.
    Connecting a UDP socket sends no packet: it only fixes the route and the source address."""
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.connect((host, port))
            return probe.getsockname()[0].split("%", 1)[0] if family == socket.AF_INET6 \
                else probe.getsockname()[0]
    except OSError:
        return None


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or a name, no brackets) is this machine only: a loopback
    address (``127.0.0.0/8``, ``::1``, or IPv4 loopback in IPv6 form), or a name all of whose
    addresses are. A name that does not resolve is not."""
    try:
        parsed = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        try:
            found = {info[4][0] for info in socket.getaddrinfo(host, None, 0, socket.SOCK_STREAM)}
        except (OSError, UnicodeError):
            return False
        return bool(found) and all(is_loopback(address) for address in found)
    mapped = getattr(parsed, "ipv4_mapped", None)
    return (mapped or parsed).is_loopback


def _ipv4_mapped(host: str) -> str | None:
    """The IPv4 address inside an IPv4-mapped IPv6 one (``::ffff:10.0.0.1``), else None."""
    try:
        parsed = ipaddress.ip_address(host)
    except ValueError:
        return None
    mapped = getattr(parsed, "ipv4_mapped", None)
    return str(mapped) if mapped is not None else None


def _usable(address: str, loopback: bool = False) -> bool:
    """An address another host could reach us at: not loopback (unless ``loopback``), not
    unspecified, and not IPv6 link-local (reaching it needs the interface named too)."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return False
    if parsed.is_unspecified or (parsed.is_loopback and not loopback):
        return False
    return not (parsed.version == 6 and parsed.is_link_local)
