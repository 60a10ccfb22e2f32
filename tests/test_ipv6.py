"""IPv6 buses and data endpoints: ``tcp://[ADDR]:PORT`` parsed everywhere an address is, every
connecting socket dual stack, listeners bound in the family of their address, and a bind error
that says what failed.

Pure checks of the addresses first (``unit``: no process, no socket); then runs on ``[::1]``; then
two hosts over IPv6: the network namespaces of tests/test_tcp.py (``two_hosts``), whose hosts have
``fd00::cb:1`` and ``fd00::cb:2`` on their veth pair. Traffic goes only to loopback and to those
namespaces. Open (keyless) buses on the namespace addresses pass ``--insecure``.
"""

from __future__ import annotations

import errno
import json
import shlex
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import zmq

import catbus
from catbus.recording.verify import first_difference
from catbus.runtime import hostaddr
from catbus.wire import sockets
from catbus.wire.protocol import bus_address_problem
from tests.conftest import ROOT, wait_until
from tests.test_tcp import ADDR6_A, ADDR6_B, PROBE_CLASS, RUN_LIMIT, TwoHosts, check_exchange, \
    graph, two_hosts, write_launch  # noqa: F401  (two_hosts: the fixture)

pytestmark = pytest.mark.usefixtures("bus_sandbox")


def free_port6() -> int:
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
        probe.bind(("::1", 0))
        return probe.getsockname()[1]


def catbus_cli(*args: str, timeout: float = 30.0) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "catbus", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


# ------------------------------------------------------------------------------------------------
# addresses (pure)
# ------------------------------------------------------------------------------------------------
@pytest.mark.unit
@pytest.mark.parametrize("address", ["tcp://[fd00::1]:7740", "tcp://[::1]:7740",
                                     "tcp://[::]:7740", "tcp://[fe80::1%eth0]:7700",
                                     "tcp://10.0.0.1:7700", "tcp://labpc:7700"])
def test_bus_addresses_with_ipv6_in_brackets_are_accepted(address: str) -> None:
    assert bus_address_problem(address) is None


@pytest.mark.unit
@pytest.mark.parametrize("address, expected", [
    ("tcp://fd00::1:7740", "an IPv6 address goes in brackets: tcp://[fd00::1]:7740"),
    ("tcp://[zz::1]:7740", "[zz::1] is not an IPv6 address"),
    ("tcp://[10.0.0.1]:7740", "[10.0.0.1] is not an IPv6 address"),
    ("tcp://[::1]:70000", "port 70000 is out of range"),
    ("tcp://[::1]", "expected tcp://HOST:PORT")])
def test_malformed_ipv6_bus_addresses_say_the_fix(address: str, expected: str) -> None:
    assert expected in (bus_address_problem(address) or "")


@pytest.mark.unit
def test_endpoint_hosts_and_families() -> None:
    assert sockets.tcp_host("tcp://[fd00::1]:7700") == "fd00::1"
    assert sockets.tcp_host("tcp://10.0.0.1:*") == "10.0.0.1"
    assert sockets.tcp_host("ipc:///tmp/x.sock") is None
    assert hostaddr.tcp_endpoint("fd00::2", "*") == "tcp://[fd00::2]:*"
    assert hostaddr.tcp_endpoint("[fd00::2]", 7) == "tcp://[fd00::2]:7"
    assert hostaddr.tcp_endpoint("10.0.0.2", 7700) == "tcp://10.0.0.2:7700"
    # A listener binds IPv6 for an IPv6 address only: an IPv4 one stays IPv4 (its endpoint is
    # reported as tcp://10.0.0.1:PORT, not [::ffff:10.0.0.1]), and so do * and 0.0.0.0.
    for address, v6 in (("tcp://[fd00::1]:1", True), ("tcp://[::]:1", True),
                        ("tcp://10.0.0.1:1", False), ("tcp://0.0.0.0:1", False),
                        ("tcp://*:1", False), ("tcp://127.0.0.1:*", False)):
        assert sockets.binds_ipv6(address) is v6, address


