"""Runs on a network: what the launcher prints for the other hosts (one ``--only`` command per
host, each with that host's key folder and the run's ``--data-ports``), the data-port range
checked at launch, and an open bus refused on an address other hosts reach (secure by default).

Pure checks first (``unit``); then one-line refusals on loopback (nothing is started); then three
hosts -- network namespaces on one switch, built like tests/test_tcp.py's two (``10.231.78.1``
owns the run, ``.2`` and ``.3`` each run their share) -- where the printed commands are run as
printed. Traffic goes only to loopback and to those namespaces.
"""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest

import catbus
from catbus.api.run import load
from catbus.errors import ConfigError
from catbus.recording.verify import first_difference
from catbus.security import Keys
from catbus.spec.runchecks import data_ports_problem
from catbus.supervise.remote import NO_CLIENT, only_commands, open_bus_problem, \
    remote_commands
from tests.conftest import ROOT, wait_until
from tests.test_tcp import Host, Proc, check_exchange, free_port, graph, \
    switched_network, write_launch

pytestmark = pytest.mark.usefixtures("bus_sandbox")


def catbus_cli(*args: str, cwd: Path = ROOT, timeout: float = 30.0) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "catbus", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def three_remote(folder: Path, bus: str, **top: Any) -> dict:
    """tests/test_tcp.py's graph with the probe and the collector both remote (each for its own
    host): talker (A) -> probe (B) -> collector (C)."""
    data = graph(folder, bus, **top)
    data["nodes"]["probe"]["remote"] = True
    data["nodes"]["collector"]["remote"] = True
    return data


def keys_for(allowed: dict[str, set[str]], folder: str = "/k") -> Keys:
    """A run's keys with this allow-list (``{client: node names}``), made up: nothing is read."""
    table = {f"{client:<40}".encode(): (client, frozenset(names))
             for client, names in {"local": {"*"}, **allowed}.items()}
    return Keys(Path(folder), b"p" * 40, b"s" * 40, b"b" * 40, b"x" * 40, table)


# ------------------------------------------------------------------------------------------------
# what is printed for the other hosts (pure)
# ------------------------------------------------------------------------------------------------
BUS = "tcp://10.0.0.1:7700"


@pytest.mark.unit
def test_one_only_command_per_host_with_its_keys_and_the_data_ports(tmp_path: Path) -> None:
    spec = load(three_remote(tmp_path, BUS))
    keys = keys_for({"hostb": {"probe"}, "hostc": {"collector"}})
    lines = only_commands(spec, BUS, keys, (7710, 7799))
    assert [line.split(" --only ")[1] for line in lines] == [
        f"probe --bus {BUS} --keys /k/clients/hostb --data-ports 7710-7799",
        f"collector --bus {BUS} --keys /k/clients/hostc --data-ports 7710-7799"]
    # each node's own command has the same key folder and ports
    assert [c.split(" --keys ")[1] for c in remote_commands(spec, BUS, keys,
                                                            data_ports=(7710, 7799))] == \
        ["/k/clients/hostb --data-ports 7710-7799", "/k/clients/hostc --data-ports 7710-7799"]


@pytest.mark.unit
def test_all_at_once_only_when_one_key_may_register_every_remote_node(tmp_path: Path) -> None:
    spec = load(three_remote(tmp_path, BUS))
    one = only_commands(spec, BUS, keys_for({"hostb": {"probe", "collector"}}))
    assert len(one) == 1 and one[0].endswith("--only probe,collector --bus "
                                              f"{BUS} --keys /k/clients/hostb"), one
    unkeyed = only_commands(spec, BUS, None)
    assert len(unkeyed) == 1 and unkeyed[0].endswith(f"--only probe,collector --bus {BUS}")
    nobody = only_commands(spec, BUS, keys_for({"hostb": {"probe"}}))
    assert [line.rsplit(" --keys ", 1)[1] for line in nobody] == ["/k/clients/hostb", NO_CLIENT]


