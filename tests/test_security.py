"""CURVE security for TCP runs (``catbus keys``, ``security: {keys: DIR}``, ``--keys``).

Real processes and sockets, like tests/test_tcp.py, whose two-host fixture (``two_hosts``: two
network namespaces joined by a veth pair, host A ``10.231.77.1`` runs the launcher, host B
``10.231.77.2`` the remote node) this module uses: traffic goes only to those two addresses and
to loopback. Every test is bounded (``pytest.mark.timeout``), waits for events (a process
exiting, a line written, a handshake refused), never for a fixed time, and runs in
``bus_sandbox`` (tests/conftest.py), which fails it if a process it started outlives it.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import zmq

import catbus
from catbus import security
from catbus.errors import CatbusError, ConfigError
from catbus.recording.verify import first_difference
from tests.conftest import ROOT, wait_until
from tests.test_tcp import ADDR_B, PROBE_CLASS, TwoHosts, check_exchange, free_port, graph, \
    two_hosts, write_launch  # noqa: F401  (two_hosts: the module-scoped fixture)

pytestmark = pytest.mark.usefixtures("bus_sandbox")

#: Bound on one command that must fail fast (a refused node or tool): its own --timeout is 10 s.
#: (A refused node that overran it was not slow but hung: its ``register`` blocked for ever in
#: a DEALER send with no connection; ControlLink.send_first.)
REFUSAL_LIMIT = 20.0


def catbus_cli(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "catbus", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def make_keys(folder: Path) -> Path:
    """A keys folder: client ``hostb`` may register ``probe``; client ``other`` only ``other``;
    and ``stranger``: a client folder with the run's bus key and a key that is not allowed."""
    keys = folder / "keys"
    done = catbus_cli("keys", "generate", str(keys), "--node", "probe=hostb", "--node", "other")
    assert done.returncode == 0, done
    stranger = folder / "stranger"
    done = catbus_cli("keys", "generate", str(stranger))
    assert done.returncode == 0, done
    for name in ("bus.key", "bus.key_secret", "allow.yaml"):
        (stranger / name).unlink()
    shutil.copy(keys / "bus.key", stranger / "bus.key")
    return keys


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# ------------------------------------------------------------------------------------------------
# catbus keys generate
# ------------------------------------------------------------------------------------------------
@pytest.mark.timeout(60)
def test_keys_generate_writes_owner_only_files(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    old_umask = os.umask(0)   # the permissions must not depend on the caller's umask
    try:
        done = catbus_cli("keys", "generate", str(keys), "--node", "probe=hostb",
                          "--node", "robot=hostb")
    finally:
        os.umask(old_umask)
    assert done.returncode == 0, done
    assert "hostb" in done.stdout and "probe, robot" in done.stdout, done.stdout
    expected = {"bus.key", "bus.key_secret", "client.key", "client.key_secret", "allow.yaml",
                "clients", "clients/hostb", "clients/hostb/bus.key", "clients/hostb/client.key",
                "clients/hostb/client.key_secret"}
    found = {str(p.relative_to(keys)) for p in keys.rglob("*")}
    assert found == expected, found
    assert mode_of(keys) == 0o700
    for path in keys.rglob("*"):
        assert mode_of(path) == (0o700 if path.is_dir() else 0o600), (path, oct(mode_of(path)))
    # The client folder holds the bus *public* key only, and its own pair.
    host = security.load_keys(keys / "clients" / "hostb")
    assert not host.can_host and host.bus_public == security.load_keys(keys).bus_public
    top = security.load_keys(keys)
    assert top.can_host
    assert top.allowed[host.public] == ("hostb", frozenset({"probe", "robot"}))
    assert top.allowed[top.public] == ("local", frozenset({"*"}))

    # Again, with one more client: existing keys are kept, the new one is allowed.
    done = catbus_cli("keys", "generate", str(keys), "--node", "env=simhost")
    assert done.returncode == 0, done
    again = security.load_keys(keys)
    assert (again.public, again.bus_public, again.bus_secret) == \
        (top.public, top.bus_public, top.bus_secret)
    assert again.allowed[host.public] == top.allowed[host.public]
    sim = security.load_keys(keys / "clients" / "simhost")
    assert again.allowed[sim.public] == ("simhost", frozenset({"env"}))

    # A secret key others can read is refused, naming the file and the fix.
    os.chmod(keys / "clients" / "hostb" / "client.key_secret", 0o644)
    with pytest.raises(ConfigError, match="readable by others.*chmod 600"):
        security.load_keys(keys / "clients" / "hostb")


@pytest.mark.timeout(60)
def test_launch_file_keys_are_checked_before_anything_starts(tmp_path: Path) -> None:
    keys = make_keys(tmp_path)
    bus = f"tcp://127.0.0.1:{free_port()}"
    cases = [({"keys": "nope"}, "security.keys: no such keys folder"),
             ("keys", "security: must be {keys: DIR}"),
             ({"keys": "keys/clients/hostb"}, "is a client folder")]
    for value, expected in cases:
        launch = write_launch(tmp_path, graph(tmp_path, bus, duration=0.3, security=value))
        done = catbus_cli("launch", str(launch), "--mode", "stepped", "--no-progress")
        assert done.returncode == 2, (value, done)
        assert expected in done.stderr and done.stderr.count("\n") == 1, (value, done.stderr)
    assert keys.is_dir() and not (tmp_path / "probe.json").exists()


# ------------------------------------------------------------------------------------------------
# one host: warnings, and a stranger reading a keyed run
# ------------------------------------------------------------------------------------------------
@pytest.mark.timeout(90)
def test_open_tcp_bus_warns_and_a_keyed_one_does_not(tmp_path: Path) -> None:
    keys = make_keys(tmp_path)
    runs = {"open": graph(tmp_path, f"tcp://127.0.0.1:{free_port()}", duration=0.3),
            "keyed": graph(tmp_path, f"tcp://127.0.0.1:{free_port()}", duration=0.3,
                           security={"keys": str(keys)}),
            "ipc": graph(tmp_path, "ipc", duration=0.3, security={"keys": str(keys)})}
    stderr = {}
    for label, data in runs.items():
        launch = write_launch(tmp_path, data)
        done = catbus_cli("launch", str(launch), "--mode", "stepped", "--no-progress")
        assert done.returncode == 0, (label, done)
        check_exchange(tmp_path, gain=1.0, seed=7, stepped=True)
        stderr[label] = done.stderr
    warning = [line for line in stderr["open"].splitlines() if "is open" in line]
    assert len(warning) == 1 and warning[0].startswith("catbus: warning: the bus tcp://"), \
        stderr["open"]
    assert "is open" not in stderr["keyed"] and "security" not in stderr["keyed"], stderr["keyed"]
    # ipc needs no keys (the run folder is the owner's only): said once, not used.
    assert "not used: the bus is ipc" in stderr["ipc"] and "is open" not in stderr["ipc"]


@pytest.mark.timeout(60)
def test_a_keyed_client_never_talks_to_an_open_bus(tmp_path: Path) -> None:
    """``catbus bus`` on TCP without keys warns that it is open; a command with --keys refuses
    to use it (no silent fall-back to plain text) instead of waiting for an answer."""
    keys = make_keys(tmp_path)
    bus = f"tcp://127.0.0.1:{free_port()}"
    out, err = tmp_path / "bus.out", tmp_path / "bus.err"
    with open(out, "w") as stdout, open(err, "w") as stderr:
        host = subprocess.Popen([sys.executable, "-m", "catbus", "bus", "--bind", bus], cwd=ROOT,
                                stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL)
    try:
        wait_until(lambda: "registry at" in out.read_text(), 30, what="the bus to be bound")
        assert "is open" in err.read_text(), err.read_text()
        done = catbus_cli("node", "list", "--bus", bus, "--keys", str(keys),
                          timeout=REFUSAL_LIMIT)
        assert done.returncode == 1, done
        # libzmq reports a mechanism mismatch, or only a failed handshake (then the message
        # names both causes: a wrong bus key, or an open run).
        assert "not secured" in done.stderr and "--keys" in done.stderr, done.stderr
    finally:
        host.terminate()
        host.wait(timeout=30)


@pytest.mark.timeout(90)
def test_without_an_allowed_key_nothing_can_be_read(tmp_path: Path) -> None:
    """A keyed parallel run on loopback: an allowed tool reads the talker's topic; a socket
    without keys, and one with a key not on the allow-list (right bus key, right publisher
    key), are refused in the handshake and receive nothing; the node's publisher says so once,
    with the address."""
    keys = make_keys(tmp_path)
    bus = f"tcp://127.0.0.1:{free_port()}"
    launch = write_launch(tmp_path, graph(tmp_path, bus, duration=30.0,
                                          security={"keys": str(keys)}))
    log = tmp_path / "launch.err"
    with open(log, "w") as err:
        launcher = subprocess.Popen([sys.executable, "-m", "catbus", "launch", str(launch),
                                     "--mode", "parallel", "--no-progress"], cwd=ROOT,
                                    stdout=subprocess.DEVNULL, stderr=err,
                                    stdin=subprocess.DEVNULL)
    ctx = zmq.Context()
    sockets: list[zmq.Socket] = []
    try:
        allowed = security.load_keys(keys / "clients" / "other")   # any allowed key may read
        from catbus.client import query_graph

        graph_view = wait_until(lambda: _started_graph(bus, allowed), 30,
                                interval=0.1, what="the keyed run to start")
        talker = next(n for n in graph_view["nodes"] if n["name"] == "talker")
        assert talker["key"] and talker["endpoint"].startswith("tcp://127.0.0.1:")
        server_key = talker["key"].encode()
        stranger = security.load_keys(tmp_path / "stranger")
        subs = {}
        for label, client_keys in (("allowed", allowed), ("none", None),
                                   ("stranger", stranger)):
            sub = ctx.socket(zmq.SUB)
            sub.setsockopt(zmq.LINGER, 0)
            sub.setsockopt(zmq.SUBSCRIBE, b"")
            sockets.append(sub)
            subs[label] = (sub, security.dial(sub, talker["endpoint"], client_keys, server_key))
        sub, handshake = subs["allowed"]
        wait_until(lambda: sub.poll(0), 20, what="the allowed subscriber to receive data")
        for label in ("none", "stranger"):
            sub, handshake = subs[label]
            problem = wait_until(handshake.problem, 20, interval=0.05,
                                 what=f"the {label} subscriber's handshake to be refused")
            assert "not on its allow-list" in problem if label == "stranger" else \
                "secured with CURVE keys" in problem, problem
            assert not sub.poll(0), f"the {label} subscriber received data"
        # A graph query without keys: a clear error at once, not a wait.
        with pytest.raises(security.Refused, match="secured with CURVE keys"):
            query_graph(bus, timeout=10)
        wait_until(lambda: "not on the allow-list" in log.read_text(), 20,
                   what="the publisher to report the stranger")
        refusals = [line for line in log.read_text().splitlines()
                    if "refused a connection from 127.0.0.1" in line]
        assert len(refusals) == 1 and stranger.public.decode() in refusals[0], refusals
        for handle in subs.values():
            handle[1].close()
    finally:
        for sock in sockets:
            sock.close(0)
        ctx.term()
        launcher.terminate()
        launcher.wait(timeout=30)


def _started_graph(bus: str, keys: security.Keys) -> dict | None:
    from catbus.client import query_graph

    try:
        graph_view = query_graph(bus, timeout=1, keys=keys)
    except CatbusError:
        return None
    return graph_view if graph_view["started"] else None


# ------------------------------------------------------------------------------------------------
# two hosts
# ------------------------------------------------------------------------------------------------
@pytest.mark.timeout(90)
def test_keyed_remote_node_stepped_matches_inline(two_hosts: TwoHosts, tmp_path: Path) -> None:
    """A keyed stepped run across the veth: the remote probe on host B with its client folder
    (its own key pair and the bus public key) joins, data flows both ways under CURVE, and the
    recording equals an inline run's."""
    keys = make_keys(tmp_path)
    launch = write_launch(tmp_path, graph(tmp_path, two_hosts.bus, duration=0.3,
                                          security={"keys": "keys"}))
    stepped = tmp_path / "stepped.mcap"
    launcher, node = two_hosts.run(
        [str(launch), "--mode", "stepped", "--remote", "probe", "--set", "probe.gain=3",
         "--record", str(stepped), "--json"],
        [PROBE_CLASS, "--name", "probe", "--bus", two_hosts.bus, "--advertise", ADDR_B,
         "--keys", str(keys / "clients" / "hostb")], tmp_path)
    assert launcher.process.returncode == 0, launcher.output()
    assert node.process.returncode == 0, node.output()
    # The launcher names the client folder in the command it prints for the remote node.
    assert f"--keys {keys / 'clients' / 'hostb'}" in launcher.output(), launcher.output()
    assert "is open" not in launcher.output() and "refused" not in launcher.output()
    nodes = json.loads(launcher.log.with_suffix(".out").read_text())["nodes"]
    assert nodes["probe"]["state"] == "done" and nodes["probe"]["pid"] == node.process.pid
    for name, stats in nodes.items():
        assert stats["dropped"] == 0 and stats["malformed"] == 0, (name, stats)
    check_exchange(tmp_path, gain=3.0, seed=7, stepped=True)

    inline = tmp_path / "inline.mcap"
    catbus.run(launch, mode="inline", overrides=["probe.gain=3"], record=inline, evaluate=False)
    assert first_difference(inline, stepped) is None, \
        f"keyed stepped across two hosts differs from inline: {first_difference(inline, stepped)}"


@pytest.mark.timeout(150)
def test_nodes_and_tools_without_the_right_key_are_refused(two_hosts: TwoHosts,
                                                           tmp_path: Path) -> None:
    """While a keyed run waits for its remote probe, host B tries: no keys, a key not on the
    allow-list, and an allowed key registering a name that is not its own (``other`` as
    ``probe``): each is refused with a clear message and a non-zero exit; an unkeyed graph
    query and ``topic echo`` get a clear error. Then the probe with the right key joins and the
    run completes. The launcher says each refusal once, with the address."""
    keys = make_keys(tmp_path)
    launch = write_launch(tmp_path, graph(tmp_path, two_hosts.bus, duration=0.3,
                                          security={"keys": str(keys)}))
    launcher = two_hosts.a.start(["launch", str(launch), "--mode", "stepped", "--remote",
                                  "probe", "--no-progress"], tmp_path / "launch")
    err = launcher.log.with_suffix(".err")
    node = None
    try:
        wait_until(lambda: "waiting up to" in err.read_text(), 30,
                   what="the launcher to wait for its remote node")
        node_args = [PROBE_CLASS, "--name", "probe", "--bus", two_hosts.bus,
                     "--advertise", ADDR_B, "--timeout", "10"]
        attempts = {
            "none": (["node", *node_args], "is secured with CURVE keys: give --keys DIR"),
            "stranger": (["node", *node_args, "--keys", str(tmp_path / "stranger")],
                         "refused this host's key"),
            "other": (["node", *node_args, "--keys", str(keys / "clients" / "other")],
                      "('other' in allow.yaml) may register only other, not 'probe'"),
            "list": (["node", "list", "--bus", two_hosts.bus],
                     "is secured with CURVE keys: give --keys DIR"),
            "echo": (["topic", "echo", "talker/out", "--bus", two_hosts.bus, "--count", "1"],
                     "is secured with CURVE keys: give --keys DIR")}
        for label, (args, expected) in attempts.items():
            proc = two_hosts.b.start(args, tmp_path / label)
            try:
                proc.process.wait(timeout=REFUSAL_LIMIT)
            except subprocess.TimeoutExpired:
                proc.stop()
                pytest.fail(f"{label}: not refused within {REFUSAL_LIMIT:g} s (a hang)\n"
                            f"{proc.output()}")
            assert proc.process.returncode != 0, (label, proc.output())
            assert expected in proc.output(), (label, proc.output())
        node = two_hosts.b.start(["node", *node_args, "--keys",
                                  str(keys / "clients" / "hostb")], tmp_path / "node")
        for proc in (launcher, node):
            proc.process.wait(timeout=60)
    finally:
        for proc in (node, launcher):
            if proc is not None:
                proc.stop()
    assert launcher.process.returncode == 0, launcher.output()
    assert node.process.returncode == 0, node.output()
    check_exchange(tmp_path, gain=1.0, seed=7, stepped=True)
    lines = err.read_text().splitlines()
    stranger = security.load_keys(tmp_path / "stranger").public.decode()
    from_b = [line for line in lines if f"refused a connection from {ADDR_B}" in line]
    assert len(from_b) == 1 and stranger in from_b[0] and "not on the allow-list" in from_b[0], \
        lines
    registered = [line for line in lines if "refused to register 'probe'" in line]
    assert len(registered) == 1 and "may register only other" in registered[0], lines
    assert any("refused a connection on" in line and "without" in line for line in lines), lines


@pytest.mark.timeout(90)
def test_keyed_share_of_a_launch_file_on_the_other_host(two_hosts: TwoHosts,
                                                         tmp_path: Path) -> None:
    """``catbus launch FILE --only probe --bus ... --keys clients/hostb`` on host B: the share's
    node gets that client folder, joins the keyed run on A, and the run completes (parallel)."""
    keys = make_keys(tmp_path)
    launch = write_launch(tmp_path, graph(tmp_path, two_hosts.bus, duration=0.5,
                                          security={"keys": "keys"}))
    owner = two_hosts.a.start(["launch", str(launch), "--mode", "parallel", "--remote", "probe",
                               "--no-progress"], tmp_path / "owner")
    share = None
    try:
        err = owner.log.with_suffix(".err")
        wait_until(lambda: "--only probe" in err.read_text(), 30,
                   what="the owner to print the --only command")
        assert f"--keys {keys / 'clients' / 'hostb'}" in err.read_text(), err.read_text()
        share = two_hosts.b.start(["launch", str(launch), "--only", "probe", "--bus",
                                   two_hosts.bus, "--keys", str(keys / "clients" / "hostb")],
                                  tmp_path / "share")
        for proc in (owner, share):
            proc.process.wait(timeout=60)
    finally:
        for proc in (share, owner):
            if proc is not None:
                proc.stop()
    assert owner.process.returncode == 0, owner.output()
    assert share.process.returncode == 0, share.output()
    check_exchange(tmp_path, gain=1.0, seed=7, stepped=False)