@pytest.mark.unit
def test_a_bus_reported_by_a_dual_stack_socket_is_written_as_ipv4() -> None:
    assert hostaddr.reachable_bus("tcp://[::ffff:10.0.0.1]:7700") == "tcp://10.0.0.1:7700"
    assert hostaddr.reachable_bus("tcp://[fd00::1]:7700") == "tcp://[fd00::1]:7700"


@pytest.mark.unit
def test_loopback_is_recognised_in_both_families() -> None:
    for host in ("127.0.0.1", "127.0.1.1", "::1", "::ffff:127.0.0.1"):
        assert hostaddr.is_loopback(host), host
    for host in ("10.0.0.1", "0.0.0.0", "::", "fd00::1", "::ffff:10.0.0.1"):
        assert not hostaddr.is_loopback(host), host


@pytest.mark.unit
def test_ipv6_interface_addresses_leave_out_link_local_and_loopback() -> None:
    from types import SimpleNamespace as NS

    v6 = socket.AF_INET6
    addresses = {"lo": [NS(family=v6, address="::1")],
                 "eth0": [NS(family=v6, address="fe80::1"), NS(family=v6, address="fd00::5"),
                          NS(family=socket.AF_INET, address="10.0.0.5")]}
    assert hostaddr.usable_interfaces(addresses, {}, v6) == {"eth0": "fd00::5"}
    assert hostaddr.usable_interfaces(addresses, {}) == {"eth0": "10.0.0.5"}
    assert hostaddr.choose_host_address("fe80::1", {}, "::1") == "::1"
    assert hostaddr.choose_host_address("fd00::5", {}, "::1") == "fd00::5"


@pytest.mark.unit
@pytest.mark.parametrize("address, code, expected", [
    ("tcp://[fd00::9]:7740", errno.EADDRNOTAVAIL, "fd00::9 is not an address of this machine"),
    ("tcp://10.0.0.9:7740", errno.EADDRNOTAVAIL, "10.0.0.9 is not an address of this machine"),
    ("tcp://[::1]:7740", errno.EADDRINUSE, "port 7740 is in use on ::1"),
    ("tcp://nosuch.invalid:7740", errno.ENODEV, "neither an address of this machine nor a name"),
    ("tcp://[fe80::1]:7740", errno.EINVAL, "fe80::1 is link-local: name its interface too"),
    ("tcp://0.0.0.0:80", errno.EACCES, "port 80 needs privileges")])
def test_a_failed_bind_says_what_failed(address: str, code: int, expected: str) -> None:
    problem = sockets.bind_problem(address, zmq.ZMQError(code), ["127.0.0.1", "fd00::2"])
    assert expected in problem, problem
    assert "No such device" not in problem


@pytest.mark.timeout(10)
def test_socket_options_and_the_family_a_listener_binds() -> None:
    """Connecting sockets are dual stack, with the connect timeout and the reconnect interval;
    a listener binds IPv6 for an IPv6 address and plain IPv4 for an IPv4 one (its endpoint is
    ``tcp://127.0.0.1:PORT``, never ``[::ffff:127.0.0.1]``)."""
    ctx = zmq.Context()
    try:
        dealer, router, xpub = ctx.socket(zmq.DEALER), ctx.socket(zmq.ROUTER), ctx.socket(zmq.XPUB)
        sockets.keep_links_alive(dealer, router, xpub)
        assert dealer.getsockopt(zmq.IPV6) == 1
        assert dealer.getsockopt(zmq.CONNECT_TIMEOUT) == int(sockets.CONNECT_TIMEOUT * 1000)
        assert dealer.getsockopt(zmq.RECONNECT_IVL_MAX) == int(sockets.RECONNECT_MAX * 1000)
        assert sockets.bind(router, "tcp://[::1]:*").startswith("tcp://[::1]:")
        assert router.getsockopt(zmq.IPV6) == 1
        assert sockets.bind(xpub, "tcp://127.0.0.1:*").startswith("tcp://127.0.0.1:")
        endpoint = router.getsockopt(zmq.LAST_ENDPOINT).decode()
        dealer.connect(endpoint)
        dealer.send(b"over IPv6")
        assert router.poll(5000) and router.recv_multipart()[1] == b"over IPv6"
    finally:
        ctx.destroy(linger=0)