@pytest.mark.unit
def test_open_bus_problem_only_for_tcp_off_loopback_without_keys() -> None:
    keys = keys_for({})
    for endpoint in ("tcp://127.0.0.1:7700", "tcp://[::1]:7700", "ipc:///tmp/x/registry.sock"):
        assert open_bus_problem(endpoint, None) is None, endpoint
    for endpoint in ("tcp://0.0.0.0:7700", "tcp://10.0.0.1:7700", "tcp://[::]:7700",
                     "tcp://[fd00::1]:7700"):
        problem = open_bus_problem(endpoint, None)
        assert problem and "--insecure" in problem and "catbus keys generate" in problem
        assert open_bus_problem(endpoint, keys) is None


@pytest.mark.unit
def test_data_port_range_against_the_nodes_that_bind_in_it() -> None:
    names = ["env", "robot", "human"]
    assert data_ports_problem((7710, 7712), names) is None
    small = data_ports_problem((7710, 7711), names)
    assert "has 2 ports for 3 node processes" in small and "--data-ports 7710-7712" in small
    busy = data_ports_problem((7710, 7712), names, free=1, host="10.0.0.1")
    assert "only 1 of the 3 ports" in busy and "--data-ports 7710-7714" in busy
    assert "no port of" in data_ports_problem((7710, 7712), names, free=0, host="10.0.0.1")
    assert data_ports_problem((7710, 7710), []) is None


