"""The pure logic of stepped/inline runs, tested directly (no processes, no sockets): the
schedule, which peers a node waits for, input selection by tick, what a stopping node may claim,
stall detection, and the node driver's checks."""

from __future__ import annotations

import signal
import threading
import time
from fractions import Fraction

import numpy as np
import pytest

from catbus.errors import ConfigError
from catbus.node import Node
from catbus.runtime import lockstep
from catbus.runtime.driver import NodeDriver, OutputError, unsendable_field
from catbus.runtime.inbox import InputBinding, PeerProgress, Received
from catbus.runtime.lockstep import (WINDOW, Position, compute_peers, final_through, frontier,
                                     input_limits, known_end, ready, requirements, stalled_on,
                                     waits_for_me)
from catbus.runtime.schedule import Schedule, build_schedule, exact, fraction_gcd
from catbus.runtime.simclock import sim_time_function
from catbus.runtime.stepdeadline import StepDeadline, StepOverrun
from catbus.wire import codec


# -- schedule ----------------------------------------------------------------------------------
def witness_schedule(steps: int = 6) -> Schedule:
    return build_schedule([("a", 0.1), ("b", 0.2), ("c", 0.3), ("rec", None)], steps=steps,
                          duration=None)


def test_base_tick_is_the_gcd_of_the_periods_as_written() -> None:
    assert exact(0.1) == Fraction(1, 10)
    assert fraction_gcd([Fraction(1, 10), Fraction(3, 20)]) == Fraction(1, 20)
    schedule = witness_schedule()
    assert schedule.base_tick == Fraction(1, 10)
    assert dict(schedule.ticks_per_period) == {"a": 1, "b": 2, "c": 3, "rec": None}


def test_steps_count_periods_of_the_first_periodic_node_and_duration_is_sim_time() -> None:
    assert witness_schedule(6).last_tick == 6
    slow_first = build_schedule([("env", 0.2), ("agent", 0.1)], steps=5, duration=None)
    assert slow_first.last_tick == 10
    by_time = build_schedule([("env", 0.1)], steps=None, duration=1.25)
    assert by_time.last_tick == 12


def test_steps_run_in_tick_then_launch_order_and_reactive_nodes_never_step() -> None:
    steps = witness_schedule(3).steps()
    assert steps == [(0, "a"), (0, "b"), (0, "c"), (1, "a"), (2, "a"), (2, "b"), (3, "a"),
                     (3, "c")]
    assert list(witness_schedule().due_ticks("c")) == [0, 3, 6]
    assert list(witness_schedule().due_ticks("rec")) == []
    assert witness_schedule().is_due("b", 4) and not witness_schedule().is_due("b", 3)


def test_what_a_node_must_see_before_it_steps() -> None:
    schedule = witness_schedule()
    assert schedule.required_tick("b", "a", 4) == 4       # a is earlier: sense, then act
    assert schedule.required_tick("a", "b", 4) == 3       # b is later: the previous tick
    assert schedule.visible("b", "a", 4, 4) and not schedule.visible("a", "b", 4, 4)
    assert schedule.completes_through("c", 3) == 5        # nothing of c's until tick 6
    assert schedule.completes_through("c", 6) == 6        # ... but never past the run


def test_sim_time_is_exact_and_the_fast_path_agrees_bit_for_bit() -> None:
    schedule = build_schedule([("env", 0.01), ("agent", 0.03)], steps=1000, duration=None)
    fast = sim_time_function(schedule)
    assert all(fast(t) == schedule.sim_time(t) for t in range(0, 1001))
    assert schedule.sim_time(300) == 3.0 and schedule.sim_time_ns(7) == 70_000_000


def test_schedule_round_trips_through_the_welcome_message() -> None:
    schedule = witness_schedule()
    assert Schedule.from_dict(schedule.to_dict()) == schedule


@pytest.mark.parametrize("periods, steps, duration, field", [
    ([("rec", None)], 5, None, "nodes"),
    ([("env", 0.1)], None, None, "steps"),
    ([("fast", 0.001), ("slow", 1.5)], 5, None, "nodes"),
])
def test_schedules_that_cannot_run_are_refused(periods: list, steps: int | None,
                                               duration: float | None, field: str) -> None:
    with pytest.raises(ConfigError) as error:
        build_schedule(periods, steps=steps, duration=duration, where="x.yaml")
    assert error.value.field == field


# -- peers -------------------------------------------------------------------------------------
def graph_node(name: str, inputs: list[str], outputs: list[str],
               period: float | None = 0.1) -> dict:
    return {"name": name, "endpoint": f"ipc://{name}", "period": period,
            "inputs": [[t, t, "latest"] for t in inputs], "outputs": [[t, t] for t in outputs]}


