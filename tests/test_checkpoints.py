"""Checkpoints (``checkpoint: N``): a node killed with kill -9 under ``restart: on-failure``
goes on from its latest checkpoint, and a stepped run records what inline records, message by
message, as if it had never died.

Real runs (flat_evade's environment, robot and human killed at random ticks; one of them
twice), and the pure parts without any process: the registry keeping checkpoints and handing
them to a restarted process (``tests/control_sim.py``), the bytes of a checkpoint, the choice of
the one to go on from, and the launch-time checks (retention, ``snapshot``/``restore``).
"""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

import numpy as np
import pytest

import catbus
from catbus.client import query_graph
from catbus.control.checkpoints import Checkpoints, state_text
from catbus.control.instructions import Send
from catbus.errors import ConfigError
from catbus.recording.reader import Recording
from catbus.recording.verify import first_difference
from catbus.runtime import checkpoints
from catbus.runtime.inbox import Admission
from catbus.runtime.schedule import build_schedule
from catbus.testing import NodeHarness
from catbus.wire import messages as msg
from catbus.wire.protocol import SWAP_TOPIC
from nodes.flat_evade.agent import ModelBasedAgent
from nodes.flat_evade.env import FlatEvadeEnv
from tests.conftest import wait_until
from tests.test_swap import counter_launch, flat_evade, node_pid, node_tick

#: Steps of every real run here (of the environment, 0.01 s each) and its pace: long enough to
#: kill a node at a random tick, short enough to end on its own.
STEPS = 700
PACE = 2.0
EVERY = 50
#: The random ticks are drawn from this seed, and printed: a failure names them.
SEED = int(os.environ.get("CATBUS_CHECKPOINT_SEED", "0"))


def checkpointed(**node) -> dict:
    """flat_evade with every node checkpointing every 50 steps and restarting on failure."""
    launch = flat_evade()
    for entry in launch["nodes"].values():
        entry.update(checkpoint=EVERY, restart="on-failure", max_restarts=3,
                     restart_backoff=0.1, **node)
    return launch


@pytest.fixture(scope="module")
def inline_reference(tmp_path_factory) -> Path:
    """The recording every stepped run with kills must equal (one process, no socket)."""
    path = tmp_path_factory.mktemp("inline") / "inline.mcap"
    catbus.run(checkpointed(), mode="inline", steps=STEPS, record=path, evaluate=False)
    return path


def kill_at(run, name: str, tick: int) -> float:
    """kill -9 of ``name``'s process once it has reached ``tick``; waits for its new process
    to have taken the node's place (its restart done: the graph names none pending), so that
    a later kill hits that process stepping, not one still joining -- whose ``tick`` in the
    graph is its predecessor's, possibly past the next kill's already. Returns the wall time
    of the kill."""
    wait_until(lambda: node_tick(run.bus, name) >= tick, 60, what=f"{name} at tick {tick}")
    pid = node_pid(run.bus, name)
    os.kill(pid, signal.SIGKILL)
    killed = time.time()
    wait_until(lambda: (entry := node_entry(run.bus, name))["pid"] not in (pid, 0)
               and not entry["pending"], 60, what=f"a new process of {name} to take its place")
    return killed


def node_entry(bus: str, name: str) -> dict:
    """``name``'s entry in the run's graph."""
    return next(n for n in query_graph(bus)["nodes"] if n["name"] == name)


def run_with_kills(path: Path, kills: list[tuple[str, int]]) -> tuple[catbus.RunResult, list]:
    """A paced stepped run of :func:`checkpointed` in which each ``(node, tick)`` is killed in
    turn, and which then runs to its end. Returns its result and the wall time of each kill."""
    times = []
    with catbus.start(checkpointed(), mode="stepped", steps=STEPS, pace=PACE, record=path,
                      evaluate=False) as run:
        assert run.wait_until_started(30)
        for name, tick in kills:
            times.append(kill_at(run, name, tick))
        result = run.wait(120)
    return result, times


