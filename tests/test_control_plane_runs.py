"""The control plane's failure paths in real runs, as a user meets them: a swap's replacement
killed before it registers, the old process killed during its swap, a fresh restart that
splices the episode, and a ``--only`` host that restarts its own node.

Real processes and sockets (``bus_sandbox`` checks nothing is left behind); the same paths are
covered event by event, without processes, in ``tests/test_control_plane.py``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import catbus
from catbus.client import query_graph
from catbus.client.swap import SwapFailed
from catbus.recording.reader import Recording
from tests.conftest import ROOT, alive, wait_until
from tests.test_swap import LONG, counter_launch, node_pid, node_tick, values
from tests.test_tcp import free_port

pytestmark = pytest.mark.usefixtures("bus_sandbox")


def children_with(*words: str) -> list[int]:
    """Live child processes of this test process whose command line has every word."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                parent = int(stat.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as cmd:
                args = cmd.read().decode(errors="replace").split("\0")
        except (OSError, ValueError, IndexError):
            continue
        if parent == os.getpid() and all(w in args for w in words) and alive(int(entry)):
            found.append(int(entry))
    return found


@pytest.mark.timeout(120)
def test_a_swap_whose_replacement_is_killed_before_registering_fails_within_seconds(tmp_path):
    """The replacement is SIGKILLed while it starts: the swap fails at once, saying so (not
    after the client's 60 s), the run goes on with the old process; its result and its
    recording list the failure."""
    record = tmp_path / "failed.mcap"
    with catbus.start(counter_launch(), mode="stepped", steps=LONG, pace=2.0, record=record,
                      evaluate=False) as run:
        assert run.wait_until_started(30)
        old_pid = node_pid(run.bus, "source")
        outcome: list[BaseException] = []

        def swap() -> None:
            try:
                run.swap("source", cls="tests.swap_nodes:CounterSlowToStartAsReplacement")
            except BaseException as exc:   # noqa: BLE001 -- handed to the test thread
                outcome.append(exc)

        import threading

        asking = threading.Thread(target=swap)
        asking.start()
        [replacement] = wait_until(lambda: children_with("--replace"), 30,
                                   what="the replacement process")
        os.kill(replacement, signal.SIGKILL)
        asking.join(60)
        assert outcome and isinstance(outcome[0], SwapFailed), outcome
        # Failed because the launcher saw its death (the reason says so), not on a timeout.
        assert "killed by signal 9 before registering" in str(outcome[0])
        assert node_pid(run.bus, "source") == old_pid
        tick = node_tick(run.bus, "source")
        wait_until(lambda: node_tick(run.bus, "source") >= tick + 10, 30, what="10 more ticks")
        run.stop()
        result = run.wait(60)
    assert result.swaps == []
    [failure] = result.swap_failures
    assert "before registering" in failure["message"]
    [(_, event)] = values(record, "catbus/swap")
    assert event["kind"] == "swap-failed" and "before registering" in event["reason"]


@pytest.mark.timeout(120)
def test_the_old_process_killed_during_its_swap_is_replaced_by_the_swap(tmp_path):
    """The old process dies after the replacement was started: the replacement takes over
    (as a restarted process would: after the last tick its readers have), the swap is done,
    and the run, which goes on, says its episode is spliced."""
    record = tmp_path / "died.mcap"
    with catbus.start(counter_launch(), mode="stepped", steps=LONG, pace=2.0, record=record,
                      evaluate=False) as run:
        assert run.wait_until_started(30)
        wait_until(lambda: node_tick(run.bus, "source") >= 20, 30, what="source at tick 20")
        old_pid = node_pid(run.bus, "source")
        replies: list = []

        import threading

        asking = threading.Thread(target=lambda: replies.append(run.swap(
            "source", cls="tests.swap_nodes:PlainCounter")))
        asking.start()
        wait_until(lambda: children_with("--replace"), 30, what="the replacement process")
        os.kill(old_pid, signal.SIGKILL)
        asking.join(60)
        assert replies, "the swap was not answered"
        tick = replies[0]["tick"]
        assert "its old process died first" in replies[0]["message"]
        wait_until(lambda: node_tick(run.bus, "source") >= tick + 10, 30, what="10 more ticks")
        run.stop()
        result = run.wait(60)
    [swap] = result.swaps
    assert swap["old_died"] and swap["state"] == "fresh"
    assert result.spliced == [{"node": "source", "tick": tick, "kind": "swap", "state": "fresh"}]
    assert "spliced" in result.scores
    ticks = [t for t, _ in values(record, "source/count")]
    assert ticks == sorted(set(ticks)), "a tick recorded twice"


def after_restart(bus: str, name: str, killed: int) -> int:
    """Once ``name``'s process ``killed`` has a successor that took its place (its restart done:
    the graph names none pending), a tick that successor has reached. Not the graph's tick at
    that moment: until the successor's next heartbeat that is the dead process's last one,
    which may lag far behind where the successor started (up to a heartbeat, 100 ticks at
    pace 2), so that "10 ticks more" was reached at once and the run stopped before the
    recorder got to the restart. A heartbeat the registry takes after the successor's
    ``swapped`` reports the restart's tick at least."""
    def entry() -> dict:
        return next(n for n in query_graph(bus)["nodes"] if n["name"] == name)
    wait_until(lambda: (e := entry())["pid"] not in (killed, 0) and not e["pending"], 30,
               what=f"the restarted {name} to take its place")
    stale = entry()["tick"]
    wait_until(lambda: entry()["tick"] != stale, 30, what=f"a heartbeat of the restarted {name}")
    return entry()["tick"]