# ------------------------------------------------------------------------------------------------
# [::1]
# ------------------------------------------------------------------------------------------------
@pytest.mark.timeout(30)
@pytest.mark.parametrize("mode", ["parallel", "stepped"])
def test_loopback_ipv6_run(tmp_path: Path, mode: str, bus_sandbox: Any) -> None:
    """A run on ``tcp://[::1]:PORT``: the registry and every data socket on IPv6 loopback."""
    bus = f"tcp://[::1]:{free_port6()}"
    result = catbus.run(graph(tmp_path, bus), mode=mode, duration=0.3,
                        overrides=["probe.gain=2.5"])
    for name, stats in result.nodes.items():
        assert stats["state"] == "done" and stats["returncode"] == 0, (name, stats)
        assert stats["dropped"] == 0 and stats["malformed"] == 0, (name, stats)
    check_exchange(tmp_path, gain=2.5, seed=7, stepped=mode == "stepped")
    assert not bus_sandbox.run_folders()


@pytest.mark.timeout(30)
def test_a_bus_on_an_ipv6_address_of_another_machine_is_a_one_line_error(
        tmp_path: Path, bus_sandbox: Any) -> None:
    """It was "No such device (HOST must be an address of this machine ...)" for every IPv6
    address, this machine's included."""
    launch = write_launch(tmp_path, graph(tmp_path, "ipc"))
    done = catbus_cli("launch", str(launch), "--bus", "tcp://[fd00::cb:99]:7740", "--no-progress")
    assert done.returncode == 2, done
    assert done.stderr.count("\n") == 1, done.stderr
    assert "bus: the registry cannot bind tcp://[fd00::cb:99]:7740: fd00::cb:99 is not an " \
           "address of this machine" in done.stderr, done.stderr
    done = catbus_cli("launch", str(launch), "--bus", "tcp://fd00::1:7740", "--no-progress")
    assert done.returncode == 2 and "tcp://[fd00::1]:7740" in done.stderr, done.stderr
    assert not (tmp_path / "probe.json").exists()