def restart_ticks(rng: random.Random, count: int = 1) -> list[int]:
    ticks = sorted(rng.sample(range(60, STEPS - 200), count))
    print(f"kill ticks {ticks} (CATBUS_CHECKPOINT_SEED={SEED})")
    return ticks


def assert_restored(result: catbus.RunResult, kills: list[tuple[str, int]]) -> None:
    """Every kill was answered by a restart from a checkpoint, none spliced the episode."""
    assert result.spliced == []
    assert [record["node"] for record in result.swaps] == [name for name, _ in kills]
    for record, (_, tick) in zip(result.swaps, kills):
        assert record["kind"] == "restart"
        state = record["state"]
        assert state.startswith("checkpoint (tick "), state
        restored = int(state[len("checkpoint (tick "):-1])
        assert restored % EVERY == 0 and restored <= record["tick"], record
        assert record["tick"] >= tick   # where the old process had stopped, at least


# -- real runs: kill -9 at random ticks ----------------------------------------------------------
@pytest.mark.timeout(240)
@pytest.mark.parametrize("name", ["env", "robot", "human"])
def test_a_killed_node_goes_on_from_its_checkpoint_and_stepped_equals_inline(
        name, bus_sandbox, tmp_path, inline_reference):
    rng = random.Random(f"{SEED}-{name}")
    [tick] = restart_ticks(rng)
    record = tmp_path / "stepped.mcap"
    result, [killed] = run_with_kills(record, [(name, tick)])
    assert_restored(result, [(name, tick)])
    difference = first_difference(inline_reference, record)
    assert difference is None, difference
    [restart] = result.swaps
    print(f"{name}: killed once past tick {tick}, {restart['state']}, stepping again where it stopped "
          f"(tick {restart['tick']}) {restart['at'] - killed:.2f} s after the kill")
    [event] = [m.value for m in Recording(record).messages("catbus/swap")]
    assert event["state"] == restart["state"] and event["node"] == name


@pytest.mark.timeout(300)
def test_two_kills_of_one_node_both_go_on_from_a_checkpoint(bus_sandbox, tmp_path,
                                                            inline_reference):
    rng = random.Random(f"{SEED}-twice")
    # The second kill waits for the new process to be well past the first restart (the tick
    # a node's heartbeat reports may lag by half a second, 100 ticks at this pace).
    first = rng.randrange(60, 250)
    second = first + rng.randrange(200, 300)
    print(f"kill ticks {[first, second]} (CATBUS_CHECKPOINT_SEED={SEED})")
    kills = [("env", first), ("env", second)]
    record = tmp_path / "twice.mcap"
    result, _ = run_with_kills(record, kills)
    assert_restored(result, kills)
    assert [r["new"]["incarnation"] for r in result.swaps] == [2, 3]
    difference = first_difference(inline_reference, record)
    assert difference is None, difference


@pytest.mark.timeout(120)
def test_parallel_restart_goes_on_from_the_latest_checkpoint_and_reports_its_gap(bus_sandbox,
                                                                                 tmp_path):
    """Parallel: not exact (the run's clock went on), so the restart reports the gap in seconds
    and how many cycles its state went back (``rewound``, in the recording's event)."""
    launch = checkpointed()
    record = tmp_path / "parallel.mcap"
    with catbus.start(launch, mode="parallel", duration=600.0, evaluate=False,
                      record=record) as run:
        assert run.wait_until_started(30)
        kill_at(run, "env", 120)
        tick = node_tick(run.bus, "env")
        wait_until(lambda: node_tick(run.bus, "env") >= tick + 50, 60,
                   what="the restarted env to step on")
        run.stop()
        result = run.wait(60)
    [restart] = result.swaps
    assert restart["state"].startswith("checkpoint (tick ") and restart["gap"] is not None
    assert restart["gap"] >= 0 and result.spliced == []
    assert "gap" in catbus.control.describe(restart)
    [event] = [m.value for m in Recording(record).messages("catbus/swap")]
    restored = int(restart["state"][len("checkpoint (tick "):-1])
    assert event["state"] == restart["state"] and event["rewound"] == event["tick"] - restored
    assert restored % EVERY == 0 and event["rewound"] >= 0


