"""How parallel-mode runs and their processes end: the control link of a node that always
overruns, cycles of reactive nodes, nodes stuck past the end of a run, exit codes, and
``catbus topic echo|hz`` outliving the run they watch.

Real processes and sockets throughout. Every test is bounded (``pytest.mark.timeout``), waits for
events (a heartbeat's content, a file a node writes, an output line, a process exiting) and never
for a fixed time, and runs in ``bus_sandbox`` (tests/conftest.py), which fails it if a process or
a run folder outlives it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import zmq

import catbus
from catbus.supervise import children, launcher
from catbus.errors import NodeFailed
from catbus.supervise.registry import Registry
from catbus.supervise.rundir import RunDir, remove_stale_runs
from tests.conftest import ROOT, alive, wait_until
from tests.test_bus import LaunchProcess, launches, node_pids, wait_gone  # noqa: F401 (fixture)

pytestmark = pytest.mark.usefixtures("bus_sandbox")

TOY = "tests.toy_nodes"


class OpenBus:
    """A registry hosted by the test (an open bus: nodes start as soon as they are connected)
    and ``catbus node`` processes started by hand against it."""

    def __init__(self, label: str) -> None:
        self.rundir = RunDir.create(label)
        self.ctx = zmq.Context()
        self.registry = Registry(self.ctx, self.rundir.endpoint("registry"))
        self.nodes: list[subprocess.Popen] = []

    def start_node(self, class_name: str, name: str, *args: str) -> subprocess.Popen:
        node = subprocess.Popen(
            [sys.executable, "-m", "catbus", "node", f"{TOY}:{class_name}", "--name", name,
             "--bus", self.registry.endpoint, *args], cwd=ROOT, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.nodes.append(node)
        return node

    def member(self, name: str, node: subprocess.Popen, condition: Any, what: str,
               timeout: float = 20) -> Any:
        """Poll the registry (which also keeps its heartbeats going) until ``condition(member)``
        holds; fails at once, with the node's output, if the node process exits first."""
        def check() -> Any:
            self.registry.poll(20)
            member = self.registry.members.get(name)
            if member is not None and condition(member):
                return member
            if node.poll() is not None:
                raise AssertionError(f"node {name} exited ({node.returncode}) while waiting for "
                                     f"{what}:\n{node.communicate()[0]}")
            return None

        return wait_until(check, timeout, interval=0, what=what)

    def close(self) -> None:
        try:
            for node in self.nodes:
                if node.poll() is None:
                    node.kill()
                node.wait()
                if node.stdout is not None:
                    node.stdout.close()
        finally:
            if not self.registry.socket.closed:
                self.registry.close()
            self.ctx.term()
            self.rundir.remove()


@pytest.fixture
def open_bus(request: pytest.FixtureRequest) -> OpenBus:
    bus = OpenBus(request.node.name[:20])
    yield bus
    bus.close()


def write_launch(folder: Path, text: str) -> Path:
    path = folder / "run.yaml"
    path.write_text(textwrap.dedent(text))
    return path


# ------------------------------------------------------------------------------------------------
# 1. a node that always overruns its period still hears the registry
# ------------------------------------------------------------------------------------------------
@pytest.mark.timeout(40)
def test_always_overrunning_node_keeps_its_control_link_and_obeys_stop(
        tmp_path: Path, open_bus: OpenBus) -> None:
    """Each step takes 30 ms at a 10 ms period, so the node never waits between steps. It must
    still read its control link: survive well past its registry timeout (1 s) -- the registry
    keeps sending heartbeats -- and stop, running close(), as soon as the registry says stop."""
    closed = tmp_path / "closed"
    node = open_bus.start_node("Overrunner", "over", "--timeout", "1", "--param", "busy=0.03",
                               "--param", f"closed_file={closed}")
    # 70 steps of 30 ms: more than twice the registry timeout spent stepping back to back.
    member = open_bus.member("over", node, lambda m: m.state == "running" and m.steps >= 70,
                             "the overrunning node to report 70 steps")
    assert member.activity.startswith("stepping"), member.activity
    open_bus.registry.stop("test over")
    open_bus.member("over", node, lambda m: m.state == "done", "the node's done after stop",
                    timeout=10)
    output, _ = node.communicate(timeout=10)
    assert node.returncode == 0, output
    assert "silent" not in output, output
    assert int(closed.read_text()) >= 70, "close() did not run"
    stats = open_bus.registry.members["over"].stats
    assert stats["overruns"] > 0, stats