@pytest.mark.timeout(120)
def test_a_fresh_restart_marks_the_result_and_the_recording_spliced(tmp_path):
    launch = counter_launch()
    launch["nodes"]["source"].update(restart="on-failure", max_restarts=2, restart_backoff=0.1)
    record = tmp_path / "restart.mcap"
    with catbus.start(launch, mode="stepped", steps=LONG, pace=2.0, record=record,
                      evaluate=False) as run:
        assert run.wait_until_started(30)
        wait_until(lambda: node_tick(run.bus, "source") >= 20, 30, what="source at tick 20")
        killed = node_pid(run.bus, "source")
        os.kill(killed, signal.SIGKILL)
        tick = after_restart(run.bus, "source", killed)
        # Flow control: source steps tick + 10 only once the recorder has completed tick + 2,
        # so the recorder has written the new process's catbus/swap event (at tick or before).
        wait_until(lambda: node_tick(run.bus, "source") >= tick + 10, 30, what="10 more ticks")
        run.stop()
        result = run.wait(60)
    [restart] = result.swaps
    assert restart["tick"] <= tick
    [spliced] = result.spliced
    assert spliced == {"node": "source", "tick": restart["tick"], "kind": "restart",
                       "state": "fresh"}
    line = f"source restarted fresh at tick {restart['tick']}"
    assert result.scores["spliced"] == line
    assert result.summary["spliced"] == result.spliced
    assert f"spliced: {line}" in result.table()
    [entry] = Recording(record).end_metadata["spliced"]   # what catbus eval reports
    assert entry == spliced


def only_launch(folder: Path, port: int, **sink) -> Path:
    """source here, sink on the "other host" (this one, over loopback TCP)."""
    launch = counter_launch(bus=f"tcp://127.0.0.1:{port}")
    launch["nodes"]["sink"].update(remote=True, **sink)
    path = folder / "only.yaml"
    path.write_text(yaml.safe_dump(launch))
    return path


def start_only(path: Path, port: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "catbus", "launch", str(path), "--only",
                             "sink", "--bus", f"tcp://127.0.0.1:{port}"], cwd=ROOT,
                            stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)


@pytest.mark.timeout(180)
def test_only_host_restarts_its_killed_node_and_the_run_goes_on(tmp_path):
    """``catbus launch --only``: kill -9 of its node is answered by the node's restart policy
    there (the owner cannot start a process on that host); the run records the restart."""
    port = free_port()
    path = only_launch(tmp_path, port, restart="on-failure", max_restarts=2,
                       restart_backoff=0.1)
    with catbus.start(path, mode="stepped", steps=LONG, pace=2.0, evaluate=False,
                      rejoin_timeout=30.0) as run:
        share = start_only(path, port)
        try:
            assert run.wait_until_started(60)
            wait_until(lambda: node_tick(run.bus, "sink") >= 10, 30, what="sink at tick 10")
            killed = node_pid(run.bus, "sink")
            os.kill(killed, signal.SIGKILL)
            wait_until(lambda: node_pid(run.bus, "sink") not in (killed, 0), 60,
                       what="the sink restarted by its host")
            tick = node_tick(run.bus, "source")
            wait_until(lambda: node_tick(run.bus, "sink") >= tick + 5, 30,
                       what="the restarted sink to step on")
            run.stop()
            result = run.wait(60)
        finally:   # it ends with the run's end; on a failure, what it said is shown
            print(share.communicate(timeout=60)[1])
    assert share.returncode == 0
    [restart] = result.swaps
    assert restart["kind"] == "restart" and restart["node"] == "sink"


@pytest.mark.timeout(180)
def test_only_host_whose_node_is_killed_without_restart_policy_exits_1_naming_it(tmp_path):
    port = free_port()
    path = only_launch(tmp_path, port)
    with catbus.start(path, mode="stepped", steps=LONG, pace=2.0, evaluate=False,
                      rejoin_timeout=5.0) as run:
        share = start_only(path, port)
        try:
            assert run.wait_until_started(60)
            wait_until(lambda: node_tick(run.bus, "sink") >= 5, 30, what="sink at tick 5")
            os.kill(node_pid(run.bus, "sink"), signal.SIGKILL)
            share.wait(60)
        finally:
            if share.poll() is None:
                share.kill()
                share.wait()
        with pytest.raises(catbus.NodeFailed, match="sink"):
            run.wait(60)
    assert share.returncode == 1
    assert "node sink was killed by signal 9" in share.stderr.read()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("mode", ["stepped", "parallel"])
def test_a_node_aborting_after_it_said_done_fails_the_run_naming_the_signal(mode):
    """No exit 0 after an abort: the node said done, then SIGABRT ended its process (catbus did
    not send it): the run fails, naming the node and the signal."""
    launch = {"name": "aborts", "pythonpath": [str(ROOT)], "steps": 20, "nodes": {
        "steady": {"class": "tests.swap_nodes:Counter"},
        "aborter": {"class": "tests.abort_nodes:AbortsAtExit"}}}
    with pytest.raises(catbus.NodeFailed, match="node aborter failed: its process was killed "
                                                "by signal 6 after it said done"):
        catbus.run(launch, mode=mode, evaluate=False)