# -- launch-time checks ---------------------------------------------------------------------------
def test_a_checkpoint_interval_longer_than_retention_is_refused_at_launch():
    launch = checkpointed()
    launch["nodes"]["env"]["checkpoint"] = 5000
    with pytest.raises(ConfigError, match=r"nodes\.env\.checkpoint: every 5000 steps needs its "
                                          r"publishers to retain 10010 ticks .* checkpoint at "
                                          r"most every 495 steps"):
        catbus.load(launch, mode="stepped")
    catbus.load(launch, mode="parallel")   # parallel restarts are not exact: no retention


def test_a_class_without_snapshot_and_restore_is_refused_at_launch():
    launch = counter_launch()
    launch["nodes"]["sink"]["checkpoint"] = 10
    with pytest.raises(ConfigError, match=r"nodes\.sink\.checkpoint: Echo has no snapshot or "
                                          r"restore\(\), so a restart could not go on"):
        catbus.load(launch)


def test_checkpoint_must_be_a_positive_whole_number():
    launch = checkpointed()
    launch["nodes"]["robot"]["checkpoint"] = 0
    with pytest.raises(ConfigError, match=r"nodes\.robot\.checkpoint"):
        catbus.load(launch)


def test_the_checkpoint_key_reaches_the_run_and_its_document():
    spec = catbus.load(checkpointed(), mode="stepped")
    assert spec.node("env").checkpoint == EVERY
    assert spec.document["nodes"]["env"]["checkpoint"] == EVERY


# -- the pure parts -------------------------------------------------------------------------------
@pytest.mark.unit
def test_retention_covers_two_intervals_past_the_lockstep_horizon():
    schedule = build_schedule([("env", 0.01), ("robot", 0.02)], steps=10, duration=None)
    horizon = checkpoints.retention(schedule, {})
    assert checkpoints.retention(schedule, {"checkpoints": {"robot": 50}}) == horizon + 200
    assert checkpoints.retention_problem("robot", 50, schedule) is None
    assert "at most every" in checkpoints.retention_problem("robot", 500, schedule)


@pytest.mark.unit
def test_a_checkpoint_carries_the_nodes_state_and_its_generator_exactly():
    """Env and robot restored from a checkpoint at tick 20 publish, byte for byte, what the
    ones that went on publish (legacy RandomState included)."""
    from catbus.wire import codec

    def encoded(value):
        payload, buffers = codec.encode_payload(value)
        return codec.record_bytes(payload, buffers)

    for rng in ("generator", "legacy"):
        with NodeHarness(FlatEvadeEnv, name="env", params={"rng": rng}) as env, \
                NodeHarness(FlatEvadeEnv, name="env", params={"rng": rng}) as env2, \
                NodeHarness(ModelBasedAgent, name="robot") as robot, \
                NodeHarness(ModelBasedAgent, name="robot") as robot2:
            action = None
            went_on = []
            for tick in range(40):
                if tick == 20:
                    for old, new in ((env, env2), (robot, robot2)):
                        state = checkpoints.unpack(checkpoints.pack(old.node, {"x": 1.0},
                                                                    {"t": 3}))
                        assert state["seq"] == {"t": 3} and state["scores"] == {"x": 1.0}
                        checkpoints.apply(new.node, state)
                    restored_action = action
                sensors = env.step({"robot/action": action}, tick=tick)
                action = robot.step({"~/sensors": sensors["robot/sensors"]}, tick=tick)["~/action"]
                if tick >= 20:
                    went_on.append(encoded([sensors, action]))
            action = restored_action
            again = []
            for tick in range(20, 40):
                sensors = env2.step({"robot/action": action}, tick=tick)
                action = robot2.step({"~/sensors": sensors["robot/sensors"]},
                                     tick=tick)["~/action"]
                again.append(encoded([sensors, action]))
            assert again == went_on, rng
            assert robot2.scores == {"x": 1.0}


