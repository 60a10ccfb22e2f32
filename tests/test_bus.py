"""The bus at the process level: real node processes, real sockets, the real launcher and CLI.

Every test is bounded (``pytest.mark.timeout``), waits for events -- a process exiting, a message
arriving, a run showing up in its run folder, the registry reporting a state -- never for a fixed
time, and runs in ``bus_sandbox`` (tests/conftest.py), which gives it a private run-folder root and
fails it if any process it started or any run folder outlives it.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import msgpack
import pytest
import zmq

import catbus
from catbus.wire import codec
from catbus.supervise import children
from catbus.runtime import signals as noderuntime
from catbus.runtime.dataplane import PROGRESS_FRAME
from catbus.wire.protocol import HELLO_PREFIX
from catbus.errors import NodeFailed
from catbus.client import query_graph
from catbus.recording.reader import Recording
from catbus.supervise.registry import Registry
from catbus.supervise.rundir import RunDir, process_start_time, remove_stale_runs, \
    running_runs
from tests.conftest import ROOT, alive, pack_control, wait_until

pytestmark = pytest.mark.usefixtures("bus_sandbox")

TOY = "tests.toy_nodes"



# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------
def chain(collect: Path, *, period: float = 0.01, **top: Any) -> dict:
    """talker -> relay (x2, reactive) -> collector (reactive, ``all``; writes what it heard)."""
    return {"name": "chain", **top, "nodes": {
        "talker": {"class": f"{TOY}:Talker", "period": period},
        "relay": {"class": f"{TOY}:Relay", "params": {"scale": 2.0},
                  "remap": {"~/in": "talker/out"}},
        "collector": {"class": f"{TOY}:Collector", "params": {"path": str(collect)},
                      "remap": {"~/in": "relay/out"}}}}


def write_launch(folder: Path, text: str, name: str = "run.yaml") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


TALK_AND_LISTEN = """\
    name: talk
    duration: 60
    nodes:
      talker:
        class: tests.toy_nodes:Talker
        period: 0.01
      listener:
        class: tests.toy_nodes:Listener
        period: 0.02
    """


def talk_listen_and_busy(closed: Path, entered: Path, params: str = "") -> str:
    """TALK_AND_LISTEN plus ``busy``, a Swallower writing ``entered`` as its step starts and
    ``closed`` in close(); ``params``: more of its parameters, as YAML flow ("hold: 1.0")."""
    more = f"{params}, " if params else ""
    return textwrap.dedent(TALK_AND_LISTEN) + (
        f"  busy:\n    class: tests.toy_nodes:Swallower\n"
        f"    params: {{{more}closed_file: {closed}, entered_file: {entered}}}\n")


def catbus_cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "catbus", *args], cwd=ROOT, text=True,
                          capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)


class LaunchProcess:
    """``catbus launch`` as a subprocess; output goes to files (a pipe would also be held open by
    the node processes, so reading it could wait on them)."""

    def __init__(self, folder: Path, *args: str) -> None:
        self.out_path, self.err_path = folder / "launch.out", folder / "launch.err"
        with open(self.out_path, "w") as out, open(self.err_path, "w") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "catbus", "launch", *args, "--no-progress"], cwd=ROOT,
                stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        self.pid = self.process.pid

    @property
    def stdout(self) -> str:
        return self.out_path.read_text()

    @property
    def stderr(self) -> str:
        return self.err_path.read_text()

    def wait_running(self, nodes: int, timeout: float = 20.0) -> dict:
        """Wait until the run is registered in its run folder, started, and every node has sent a
        heartbeat from its run loop; returns the registry's graph."""
        def started() -> dict | None:
            assert self.process.poll() is None, f"launcher exited early:\n{self.stderr}"
            runs = [r for r in running_runs() if r["pid"] == self.pid]
            if not runs:
                return None
            graph = query_graph(runs[0]["registry"], timeout=2.0)
            ready = (graph["started"] and len(graph["nodes"]) == nodes
                     and all(n["state"] == "running" and n["pid"] for n in graph["nodes"]))
            return dict(graph, registry=runs[0]["registry"], folder=runs[0]["folder"]) \
                if ready else None

        return wait_until(started, timeout, interval=0.05, what="the run to start")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


