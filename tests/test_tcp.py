"""The bus over TCP: a loopback run, and a node on another host (two Linux network namespaces).

Real processes and real sockets, like tests/test_bus.py: every test is bounded
(``pytest.mark.timeout``), waits for events (a process exiting, a file written), never for a fixed
time, and runs in ``bus_sandbox`` (tests/conftest.py), which fails it if a process it started or a
run folder outlives it.

The two-host tests build two network namespaces plugged into one switch (a bridge in a third
namespace) -- "host A" (``10.231.77.1``) runs ``catbus launch`` with one node declared remote,
"host B" (``10.231.77.2``) runs ``catbus node ... --bus tcp://10.231.77.1:7700`` -- so the remote
node reaches the registry, and its peers reach it, only through the switch: an address that works
only on one host (a data endpoint advertised as 127.0.0.1, say) makes the run fail here. Pulling
B's cable takes B's interface down and leaves A's up, as on a real network. Traffic goes only to
these addresses and to loopback. Each host also has an IPv6 address (``fd00::cb:1``,
``fd00::cb:2``: tests/test_ipv6.py). Runs without keys on these addresses pass ``--insecure``: an
open bus on an address other hosts reach is refused without it. They need root and ``ip netns``;
without them they are skipped, saying why (set ``CATBUS_REQUIRE_NETNS=1`` to make that a failure,
as CI does). Namespaces, veth and processes are removed even when a test fails; names carry the
pytest pid, so concurrent or aborted sessions never collide (namespaces left by a session that was
killed are removed by the next).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pytest

import catbus
from catbus.api.run import load
from catbus.runtime.dataplane import data_endpoint_for, host_address, interface_addresses, reachable_bus
from catbus.errors import RunTimeout
from catbus.supervise.launcher import Launcher
from catbus.recording.verify import first_difference
from tests.conftest import ROOT, alive, wait_until

pytestmark = pytest.mark.usefixtures("bus_sandbox")

TOY = "tests.toy_nodes"
PROBE_CLASS = f"{TOY}:Prober"
#: The subnet of the two namespaces: private, unusual, and only ever inside our own namespaces.
SUBNET = "10.231.77"
ADDR_A, ADDR_B = f"{SUBNET}.1", f"{SUBNET}.2"
#: Their IPv6 addresses: unique-local (fd00::/8), and only ever inside our own namespaces.
SUBNET6 = "fd00::cb"
ADDR6_A, ADDR6_B = f"{SUBNET6}:1", f"{SUBNET6}:2"
BUS_PORT = 7700
#: Bound on one two-host run (a run takes about a second); past it the test fails with diagnostics.
RUN_LIMIT = 20.0


# ------------------------------------------------------------------------------------------------
# the graph: talker (here) -> probe (remote) -> collector (here)
# ------------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def graph(folder: Path, bus: str, **top: Any) -> dict:
    """talker (10 ms) -> probe (Prober, 20 ms, reads talker/out) -> collector (reactive, ``all``).

    The probe is the node that goes to the other host: it reads a topic published here and
    publishes one read here, and reports the parameters and seed it was given."""
    return {"name": "tcpgraph", "bus": bus, "seed": 7, **top, "nodes": {
        "talker": {"class": f"{TOY}:Talker", "period": 0.01},
        "probe": {"class": PROBE_CLASS, "remap": {"~/in": "talker/out"},
                  "params": {"report": str(folder / "probe.json")}},
        "collector": {"class": f"{TOY}:Collector", "params": {"path": str(folder / "heard.json")},
                      "remap": {"~/in": "probe/out"}}}}


def write_launch(folder: Path, data: dict) -> Path:
    import yaml

    path = folder / "launch.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def check_exchange(folder: Path, *, gain: float, seed: int, stepped: bool) -> tuple[dict, list]:
    """What the probe and the collector wrote: the probe got its parameters and the seed from the
    registry, heard the talker, and everything it said reached the collector."""
    report = json.loads((folder / "probe.json").read_text())
    heard = json.loads((folder / "heard.json").read_text())
    assert report["name"] == "probe"
    assert report["seed"] == seed, f"the probe did not get the run seed: {report}"
    assert report["params"] == {"gain": gain, "report": str(folder / "probe.json")}, \
        f"the probe did not get its parameters from the registry: {report}"
    assert report["heard"], "the probe heard nothing from the talker"
    assert report["heard"] == sorted(set(report["heard"])), report["heard"]
    assert [m["n"] for m in heard] == list(range(report["steps"])), \
        "the collector missed messages of the probe, or got them out of order"
    for message in heard:
        if message["heard"] is not None:    # the talker's x is its n (gain 1)
            assert message["x"] == gain * message["heard"], message
    if stepped:
        # Ticks 0..30 of 10 ms: the probe (20 ms) steps 16 times, after the talker in each tick.
        assert report["steps"] == 16
        assert report["heard"] == list(range(0, 31, 2))
        assert [m["heard"] for m in heard] == list(range(0, 31, 2))
    return report, heard


# ------------------------------------------------------------------------------------------------
# loopback
# ------------------------------------------------------------------------------------------------
@pytest.mark.timeout(30)
@pytest.mark.parametrize("mode", ["parallel", "stepped"])
def test_loopback_tcp_run(tmp_path: Path, mode: str, bus_sandbox: Any) -> None:
    bus = f"tcp://127.0.0.1:{free_port()}"
    result = catbus.run(graph(tmp_path, bus), mode=mode, duration=0.3,
                        overrides=["probe.gain=2.5"])
    assert result.spec.bus == bus
    for name, stats in result.nodes.items():
        assert stats["state"] == "done" and stats["returncode"] == 0, (name, stats)
        assert stats["dropped"] == 0 and stats["malformed"] == 0, (name, stats)
    report, heard = check_exchange(tmp_path, gain=2.5, seed=7, stepped=mode == "stepped")
    assert result.nodes["probe"]["sent"] == len(heard) == result.nodes["collector"]["received"]
    assert not bus_sandbox.run_folders()


def test_data_endpoint_follows_the_bus_address() -> None:
    """A node binds (and advertises) its data socket on the address it reaches the registry
    from; ``--advertise`` wins; ipc stays in the run folder."""
    assert data_endpoint_for("tcp://127.0.0.1:7700", "n") == "tcp://127.0.0.1:*"
    assert data_endpoint_for("tcp://127.0.0.1:7700", "n", "127.0.0.2") == "tcp://127.0.0.2:*"
    assert data_endpoint_for("ipc:///tmp/x/registry.sock", "n") == \
        f"ipc:///tmp/x/n-{os.getpid()}.sock"
    # A registry bound on every interface: never loopback when the host has another address
    # (a peer on another host could not reach it), never the unroutable 0.0.0.0.
    for wildcard in ("tcp://0.0.0.0:7700", "tcp://*:7700"):
        endpoint = data_endpoint_for(wildcard, "n")
        assert endpoint == f"tcp://{host_address()}:*" and "0.0.0.0" not in endpoint
        if interface_addresses():
            assert not endpoint.startswith("tcp://127."), endpoint
        assert reachable_bus(wildcard) == f"tcp://{host_address()}:7700"


@pytest.mark.timeout(30)
def test_remote_node_that_never_joins_fails_the_run_clearly(tmp_path: Path,
                                                            bus_sandbox: Any) -> None:
    """The wait for a remote node is bounded, the error names it, and every local node stops."""
    bus = f"tcp://127.0.0.1:{free_port()}"
    spec = load(graph(tmp_path, bus), mode="stepped", duration=0.3, remote=["probe"])
    with pytest.raises(RunTimeout) as failure:
        Launcher(spec, remote_timeout=1.0).run()
    message = str(failure.value)
    assert "probe" in message and "did not join" in message, message
    assert "catbus node" in message and bus in message, message


@pytest.mark.timeout(30)
def test_remote_wait_message_is_the_exact_command(tmp_path: Path) -> None:
    bus = f"tcp://127.0.0.1:{free_port()}"
    spec = load(graph(tmp_path, bus), mode="stepped", duration=0.3, remote=["probe"])
    with pytest.raises(RunTimeout) as failure:
        Launcher(spec, remote_timeout=1.0).run()
    assert f"catbus node {PROBE_CLASS} --name probe --bus {bus}" in str(failure.value)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("option, value, expected", [
    ("--bus", "127.0.0.1:7700", "--bus: 127.0.0.1:7700: expected tcp://HOST:PORT"),
    ("--bus", "tcp://127.0.0.1", "--bus: tcp://127.0.0.1: expected tcp://HOST:PORT"),
    ("--advertise", "10.231.77.9", "--advertise: 10.231.77.9: not an address of this host")])
def test_node_address_mistakes_are_one_line_errors(option: str, value: str,
                                                   expected: str) -> None:
    """What a person types on the other host: a wrong address is one line and exit code 2 (it
    was a ZeroMQ traceback), before any connection is tried."""
    args = {"--bus": "tcp://127.0.0.1:9", option: value}
    done = subprocess.run(
        [sys.executable, "-m", "catbus", "node", PROBE_CLASS, "--name", "probe",
         *[item for pair in args.items() for item in pair], "--timeout", "5"],
        cwd=ROOT, capture_output=True, text=True, timeout=20, stdin=subprocess.DEVNULL)
    assert done.returncode == 2, done
    assert done.stderr.startswith(f"catbus: {expected}") and done.stderr.count("\n") == 1, \
        done.stderr


# ------------------------------------------------------------------------------------------------
# two hosts: network namespaces
# ------------------------------------------------------------------------------------------------
#: Our namespaces: ``cbt<pytest pid>`` (this module) or ``cbn<pid>`` (tests/test_networks.py), then a
#: host letter or ``s`` (the switch).
_NS_NAME = re.compile(r"cb[tn](\d+)[a-z]\Z")


def _ip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10,
                          stdin=subprocess.DEVNULL)


def _unavailable(reason: str) -> None:
    if os.environ.get("CATBUS_REQUIRE_NETNS") == "1":
        pytest.fail(f"two-host tests required (CATBUS_REQUIRE_NETNS=1) but {reason}")
    pytest.skip(reason)


def _namespaces() -> list[str]:
    listed = _ip("netns", "list")
    return [line.split()[0] for line in listed.stdout.splitlines() if line.strip()]


def _remove_namespace(name: str) -> None:
    """Kill what still runs in a namespace of ours (by pid), then delete it (its veth end goes
    with it, and the other end with its pair)."""
    for pid in _ip("netns", "pids", name).stdout.split():
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass
    _ip("netns", "del", name)


def _remove_stale_namespaces() -> None:
    """Namespaces of earlier sessions that were killed before their cleanup ran."""
    for name in _namespaces():
        match = _NS_NAME.match(name)
        if match and int(match[1]) != os.getpid() and not alive(int(match[1])):
            _remove_namespace(name)


@dataclass
class Host:
    """One side of the pair: a network namespace with one address."""

    netns: str
    addr: str
    started: list[subprocess.Popen] = field(default_factory=list)
    veth: str = ""   # its end of the veth pair
    addr6: str = ""  # its IPv6 address

    def link(self, state: str) -> None:
        """Take this host's network interface ``down`` or bring it ``up`` (a pulled cable)."""
        done = _ip("-n", self.netns, "link", "set", self.veth, state)
        assert done.returncode == 0, done.stderr

    def start(self, args: list[str], log: Path) -> "Proc":
        """``python -m catbus ARGS`` inside this namespace (``ip netns exec`` execs the command,
        so the pid is python's); output to files, never pipes that children could hold open."""
        out, err = open(log.with_suffix(".out"), "w"), open(log.with_suffix(".err"), "w")
        with out, err:
            process = subprocess.Popen(
                ["ip", "netns", "exec", self.netns, sys.executable, "-m", "catbus", *args],
                cwd=ROOT, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        self.started.append(process)
        return Proc(process, log)

    def python(self, code: str) -> str:
        """Run a snippet in this namespace (diagnostics only)."""
        done = subprocess.run(["ip", "netns", "exec", self.netns, sys.executable, "-c", code],
                              cwd=ROOT, capture_output=True, text=True, timeout=10,
                              stdin=subprocess.DEVNULL)
        return (done.stdout + done.stderr).strip()


@dataclass
class Proc:
    process: subprocess.Popen
    log: Path

    def output(self) -> str:
        return (f"--- stdout ---\n{self.log.with_suffix('.out').read_text()}"
                f"--- stderr ---\n{self.log.with_suffix('.err').read_text()}")

    def stop(self) -> None:
        """SIGTERM (a launcher then stops its nodes and removes its run folder), SIGKILL if that
        does not end it."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if self.process.poll() is not None:
                return
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass


@dataclass
class TwoHosts:
    a: Host
    b: Host

    @property
    def bus(self) -> str:
        return f"tcp://{self.a.addr}:{BUS_PORT}"

    @property
    def bus6(self) -> str:
        """The same bus on host A's IPv6 address."""
        return f"tcp://[{self.a.addr6}]:{BUS_PORT}"

    def run(self, launch_args: list[str], node_args: list[str], folder: Path, *,
            node_first: bool = False) -> tuple[Proc, Proc]:
        """``catbus launch`` on A and ``catbus node`` on B; waits for both to exit (bounded) and
        fails with both outputs and the registry's view if the run does not end in time."""
        def launch() -> Proc:
            return self.a.start(["launch", *launch_args, "--no-progress"], folder / "launch")

        def node() -> Proc:
            return self.b.start(["node", *node_args], folder / "node")

        first, second = (node, launch) if node_first else (launch, node)
        procs = [first(), second()]
        launcher, remote = procs if not node_first else procs[::-1]
        try:
            for proc in (launcher, remote):
                proc.process.wait(timeout=RUN_LIMIT)
        except subprocess.TimeoutExpired:
            graph_view = self.a.python(
                "from catbus.client import query_graph\n"
                f"g = query_graph({self.bus!r}, timeout=2)\n"
                "print('started', g['started'])\n"
                "for n in g['nodes']: print(n['name'], n['state'], n['endpoint'], n['host'])")
            for proc in (remote, launcher):
                proc.stop()
            pytest.fail(f"the two-host run did not end within {RUN_LIMIT:g} s\n"
                        f"registry's graph (endpoints each node advertised):\n{graph_view}\n"
                        f"=== launcher on A ===\n{launcher.output()}\n"
                        f"=== remote node on B ===\n{remote.output()}")
        finally:
            for proc in (remote, launcher):
                proc.stop()
        return launcher, remote


@contextlib.contextmanager
def switched_network(tag: str, hosts: list[Host]) -> Iterator[list[Host]]:
    """Build ``hosts`` (namespaces ``{tag}a``, ``{tag}b`` ...) on one switch: a bridge in a
    namespace of its own (``{tag}s``), each host's veth plugged into it. Pulling a host's cable
    (:meth:`Host.link`) then takes its interface down while the others keep theirs up, as on a
    real network: their packets to it are sent, and lost, at the switch. Yields the hosts, and
    removes everything (also what still runs in them) at the end."""
    if not sys.platform.startswith("linux"):
        _unavailable("network namespaces are Linux only")
    if os.geteuid() != 0:
        _unavailable("creating network namespaces needs root (CI runs this as root)")
    if shutil.which("ip") is None:
        _unavailable("the `ip` command (iproute2) is not installed")
    _remove_stale_namespaces()
    switch = f"{tag}s"
    steps = [("netns", "add", switch), ("-n", switch, "link", "add", "br0", "type", "bridge"),
             ("-n", switch, "link", "set", "br0", "up")]
    for host in hosts:
        port = host.veth[:-2] + "s" + host.veth[-1]   # the switch's end of its cable
        steps += [("netns", "add", host.netns),
                  ("link", "add", host.veth, "type", "veth", "peer", "name", port),
                  ("link", "set", host.veth, "netns", host.netns),
                  ("link", "set", port, "netns", switch),
                  ("-n", switch, "link", "set", port, "master", "br0"),
                  ("-n", switch, "link", "set", port, "up"),
                  ("-n", host.netns, "addr", "add", f"{host.addr}/24", "dev", host.veth),
                  # nodad: usable at once (duplicate address detection would hold it ~1 s)
                  ("-n", host.netns, "addr", "add", f"{host.addr6}/64", "dev", host.veth,
                   "nodad"),
                  ("-n", host.netns, "link", "set", "lo", "up"),
                  ("-n", host.netns, "link", "set", host.veth, "up")]
    try:
        for step in steps:
            done = _ip(*step)
            if done.returncode != 0:
                _unavailable(f"`ip {' '.join(step)}` failed: {done.stderr.strip()}")
        yield hosts
    finally:
        for host in hosts:
            for process in host.started:       # ours, by pid; normally long gone
                if process.poll() is None:
                    process.kill()
                    process.wait()
            _remove_namespace(host.netns)
            _ip("link", "del", host.veth)      # only if it never made it into a namespace
        _remove_namespace(switch)
        names = {host.netns for host in hosts} | {switch}
        left = [n for n in _namespaces() if n in names]
        assert not left, f"network namespaces left behind: {left}"


@pytest.fixture(scope="module")
def two_hosts() -> Iterator[TwoHosts]:
    tag = f"cbt{os.getpid()}"                   # interface names: at most 15 characters
    a = Host(f"{tag}a", ADDR_A, veth=f"{tag}va", addr6=ADDR6_A)
    b = Host(f"{tag}b", ADDR_B, veth=f"{tag}vb", addr6=ADDR6_B)
    with switched_network(tag, [a, b]):
        yield TwoHosts(a, b)


@pytest.mark.timeout(60)
def test_remote_node_on_another_host_stepped_matches_inline(two_hosts: TwoHosts,
                                                            tmp_path: Path) -> None:
    """Stepped across hosts: the remote probe (given ``--advertise``) gets its ``--set``
    parameter and the seed from the registry, data flows both ways through the veth, and the
    recording equals an inline run's."""
    launch = write_launch(tmp_path, graph(tmp_path, two_hosts.bus, duration=0.3))
    stepped = tmp_path / "stepped.mcap"
    launcher, node = two_hosts.run(
        [str(launch), "--mode", "stepped", "--remote", "probe", "--set", "probe.gain=3",
         "--record", str(stepped), "--json", "--insecure"],
        [PROBE_CLASS, "--name", "probe", "--bus", two_hosts.bus, "--advertise", ADDR_B], tmp_path)
    assert launcher.process.returncode == 0, launcher.output()
    assert node.process.returncode == 0, node.output()
    nodes = json.loads(launcher.log.with_suffix(".out").read_text())["nodes"]
    assert nodes["probe"]["state"] == "done" and nodes["probe"]["pid"] == node.process.pid, nodes
    for name, stats in nodes.items():
        assert stats["dropped"] == 0 and stats["malformed"] == 0, (name, stats)
    check_exchange(tmp_path, gain=3.0, seed=7, stepped=True)

    inline = tmp_path / "inline.mcap"
    catbus.run(launch, mode="inline", overrides=["probe.gain=3"], record=inline, evaluate=False)
    assert first_difference(inline, stepped) is None, \
        f"stepped across two hosts differs from inline: {first_difference(inline, stepped)}"


@pytest.mark.timeout(60)
def test_remote_node_on_another_host_parallel(two_hosts: TwoHosts, tmp_path: Path) -> None:
    """Parallel across hosts, the registry bound on every interface (``tcp://0.0.0.0:PORT``), the
    remote node started first (it waits for the registry). The launcher's own nodes reach the
    registry through loopback here, yet must advertise an address that host B reaches."""
    wildcard = f"tcp://0.0.0.0:{BUS_PORT}"
    launch = write_launch(tmp_path, graph(tmp_path, wildcard, duration=0.5, seed=11))
    launcher, node = two_hosts.run(
        [str(launch), "--mode", "parallel", "--remote", "probe", "--set", "probe.gain=3",
         "--insecure"],
        [PROBE_CLASS, "--name", "probe", "--bus", two_hosts.bus], tmp_path, node_first=True)
    assert launcher.process.returncode == 0, launcher.output()
    assert node.process.returncode == 0, node.output()
    check_exchange(tmp_path, gain=3.0, seed=11, stepped=False)


@pytest.mark.timeout(30)
def test_a_bus_address_not_on_this_host_is_a_one_line_error(tmp_path: Path) -> None:
    """`catbus launch --bus tcp://ADDR:PORT` with an address this machine does not have: one line
    naming the field and the fix, exit code 2, nothing started (binding sends no packet)."""
    launch = write_launch(tmp_path, graph(tmp_path, "ipc"))
    done = subprocess.run(
        [sys.executable, "-m", "catbus", "launch", str(launch), "--bus", f"tcp://{SUBNET}.9:7700",
         "--no-progress"], cwd=ROOT, capture_output=True, text=True, timeout=20,
        stdin=subprocess.DEVNULL)
    assert done.returncode == 2, done
    assert done.stderr.count("\n") == 1 and "bus: the registry cannot bind" in done.stderr, \
        done.stderr
    assert not (tmp_path / "probe.json").exists()


@pytest.mark.timeout(90)
def test_a_node_moves_to_another_host_by_hot_swap(two_hosts: TwoHosts, tmp_path: Path) -> None:
    """A stepped run on host A; mid-run ``catbus node ... --replace`` on host B takes the place of
    A's counter (its count handed over by snapshot/restore): no tick lost or repeated, the
    count goes on, and the replacement's values (offset 500) come from B's process."""
    launch = write_launch(tmp_path, {
        "name": "moving", "bus": two_hosts.bus, "nodes": {
            "source": {"class": "tests.swap_nodes:Counter"},
            "sink": {"class": "tests.swap_nodes:Echo", "remap": {"~/in": "source/count"}}}})
    record = tmp_path / "moving.mcap"
    launcher = two_hosts.a.start(["launch", str(launch), "--mode", "stepped", "--steps", "600",
                                  "--pace", "2", "--record", str(record), "--no-progress",
                                  "--insecure"],
                                 tmp_path / "launch")
    replacement = None
    try:
        probe = ("from catbus.client import query_graph\n"
                 f"g = query_graph({two_hosts.bus!r}, timeout=2)\n"
                 "print(g['started'] and min(n['tick'] for n in g['nodes']) >= 20)")
        wait_until(lambda: two_hosts.a.python(probe) == "True", 30, interval=0.2,
                   what="the run on host A to be at tick 20")
        replacement = two_hosts.b.start(
            ["node", "tests.swap_nodes:Counter", "--name", "source", "--bus", two_hosts.bus,
             "--replace", "--param", "offset=500", "--advertise", ADDR_B], tmp_path / "node")
        for proc in (launcher, replacement):
            proc.process.wait(timeout=60)
    finally:
        for proc in (replacement, launcher):
            if proc is not None:
                proc.stop()
    assert launcher.process.returncode == 0, launcher.output()
    assert replacement.process.returncode == 0, replacement.output()
    from catbus.recording.reader import Recording

    counts = [m.value for m in Recording(record).messages("source/count")]
    assert [c["tick"] for c in counts] == list(range(601))
    assert [c["count"] for c in counts] == list(range(1, 602))
    [event] = [m.value for m in Recording(record).messages("catbus/swap")]
    assert event["new"]["pid"] == replacement.process.pid and event["state"] == "restored"
    tick = event["tick"]
    assert all(c["value"] == c["count"] for c in counts[:tick])
    assert all(c["value"] == c["count"] + 500 for c in counts[tick:])


@pytest.mark.timeout(90)
@pytest.mark.parametrize("mode", ["stepped", "parallel"])
def test_only_starts_this_hosts_share_of_a_launch_file(two_hosts: TwoHosts, tmp_path: Path,
                                                       mode: str) -> None:
    """The same launch file on both hosts: host A owns the run (probe remote), host B runs
    `catbus launch FILE --only probe --bus tcp://A:PORT`; the probe gets its parameters and the
    seed from A's registry. Stepped: the recording equals inline's."""
    launch = write_launch(tmp_path, graph(tmp_path, two_hosts.bus, duration=0.3))
    record = tmp_path / f"{mode}.mcap"
    owner = two_hosts.a.start(["launch", str(launch), "--mode", mode, "--remote", "probe",
                               "--set", "probe.gain=3", "--record", str(record),
                               "--no-progress", "--insecure"], tmp_path / "owner")
    share = two_hosts.b.start(["launch", str(launch), "--only", "probe", "--bus",
                               two_hosts.bus], tmp_path / "share")
    try:
        for proc in (owner, share):
            proc.process.wait(timeout=RUN_LIMIT)
    finally:
        for proc in (share, owner):
            proc.stop()
    assert owner.process.returncode == 0, owner.output()
    assert share.process.returncode == 0, share.output()
    assert "--only probe --bus" in owner.output()        # the owner said how
    check_exchange(tmp_path, gain=3.0, seed=7, stepped=mode == "stepped")
    if mode == "stepped":
        inline = tmp_path / "inline.mcap"
        catbus.run(launch, mode="inline", overrides=["probe.gain=3"], record=inline,
                   evaluate=False)
        assert first_difference(inline, record) is None


@pytest.mark.timeout(30)
def test_only_mistakes_are_one_line_errors(tmp_path: Path) -> None:
    launch = write_launch(tmp_path, graph(tmp_path, "ipc"))
    for args, expected in (
            (["--only", "probe"], "--only: needs --bus tcp://HOST:PORT"),
            (["--only", "nobody", "--bus", "tcp://127.0.0.1:7799"], "no node named 'nobody'"),
            (["--only", "probe", "--bus", "tcp://127.0.0.1:7799", "--record", "x.mcap"],
             "--record: not with --only")):
        done = subprocess.run([sys.executable, "-m", "catbus", "launch", str(launch), *args],
                              cwd=tmp_path, capture_output=True, text=True, timeout=20)
        assert done.returncode == 2 and expected in done.stderr, (args, done.stderr)
        assert "Traceback" not in done.stderr


def echo_graph(bus: str) -> dict:
    """source (Counter, here) -> echo (stateless, the node on host B); the recorder here."""
    return {"name": "links", "bus": bus, "nodes": {
        "source": {"class": "tests.swap_nodes:Counter"},
        "echo": {"class": "tests.swap_nodes:Echo", "remap": {"~/in": "source/count"}}}}


def graph_probe(bus: str, code: str) -> str:
    """A snippet printing ``code`` about the run at ``bus``: ``q`` is its graph, ``g`` its
    nodes by name."""
    return ("from catbus.client import query_graph\n"
            f"q = query_graph({bus!r}, timeout=2)\n"
            "g = {n['name']: n for n in q['nodes']}\n"
            f"print({code})")


@pytest.mark.timeout(120)
@pytest.mark.parametrize("outage", ["cable", "kill"])
def test_a_stepped_run_holds_for_a_lost_node_and_resumes(two_hosts: TwoHosts, tmp_path: Path,
                                                         outage: str) -> None:
    """The node on host B loses its link mid-run -- its cable pulled for longer than the link
    timeout, or its process killed and started again by hand -- and comes back: the stepped run
    holds at the tick boundary, resumes with no tick lost or repeated, and records what inline
    records (the echo keeps no state, so a new process of it continues exactly)."""
    launch = write_launch(tmp_path, echo_graph(two_hosts.bus))
    record = tmp_path / "stepped.mcap"
    owner = two_hosts.a.start(["launch", str(launch), "--mode", "stepped", "--steps", "3000",
                               "--pace", "4", "--remote", "echo", "--record", str(record),
                               "--rejoin-timeout", "60", "--no-progress", "--json",
                               "--insecure"], tmp_path / "owner")
    node_args = ["node", "tests.swap_nodes:Echo", "--name", "echo", "--bus", two_hosts.bus]
    echo = two_hosts.b.start(node_args, tmp_path / "echo")
    again = None
    try:
        at_tick = graph_probe(two_hosts.bus, "q['started'] and g['echo']['tick'] >= 60")
        wait_until(lambda: two_hosts.a.python(at_tick) == "True", 40, interval=0.2,
                   what="the run at tick 60")
        if outage == "cable":
            two_hosts.b.link("down")
            wait_until(lambda: "lost its link" in owner.output(), 30, interval=0.2,
                       what="the owner to report the node lost")
            two_hosts.b.link("up")
        else:
            echo.process.kill()
            echo.process.wait(10)
            wait_until(lambda: "lost its link" in owner.output(), 30, interval=0.2,
                       what="the owner to report the node lost")
            again = two_hosts.b.start(node_args, tmp_path / "again")
        for proc in (owner, again or echo):
            proc.process.wait(timeout=90)
    finally:
        for proc in (again, echo, owner):
            if proc is not None:
                proc.stop()
        two_hosts.b.link("up")
    assert owner.process.returncode == 0, owner.output()
    summary = json.loads(owner.log.with_suffix(".out").read_text())
    kinds = [record["kind"] for record in summary["swaps"]]
    assert kinds == (["rejoin"] if outage == "cable" else ["restart"]), summary["swaps"]
    from catbus.recording.reader import Recording

    ticks = [m.tick for m in Recording(record).messages("echo/out")]
    assert ticks == list(range(3001)), "a tick was lost or repeated"
    inline = tmp_path / "inline.mcap"
    catbus.run(launch, mode="inline", steps=3000, record=inline, evaluate=False)
    assert first_difference(inline, record) is None


#: The cable cut of the parallel lost-link test, in seconds: longer than the TCP SYN back-off steps
#: (1, 3, 7 s) a connect attempt made while the link is down would wait through without
#: ZMQ_CONNECT_TIMEOUT.
CUT = 15.0


def data_gaps(record: Path, cut_at: float, back_at: float) -> dict[str, float]:
    """How long data stopped around a cable cut (wall times ``cut_at``, ``back_at``), from the
    recording on host A: ``missing`` the longest silence of ``echo/out`` (B -> A),
    ``b_to_a`` when its first message after the link's return arrived, ``a_to_b`` when the first
    one computed from a ``source/count`` sent after the cut arrived (A -> B -> A)."""
    from catbus.recording.reader import Recording

    echoes = [(m.log_time_ns / 1e9, m.value) for m in Recording(record).messages("echo/out")]
    times = [t for t, _ in echoes]
    missing = max(later - earlier for earlier, later in zip(times, times[1:]))
    before = max(v["from_tick"] for t, v in echoes if t < cut_at and v["from_tick"] is not None)
    after = [t for t in times if t >= back_at]
    fresh = [t for t, v in echoes if t >= back_at and (v["from_tick"] or -1) > before]
    assert after and fresh, "no data came back after the link did"
    return {"missing": missing, "b_to_a": after[0] - back_at, "a_to_b": fresh[0] - back_at}


@pytest.mark.timeout(150)
def test_a_parallel_run_gets_its_data_back_with_the_link(two_hosts: TwoHosts, tmp_path: Path,
                                                         record_property: Any) -> None:
    """Parallel: host B's cable is out for :data:`CUT` seconds; the run goes on without its
    node, which comes back, and data flows both ways again once the link does. Reported (not
    asserted: timings depend on the machine): the launcher's "back after" against the data's
    gap, as ``record_property`` and on stdout."""
    launch = write_launch(tmp_path, echo_graph(two_hosts.bus))
    record = tmp_path / "parallel.mcap"
    owner = two_hosts.a.start(["launch", str(launch), "--mode", "parallel", "--duration",
                               str(CUT + 12), "--remote", "echo", "--record", str(record),
                               "--rejoin-timeout", "60", "--no-progress", "--json",
                               "--insecure"], tmp_path / "owner")
    echo = two_hosts.b.start(["node", "tests.swap_nodes:Echo", "--name", "echo", "--bus",
                              two_hosts.bus], tmp_path / "echo")
    import time

    try:
        at_tick = graph_probe(two_hosts.bus, "q['started'] and g['echo']['tick'] >= 100")
        wait_until(lambda: two_hosts.a.python(at_tick) == "True", 40, interval=0.2,
                   what="the run under way")
        two_hosts.b.link("down")
        cut_at = time.time()
        wait_until(lambda: "lost its link" in owner.output(), 30, interval=0.2,
                   what="the owner to report the node lost")
        time.sleep(max(0.0, cut_at + CUT - time.time()))   # the cut's length: the experiment
        two_hosts.b.link("up")
        back_at = time.time()
        for proc in (owner, echo):
            proc.process.wait(timeout=90)
    finally:
        for proc in (echo, owner):
            proc.stop()
        two_hosts.b.link("up")
    assert owner.process.returncode == 0, owner.output()
    summary = json.loads(owner.log.with_suffix(".out").read_text())
    assert [r["kind"] for r in summary["swaps"]] == ["rejoin"], summary["swaps"]
    said = re.search(r"back after ([\d.]+) s", owner.output())
    assert said, owner.output()
    gaps = data_gaps(record, cut_at, back_at)
    report = {"cut_s": round(back_at - cut_at, 2), "launcher_back_after_s": float(said[1]),
              **{f"{k}_s": round(v, 2) for k, v in gaps.items()}}
    record_property("lost_link_parallel", report)
    print(f"\nlost link, parallel, {report['cut_s']} s cut: launcher 'back after "
          f"{report['launcher_back_after_s']} s'; echo/out missing for {report['missing_s']} s; "
          f"after the link's return: B->A data in {report['b_to_a_s']} s, A->B in "
          f"{report['a_to_b_s']} s")


@pytest.mark.timeout(60)
def test_data_sockets_bind_in_the_given_port_range(tmp_path: Path) -> None:
    """`--data-ports FIRST-LAST` (firewalled labs): every node process binds its data socket on a
    port of that range; a range with no free port is a clear error."""
    low = free_port()
    while low > 65000:
        low = free_port()
    spec = load(graph(tmp_path, f"tcp://127.0.0.1:{free_port()}"), mode="stepped", duration=0.1)
    launcher = Launcher(spec, data_ports=(low, low + 20))
    launcher.run()
    ports = [int(m.endpoint.rsplit(":", 1)[1]) for m in launcher.registry.members.values()]
    assert len(ports) == 3 and all(low <= port <= low + 20 for port in ports), ports
    from catbus.runtime.dataplane import parse_ports

    assert parse_ports("7710-7799") == (7710, 7799)
    with pytest.raises(ValueError):
        parse_ports("7799-7710")
    done = subprocess.run([sys.executable, "-m", "catbus", "launch",
                           str(write_launch(tmp_path, graph(tmp_path, "ipc"))),
                           "--data-ports", "80000-80010"],
                          capture_output=True, text=True, timeout=20)
    assert done.returncode == 2 and "--data-ports" in done.stderr, done.stderr