@pytest.mark.timeout(60)
def test_open_bus_on_ipv6_loopback_and_a_node_joining_it(tmp_path: Path,
                                                         bus_sandbox: Any) -> None:
    """``catbus bus --bind tcp://[::1]:0`` (loopback: no keys needed) and ``catbus node`` joining
    it at the address the bus printed."""
    out, err = tmp_path / "bus.out", tmp_path / "bus.err"
    with open(out, "w") as stdout, open(err, "w") as stderr:
        host = subprocess.Popen([sys.executable, "-m", "catbus", "bus", "--bind", "tcp://[::1]:0"],
                                cwd=ROOT, stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL)
    node = None
    try:
        line = wait_until(lambda: next((l for l in out.read_text().splitlines()
                                        if "registry at" in l), None), 30,
                          what="the bus to be bound")
        bus = line.split("registry at ", 1)[1].split(";", 1)[0]
        assert bus.startswith("tcp://[::1]:"), line
        node = subprocess.Popen([sys.executable, "-m", "catbus", "node", "tests.toy_nodes:Talker",
                                 "--name", "talker", "--bus", bus, "--period", "0.01"], cwd=ROOT,
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        wait_until(lambda: "talker" in out.read_text().split("registry at", 1)[1], 30,
                   what="the node to join the bus")
    finally:
        for proc in (node, host):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(20)
    assert host.returncode == 128 + signal.SIGTERM, err.read_text()


# ------------------------------------------------------------------------------------------------
# two hosts over IPv6
# ------------------------------------------------------------------------------------------------
def graph6(hosts: TwoHosts, code: str) -> str:
    """A snippet run on host A printing ``code`` about the run at ``hosts.bus6``: ``q`` is its
    graph, ``g`` its nodes by name. (The tool's socket is made dual stack here: catbus's own
    tools may not be.)"""
    return hosts.a.python(
        "import json, zmq\nzmq.Context.instance().setsockopt(zmq.IPV6, 1)\n"
        "from catbus.client import query_graph\n"
        f"q = query_graph({hosts.bus6!r}, timeout=2)\n"
        "g = {n['name']: n for n in q['nodes']}\n"
        f"print({code})")


def endpoints6(hosts: TwoHosts) -> dict[str, str] | None:
    """``{node: data endpoint}`` of the run at ``hosts.bus6`` once its three nodes have
    registered (a node the launch file names is in the graph, without one, before)."""
    said = graph6(hosts, "json.dumps({n: e['endpoint'] for n, e in g.items()})")
    try:
        found = json.loads(said.splitlines()[-1])
    except (ValueError, IndexError):   # no answer yet
        return None
    return found if len(found) == 3 and all(found.values()) else None


@pytest.mark.timeout(60)
def test_remote_node_over_ipv6_stepped_matches_inline(two_hosts: TwoHosts,
                                                      tmp_path: Path) -> None:
    """Stepped across the two hosts over IPv6 only: the bus on host A's ``fd00::cb:1``, the
    remote probe (``catbus node``, no ``--advertise``) binds and advertises ``fd00::cb:2``; the
    recording equals an inline run's."""
    bus = two_hosts.bus6
    launch = write_launch(tmp_path, graph(tmp_path, bus, duration=0.3))
    stepped = tmp_path / "stepped.mcap"
    launcher, node = two_hosts.run(
        [str(launch), "--mode", "stepped", "--remote", "probe", "--set", "probe.gain=3",
         "--record", str(stepped), "--json", "--insecure"],
        [PROBE_CLASS, "--name", "probe", "--bus", bus], tmp_path)
    assert launcher.process.returncode == 0, launcher.output()
    assert node.process.returncode == 0, node.output()
    assert f"--bus {bus}" in launcher.output()           # the printed command, in brackets
    nodes = json.loads(launcher.log.with_suffix(".out").read_text())["nodes"]
    for name, stats in nodes.items():
        assert stats["dropped"] == 0 and stats["malformed"] == 0, (name, stats)
    check_exchange(tmp_path, gain=3.0, seed=7, stepped=True)
    inline = tmp_path / "inline.mcap"
    catbus.run(launch, mode="inline", overrides=["probe.gain=3"], record=inline, evaluate=False)
    assert first_difference(inline, stepped) is None, first_difference(inline, stepped)


@pytest.mark.timeout(90)
def test_only_and_data_ports_over_ipv6(two_hosts: TwoHosts, tmp_path: Path) -> None:
    """Parallel over IPv6: host A's launcher binds its nodes' data sockets in one port range;
    host B runs the ``--only`` line it printed, as printed (with ``--data-ports``), and its
    probe binds on ``fd00::cb:2`` in that range."""
    bus = two_hosts.bus6
    launch = write_launch(tmp_path, graph(tmp_path, bus, duration=4.0))
    owner = two_hosts.a.start(["launch", str(launch), "--mode", "parallel", "--remote", "probe",
                               "--set", "probe.gain=3", "--data-ports", "7810-7819",
                               "--no-progress", "--insecure"], tmp_path / "owner")
    share = None
    try:
        line = wait_until(lambda: next((l.strip() for l in owner.output().splitlines()
                                        if "--only probe" in l), None), 30,
                          what="the owner to print the --only line")
        assert f"--bus {bus}" in line and line.endswith("--data-ports 7810-7819"), line
        share = two_hosts.b.start(shlex.split(line)[1:], tmp_path / "share")
        endpoints = wait_until(lambda: endpoints6(two_hosts), 30, interval=0.3,
                               what="every node in the graph")
        for name, endpoint in endpoints.items():
            address = ADDR6_B if name == "probe" else ADDR6_A
            assert endpoint.startswith(f"tcp://[{address}]:"), endpoints
            assert 7810 <= int(endpoint.rsplit(":", 1)[1]) <= 7819, endpoints
        for proc in (owner, share):
            proc.process.wait(timeout=RUN_LIMIT)
    finally:
        for proc in (share, owner):
            if proc is not None:
                proc.stop()
    assert owner.process.returncode == 0, owner.output()
    assert share.process.returncode == 0, share.output()
    check_exchange(tmp_path, gain=3.0, seed=7, stepped=False)