@pytest.fixture
def launches() -> list[LaunchProcess]:
    """Launch subprocesses of a test, killed (by pid) if the test did not end them."""
    started: list[LaunchProcess] = []
    yield started
    for launch in started:
        launch.stop()


def node_pids(graph: dict) -> list[int]:
    return [n["pid"] for n in graph["nodes"]]


def wait_gone(pids: list[int], timeout: float) -> None:
    wait_until(lambda: not [p for p in pids if alive(p)], timeout,
               what=f"processes {pids} to exit")


# ------------------------------------------------------------------------------------------------
# a graph that exchanges messages
# ------------------------------------------------------------------------------------------------
def check_chain(result: Any, collect: Path, *, scale: float = 2.0) -> list[dict]:
    heard = json.loads(collect.read_text())
    nodes = result.nodes
    ns = [m["n"] for m in heard]
    assert ns == list(range(len(ns))), "messages arrived out of order or with gaps"
    assert [m["x"] for m in heard] == [scale * n for n in ns], "the relay's parameter was lost"
    sent = nodes["talker"]["sent"]
    assert len(heard) == sent == nodes["relay"]["received"] == nodes["relay"]["sent"] \
        == nodes["collector"]["received"], f"a message was lost: {nodes}"
    for name, stats in nodes.items():
        assert stats["dropped"] == 0 and stats["malformed"] == 0, (name, stats)
        assert stats["state"] == "done" and stats["returncode"] == 0, (name, stats)
    return heard


@pytest.mark.timeout(40)
def test_three_nodes_exchange_messages_in_parallel_mode(tmp_path: Path) -> None:
    collect = tmp_path / "heard.json"
    result = catbus.run(chain(collect), mode="parallel", duration=0.5)
    heard = check_chain(result, collect)
    assert len(heard) >= 10, f"only {len(heard)} messages in 0.5 s at 100 Hz"
    times = [m["t"] for m in heard]
    assert times == sorted(times) and times[-1] < 1.0   # wall seconds since the start


@pytest.mark.timeout(40)
def test_three_nodes_exchange_messages_in_stepped_mode(tmp_path: Path) -> None:
    collect = tmp_path / "heard.json"
    result = catbus.run(chain(collect), mode="stepped", duration=0.5)
    heard = check_chain(result, collect)
    # Ticks 0..50 of 10 ms: exactly 51 messages, with simulated (not wall) times.
    assert len(heard) == 51
    assert [m["t"] for m in heard] == pytest.approx([n * 0.01 for n in range(51)])


# ------------------------------------------------------------------------------------------------
# failures
# ------------------------------------------------------------------------------------------------
FAILING = """\
    name: failing
    mode: {mode}
    duration: 600
    nodes:
      talker:
        class: tests.toy_nodes:Talker
        period: 0.01
      bad:
        class: tests.toy_nodes:Failing
        period: 0.01
        params: {{fail_at: 3}}
      listener:
        class: tests.toy_nodes:Listener
        period: 0.01
    """


@pytest.mark.timeout(40)
def test_node_raising_in_step_fails_the_run_with_its_traceback(tmp_path: Path) -> None:
    # The run would last 600 s: returning within the test's timeout shows the failure ended it.
    with pytest.raises(NodeFailed) as failure:
        catbus.run(write_launch(tmp_path, FAILING.format(mode="parallel")))
    message = str(failure.value)
    assert message.startswith("node bad failed: RuntimeError: bad broke down after 3 steps")
    assert "Traceback (most recent call last)" in message and "toy_nodes.py" in message
    nodes = failure.value.result.nodes
    assert nodes["bad"]["state"] == "failed" and nodes["bad"]["returncode"] == 1
    assert all(not alive(stats["pid"]) for stats in nodes.values())