GRAPH = [graph_node("env", ["robot/action"], ["robot/sensors", "env/state"]),
         graph_node("robot", ["robot/sensors"], ["robot/action"]),
         graph_node("rec", ["*"], [], period=None)]


def bindings(name: str) -> list[InputBinding]:
    me = next(n for n in GRAPH if n["name"] == name)
    return [InputBinding(*b) for b in me["inputs"]]


def test_peers_are_publishers_of_inputs_and_subscribers_of_outputs() -> None:
    env = compute_peers("env", bindings("env"), GRAPH)
    assert env.publishers == ["robot"] and env.subscribers == ["robot", "rec"]
    assert env.publisher_of == {"robot/action": "robot"}
    assert env.sources == {"robot": {"robot/action"}}
    assert env.reads_from_me == {"robot": frozenset({"robot/sensors"}),
                                 "rec": frozenset({"robot/sensors", "env/state"})}
    assert env.neighbours == {"robot", "rec"}
    rec = compute_peers("rec", bindings("rec"), GRAPH)
    assert rec.publishers == ["env", "robot"] and rec.subscribers == []
    assert rec.sources == {"env": {"robot/sensors", "env/state"}, "robot": {"robot/action"}}


def test_requirements_follow_the_schedule_and_the_window() -> None:
    schedule = build_schedule([("env", 0.1), ("robot", 0.1), ("rec", None)], steps=10,
                              duration=None)
    env = dict(requirements("env", compute_peers("env", bindings("env"), GRAPH), schedule))
    # robot is later (its tick-t action is seen at t + 1) and also reads env: stricter wins.
    assert env == {"robot": -1, "rec": -WINDOW}
    robot = dict(requirements("robot", compute_peers("robot", bindings("robot"), GRAPH),
                              schedule))
    assert robot == {"env": 0, "rec": -WINDOW}
    limits = input_limits("robot", compute_peers("robot", bindings("robot"), GRAPH), schedule)
    assert limits == {"robot/sensors": 0}


def test_ready_needs_every_requirement_and_unknown_peers_have_done_nothing() -> None:
    needs = [("env", 0), ("rec", -WINDOW)]
    assert not ready({}, 0, needs)
    assert ready({"env": PeerProgress(through=0)}, 0, needs)   # rec: -1 >= 0 - 8
    assert not ready({"env": PeerProgress(through=0)}, 1, needs)
    progress = {"env": PeerProgress(through=20), "rec": PeerProgress(through=3)}
    assert ready(progress, 11, needs) and not ready(progress, 12, needs)


def test_reactive_cycles_are_found_for_parallel_ends() -> None:
    graph = [graph_node("ping", ["pong/out"], ["ping/out"], period=None),
             graph_node("pong", ["ping/out"], ["pong/out"], period=None),
             graph_node("clock", [], ["ping/out"])]
    assert waits_for_me("ping", graph) == {"pong"}
    assert waits_for_me("clock", graph) == {"ping", "pong"}


# -- ends and what a stopping node claims --------------------------------------------------------
def test_known_end_is_the_earliest_end_announced() -> None:
    assert known_end(100) == 100
    assert known_end(100, None, 7) == 7
    assert known_end(100, 9, None, 200) == 9


def test_a_node_that_stops_early_claims_only_the_ticks_it_completed() -> None:
    """The Ctrl-C bug: a node stopped at tick 128 said "complete through the last tick" and a
    peer not yet stopped stepped to the end on stale inputs."""
    assert final_through(127, None) == 127          # interrupted: what it did, not the run's end
    assert final_through(-1, None) == -1            # stopped before its first step
    assert final_through(12, 9) == 9                # the episode ended at 9: nothing after it
    assert final_through(5, 9) == 5                 # stopped before the end it knew of


def test_a_reactive_node_handles_ticks_up_to_its_slowest_publisher() -> None:
    assert frontier([4, 7], 100) == 4
    assert frontier([40, 70], 12) == 12
    assert frontier([], 12) == 12
    assert lockstep.reporting_interval(True) == 1
    assert lockstep.reporting_interval(False) == WINDOW // 2


def test_a_stalled_lockstep_names_the_node_the_others_wait_for() -> None:
    listener = Position("listener", 1, 0.1, ("mute",))
    mute = Position("mute", 1, 0.1, ())
    ahead = Position("env", 5, 0.1, ("listener",))
    kwargs = dict(deadline=2.0, heartbeat_interval=0.5)
    assert stalled_on([listener, mute, ahead], unchanged_for=2.5, **kwargs) == "mute"
    assert stalled_on([listener, mute], unchanged_for=1.0, **kwargs) is None    # not long enough
    silent = Position("mute", 1, 1.5, ())                  # in a long step: the heartbeat's job
    assert stalled_on([listener, silent], unchanged_for=5.0, **kwargs) is None
    assert stalled_on([], unchanged_for=5.0, **kwargs) is None


