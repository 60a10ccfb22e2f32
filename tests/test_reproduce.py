"""``catbus reproduce`` and ``catbus verify RUN.mcap``: recorded parallel runs stepped again in
one process from their step log (docs/reproduce.md).

Real parallel runs (real processes, sockets, wall clock) are recorded, then reproduced: every
message outside ``catbus/`` must come out bit for bit, also across a live swap and a restart
after kill -9; a node that reads the wall clock or an unseeded generator is named; a what-if
keeps every unchanged node's recorded step times. The ordering logic is tested alone
(``unit``: no process, no socket).
"""

from __future__ import annotations

import math
import os
import signal
from fractions import Fraction
from pathlib import Path

import pytest

import catbus
from catbus.cli.main import main
from catbus.errors import CatbusError
from catbus.recording.reader import Recording
from catbus.recording.verify import first_difference, verify_recording
from catbus.reproduce.api import Outcome, describe, reproduce
from catbus.reproduce.plan import Consumed, Producers, Step, order_steps, steps_from_log
from catbus.reproduce.streams import Stored, Streams
from tests.conftest import wait_until
from tests.test_swap import ROOT, counter_launch, flat_evade, node_pid, node_tick


#: Wall seconds of the runs with a swap or a restart: they end by themselves (every node's last
#: batch of steps recorded), long enough for the replacement to start on a loaded machine.
SECONDS = 8.0


def user_messages(path: Path) -> int:
    return sum(1 for m in Recording(path).messages(decode=False)
               if not m.topic.startswith("catbus/"))


def step_times(path: Path) -> dict[str, list[tuple[int, int, float]]]:
    """node -> [(incarnation, cycle, t)] from a recording's step log."""
    steps = steps_from_log((m.incarnation, m.value)
                           for m in Recording(path).messages("catbus/steps"))
    return {node: [(s.incarnation, s.cycle, s.t) for s in entries]
            for node, entries in steps.items()}


# -- whole runs ---------------------------------------------------------------------------------
@pytest.mark.timeout(180)
def test_a_parallel_flat_evade_run_reproduces_bit_for_bit(bus_sandbox, tmp_path, capsys):
    record, again = tmp_path / "run.mcap", tmp_path / "again.mcap"
    catbus.run(flat_evade(), mode="parallel", steps=100, record=record, evaluate=False)
    assert set(step_times(record)) == {"env", "robot", "human"}
    outcome = reproduce(record, record=again)
    assert outcome.exact and outcome.differences == 0, describe(outcome)
    assert outcome.compared == user_messages(record) and not outcome.unchecked
    # The reproduction's own recording holds the same messages, and its own step log.
    assert first_difference(record, again) is None
    assert step_times(again) == step_times(record)
    assert main(["verify", str(record)]) == 0
    assert capsys.readouterr().out.startswith("identical:")
    assert main(["verify", str(again)]) == 0


@pytest.mark.timeout(180)
def test_a_what_if_keeps_the_step_times_of_the_unchanged_nodes(bus_sandbox, tmp_path, capsys):
    record, what_if = tmp_path / "run.mcap", tmp_path / "what_if.mcap"
    catbus.run(flat_evade(), mode="parallel", steps=100, record=record, evaluate=False)
    assert main(["reproduce", str(record), "--set", "robot.feedback.kp=20",
                 "--record", str(what_if)]) == 0
    assert capsys.readouterr().out.startswith("what-if:")
    original, changed = step_times(record), step_times(what_if)
    assert changed == original   # every node (the changed one too) at its recorded times
    # The robot acts otherwise, and the world answers: the environment's states differ.
    def data(path, topic):
        return [m.data for m in Recording(path).messages(topic, decode=False)]
    assert data(what_if, "robot/action") != data(record, "robot/action")
    assert data(what_if, "env/state") != data(record, "env/state")
    assert len(data(what_if, "env/state")) == len(data(record, "env/state"))
    assert main(["eval", str(what_if)]) == 0   # scored like any recording
    assert "min_distance" in capsys.readouterr().out
    # A what-if that changes nothing (the same class, by --swap) gives the recording back:
    # consumption by position is consumption by identity when every node publishes as before.
    same = tmp_path / "same.mcap"
    assert main(["reproduce", str(record), "--swap",
                 "robot=nodes.flat_evade.agent:ModelBasedAgent", "--record", str(same)]) == 0
    assert first_difference(record, same) is None