@pytest.mark.unit
def test_the_generators_128_bit_state_survives_the_codec():
    generator = np.random.default_rng(7)
    generator.random(3)
    state = generator.bit_generator.state
    assert checkpoints._big_ints(checkpoints._small_ints(state)) == state


@pytest.mark.unit
def test_a_restarted_process_goes_on_from_the_latest_checkpoint_no_later_than_its_readers():
    kept = [msg.Checkpoint(tick=100, state=b"a"), msg.Checkpoint(tick=150, state=b"b")]
    assert checkpoints.choose(kept, 170).tick == 150
    assert checkpoints.choose(kept, 149).tick == 100   # a reader lacks tick 149: go back
    assert checkpoints.choose([], 30) == msg.Checkpoint(tick=0, state=None)


@pytest.mark.unit
def test_a_tick_the_old_process_sent_only_in_part_is_not_admitted_twice():
    """kill -9 half-way through publishing tick 452: a reader has it on ``a`` but not on ``b``
    (so it has completed 451). The restored process steps 450.. again with the same sequence
    numbers: the reader takes from it ``b`` of 452 and everything from 453, never ``a`` of 452
    a second time (the recording had tick 452 twice)."""
    completed = {"env": -1}
    gate = Admission(lambda publisher: completed.get(publisher, -1))
    gate.last_tick = 700   # stepped
    for tick in range(453):
        assert gate.admit("a", "env", tick, tick, 1)
        if tick < 452:
            assert gate.admit("b", "env", tick, tick, 1)
    completed["env"] = 451
    again = {topic: [tick for tick in range(450, 455) if gate.admit(topic, "env", tick, tick, 2)]
             for topic in ("a", "b")}
    assert again == {"a": [453, 454], "b": [452, 453, 454]}


def test_a_restarted_processs_swap_event_is_admitted_by_a_reader_that_had_its_tick():
    """A fresh restart goes on from the first tick its readers lack -- the lowest of theirs:
    a reader further on (the recorder) drops the new process's data of the ticks it has, but
    not its one ``catbus/swap`` event at that tick, or the recording would miss the splice."""
    completed = {"source": -1}
    gate = Admission(lambda publisher: completed.get(publisher, -1))
    gate.last_tick = 700   # stepped
    assert all(gate.admit("source/count", "source", tick, tick, 1) for tick in range(96))
    completed["source"] = 95
    assert gate.admit(SWAP_TOPIC, "source", 0, 93, 2)
    assert [tick for tick in range(93, 98) if gate.admit("source/count", "source", tick - 93,
                                                         tick, 2)] == [96, 97]
    assert not gate.admit(SWAP_TOPIC, "source", 0, 93, 2), "a copy of it is still a duplicate"


def test_the_registry_keeps_the_two_latest_checkpoints_per_node():
    kept = Checkpoints()
    for tick in (50, 100, 150):
        kept.keep("env", msg.Checkpoint(tick=tick, state=bytes([tick])))
    assert [p.tick for p in kept.kept["env"]] == [100, 150]
    kept.keep("env", msg.Checkpoint(tick=100, state=b"again"))   # a restored process
    assert [(p.tick, p.state) for p in kept.kept["env"]] == [(100, b"again")]
    assert kept.latest("env") == 100 and kept.latest("robot") is None
    assert state_text(100) == "checkpoint (tick 100)"