# ------------------------------------------------------------------------------------------------
# refused at launch, one line, nothing started
# ------------------------------------------------------------------------------------------------
def one_line(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 2, done
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    return done.stderr


@pytest.mark.timeout(60)
def test_an_open_bus_on_every_interface_is_refused(tmp_path: Path, bus_sandbox: Any) -> None:
    """No keys and an address other hosts reach: refused with the way to add keys and the way
    to accept the risk; the launcher, ``catbus bus`` and the Python API alike."""
    launch = write_launch(tmp_path, graph(tmp_path, "ipc", duration=0.3))
    bus = f"tcp://0.0.0.0:{free_port()}"
    said = one_line(catbus_cli("launch", str(launch), "--bus", bus, "--no-progress"))
    assert "would be an open bus on the network" in said and "--insecure" in said, said
    assert "catbus keys generate" in said, said
    said = one_line(catbus_cli("bus", "--bind", "tcp://0.0.0.0:0"))
    assert "would be an open bus on the network" in said and "--insecure" in said, said
    with pytest.raises(ConfigError, match="would be an open bus on the network"):
        catbus.start(graph(tmp_path, bus, duration=0.3), mode="stepped")
    assert not (tmp_path / "probe.json").exists()
    assert not bus_sandbox.run_folders() and not bus_sandbox.processes()


@pytest.mark.timeout(60)
def test_a_data_port_range_too_small_is_refused_at_launch(tmp_path: Path,
                                                         bus_sandbox: Any) -> None:
    """Three local node processes and two ports, or three ports of which two are taken: one line
    naming ``--data-ports`` and the fix, before any node starts (it failed when they did)."""
    launch = write_launch(tmp_path, graph(tmp_path, f"tcp://127.0.0.1:{free_port()}",
                                          duration=0.3))
    low = free_port()
    while low > 65000:
        low = free_port()
    said = one_line(catbus_cli("launch", str(launch), "--data-ports", f"{low}-{low + 1}",
                               "--no-progress"))
    assert f"--data-ports: {low}-{low + 1} has 2 ports for 3 node processes" in said, said
    taken = []
    try:
        for port in (low, low + 1):
            held = socket.socket()
            taken.append(held)
            held.bind(("127.0.0.1", port))
            held.listen()
        said = one_line(catbus_cli("launch", str(launch), "--data-ports", f"{low}-{low + 2}",
                                   "--no-progress"))
        assert f"only 1 of the 3 ports of {low}-{low + 2} are free on 127.0.0.1" in said, said
    finally:
        for held in taken:
            held.close()
    said = one_line(catbus_cli("launch", str(launch), "--only", "probe,collector", "--bus",
                               "tcp://127.0.0.1:9", "--data-ports", f"{low}-{low}"))
    assert "--data-ports" in said and "(probe, collector)" in said, said
    assert not (tmp_path / "probe.json").exists() and not bus_sandbox.processes()


# ------------------------------------------------------------------------------------------------
# three hosts: the printed commands, run as printed
# ------------------------------------------------------------------------------------------------
SUBNET = "10.231.78"
BUS_PORT = 7700


@dataclass
class ThreeHosts:
    a: Host
    b: Host
    c: Host

    @property
    def bus(self) -> str:
        return f"tcp://{self.a.addr}:{BUS_PORT}"


@pytest.fixture(scope="module")
def three_hosts() -> Iterator[ThreeHosts]:
    tag = f"cbn{os.getpid()}"
    hosts = [Host(f"{tag}{x}", f"{SUBNET}.{n}", veth=f"{tag}v{x}", addr6=f"fd00::cc:{n}")
             for n, x in ((1, "a"), (2, "b"), (3, "c"))]
    with switched_network(tag, hosts):
        yield ThreeHosts(*hosts)


def printed(owner: Proc, marker: str) -> list[str]:
    """The commands the owner printed (indented lines of its stderr) that contain ``marker``."""
    return [line.strip() for line in owner.log.with_suffix(".err").read_text().splitlines()
            if line.startswith("  catbus ") and marker in line]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("which", ["--only", "catbus node"])
def test_the_printed_commands_run_as_printed_on_three_hosts(three_hosts: ThreeHosts,
                                                            tmp_path: Path, which: str) -> None:
    """A keyed stepped run owned by host A with its data ports in a range; B and C each hold
    their own client key folder. The commands the owner prints -- one ``--only`` line per host,
    or each node's ``catbus node`` line -- are run as printed, each on the host whose key it
    names, and the recording equals an inline run's. (One ``--only`` line for both, with one
    host's key, had the other's node refused.)"""
    done = catbus_cli("keys", "generate", str(tmp_path / "keys"), "--node", "probe=hostb",
                      "--node", "collector=hostc")
    assert done.returncode == 0, done
    launch = write_launch(tmp_path, three_remote(tmp_path, three_hosts.bus, duration=0.3,
                                                 security={"keys": "keys"}))
    record = tmp_path / "stepped.mcap"
    owner = three_hosts.a.start(["launch", str(launch), "--mode", "stepped", "--record",
                                 str(record), "--data-ports", "7830-7839", "--no-progress"],
                                tmp_path / "owner")
    started: list[Proc] = []
    try:
        marker = " --only " if which == "--only" else "catbus node "
        lines = wait_until(lambda: len(printed(owner, marker)) == 2 and printed(owner, marker),
                           30, what="the owner to print the commands")
        assert "all of them at once" not in owner.output(), owner.output()
        for line in lines:
            host = three_hosts.b if "clients/hostb" in line else three_hosts.c
            assert line.endswith(" --data-ports 7830-7839"), line
            started.append(host.start(shlex.split(line)[1:], tmp_path / f"{host.netns[-1]}"))
        for proc in (owner, *started):
            proc.process.wait(timeout=60)
    finally:
        for proc in (*started, owner):
            proc.stop()
    assert owner.process.returncode == 0, owner.output()
    for proc in started:
        assert proc.process.returncode == 0, proc.output()
    check_exchange(tmp_path, gain=1.0, seed=7, stepped=True)
    inline = tmp_path / "inline.mcap"   # the same nodes, all in this process
    catbus.run(graph(tmp_path, "ipc", duration=0.3), mode="inline", record=inline,
               evaluate=False)
    assert first_difference(inline, record) is None, first_difference(inline, record)