@pytest.mark.timeout(40)
@pytest.mark.parametrize("mode", ["parallel", "stepped"])
def test_cli_exits_non_zero_naming_the_failed_node(tmp_path: Path, mode: str) -> None:
    path = write_launch(tmp_path, FAILING.format(mode=mode))
    done = catbus_cli("launch", str(path), "--no-progress")
    assert done.returncode == 1, done.stderr
    assert "catbus: node bad failed: RuntimeError: bad broke down after 3 steps" in done.stderr
    assert "Traceback (most recent call last)" in done.stderr
    assert 'in step\n    raise RuntimeError' in done.stderr


@pytest.mark.timeout(40)
def test_node_ignoring_signals_and_stuck_in_step_is_killed(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    # Shorter rungs than the defaults (5, 2, 2 s) keep the test quick; the ladder is the same.
    monkeypatch.setattr(children, "STOP_GRACE", 1.0)
    monkeypatch.setattr(children, "SIGNAL_GRACE", 0.5)
    pid_file = tmp_path / "stuck.pid"
    launch = {"name": "stubborn", "nodes": {
        "talker": {"class": f"{TOY}:Talker", "period": 0.01},
        "stuck": {"class": f"{TOY}:Stubborn", "params": {"pid_file": str(pid_file)}}}}
    # Its step never returns and it ignores SIGINT and SIGTERM: only the ladder's SIGKILL can end
    # it, so returning at all (within the test's timeout) shows the ladder went to the end.
    with pytest.raises(NodeFailed, match=r"node stuck failed: no heartbeat for 1\.5 s") as failure:
        catbus.run(launch, mode="parallel", duration=0.5, deadline=1.5)
    nodes = failure.value.result.nodes
    assert nodes["stuck"]["returncode"] == -signal.SIGKILL
    assert nodes["talker"]["returncode"] == 0
    assert not alive(int(pid_file.read_text()))


@pytest.mark.timeout(40)
def test_signal_interrupts_a_step_that_catches_every_exception(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Node code may catch Exception broadly; the shutdown ladder's SIGINT must still get through
    (and close() still run) instead of being swallowed and the node SIGKILLed."""
    monkeypatch.setattr(children, "STOP_GRACE", 0.5)
    closed = tmp_path / "closed"
    # Another node's failure ends the run while "busy" is in its 30 s step: the ladder's stop
    # message cannot reach it there, its SIGINT must.
    launch = {"name": "swallow", "nodes": {
        "bad": {"class": f"{TOY}:Failing", "period": 0.01, "params": {"fail_at": 5}},
        "busy": {"class": f"{TOY}:Swallower", "params": {"closed_file": str(closed)}}}}
    with pytest.raises(NodeFailed, match="node bad failed") as failure:
        catbus.run(launch, mode="parallel", duration=600)   # ends with the failure, not this
    # Stopped by the ladder's SIGINT, gracefully: exit code 128 + SIGINT, the shell's convention.
    assert failure.value.result.nodes["busy"]["returncode"] == 130, failure.value.result.nodes
    assert closed.read_text() == "closed"


@pytest.mark.timeout(60)
def test_one_sigterm_swallowed_by_a_bare_except_still_ends_the_node(
        tmp_path: Path, launches: list) -> None:
    """A signal's exception may land in code that swallows everything (Cython's memoryview
    module has a bare ``except:`` that numpy.random runs on its lazy import in ``setup``): the
    one SIGTERM a node is sent must still end it, gracefully, once that code returns."""
    closed, entered = tmp_path / "closed", tmp_path / "entered"
    text = talk_listen_and_busy(closed, entered, "hold: 1.0, everything: true")
    run = LaunchProcess(tmp_path, str(write_launch(tmp_path, text)))
    launches.append(run)
    graph = run.wait_running(nodes=3)
    wait_until(entered.exists, 10, what="the busy node to enter its step")
    busy = next(n["pid"] for n in graph["nodes"] if n["name"] == "busy")
    os.kill(busy, signal.SIGTERM)   # once: swallowed in the step, acted on when it returns
    wait_gone([busy], timeout=20)
    assert closed.read_text() == "closed", "close() did not run in the busy node"
    run.process.send_signal(signal.SIGTERM)   # the launcher stops the rest, removes its folder
    run.process.wait(30)


@pytest.mark.timeout(60)
def test_an_inline_run_whose_node_swallows_its_one_sigterm_still_stops(tmp_path: Path) -> None:
    """Inline, the signal raises in the node's own code, which may swallow it: the run must
    still stop, between two steps, gracefully (close() runs), with SIGTERM's exit code."""
    closed, entered = tmp_path / "closed", tmp_path / "entered"
    text = talk_listen_and_busy(closed, entered, "hold: 1.0, everything: true").replace(
        "duration: 60", "duration: 100000")
    run = LaunchProcess(tmp_path, str(write_launch(tmp_path, text)), "--mode", "inline")
    try:
        wait_until(entered.exists, 30, what="the busy node to enter its step")
        run.process.send_signal(signal.SIGTERM)   # once: swallowed in the step
        assert run.process.wait(30) == 128 + signal.SIGTERM, run.stderr
    finally:
        run.stop()
    assert closed.read_text() == "closed", "close() did not run in the busy node"


# ------------------------------------------------------------------------------------------------
# the launcher going away
# ------------------------------------------------------------------------------------------------
@pytest.mark.timeout(60)
def test_children_of_a_killed_launcher_exit_and_its_folder_is_cleaned_later(
        tmp_path: Path, launches: list, bus_sandbox: Any) -> None:
    closed, entered, stuck = tmp_path / "closed", tmp_path / "entered", tmp_path / "stuck.pid"
    # Also a node busy in a step that swallows Exception (it must still stop gracefully), and a
    # stuck one that ignores SIGTERM (only its orphan watchdog's SIGKILL can end it).
    text = talk_listen_and_busy(closed, entered) + (
        f"  stuck:\n    class: tests.toy_nodes:Stubborn\n    params: {{pid_file: {stuck}}}\n")
    run = LaunchProcess(tmp_path, str(write_launch(tmp_path, text)))
    launches.append(run)
    graph = run.wait_running(nodes=4)
    wait_until(lambda: entered.exists() and stuck.exists(), 10,
               what="the busy and stuck nodes to enter their steps")
    stuck_pid = int(stuck.read_text())
    pids = [pid for pid in node_pids(graph) if pid != stuck_pid]
    os.kill(run.pid, signal.SIGKILL)
    killed = time.monotonic()
    assert run.process.wait(timeout=10) == -signal.SIGKILL
    # Parent-death signal: the nodes stop by themselves, well before the heartbeat timeout.
    wait_gone(pids, timeout=4)
    wait_gone([stuck_pid], timeout=noderuntime.ORPHAN_GRACE + 4)
    assert time.monotonic() - killed > noderuntime.ORPHAN_GRACE - 0.5, "killed too early"
    assert closed.read_text() == "closed", "close() did not run in the busy node"
    folder = Path(graph["folder"])
    assert folder.is_dir(), "a SIGKILLed launcher cannot remove its folder"
    assert running_runs() == [], "a run whose launcher is dead is not running"
    # The next run removes the stale folder (and its own, when it ends).
    catbus.run({"nodes": {"talker": {"class": f"{TOY}:Talker"}}}, mode="parallel",
               duration=0.1)
    assert not folder.exists()
    assert bus_sandbox.run_folders() == []


@pytest.mark.timeout(30)
def test_remove_stale_runs_keeps_live_runs(tmp_path: Path) -> None:
    live = RunDir.create("live")
    live.publish("ipc://nowhere", "live")
    try:
        dead = live.path.parent / "dead-999999999-abcdef"
        dead.mkdir()
        # Our pid, but a launcher that started 10 s before this process: the pid was reused.
        created = process_start_time(os.getpid()) - 10
        (dead / "run.json").write_text(json.dumps({"pid": os.getpid(), "created": created,
                                                   "registry": "ipc://x", "name": "dead"}))
        assert remove_stale_runs() == [dead]
        assert live.path.is_dir()
        assert [r["folder"] for r in running_runs()] == [str(live.path)]
    finally:
        live.remove()


@pytest.mark.timeout(30)
def test_node_exits_when_the_registry_goes_silent(tmp_path: Path, bus_sandbox: Any) -> None:
    """The heartbeat timeout on its own (no parent-death signal: a node started by hand)."""
    rundir = RunDir.create("silent")
    ctx = zmq.Context()
    registry = Registry(ctx, rundir.endpoint("registry"))
    node = None
    try:
        node = subprocess.Popen(
            [sys.executable, "-m", "catbus", "node", f"{TOY}:Talker", "--name", "talker",
             "--bus", registry.endpoint, "--timeout", "1.5"], cwd=ROOT, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

        def running() -> bool:
            registry.poll(50)
            return registry.members.get("talker") is not None and \
                registry.members["talker"].state == "running"

        wait_until(running, 20, interval=0, what="the node to start")
        registry.close()         # the registry disappears; this process (its parent) lives on
        output, _ = node.communicate(timeout=15)
        assert node.returncode == 1, output
        # The reason says it waited out its timeout, not that it saw something else.
        assert "has been silent for 1.5 s" in output
    finally:
        if node is not None and node.poll() is None:
            node.kill()
            node.wait()
        if not registry.socket.closed:
            registry.close()
        ctx.term()
        rundir.remove()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupted_launch_stops_cleanly_and_keeps_the_recording(
        tmp_path: Path, launches: list, signum: int) -> None:
    record = tmp_path / "interrupted.mcap"
    run = LaunchProcess(tmp_path, str(write_launch(tmp_path, TALK_AND_LISTEN)),
                        "--record", str(record))
    launches.append(run)
    graph = run.wait_running(nodes=3)
    # Something has been published by now: wait for the talker's heartbeat to report a tick.
    wait_until(lambda: [n for n in query_graph(graph["registry"])["nodes"]
                        if n["name"] == "talker" and n["tick"] >= 5], 10, interval=0.05,
               what="the talker to step")
    run.process.send_signal(signum)       # Ctrl-C reaches only the launcher: nodes have sessions
    assert run.process.wait(timeout=30) == 128 + signum, run.stderr   # 130 SIGINT, 143 SIGTERM
    wait_gone(node_pids(graph), timeout=5)
    assert "interrupted" in run.stdout, run.stdout
    assert "Traceback" not in run.stderr, run.stderr
    recording = Recording(record)
    assert recording.complete, "the recorder did not finish the file"
    talker = [m.value["n"] for m in recording.messages("talker/out")]
    assert len(talker) >= 5 and talker == list(range(len(talker)))
    assert recording.end_metadata["drops"] == 0


# ------------------------------------------------------------------------------------------------
# garbage on the data plane
# ------------------------------------------------------------------------------------------------
GOOD_HEADER = codec.Header("evil", 0, 0, 0.0, 0.0).pack()
RELAY_IN = codec.topic_frame("relay/in")
# Each reaches the relay's SUB socket (its prefix is the subscribed b"relay/in\0").
GARBAGE = [
    [RELAY_IN],                                                   # no header length
    [RELAY_IN + b"\x00"],                                         # header length cut short
    [RELAY_IN + b"\x01\x00" + GOOD_HEADER],                       # header length past the end
    [codec.envelope(RELAY_IN, b"\xc1", msgpack.packb(1))],        # header not msgpack
    [codec.envelope(RELAY_IN, msgpack.packb([99, "evil", 0, 0, 0.0, 0.0]),
                    msgpack.packb(1))],                           # version
    [codec.envelope(RELAY_IN, msgpack.packb({"not": "a list"}), msgpack.packb(1))],
    [codec.envelope(RELAY_IN, GOOD_HEADER, b"\xc1\xc1")],         # payload not msgpack
    # (a later sequence number: a message with one the relay has is a copy, dropped unread)
    [codec.envelope(RELAY_IN, codec.Header("evil", 1, 0, 0.0, 0.0).pack(),
                    msgpack.packb(msgpack.ExtType(
                        codec.EXT_NDARRAY, msgpack.packb(["<f8", [4], 2]))))],  # buffer missing
    [codec.envelope(PROGRESS_FRAME, GOOD_HEADER, b"\xc1")],       # progress not msgpack
]


@pytest.mark.timeout(40)
def test_node_survives_garbage_frames_and_counts_them(tmp_path: Path) -> None:
    """A raw ZeroMQ peer -- no catbus code on its side of the wire -- joins an open registry as the
    publisher of the relay's input, sends garbage, then one good message. The relay forwards the
    good one back to it, keeps running, and reports the garbage as malformed in its stats."""
    rundir = RunDir.create("garbage")
    rundir.publish("", "garbage")
    ctx = zmq.Context()
    registry = Registry(ctx, rundir.endpoint("registry"))
    evil_endpoint = rundir.endpoint("evil")
    xpub, sub, dealer = ctx.socket(zmq.XPUB), ctx.socket(zmq.SUB), ctx.socket(zmq.DEALER)
    for sock in (xpub, sub, dealer):
        sock.setsockopt(zmq.LINGER, 0)
    xpub.setsockopt(zmq.XPUB_VERBOSE, 1)
    xpub.bind(evil_endpoint)
    relay = None
    try:
        relay = subprocess.Popen(
            [sys.executable, "-m", "catbus", "node", f"{TOY}:Relay", "--name", "relay",
             "--bus", registry.endpoint], cwd=ROOT, stdin=subprocess.DEVNULL)
        dealer.connect(registry.endpoint)
        dealer.send(pack_control(
            "register", name="evil", pid=os.getpid(), host="test", cls="raw zmq",
            endpoint=evil_endpoint, period=None, inputs=[["back", "relay/out", "all"]],
            outputs=[["out", "relay/in"]]))

        def relay_endpoint() -> str | None:
            registry.poll(20)
            member = registry.members.get("relay")
            return member.endpoint if member is not None and member.endpoint else None

        endpoint = wait_until(relay_endpoint, 20, interval=0, what="the relay to register")
        # Be a well-behaved peer: subscribe to what we read, to progress and to our own hello, so
        # the relay sees us connected; wait for the relay's hello on our XPUB.
        for prefix in (codec.topic_frame("relay/out"), PROGRESS_FRAME,
                       codec.topic_frame(HELLO_PREFIX + "evil")):
            sub.setsockopt(zmq.SUBSCRIBE, prefix)
        sub.connect(endpoint)
        relay_hello = b"\x01" + codec.topic_frame(HELLO_PREFIX + "relay")

        def relay_connected() -> bool:
            registry.poll(0)
            return xpub.poll(20) and xpub.recv() == relay_hello

        wait_until(relay_connected, 20, interval=0, what="the relay to subscribe to us")
        wait_until(lambda: registry.poll(20) is not None and
                   registry.members["relay"].state == "running", 20, interval=0,
                   what="the relay to start")

        for frames in GARBAGE:
            xpub.send_multipart(frames)
        good = codec.encode_message("relay/in", codec.Header("evil", 2, 1, 0.1, time.time()),
                                    {"n": 41, "x": 0.5})
        xpub.send_multipart(good)

        def forwarded() -> list | None:
            registry.poll(0)
            if not sub.poll(20):
                return None
            frames = sub.recv_multipart()
            return frames if frames[0].startswith(codec.topic_frame("relay/out")) else None

        topic, header, value = codec.decode_message(wait_until(
            forwarded, 20, interval=0, what="the relay to forward the good message"))
        assert value == {"n": 41, "x": 0.5} and header.publisher == "relay"
        assert relay.poll() is None, "the relay died of garbage"

        registry.stop("test over")
        wait_until(lambda: registry.poll(20) is not None and
                   registry.members["relay"].state == "done", 20, interval=0,
                   what="the relay's final stats")
        stats = registry.members["relay"].stats
        assert stats["malformed"] == len(GARBAGE), stats
        assert stats["received"] == 3 and stats["sent"] == 1, stats  # 2 bad payloads + the good
        assert relay.wait(timeout=10) == 0
    finally:
        if relay is not None and relay.poll() is None:
            relay.kill()
            relay.wait()
        for sock in (xpub, sub, dealer):
            sock.close()
        registry.close()
        ctx.term()
        rundir.remove()


@pytest.mark.timeout(30)
def test_registry_survives_garbage_control_messages(tmp_path: Path) -> None:
    """Malformed control messages are counted by the registry, never fatal to the run."""
    rundir = RunDir.create("ctl")
    ctx = zmq.Context()
    registry = Registry(ctx, rundir.endpoint("registry"))
    dealer = ctx.socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    try:
        dealer.connect(registry.endpoint)
        garbage = [
            [b"\xc1"], [msgpack.packb([1, 2])], [msgpack.packb({"op": 5})], [b"a", b"b"],
            [pack_control("register")],                                   # no name, no endpoint
            [pack_control("register", name="x", endpoint="ipc://x", pid="not a pid",
                          inputs=[], outputs=[])],
            [pack_control("register", name="y", endpoint="ipc://y", inputs=5, outputs=None)],
        ]
        for frames in garbage:
            dealer.send_multipart(frames)
        dealer.send(pack_control("graph?"))
        replies: list[dict] = []

        def answered() -> bool:
            registry.poll(20)
            while dealer.poll(0):
                replies.append(msgpack.unpackb(dealer.recv()))
            return bool(replies) and replies[-1]["op"] == "graph"

        wait_until(answered, 10, interval=0, what="the registry to answer after the garbage")
        assert registry.malformed == len(garbage)
        rejects = [r["reason"] for r in replies if r["op"] == "reject"]
        assert len(rejects) == 3 and all("malformed register" in r for r in rejects), rejects
        assert replies[-1]["nodes"] == [], "a malformed registration left a member behind"
    finally:
        dealer.close()
        registry.close()
        ctx.term()
        rundir.remove()


# ------------------------------------------------------------------------------------------------
# launch files reaching the CLI
# ------------------------------------------------------------------------------------------------
BAD_FILES = {
    "unknown_key": ("nodes:\n  talker:\n    class: tests.toy_nodes:Talker\n    perod: 0.1\n",
                    "nodes.talker"),
    "bad_class": ("nodes:\n  talker:\n    class: tests.toy_nodes:Talkr\n",
                  "nodes.talker.class"),
    "bad_param": ("nodes:\n  talker:\n    class: tests.toy_nodes:Talker\n"
                  "    params: {gain: fast}\n", "nodes.talker.params.gain"),
    "bad_period": ("nodes:\n  talker:\n    class: tests.toy_nodes:Talker\n    period: -1\n",
                   "nodes.talker.period"),
    "bad_mode": ("mode: sideways\nnodes:\n  talker:\n    class: tests.toy_nodes:Talker\n",
                 "mode"),
    "no_nodes": ("name: empty\n", "nodes"),
}


@pytest.mark.timeout(40)
def test_bad_launch_files_are_one_line_errors(tmp_path: Path) -> None:
    """Every case reaches the real CLI (processes run side by side to keep this quick)."""
    cases = {name: write_launch(tmp_path, text, f"{name}.yaml")
             for name, (text, _) in BAD_FILES.items()}
    cases["yaml_syntax"] = write_launch(tmp_path, "nodes: [unclosed\n", "yaml_syntax.yaml")
    cases["missing"] = tmp_path / "missing.yaml"
    running = {name: subprocess.Popen(
        [sys.executable, "-m", "catbus", "launch", str(path), "--no-progress"], cwd=ROOT,
        text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        for name, path in cases.items()}
    extra = subprocess.Popen(
        [sys.executable, "-m", "catbus", "launch", str(ROOT / "launch" / "demo.yaml"),
         "--set", "talker.noise=loud", "--no-progress"], cwd=ROOT, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    results = {name: process.communicate(timeout=30) for name, process in running.items()}
    set_out, set_err = extra.communicate(timeout=30)
    for name, (out, err) in results.items():
        process = running[name]
        assert process.returncode == 2, (name, err)
        assert out == "" and "Traceback" not in err, (name, err)
        lines = err.splitlines()
        assert len(lines) == 1, (name, err)
        assert lines[0].startswith(f"catbus: {cases[name]}: "), (name, err)
        if name in BAD_FILES:
            field = BAD_FILES[name][1]
            assert lines[0].startswith(f"catbus: {cases[name]}: {field}"), (name, err)
    assert "line 1" in results["yaml_syntax"][1] or "line 2" in results["yaml_syntax"][1]
    assert extra.returncode == 2 and "Traceback" not in set_err, set_err
    assert re.fullmatch(r"catbus: --set: talker\.noise: .+\n", set_err), set_err


# ------------------------------------------------------------------------------------------------
# introspection of a running run
# ------------------------------------------------------------------------------------------------
@pytest.mark.timeout(60)
def test_topic_and_node_commands_on_a_running_run(tmp_path: Path, launches: list) -> None:
    run = LaunchProcess(tmp_path, str(write_launch(tmp_path, TALK_AND_LISTEN)))
    launches.append(run)
    graph = run.wait_running(nodes=2)
    commands = {
        "list": ["topic", "list"],
        "echo": ["topic", "echo", "talker/out", "--count", "3"],
        "hz": ["topic", "hz", "talker/out", "--count", "1"],
        "nodes": ["node", "list"],
        "unknown": ["topic", "echo", "no/such", "--count", "1"],
    }
    running = {name: subprocess.Popen(
        [sys.executable, "-m", "catbus", *args], cwd=ROOT, text=True, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, stdin=subprocess.DEVNULL) for name, args in commands.items()}
    out = {}
    for name, process in running.items():
        out[name] = process.communicate(timeout=30)
        if name != "unknown":
            assert process.returncode == 0, (name, out[name])
    run.process.send_signal(signal.SIGINT)
    assert run.process.wait(timeout=30) == 130
    wait_gone(node_pids(graph), timeout=5)

    topics = out["list"][0].splitlines()
    assert any(re.fullmatch(r"talker/out\s+from talker\s+to listener", t) for t in topics), topics
    assert any(re.fullmatch(r"listener/count\s+from listener\s+to -", t) for t in topics), topics

    echoed = out["echo"][0].splitlines()
    headers = [line for line in echoed if line.startswith("--- talker/out")]
    assert len(headers) == 3 and len(echoed) == 6, echoed
    values = [json.loads(line) for line in echoed if not line.startswith("---")]
    assert all(set(v) == {"n", "x", "t"} for v in values)
    assert [v["n"] for v in values] == list(range(values[0]["n"], values[0]["n"] + 3))

    rate = re.fullmatch(r"talker/out: ([\d.]+) Hz \((\d+) messages in 1 s\)\n", out["hz"][0])
    assert rate and 20 < float(rate.group(1)) < 150, out["hz"]

    listed = out["nodes"][0].splitlines()
    assert listed[0] == "mode parallel, running"
    for node in graph["nodes"]:
        row = next(line for line in listed[1:] if line.startswith(node["name"]))
        assert re.search(rf"\brunning\s+pid {node['pid']}\b", row), row
        assert "tests.toy_nodes:" in row

    assert running["unknown"].returncode != 0
    assert "no node publishes 'no/such'" in out["unknown"][1]
    assert "Traceback" not in out["unknown"][1]