# ------------------------------------------------------------------------------------------------
# 2. a cycle of reactive nodes ends with the run
# ------------------------------------------------------------------------------------------------
def ping_pong(tmp_path: Path, **top: Any) -> dict:
    """talker kicks ping; ping and pong (reactive) answer each other for ever; tap (reactive)
    keeps everything ping says."""
    talker = top.pop("talker", {})
    return {"name": "pingpong", **top, "nodes": {
        "talker": {"class": f"{TOY}:Talker", "period": 0.02, "params": talker},
        "ping": {"class": f"{TOY}:Bouncer",
                 "params": {"serve": True, "closed_file": str(tmp_path / "ping.n")},
                 "remap": {"~/kick": "talker/out", "~/in": "pong/out"}},
        "pong": {"class": f"{TOY}:Bouncer", "params": {"closed_file": str(tmp_path / "pong.n")},
                 "remap": {"~/kick": "nobody/kick", "~/in": "ping/out"}},
        "tap": {"class": f"{TOY}:Collector", "params": {"path": str(tmp_path / "tap.json")},
                "remap": {"~/in": "ping/out"}}}}


@pytest.mark.timeout(40)
@pytest.mark.parametrize("end", ["duration", "episode"])
def test_cycle_of_reactive_nodes_ends_with_the_run(tmp_path: Path, end: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # Were they not to end by themselves, the launcher would fail the run naming them after its
    # end grace (so this test fails rather than hangs); the deadline is out of the way.
    monkeypatch.setattr(launcher, "END_GRACE", 10.0)
    if end == "duration":
        launch = ping_pong(tmp_path, duration=0.5)
    else:   # no duration: the talker ends the episode after 10 steps
        launch = ping_pong(tmp_path, talker={"stop_after": 10})
    result = catbus.run(launch, mode="parallel", deadline=60)
    nodes = result.nodes
    for name, stats in nodes.items():
        assert stats["state"] == "done" and stats["returncode"] == 0, (name, stats)
    if end == "episode":
        assert result.end_reason == "talker said 10 things"
    pinged, ponged = int((tmp_path / "ping.n").read_text()), int((tmp_path / "pong.n").read_text())
    assert pinged > 0 and ponged > 0, "the rally never started"
    # The node downstream of the cycle still got everything ping said before it ended.
    heard = json.loads((tmp_path / "tap.json").read_text())
    assert len(heard) == nodes["ping"]["sent"] == nodes["tap"]["received"], nodes
    assert [m["n"] for m in heard] == sorted(m["n"] for m in heard)


# ------------------------------------------------------------------------------------------------
# 3. a node stuck past the end of a parallel run is named, and the run stops
# ------------------------------------------------------------------------------------------------
@pytest.mark.timeout(40)
def test_node_stuck_past_the_end_of_a_parallel_run_is_named(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``stuck`` never returns from its step (and ignores SIGINT/SIGTERM); ``waiter`` reads it and
    waits, heartbeating, for it to finish. The heartbeat deadline (60 s) is far away: the run's
    end plus the end grace must be what stops it, naming the stuck node first."""
    monkeypatch.setattr(launcher, "END_GRACE", 2.0)
    monkeypatch.setattr(children, "STOP_GRACE", 1.0)
    monkeypatch.setattr(children, "SIGNAL_GRACE", 0.5)
    pid_file = tmp_path / "stuck.pid"
    launch = {"name": "stuck", "nodes": {
        "talker": {"class": f"{TOY}:Talker", "period": 0.01},
        "stuck": {"class": f"{TOY}:StuckTalker", "params": {"pid_file": str(pid_file)}},
        "waiter": {"class": f"{TOY}:Waiter", "remap": {"~/in": "stuck/out"}}}}
    with pytest.raises(NodeFailed) as failure:
        catbus.run(launch, mode="parallel", duration=0.5, deadline=60)
    message = str(failure.value)
    assert message.startswith("node stuck failed: still running "), message
    assert "after the run's 0.5 s duration and silent for" in message, message
    result = failure.value.result
    named = {name: why for name, why, _ in result.failures}
    assert list(named) == ["stuck", "waiter"], result.failures   # the talker ended in time
    assert "alive but not finishing: waiting for stuck" in named["waiter"], named
    assert result.nodes["talker"]["returncode"] == 0
    assert result.nodes["stuck"]["returncode"] == -signal.SIGKILL
    assert not alive(int(pid_file.read_text()))


@pytest.mark.timeout(40)
def test_a_long_close_after_the_end_is_not_taken_for_stuck(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A node that has said it is closing (a recorder finishing its file) may take longer than
    the end grace; only the heartbeat deadline bounds it."""
    monkeypatch.setattr(launcher, "END_GRACE", 0.5)
    closed = tmp_path / "closed"
    launch = {"name": "slowclose", "nodes": {
        "slow": {"class": f"{TOY}:SlowCloser", "period": 0.01,
                 "params": {"hold": 2.0, "closed_file": str(closed)}}}}
    result = catbus.run(launch, mode="parallel", duration=0.2, deadline=30)
    assert result.nodes["slow"]["state"] == "done" and result.nodes["slow"]["returncode"] == 0
    assert closed.read_text() == "closed"


# ------------------------------------------------------------------------------------------------
# 4. exit codes: 128 + the signal
# ------------------------------------------------------------------------------------------------
@pytest.mark.timeout(40)
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_node_process_stopped_by_a_signal_exits_128_plus_the_signal(
        tmp_path: Path, open_bus: OpenBus, signum: int) -> None:
    collected = tmp_path / "heard.json"
    node = open_bus.start_node("Collector", "collector", "--param", f"path={collected}")
    open_bus.member("collector", node, lambda m: m.state == "running" and m.activity,
                    "the node to run and report")
    node.send_signal(signum)
    member = open_bus.member("collector", node, lambda m: m.state == "done",
                             "the node's done message", timeout=10)
    output, _ = node.communicate(timeout=10)
    assert node.returncode == 128 + signum, output     # 130 / 143, the shell's convention
    assert member.code == 128 + signum
    assert json.loads(collected.read_text()) == [], "close() did not run"
    assert "Traceback" not in output, output


@pytest.mark.timeout(30)
def test_help_documents_the_exit_codes() -> None:
    for args in (["--help"], ["launch", "--help"], ["node", "--help"], ["topic", "--help"]):
        done = subprocess.run([sys.executable, "-m", "catbus", *args], cwd=ROOT, text=True,
                              capture_output=True, timeout=20)
        assert done.returncode == 0, done.stderr
        text = " ".join(done.stdout.split())
        assert "130 interrupted by Ctrl-C (SIGINT)" in text, (args, done.stdout)
        assert "143 stopped by SIGTERM" in text, (args, done.stdout)


# ------------------------------------------------------------------------------------------------
# 5. topic echo / hz end with the run they watch
# ------------------------------------------------------------------------------------------------
TALKER_RUN = """\
    name: talk
    nodes:
      talker:
        class: tests.toy_nodes:Talker
        period: 0.01
    """


def start_watchers(*commands: list[str]) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-m", "catbus", "topic", *args], cwd=ROOT,
                             text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             stdin=subprocess.DEVNULL) for args in commands]


