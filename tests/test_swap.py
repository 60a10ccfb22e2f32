"""Hot swaps and restarts: a node's process replaced while the run goes on.

Real runs, real processes: swaps scheduled in the launch file (stepped equals inline), swaps
asked for while the run goes (``RunHandle.swap``, the ``catbus swap`` command), swaps that must
fail and leave the old process running, state carried by ``snapshot``/``restore``, and
``restart: on-failure`` after a kill -9. The ``bus_sandbox`` fixture checks that no process and
no run folder is left behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import catbus
from catbus.client import query_graph
from catbus.errors import ConfigError
from catbus.client.swap import SwapFailed
from catbus.recording.reader import Recording
from catbus.recording.verify import channel_sequences, first_difference
from tests.conftest import wait_until

ROOT = Path(__file__).resolve().parent.parent
#: Runs the tests stop themselves once what they check is done (nothing races a run's end).
LONG = 100_000
FLAT_EVADE = ROOT / "launch" / "flat_evade.yaml"


def counter_launch(**top) -> dict:
    """source (a Counter) -> sink (an Echo of it)."""
    return {"name": "swaps", "pythonpath": [str(ROOT)], **top,
            "nodes": {"source": {"class": "tests.swap_nodes:Counter"},
                      "sink": {"class": "tests.swap_nodes:Echo",
                               "remap": {"~/in": "source/count"}}}}


def flat_evade(**top) -> dict:
    import yaml

    launch = yaml.safe_load(FLAT_EVADE.read_text())
    launch.pop("record", None)
    launch["pythonpath"] = [str(ROOT)]
    launch.update(top)
    return launch


def values(path: Path, topic: str) -> list:
    return [(m.tick, m.value) for m in Recording(path).messages(topic)]


def assert_prefix(short: Path, long: Path) -> None:
    """Every topic outside catbus/ of the recording ``short`` (a run stopped midway) begins
    the same topic of ``long``: same ticks, same bytes."""
    mine, reference = channel_sequences(short), channel_sequences(long)
    assert set(mine) == set(reference)
    for topic, sequence in mine.items():
        assert sequence == reference[topic][:len(sequence)], topic


def node_pid(bus: str, name: str) -> int:
    return next(n["pid"] for n in query_graph(bus)["nodes"] if n["name"] == name)


def node_tick(bus: str, name: str) -> int:
    return next(n["tick"] for n in query_graph(bus)["nodes"] if n["name"] == name)


# -- swaps scheduled in the launch file --------------------------------------------------------------
@pytest.mark.timeout(120)
def test_scheduled_swap_in_stepped_records_what_inline_records(bus_sandbox, tmp_path):
    """flat_evade's robot becomes Unsafe at 1.5 s of sim time: tick 150 in both modes; every
    topic outside catbus/ is identical; the recording has the swap event at that tick."""
    launch = flat_evade(swap=[{"at": 1.5, "node": "robot",
                               "params": {"safe_controller": "Unsafe"}}])
    results = {}
    for mode in ("inline", "stepped"):
        results[mode] = catbus.run(launch, mode=mode, steps=300, record=tmp_path / f"{mode}.mcap",
                                   evaluate=False)
    assert first_difference(tmp_path / "inline.mcap", tmp_path / "stepped.mcap") is None
    for mode, result in results.items():
        assert len(result.swaps) == 1, result.swaps
        [swap] = result.swaps
        # (the agent's planner state goes across: ModelBasedAgent has snapshot/restore)
        assert (swap["node"], swap["tick"], swap["state"]) == ("robot", 150, "restored"), mode
        assert (swap["old"]["incarnation"], swap["new"]["incarnation"]) == (1, 2)
        [event] = values(tmp_path / f"{mode}.mcap", "catbus/swap")
        assert event[0] == 150 and event[1]["params"]["safe_controller"] == "Unsafe"
    actions = [tick for tick, _ in values(tmp_path / "stepped.mcap", "robot/action")]
    assert actions == list(range(301)), "a tick was lost or repeated"
    for mode in results:   # which process published each message: the recording says
        processes = [(m.tick, m.publisher, m.incarnation)
                     for m in Recording(tmp_path / f"{mode}.mcap").messages("robot/action")]
        assert processes == [(t, "robot", 1 if t < 150 else 2) for t in range(301)], mode
    # Before the swap: the safe controller's own actions; from it on, not the same any more.
    safe = catbus.run(flat_evade(), mode="inline", steps=300, record=tmp_path / "safe.mcap",
                      evaluate=False)
    assert safe.swaps == []
    safe_actions = channel_sequences(tmp_path / "safe.mcap")["robot/action"]
    swapped_actions = channel_sequences(tmp_path / "stepped.mcap")["robot/action"]
    assert swapped_actions[:150] == safe_actions[:150]
    assert swapped_actions[150] != safe_actions[150]


def test_scheduled_swap_is_checked_at_load_time(tmp_path):
    with pytest.raises(ConfigError, match=r"swap\[0\]\.params\.nope: unknown parameter"):
        catbus.load(counter_launch(swap=[{"at": 0.5, "node": "source", "params": {"nope": 1}}]))
    with pytest.raises(ConfigError, match=r"swap\[0\]\.class: Other does not fit node source"):
        catbus.load(counter_launch(swap=[{"at": 0.5, "node": "source",
                                          "class": "tests.swap_nodes:Other"}]))
    with pytest.raises(ConfigError, match=r"swap\[0\]\.node: .*no node named 'nobody'"):
        catbus.load(counter_launch(swap=[{"at": 0.5, "node": "nobody"}]))
    with pytest.raises(ConfigError, match=r"swap\[0\]\.at: must be a number"):
        catbus.load(counter_launch(swap=[{"at": "soon", "node": "source"}]))


@pytest.mark.timeout(60)
def test_snapshot_and_restore_carry_the_state_across_a_swap(bus_sandbox, tmp_path):
    """Counter hands its count over; PlainCounter (no snapshot/restore) starts again from 0;
    the counts are the same in inline and stepped."""
    launch = counter_launch(swap=[
        {"at": 0.2, "node": "source", "params": {"offset": 100}},
        {"at": 0.4, "node": "source", "class": "tests.swap_nodes:PlainCounter"}])
    for mode in ("inline", "stepped"):
        result = catbus.run(launch, mode=mode, steps=60, record=tmp_path / f"{mode}.mcap",
                            evaluate=False)
        assert [(s["tick"], s["state"]) for s in result.swaps] == [(20, "restored"),
                                                                    (40, "fresh")], mode
        counts = values(tmp_path / f"{mode}.mcap", "source/count")
        assert [tick for tick, _ in counts] == list(range(61))
        assert [c["count"] for _, c in counts[:40]] == list(range(1, 41))   # carried on
        assert counts[19][1]["value"] == 20 and counts[20][1]["value"] == 121
        assert [c["count"] for _, c in counts[40:]] == list(range(1, 22))   # fresh
    assert first_difference(tmp_path / "inline.mcap", tmp_path / "stepped.mcap") is None


@pytest.mark.timeout(60)
def test_scheduled_swap_in_parallel_happens_at_its_wall_time(bus_sandbox, tmp_path):
    """In parallel, ``at`` is wall-clock seconds since the start: the replacement is started
    then and takes over once connected; the gap is reported."""
    launch = counter_launch(swap=[{"at": 0.5, "node": "source", "params": {"offset": 50}}])
    record = tmp_path / "parallel.mcap"
    result = catbus.run(launch, mode="parallel", duration=3.0, record=record, evaluate=False)
    [swap] = result.swaps
    assert swap["state"] == "restored" and swap["gap"] is not None and swap["tick"] >= 50
    counts = [value for _, value in values(record, "source/count")]
    assert all(b["count"] == a["count"] + 1 for a, b in zip(counts, counts[1:]))
    assert counts[-1]["value"] == counts[-1]["count"] + 50


# -- swaps while the run goes on ----------------------------------------------------------------------
@pytest.mark.timeout(120)
def test_live_swap_in_stepped_lands_between_two_ticks(bus_sandbox, tmp_path):
    """A swap asked for during a paced stepped run: the reply names the tick; the recording is
    what an inline run with the same swap scheduled at that tick records (so the actions before
    it are the old controller's, after it the new one's, and no tick is lost or repeated). The
    run is long and stopped once the swap is done: nothing here races its end."""
    record = tmp_path / "live.mcap"
    with catbus.start(flat_evade(), mode="stepped", steps=LONG, pace=4.0, record=record,
                      evaluate=False) as run:
        assert run.wait_until_started(30)
        wait_until(lambda: node_tick(run.bus, "robot") >= 20, 30, what="robot at tick 20")
        reply = run.swap("robot", params={"safe_controller": "Unsafe"})
        tick = reply["tick"]
        wait_until(lambda: node_tick(run.bus, "robot") >= tick + 30, 30, what="30 ticks more")
        run.stop()
        result = run.wait(60)
    assert reply["state"] == "restored" and reply["gap"] is None
    assert tick > 20 and [s["tick"] for s in result.swaps] == [tick]
    ticks = [t for t, _ in values(record, "robot/action")]
    assert ticks == list(range(len(ticks))) and ticks[-1] >= tick + 30
    reference = tmp_path / "reference.mcap"
    catbus.run(flat_evade(swap=[{"at": tick / 100, "node": "robot",
                                 "params": {"safe_controller": "Unsafe"}}]),
               mode="inline", steps=ticks[-1] + 1, record=reference, evaluate=False)
    assert_prefix(record, reference)


@pytest.mark.timeout(120)
def test_live_swap_in_parallel_reports_the_gap(bus_sandbox, tmp_path):
    record = tmp_path / "parallel.mcap"
    with catbus.start(counter_launch(), mode="parallel", duration=600.0, record=record,
                      evaluate=False) as run:
        assert run.wait_until_started(30)
        wait_until(lambda: node_tick(run.bus, "source") >= 30, 30, what="source at tick 30")
        old_pid = node_pid(run.bus, "source")
        reply = run.swap("source", params={"offset": 1000})
        assert node_pid(run.bus, "source") != old_pid
        wait_until(lambda: node_tick(run.bus, "source") >= reply["tick"] + 30, 30,
                   what="30 cycles of the new source")
        run.stop()
        result = run.wait(60)
    assert reply["state"] == "restored" and reply["gap"] is not None and reply["gap"] >= 0
    [swap] = result.swaps
    assert swap["gap"] == reply["gap"] and swap["new"]["incarnation"] == 2
    counts = [value for _, value in values(record, "source/count")]
    switched = next(i for i, c in enumerate(counts) if c["value"] >= 1000)
    # The count goes on across the swap (restored), and the sink kept getting values.
    assert all(b["count"] == a["count"] + 1 for a, b in zip(counts, counts[1:]))
    assert counts[switched]["tick"] > counts[switched - 1]["tick"]
    [event] = values(record, "catbus/swap")
    assert event[1]["gap"] == reply["gap"] and event[1]["old"]["pid"] == old_pid


@pytest.mark.timeout(120)
def test_swaps_that_cannot_work_leave_the_old_process_running(bus_sandbox, tmp_path):
    """Refused before anything starts (no such node, the recorder, a class that does not fit,
    a bad parameter), a replacement that fails in setup, one that fails in its first step: each
    says why, and the old process goes on (its counts are unbroken)."""
    record = tmp_path / "kept.mcap"
    with catbus.start(counter_launch(), mode="stepped", steps=LONG, pace=2.0, record=record,
                      evaluate=False) as run:
        assert run.wait_until_started(30)
        old_pid = node_pid(run.bus, "source")
        cases = [("nobody", None, None, "no node named 'nobody'"),
                 ("recorder", None, None, "reads every topic"),
                 ("source", "tests.swap_nodes:Other", None, "does not fit node source"),
                 ("source", None, {"nope": 1}, "params.nope: unknown parameter"),
                 ("source", "tests.swap_nodes:CounterFailingSetup", None,
                  "cannot start"),
                 ("source", "tests.swap_nodes:CounterFailingFirstStep", None,
                  "fails in its first step")]
        for node, cls, params, why in cases:
            with pytest.raises(SwapFailed, match=why):
                run.swap(node, cls=cls, params=params)
            assert node_pid(run.bus, "source") == old_pid
        tick = node_tick(run.bus, "source")
        wait_until(lambda: node_tick(run.bus, "source") >= tick + 20, 30, what="20 ticks more")
        run.stop()
        result = run.wait(60)
    assert result.swaps == [] and len(result.swap_failures) == 4
    counts = values(record, "source/count")
    assert [tick for tick, _ in counts] == list(range(len(counts)))
    assert [c["count"] for _, c in counts] == list(range(1, len(counts) + 1))


@pytest.mark.timeout(120)
def test_catbus_swap_command(bus_sandbox, tmp_path):
    """The command a user types in a second terminal, against the run on this machine."""
    with catbus.start(counter_launch(), mode="stepped", steps=LONG, pace=2.0,
                      evaluate=False) as run:
        assert run.wait_until_started(30)
        done = subprocess.run([sys.executable, "-m", "catbus", "swap", "source",
                               "--param", "offset=7", "--run", run.name],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert "source swapped" in done.stdout and "state restored" in done.stdout
        refused = subprocess.run([sys.executable, "-m", "catbus", "swap", "source",
                                  "--param", "offset=oops", "--run", run.name],
                                 capture_output=True, text=True, timeout=60)
        assert refused.returncode == 1 and "offset" in refused.stderr
        assert "Traceback" not in refused.stderr
        run.stop()
        result = run.wait(60)
    assert len(result.swaps) == 1


# -- restarts ----------------------------------------------------------------------------------------
@pytest.mark.timeout(120)
@pytest.mark.parametrize("mode", ["stepped", "parallel"])
def test_kill_9_under_on_failure_restarts_the_node(bus_sandbox, tmp_path, mode):
    """The sink is killed with SIGKILL mid-run; ``restart: on-failure`` starts it again and the
    run completes. Stepped: the sink is stateless, so the run records what inline records."""
    launch = counter_launch()
    launch["nodes"]["sink"].update(restart="on-failure", max_restarts=2, restart_backoff=0.1)
    record = tmp_path / f"{mode}.mcap"
    options = dict(steps=LONG, pace=2.0) if mode == "stepped" else dict(duration=600.0)
    with catbus.start(launch, mode=mode, record=record, evaluate=False, **options) as run:
        assert run.wait_until_started(30)
        wait_until(lambda: node_tick(run.bus, "sink") >= 40, 30, what="sink at tick 40")
        killed = node_pid(run.bus, "sink")
        os.kill(killed, signal.SIGKILL)
        wait_until(lambda: node_pid(run.bus, "sink") not in (killed, 0), 30,
                   what="the restarted sink")
        tick = node_tick(run.bus, "source")
        wait_until(lambda: node_tick(run.bus, "sink") >= tick + 20, 30,
                   what="the restarted sink to step on")
        run.stop()
        result = run.wait(90)
    [restart] = result.swaps
    assert restart["kind"] == "restart" and restart["node"] == "sink"
    assert restart["new"]["incarnation"] == 2 and restart["state"] == "fresh"
    if mode == "parallel":
        assert restart["gap"] is not None and restart["gap"] > 0
        return
    assert restart["gap"] is None
    ticks = [t for t, _ in values(record, "sink/out")]
    assert ticks == list(range(len(ticks)))
    catbus.run(launch, mode="inline", steps=ticks[-1] + 1, record=tmp_path / "inline.mcap",
               evaluate=False)
    assert_prefix(record, tmp_path / "inline.mcap")


@pytest.mark.timeout(120)
def test_a_node_failing_more_often_than_allowed_fails_the_run(bus_sandbox, tmp_path):
    launch = counter_launch()
    launch["nodes"]["sink"].update(restart="on-failure", max_restarts=1, restart_backoff=0.0)
    with catbus.start(launch, mode="stepped", steps=LONG, pace=2.0, evaluate=False) as run:
        assert run.wait_until_started(30)
        first = node_pid(run.bus, "sink")
        os.kill(first, signal.SIGKILL)
        wait_until(lambda: node_pid(run.bus, "sink") not in (first, 0), 30,
                   what="the restarted sink")
        os.kill(node_pid(run.bus, "sink"), signal.SIGKILL)   # once more than allowed
        with pytest.raises(catbus.NodeFailed, match="node sink failed: process was killed"):
            run.wait(60)


@pytest.mark.timeout(120)
def test_a_swap_to_another_class_keeps_the_launch_files_values_it_declares(bus_sandbox,
                                                                            tmp_path):
    """The launch file sets the source's offset to 5; a swap to PlainCounter (another class,
    which declares ``offset`` too) with no parameters runs with offset 5, from its own count."""
    launch = counter_launch()
    launch["nodes"]["source"]["params"] = {"offset": 5}
    record = tmp_path / "other.mcap"
    with catbus.start(launch, mode="stepped", steps=LONG, pace=2.0, record=record,
                      evaluate=False) as run:
        assert run.wait_until_started(30)
        reply = run.swap("source", cls="tests.swap_nodes:PlainCounter")
        wait_until(lambda: node_tick(run.bus, "source") >= reply["tick"] + 10, 30,
                   what="10 ticks of the new source")
        run.stop()
        run.wait(60)
    assert reply["state"] == "fresh"
    counts = [value for _, value in values(record, "source/count")]
    after = [c for c in counts if c["tick"] >= reply["tick"]]
    assert after[0]["count"] == 1 and all(c["value"] == c["count"] + 5 for c in counts)
