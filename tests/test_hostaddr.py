"""Which address this host gives other hosts (``catbus.runtime.hostaddr``), decided from interface
and route data given here: no process, no socket. That the real answers work across hosts is
tests/test_tcp.py's (two network namespaces)."""

from __future__ import annotations

import socket
from types import SimpleNamespace

import pytest

from catbus.runtime import dataplane, hostaddr
from catbus.runtime.hostaddr import choose_host_address, usable_interfaces

pytestmark = pytest.mark.unit


def addr(address: str, family: int = socket.AF_INET) -> SimpleNamespace:
    """One entry of ``psutil.net_if_addrs()`` (only the fields the choice reads)."""
    return SimpleNamespace(family=family, address=address)


def up(isup: bool = True) -> SimpleNamespace:
    """One entry of ``psutil.net_if_stats()``."""
    return SimpleNamespace(isup=isup)


def test_interfaces_that_are_up_give_their_first_ipv4_address_loopback_excluded():
    addresses = {
        "lo": [addr("127.0.0.1"), addr("::1", socket.AF_INET6)],
        "eth0": [addr("fe80::1", socket.AF_INET6), addr("10.0.0.5"), addr("10.0.0.6")],
        "wlan0": [addr("192.168.1.20")],
        "docker0": [addr("172.17.0.1")],
        "v6only": [addr("2001:db8::1", socket.AF_INET6)],
        "odd": [addr("0.0.0.0"), addr("not an address")],
    }
    stats = {"lo": up(), "eth0": up(), "wlan0": up(False), "docker0": up(), "v6only": up(),
             "odd": up()}
    assert usable_interfaces(addresses, stats) == {"eth0": "10.0.0.5", "docker0": "172.17.0.1"}


def test_an_interface_psutil_has_no_stats_for_counts_as_up():
    assert usable_interfaces({"tun0": [addr("10.8.0.2")]}, {}) == {"tun0": "10.8.0.2"}


def test_the_default_routes_address_wins_over_the_interface_order():
    interfaces = {"docker0": "172.17.0.1", "eth0": "10.0.0.5"}
    assert choose_host_address("10.0.0.5", interfaces) == "10.0.0.5"


def test_without_a_default_route_the_first_interface_address_is_used():
    """A lab network with no gateway (the two-host tests' namespaces are one)."""
    assert choose_host_address(None, {"veth0": "10.231.77.1"}) == "10.231.77.1"
    assert choose_host_address(None, {"eth0": "10.0.0.5", "eth1": "10.1.0.5"}) == "10.0.0.5"


@pytest.mark.parametrize("routed", ["127.0.0.1", "127.0.1.1", "0.0.0.0"])
def test_a_routed_address_no_other_host_can_reach_is_not_used(routed: str):
    assert choose_host_address(routed, {"eth0": "10.0.0.5"}) == "10.0.0.5"
    assert choose_host_address(routed, {}) == "127.0.0.1"


def test_no_route_and_no_interface_is_loopback():
    assert choose_host_address(None, {}) == "127.0.0.1"


def test_a_routed_address_is_used_even_when_the_interface_scan_found_nothing():
    """The kernel's answer is authoritative; the scan is only the fallback."""
    assert choose_host_address("10.0.0.5", {}) == "10.0.0.5"


def test_a_concrete_bus_address_is_left_alone():
    for bus in ("tcp://10.0.0.1:7700", "ipc:///tmp/x/registry.sock"):
        assert hostaddr.reachable_bus(bus) == bus


def test_the_moved_names_are_still_importable_from_dataplane():
    for name in ("host_address", "interface_addresses", "reachable_bus", "reachable_host"):
        assert getattr(dataplane, name) is getattr(hostaddr, name)