def first_lines(watchers: list[subprocess.Popen]) -> list[str]:
    """Each watcher's first line of output: it is connected and the run is flowing."""
    return [watcher.stdout.readline() for watcher in watchers]


def finish(watchers: list[subprocess.Popen], timeout: float) -> list[tuple[str, str]]:
    try:
        return [watcher.communicate(timeout=timeout) for watcher in watchers]
    finally:
        for watcher in watchers:
            if watcher.poll() is None:
                watcher.kill()
                watcher.communicate()


@pytest.mark.timeout(60)
def test_echo_and_hz_end_when_the_run_ends(tmp_path: Path, launches: list) -> None:
    run = LaunchProcess(tmp_path, str(write_launch(tmp_path, TALKER_RUN)))
    launches.append(run)
    graph = run.wait_running(nodes=1)
    watchers = start_watchers(["echo", "talker/out"], ["hz", "talker/out"])
    try:
        echo_line, hz_line = first_lines(watchers)
    except BaseException:
        finish(watchers, 0)
        raise
    assert echo_line.startswith("--- talker/out"), echo_line
    assert hz_line.startswith("talker/out: "), hz_line
    run.process.send_signal(signal.SIGINT)            # the run ends; the watchers must notice
    outputs = finish(watchers, timeout=20)
    assert run.process.wait(timeout=30) == 130
    wait_gone(node_pids(graph), timeout=5)
    for watcher, (out, err) in zip(watchers, outputs):
        assert watcher.returncode == 0, (out, err)
        said = err.splitlines()   # which run it watches, then how the watch ended
        assert said[0].startswith("catbus: run talk (pid ") and said[1:] == [
            "catbus: run talk ended"], err
    assert "Traceback" not in outputs[0][1] + outputs[1][1]