@pytest.mark.timeout(180)
def test_a_live_swap_in_parallel_reproduces_bit_for_bit(bus_sandbox, tmp_path):
    record = tmp_path / "swap.mcap"
    # The run ends by itself (not stopped): every node's last batch of steps is recorded.
    with catbus.start(flat_evade(), mode="parallel", duration=SECONDS, record=record,
                      evaluate=False) as run:
        assert run.wait_until_started(30)
        wait_until(lambda: node_tick(run.bus, "robot") >= 30, 30, what="robot at cycle 30")
        reply = run.swap("robot", params={"safe_controller": "Unsafe"})
        result = run.wait(60)
    assert reply["state"] == "restored" and not result.interrupted
    assert {inc for inc, _, _ in step_times(record)["robot"]} == {1, 2}
    outcome = reproduce(record)
    assert outcome.exact, describe(outcome)
    assert outcome.compared == user_messages(record) and not outcome.unchecked


@pytest.mark.timeout(180)
def test_a_restart_after_kill_reproduces_what_its_step_log_covers(bus_sandbox, tmp_path):
    """robot killed with SIGKILL and restarted fresh: every message of a step in the step log
    is reproduced bit for bit; the killed process's last, unsent batch of steps is lost, and
    the messages of those steps are named as not checked (their readers are given them from
    the recording)."""
    launch = flat_evade()
    launch["nodes"]["robot"].update(restart="on-failure", max_restarts=2, restart_backoff=0.1)
    record = tmp_path / "restart.mcap"
    with catbus.start(launch, mode="parallel", duration=SECONDS, record=record,
                      evaluate=False) as run:
        assert run.wait_until_started(30)
        wait_until(lambda: node_tick(run.bus, "robot") >= 40, 30, what="robot at cycle 40")
        killed = node_pid(run.bus, "robot")
        os.kill(killed, signal.SIGKILL)
        wait_until(lambda: node_pid(run.bus, "robot") not in (killed, 0), 30,
                   what="the restarted robot")
        result = run.wait(60)
    assert not result.interrupted and result.swaps[0]["kind"] == "restart"
    assert {inc for inc, _, _ in step_times(record)["robot"]} == {1, 2}
    outcome = reproduce(record)
    assert outcome.exact, describe(outcome)
    assert outcome.compared + len(outcome.unchecked) == user_messages(record)
    # Only the killed process's messages go unchecked: those of its steps after its last batch.
    assert all(line.startswith("robot robot/action") and "(incarnation 1)" in line
               for line in outcome.unchecked), outcome.unchecked[:5]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("cls", ["Unseeded", "WallClock"])
def test_verify_names_the_first_node_that_does_not_reproduce(bus_sandbox, tmp_path, cls):
    launch = counter_launch()
    launch["nodes"]["noisy"] = {"class": f"tests.reproduce_nodes:{cls}",
                                "remap": {"~/in": "source/count"}}
    record = tmp_path / "noisy.mcap"
    catbus.run(launch, mode="parallel", duration=0.5, record=record, evaluate=False)
    lines: list[str] = []
    assert verify_recording(record, out=lines.append) == 1
    assert lines[0].startswith("DIFFERENT: first at node noisy, noisy/out message seq ")
    assert main(["verify", str(record)]) == 1