@pytest.mark.unit
def test_a_restarted_process_gets_the_kept_checkpoints_after_its_welcome():
    """The control plane, event by event: the node's checkpoints are kept; its restarted
    process gets them right after its ``welcome``; the record and no splice say it went on
    from one."""
    from tests.test_control_plane import ON_FAILURE, running

    sim, procs = running(restart={"env": ON_FAILURE})
    for tick in (50, 100):
        sim.send(procs["env"], msg.Checkpoint(tick=tick, state=b"state %d" % tick))
    sim.beat(procs["env"], 130)
    sim.exited(procs["env"])
    sim.advance(0.5)
    new = sim.register(sim.spawned("env", restart=True), restart=True)
    welcome = next(i for i, m in enumerate(new.inbox) if isinstance(m, msg.Welcome))
    sent = [m for m in new.inbox[welcome:] if isinstance(m, msg.Checkpoint)]
    assert [(p.tick, p.state) for p in sent] == [(50, b"state 50"), (100, b"state 100")]
    sim.send(new, msg.Ready())
    sim.send(new, msg.Swapped(tick=131, restored=True, checkpoint=100))
    [record] = sim.state.swaps
    assert record["state"] == "checkpoint (tick 100)" and record["tick"] == 131
    assert sim.state.spliced == []


@pytest.mark.unit
def test_a_restarted_process_of_another_class_gets_no_checkpoint():
    from tests.test_control_plane import ON_FAILURE, running

    sim, procs = running(restart={"env": ON_FAILURE})
    sim.send(procs["env"], msg.Checkpoint(tick=50, state=b"x"))
    sim.exited(procs["env"])
    sim.advance(0.5)
    new = sim.register(sim.spawned("env", restart=True), restart=True, cls="other:Env")
    assert new.got(msg.Checkpoint) == []


@pytest.mark.timeout(240)
def test_a_node_on_an_only_host_goes_on_from_its_checkpoint(bus_sandbox, tmp_path):
    """``catbus launch --only source`` runs the (stateful) source on "another host" (this one,
    over loopback TCP); its checkpoints go to the run's registry, and its host's restart after
    a kill -9 goes on from the latest: the recording is a prefix of inline's."""
    import subprocess
    import sys

    import yaml

    from tests.conftest import ROOT
    from tests.test_swap import LONG, assert_prefix, values
    from tests.test_tcp import free_port

    port = free_port()
    launch = counter_launch(bus=f"tcp://127.0.0.1:{port}")
    launch["nodes"]["source"].update(remote=True, restart="on-failure", max_restarts=2,
                                     restart_backoff=0.1, checkpoint=20)
    path = tmp_path / "only.yaml"
    path.write_text(yaml.safe_dump(launch, sort_keys=False))   # the launch order is the order
    record = tmp_path / "only.mcap"
    with catbus.start(path, mode="stepped", steps=LONG, pace=2.0, record=record,
                      evaluate=False, rejoin_timeout=30.0) as run:
        share = subprocess.Popen([sys.executable, "-m", "catbus", "launch", str(path), "--only",
                                  "source", "--bus", f"tcp://127.0.0.1:{port}"], cwd=ROOT,
                                 stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
        try:
            assert run.wait_until_started(60)
            kill_at(run, "source", 30)
            tick = node_tick(run.bus, "source")
            wait_until(lambda: node_tick(run.bus, "source") >= tick + 60, 60,
                       what="the restarted source to step on")
            run.stop()
            result = run.wait(60)
        finally:   # it ends with the run's end; on a failure, what it said is shown
            print(share.communicate(timeout=60)[1])
    assert share.returncode == 0
    [restart] = result.swaps
    assert restart["node"] == "source" and restart["state"].startswith("checkpoint (tick ")
    assert result.spliced == []
    counts = [value["count"] for _, value in values(record, "source/count")]
    assert counts == list(range(1, len(counts) + 1))   # no count lost, repeated or reset
    catbus.run(counter_launch(), mode="inline", steps=len(counts) + 1,
               record=tmp_path / "inline.mcap", evaluate=False)
    assert_prefix(record, tmp_path / "inline.mcap")