@pytest.mark.timeout(60)
def test_echo_ends_when_the_registry_of_its_run_goes_silent(tmp_path: Path, launches: list,
                                                             bus_sandbox: Any) -> None:
    """A launcher killed with SIGKILL leaves its run folder behind: the registry's silence tells
    echo that the run is gone."""
    run = LaunchProcess(tmp_path, str(write_launch(tmp_path, TALKER_RUN)))
    launches.append(run)
    graph = run.wait_running(nodes=1)
    watchers = start_watchers(["echo", "talker/out"])
    try:
        assert first_lines(watchers)[0].startswith("--- talker/out")
        os.kill(run.pid, signal.SIGKILL)
        (out, err), = finish(watchers, timeout=20)
    finally:
        run.stop()
        wait_gone(node_pids(graph), timeout=10)       # parent-death signal
        remove_stale_runs()                           # the SIGKILLed launcher's folder
    assert watchers[0].returncode == 0, (out, err)
    said = err.splitlines()
    assert said[0].startswith("catbus: run talk (pid "), err
    assert said[1].startswith("catbus: run talk ended (its registry at ipc://"), err
    assert "has not answered for 3 s" in err, err


@pytest.mark.timeout(30)
def test_echo_and_hz_without_a_run_fail_in_one_line() -> None:
    watchers = start_watchers(["echo", "talker/out"], ["hz", "talker/out"],
                              ["echo", "talker/out", "--bus", "tcp://127.0.0.1:9"])
    outputs = finish(watchers, timeout=20)
    for watcher, (out, err) in zip(watchers, outputs):
        assert watcher.returncode == 2, (out, err)
        assert out == "" and len(err.splitlines()) == 1, err
    assert outputs[0][1].startswith("catbus: no catbus run is running on this machine; start "
                                    "one with `catbus launch FILE`"), outputs[0][1]
    assert outputs[1][1] == outputs[0][1]
    assert outputs[2][1] == ("catbus: the registry at tcp://127.0.0.1:9 did not answer within "
                             "3 s\n"), outputs[2][1]