@pytest.mark.timeout(120)
def test_a_reactive_node_is_not_run_again_its_readers_get_its_recorded_messages(
        bus_sandbox, tmp_path):
    launch = counter_launch()
    launch["nodes"] = {"source": launch["nodes"]["source"],
                       "relay": {"class": "tests.toy_nodes:Relay",
                                 "remap": {"~/in": "source/count"}},
                       "sink": {"class": "tests.swap_nodes:Echo",
                                "remap": {"~/in": "relay/out"}}}
    record = tmp_path / "relay.mcap"
    catbus.run(launch, mode="parallel", duration=0.5, record=record, evaluate=False)
    again = tmp_path / "again.mcap"
    outcome = reproduce(record, record=again)
    assert outcome.exact, describe(outcome)
    assert outcome.nodes == ["source", "sink"] and outcome.from_recording > 0
    assert first_difference(record, again) is None   # the relayed messages written too
    relayed = sum(1 for m in Recording(record).messages("relay/out", decode=False))
    assert outcome.compared == user_messages(record) - relayed and not outcome.unchecked


@pytest.mark.timeout(60)
def test_recordings_that_cannot_be_reproduced_say_why_in_one_line(tmp_path, capsys):
    stepped = tmp_path / "inline.mcap"
    catbus.run(counter_launch(), mode="inline", steps=5, record=stepped, evaluate=False)
    with pytest.raises(CatbusError, match="a inline recording; reproduce replays parallel"):
        reproduce(stepped)
    assert main(["reproduce", str(tmp_path / "none.mcap")]) == 2
    assert main(["verify", str(stepped), "--seed", "3"]) == 2
    assert main(["reproduce", str(stepped), "--swap", "robot"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "--swap: robot: write NODE=module:Class" in err


# -- the order of steps (unit) ------------------------------------------------------------------
def step(node: str, index: int, t: float, *consumed: Consumed | None, inc: int = 1) -> Step:
    return Step(node, inc, index, index, t, 0.001, tuple(consumed),
                tuple(c.topic if c else "x" for c in consumed))


@pytest.mark.unit
def test_steps_from_log_orders_each_node_by_incarnation_then_cycle():
    batches = [(2, {"node": "a", "topics": ["t"], "steps": [[7, 0.07, 0.0, [None]]]}),
               (1, {"node": "a", "topics": ["t"],
                    "steps": [[5, 0.05, 0.0, [["b", 1, 3, 2]]], [6, 0.06, 0.0, [None]]]})]
    [first, second, third] = steps_from_log(batches)["a"]
    assert [(s.incarnation, s.cycle, s.index) for s in (first, second, third)] == \
        [(1, 5, 0), (1, 6, 1), (2, 7, 2)]
    assert first.consumed == (Consumed("t", "b", 1, 3, 2),)
    with pytest.raises(CatbusError, match="not a step log"):
        steps_from_log([(1, {"node": "a"})])


@pytest.mark.unit
def test_a_step_goes_after_the_steps_that_published_what_it_consumed():
    """b's step at t=0.001 consumed what a published at t=0.002 (a's clock ran ahead): it
    waits for that step, although it was recorded earlier; otherwise the earliest goes first."""
    a = [step("a", 0, 0.0), step("a", 1, 0.002)]
    b = [step("b", 0, 0.001, Consumed("a/x", "a", 1, 1, 1))]
    producers = Producers({"a": a, "b": b}, {("a/x", "a", 1, 0): 0, ("a/x", "a", 1, 1): 2_000_000})
    needs = {b[0]: [("a", producers.step_of(b[0].consumed[0]))]}
    ordered = order_steps({"a": a, "b": b}, lambda s: needs.get(s, []), {"a": 0, "b": 1})
    assert [(s.node, s.index) for s in ordered] == [("a", 0), ("a", 1), ("b", 0)]
    ordered = order_steps({"a": a, "b": b}, lambda s: [], {"a": 0, "b": 1})
    assert [(s.node, s.index) for s in ordered] == [("a", 0), ("b", 0), ("a", 1)]


@pytest.mark.unit
def test_a_message_the_recording_lost_is_placed_by_the_next_one_it_has():
    a = [step("a", i, i / 100) for i in range(4)]
    recorded = {("a/x", "a", 1, 0): 0, ("a/x", "a", 1, 2): 20_000_000}   # seq 1 lost
    producers = Producers({"a": a}, recorded)
    assert producers.step_of(Consumed("a/x", "a", 1, 1, 1)) == 2
    assert producers.step_of(Consumed("a/x", "a", 1, 5, 1)) == 3   # after every recorded one
    assert producers.step_of(Consumed("a/x", "z", 1, 0, 1)) is None   # not a logged node


@pytest.mark.unit
def test_dependencies_in_a_circle_are_refused():
    a = [step("a", 0, 0.0)]
    b = [step("b", 0, 0.0)]
    with pytest.raises(CatbusError, match="cannot be ordered"):
        order_steps({"a": a, "b": b}, lambda s: [("b" if s.node == "a" else "a", 0)], {})


@pytest.mark.unit
def test_streams_give_by_identity_and_fall_back_to_the_newest_published_by_then():
    streams = Streams()
    for seq, by_step in [(0, 0), (1, 1), (2, 3)]:
        streams.add("t", Stored((1, seq), [b""], by_step, seq))
    wanted = Consumed("t", "p", 1, 2, 1)
    assert streams.choose(wanted, 3).key == (1, 2)
    assert streams.choose(wanted, 2).key == (1, 1)   # published later than its step: by then
    assert streams.choose(wanted, None).key == (1, 2)
    assert [s.key for s in streams.between("t", (1, 0), (1, 2), 5)] == [(1, 1), (1, 2)]
    assert [s.key for s in streams.between("t", None, (1, 2), 1)] == [(1, 2)]


@pytest.mark.unit
def test_the_report_says_what_was_lost_and_not_checked():
    outcome = Outcome(compared=3, losses=["env env/state: 2 lost"],
                      unchecked=["robot robot/action seq 9 (incarnation 1): not in the recording"],
                      nodes=["env", "robot"])
    text = "\n".join(describe(outcome))
    assert "reproduced: 3 messages" in text and "2 lost" in text and "not checked (1)" in text


def test_the_docs_name_the_commands():
    text = (ROOT / "docs" / "cli.md").read_text()
    assert "catbus reproduce" in text and "verify RUN.mcap" in text


@pytest.mark.timeout(180)
def test_a_recorded_latency_replays_the_step_durations_of_a_parallel_run(bus_sandbox, tmp_path):
    """``latency: {recorded: RUN.mcap}``: the robot's measured durations, in order, delay its
    outputs in an inline run; a recording without a step log is refused with the reason."""
    from catbus.runtime.latency import plans_for
    from catbus.spec.runinfo import schedule_for

    record = tmp_path / "run.mcap"
    catbus.run(flat_evade(), mode="parallel", steps=50, record=record, evaluate=False)
    durations = [s.duration for s in steps_from_log(
        (m.incarnation, m.value) for m in Recording(record).messages("catbus/steps"))["robot"]]
    spec = catbus.load(flat_evade(), mode="inline", steps=50,
                       overrides=[f"robot.latency={{recorded: {record}}}"])
    latency = spec.node("robot").latency
    assert latency["durations"] == durations and latency["recorded"] == str(record)
    schedule = schedule_for(spec)
    plan = plans_for({"robot": latency}, spec.seed, schedule)["robot"]
    expected, previous = [], 0   # by hand: ceil(duration / 10 ms), never before the last
    for tick, duration in enumerate(durations[:10]):
        previous = max(tick + math.ceil(Fraction(repr(duration)) / Fraction(1, 100)), previous)
        expected.append(previous)
    assert [plan.visible(tick) for tick in range(10)] == expected
    result = catbus.run(spec, record=tmp_path / "inline.mcap", evaluate=False)
    assert result.nodes["robot"]["steps"] == 51
    inline = tmp_path / "plain.mcap"
    catbus.run(counter_launch(), mode="inline", steps=3, record=inline, evaluate=False)
    with pytest.raises(CatbusError, match="latency.recorded: .*a inline recording"):
        catbus.load(flat_evade(), mode="inline",
                    overrides=[f"robot.latency={{recorded: {inline}}}"])