# -- the node driver -----------------------------------------------------------------------------
class Probe(Node):
    inputs = ["~/in"]
    outputs = ["~/out"]
    period = 0.1

    def step(self, t: float, inputs: dict) -> dict:
        self.seen = (self.tick, self.is_reset)
        return getattr(self, "reply", {"~/out": {"x": 1}})

    def on_message(self, topic: str, message: object) -> None:
        self.messages = [*getattr(self, "messages", []), (topic, message, self.tick)]


def make_driver(period: float | None = 0.1) -> tuple[NodeDriver, list]:
    sent: list = []
    driver = NodeDriver(Probe, "probe", inputs=[InputBinding("~/in", "probe/in")],
                        outputs=[("~/out", "probe/out")], period=period, order={"probe": 0},
                        publish=lambda topic, value, tick, t, through: (
                            codec.encode_payload(value), sent.append((topic, tick, through))))
    driver.setup({}, seed=0, run_info={})
    return driver, sent


def test_the_driver_sets_the_tick_and_the_reset_before_every_step() -> None:
    driver, sent = make_driver()
    driver.step(0, 0.0, {"~/in": None}, through=0)
    assert driver.node.seen == (0, True)
    driver.step(3, 0.3, {"~/in": None})
    assert driver.node.seen == (3, False)
    assert sent == [("probe/out", 0, 0), ("probe/out", 3, None)]
    assert driver.stats.steps == 2 and driver.stats.tick == 3


def test_a_restarted_node_does_not_take_its_first_step_for_the_reset() -> None:
    driver, _ = make_driver()
    driver.step(40, 4.0, {"~/in": None})
    assert driver.node.seen == (40, False)


@pytest.mark.parametrize("reply, expected", [
    ({"~/nope": 1}, "node probe: output '~/nope' is not one of its declared outputs ['~/out']"),
    ({"~/out": {"u": [0.0, {1, 2}]}},
     'node probe: output probe/out: field "u"[1]: cannot send a value of type set'),
    ({"~/out": {"a": {"b": object()}}},
     'node probe: output probe/out: field "a"."b": cannot send a value of type object'),
    ({"~/out": {1, 2}}, "node probe: output probe/out: cannot send a value of type set"),
])
def test_what_cannot_be_published_fails_naming_node_topic_and_field(reply: dict,
                                                                     expected: str) -> None:
    driver, _ = make_driver()
    driver.node.reply = reply
    with pytest.raises(OutputError) as error:
        driver.step(1, 0.1, {"~/in": None})
    assert str(error.value) == expected


def test_unsendable_field_finds_arrays_of_objects_and_nothing_in_good_values() -> None:
    assert unsendable_field({"x": np.zeros(3), "y": [1, "a", None, (2.0, b"z")]}) is None
    path, reason = unsendable_field({"x": [np.array([object()] * 2000, dtype=object)]})
    assert path == '"x"[0]' and "dtype object" in reason


def test_an_undecodable_message_is_counted_and_skipped() -> None:
    driver, _ = make_driver(period=None)
    good = Received("probe/in", codec.Header("env", 0, 2, 0.2, 0.0), codec.encode_payload(5)[0],
                    [])
    bad = Received("probe/in", codec.Header("env", 1, 3, 0.3, 0.0), b"\xc1", [])
    driver.deliver([bad, good])
    assert driver.node.messages == [("~/in", 5, 2)]
    assert driver.inbox.malformed == 1


# -- the inline step deadline ------------------------------------------------------------------
@pytest.mark.timeout(20)
def test_a_call_past_the_deadline_is_interrupted_and_the_watchdog_stops_cleanly() -> None:
    before = signal.getsignal(signal.SIGUSR1)
    watch = StepDeadline(0.3)
    assert watch.active
    with pytest.raises(StepOverrun) as overrun:
        with watch:
            watch.begin("quick", 0)
            watch.resume(None)
            watch.begin("slow", 7)
            while True:
                time.sleep(0.01)
    assert (overrun.value.node, overrun.value.tick, overrun.value.what) == ("slow", 7, "step")
    assert signal.getsignal(signal.SIGUSR1) == before
    assert not [t for t in threading.enumerate() if t.name == "catbus-step-deadline"]


def test_the_deadline_is_off_outside_the_main_thread() -> None:
    found: list[bool] = []
    thread = threading.Thread(target=lambda: found.append(StepDeadline(1.0).active))
    thread.start()
    thread.join()
    assert found == [False]
    assert not StepDeadline(None).active
