"""What a node's call tells its runner (:class:`~catbus.runtime.driver.StepOutcome`), the one
end-of-episode path of the process loops, what a joining process reports while it waits, and a
swap's replacement whose old process died (a takeover of kind ``restart``).

Unit tests: no process is started and no socket is opened (a :class:`ProcessLink` is built
without its constructor, with only the fields a test needs)."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace
from typing import Any

import pytest

from catbus.runtime.joining import waiting_for
from catbus.runtime.nodestate import replace_node
from catbus.runtime.takeover import take_over as take_over_from

from catbus.node import Node
from catbus.runtime.driver import CARRIED, NOT_CARRIED, NodeDriver, OutputError, StepOutcome
from catbus.runtime.inbox import InputBinding, Received
from catbus.runtime.link import ProcessLink
from catbus.runtime.loops import stepped
from catbus.runtime.lockstep import Peers
from catbus.runtime.process import NodeRuntime
from catbus.runtime.schedule import build_schedule
from catbus.runtime.stats import NodeStats
from catbus.wire import codec
from catbus.wire import messages as msg
from catbus.wire.protocol import SWAP_TOPIC

pytestmark = pytest.mark.unit


class Ender(Node):
    """Publishes ``~/out`` (and ``~/side`` when asked); ends the episode at tick ``end_at``
    and, for reactive use, on a message whose value is ``"end"``."""

    inputs = ["~/in"]
    outputs = ["~/out", "~/side"]
    period = 0.1
    end_at = -1
    reply: Any = None

    def step(self, t: float, inputs: dict) -> dict | None:
        if self.tick == self.end_at:
            self.end_episode("done here")
        return {"~/out": {"tick": self.tick}} if self.reply is None else self.reply

    def on_message(self, topic: str, message: Any) -> dict | None:
        if message == "end":
            self.end_episode("told to end")
        return None


def make_driver(period: float | None = 0.1, carry: bool = True) -> tuple[NodeDriver, list]:
    """A driver whose ``publish`` records (topic, tick, through); with ``carry`` (stepped), one
    neighbour reads ``ender/out``, so a step publishing it carries our progress."""
    sent: list = []
    driver = NodeDriver(Ender, "ender", inputs=[InputBinding("~/in", "ender/in")],
                        outputs=[("~/out", "ender/out"), ("~/side", "ender/side")],
                        period=period, order={"ender": 0},
                        publish=lambda topic, value, tick, t, through: (
                            codec.encode_payload(value), sent.append((topic, tick, through))))
    driver.setup({}, seed=0, run_info={})
    if carry:
        driver.plan_carrying([frozenset({"ender/out"})])
    return driver, sent


def received(tick: int, value: Any, seq: int = 0) -> Received:
    return Received("ender/in", codec.Header("src", seq, tick, tick / 10, 0.0),
                    codec.encode_payload(value)[0], [])


# -- the outcome value -------------------------------------------------------------------------
def test_an_outcome_is_immutable_and_has_no_truth_value() -> None:
    outcome = StepOutcome(False, "why")
    with pytest.raises(dataclasses.FrozenInstanceError):
        outcome.ended = None   # type: ignore[misc]
    with pytest.raises(TypeError, match="no truth value"):
        bool(CARRIED)
    assert CARRIED == StepOutcome(True) and NOT_CARRIED == StepOutcome(False, None)
    assert (CARRIED.carried, CARRIED.ended, NOT_CARRIED.carried) == (True, None, False)


# -- step ---------------------------------------------------------------------------------------
def test_steps_that_do_not_end_return_the_preallocated_constants() -> None:
    driver, sent = make_driver()
    assert driver.step(0, 0.0, {"~/in": None}, through=0) is CARRIED
    driver.node.reply = {"~/side": 1}            # the neighbour reads none of it: not carried
    assert driver.step(1, 0.1, {"~/in": None}, through=1) is NOT_CARRIED
    driver.node.reply = {}                        # nothing published at all
    assert driver.step(2, 0.2, {"~/in": None}, through=2) is NOT_CARRIED
    assert sent == [("ender/out", 0, 0), ("ender/side", 1, 1)]


def test_completed_is_the_steps_through_in_stepped_and_its_tick_otherwise() -> None:
    driver, _ = make_driver()
    assert driver.completed == -1
    driver.step(4, 0.4, {"~/in": None}, through=7)   # a period of 4 base ticks
    assert driver.completed == 7
    parallel, _ = make_driver(carry=False)
    assert parallel.step(3, 0.3, {"~/in": None}) is NOT_CARRIED   # data carries no progress
    assert parallel.completed == 3


def test_a_step_that_fails_to_publish_completes_nothing() -> None:
    driver, _ = make_driver()
    driver.step(0, 0.0, {"~/in": None}, through=0)
    driver.node.reply = {"~/nope": 1}
    with pytest.raises(OutputError):
        driver.step(1, 0.1, {"~/in": None}, through=1)
    assert driver.completed == 0


def test_the_step_that_ends_the_episode_says_why_and_completes_only_its_tick() -> None:
    driver, sent = make_driver()
    driver.node.end_at = 4
    outcome = driver.step(4, 0.4, {"~/in": None}, through=7)
    assert outcome == StepOutcome(False, "done here")
    # The end travels in its own progress message: the data carries no progress at all.
    assert sent == [("ender/out", 4, None)]
    assert driver.completed == 4 and driver.ended == "done here"
    assert driver.end_requested == "done here"


def test_an_end_is_reported_by_the_call_that_asked_for_it_only() -> None:
    driver, _ = make_driver(carry=False)
    driver.node.end_at = 1
    assert driver.step(0, 0.0, {"~/in": None}).ended is None
    assert driver.step(1, 0.1, {"~/in": None}).ended == "done here"
    assert driver.step(2, 0.2, {"~/in": None}) is NOT_CARRIED   # not news any more
    assert driver.completed == 2 and driver.end_requested == "done here"


def test_a_new_node_in_the_driver_has_not_ended() -> None:
    driver, _ = make_driver(carry=False)
    driver.node.end_at = 0
    assert driver.step(0, 0.0, {"~/in": None}).ended == "done here"
    replace_node(driver, Ender, {}, 0, {})
    assert driver.ended is None
    driver.node.end_at = 1
    assert driver.step(1, 0.1, {"~/in": None}).ended == "done here"


def test_continue_from_counts_the_predecessors_ticks_as_completed() -> None:
    driver, _ = make_driver()
    driver.continue_from(40)
    assert driver.completed == 39


# -- deliver (reactive nodes) -------------------------------------------------------------------
def test_deliver_completes_the_last_messages_tick_or_the_through_given() -> None:
    driver, _ = make_driver(period=None, carry=False)
    assert driver.deliver([received(2, 1), received(5, 2, seq=1)]) is NOT_CARRIED
    assert driver.completed == driver.stats.tick == 5
    assert driver.deliver([], 9) is NOT_CARRIED          # stepped: everything through 9 came
    assert driver.completed == driver.stats.tick == 9


def test_deliver_returns_the_end_a_message_handler_asked_for() -> None:
    driver, _ = make_driver(period=None, carry=False)
    outcome = driver.deliver([received(3, 1), received(6, "end", seq=1), received(7, 2, seq=2)])
    assert outcome == StepOutcome(False, "told to end")
    assert driver.completed == 7
    assert driver.deliver([received(8, 3, seq=3)]) is NOT_CARRIED   # reported once


# -- the one end-of-episode path of the process loops ------------------------------------------
def bare_link(**fields: Any) -> ProcessLink:
    """A ProcessLink without sockets: only the fields a test sets (and the defaults below)."""
    link = ProcessLink.__new__(ProcessLink)
    progress: list = []
    defaults = dict(name="me", end_tick=None, stop_reason=None, takeover=None, joining="",
                    start_tick=0,
                    checkpoints=None, resume_tick=None,
                    stats=NodeStats(), peers=Peers(), graph_complete=False,
                    data=SimpleNamespace(publish_progress=lambda *a: progress.append(a),
                                         gate=SimpleNamespace(hellos=set())),
                    inbox=SimpleNamespace(heard={}, progress={}))
    for key, value in {**defaults, **fields}.items():
        setattr(link, key, value)
    link.sent_progress = progress   # type: ignore[attr-defined]
    return link


def test_episode_ended_keeps_the_reason_and_the_tick_and_sends_the_end_in_progress() -> None:
    link = bare_link()
    link.episode_ended(12, "goal reached")
    assert (link.stop_reason, link.end_tick) == ("goal reached", 12)
    assert link.sent_progress == [(12, 12, 12, False)]


def test_episode_ended_keeps_an_earlier_end_the_registry_announced() -> None:
    link = bare_link(end_tick=10)
    link.episode_ended(12, "late")
    assert (link.stop_reason, link.end_tick) == ("late", 10)
    assert link.sent_progress == [(12, 12, 10, False)]


# -- what a joining process reports while it waits ---------------------------------------------
def test_a_joining_process_says_what_it_waits_for_naming_the_neighbours() -> None:
    peers = Peers(publishers=["env"], subscribers=["human", "recorder"])
    link = bare_link(joining="swap", peers=peers)
    assert waiting_for(link, False) == "joining: waiting for the graph"
    link.graph_complete = True
    assert waiting_for(link, False) == \
        "joining: waiting for the hellos of env, human, recorder"
    link.data.gate.hellos = {"env", "human", "recorder"}
    # An answer is a progress saying how far its sender heard from us; other progress is not.
    link.inbox.progress = {"env": 1, "human": 2, "recorder": 3}
    link.inbox.heard = {"recorder": {"me": 7}, "human": {"someone else": 7}}
    assert waiting_for(link, False) == "joining: waiting for hello answers from env, human"
    link.inbox.heard = {"env": {"me": 1}, "human": {"me": -1}, "recorder": {"me": 7}}
    assert waiting_for(link, False) == "joining: waiting for the takeover"
    link.joining = "restart"
    assert waiting_for(link, True) == "joining: waiting for the start"


def test_a_process_at_the_start_of_a_run_does_not_wait_for_hello_answers() -> None:
    link = bare_link(peers=Peers(publishers=["env"]), graph_complete=True)
    assert waiting_for(link, False) == "waiting for the hellos of env"
    link.data.gate.hellos = {"env"}
    assert waiting_for(link, False) == "waiting for the start"


# -- a swap whose old process died: Takeover(kind="restart") -----------------------------------
def schedule() -> Any:
    return build_schedule([("env", 0.1), ("agent", 0.2), ("rec", None)], steps=50,
                          duration=None)


def test_first_tick_of_a_takeover_of_kind_restart_follows_the_restart_rule() -> None:
    sched = schedule()
    readers = Peers(subscribers=["env", "rec"])
    swap = bare_link(takeover=msg.Takeover(tick=17), joining="swap", peers=readers,
                     inbox=SimpleNamespace(heard={"env": {"agent": 20}}, progress={}))
    assert not swap.restarting
    assert stepped.first_tick(swap, sched, "agent") == 17     # a swap: where the old one was
    died = bare_link(takeover=msg.Takeover(tick=-1, kind="restart"), joining="swap",
                     peers=readers, inbox=SimpleNamespace(heard={"env": {"agent": 20},
                                                                 "rec": {"agent": 22}},
                                                          progress={}))
    assert died.restarting
    # after the last tick every reader has heard (20), on the agent's grid (2 base ticks)
    assert stepped.first_tick(died, sched, "agent") == 22
    nobody = bare_link(takeover=msg.Takeover(tick=-1, kind="restart"), joining="swap")
    assert stepped.first_tick(nobody, sched, "agent") == 0     # no reader, no guess: 0
    guessed = bare_link(takeover=msg.Takeover(tick=7, kind="restart"), joining="swap",
                        start_tick=99)
    assert stepped.first_tick(guessed, sched, "agent") == 8    # the takeover's guess, on grid
    restart = bare_link(joining="restart", start_tick=7)
    assert restart.restarting and stepped.first_tick(restart, sched, "agent") == 8
    assert stepped.first_tick(bare_link(), sched, "agent") == 0


class Keeper(Node):
    """A node that carries state across a swap (snapshot/restore)."""

    outputs = ["~/out"]
    period = 0.1

    def step(self, t: float, inputs: dict) -> dict:
        return {"~/out": 1}

    def snapshot(self) -> dict:
        return {"n": 1}

    def restore(self, state: dict) -> None:
        self.restored = state


def take_over(takeover: msg.Takeover, mode: str) -> tuple[NodeRuntime, Any, list, list]:
    """catbus.runtime.takeover.take_over with a socket-free link; returns the runtime, the link, what it
    published and what it sent the registry."""
    published: list = []
    sent: list = []
    runtime = NodeRuntime(Keeper, "keeper", "ipc://nowhere", class_path="tests:Keeper")
    driver = NodeDriver(Keeper, "keeper", inputs=[], outputs=[("~/out", "keeper/out")],
                        period=0.1, order={"keeper": 0}, publish=lambda *a: None)
    driver.setup({}, seed=0, run_info={})
    data = SimpleNamespace(seq={"keeper/out": 3}, last_publish=0.0, incarnation=2,
                           publish=lambda *args: published.append(args))
    link = bare_link(takeover=takeover, joining="swap", data=data, started=100.0,
                     after_first_step=None)
    link.send = sent.append   # type: ignore[method-assign]
    runtime.link, runtime.driver = link, driver
    terms = SimpleNamespace(mode=mode, period=0.1, schedule=None)
    take_over_from(link, driver, terms, "tests:Keeper")
    return runtime, link, published, sent


def test_a_takeover_of_kind_restart_restores_nothing_and_keeps_fresh_sequence_numbers() -> None:
    snapshot = codec.record_bytes(*codec.encode_payload({"n": 5}))
    died = msg.Takeover(tick=-1, kind="restart", seq={"keeper/out": 40}, snapshot=snapshot,
                        old={"incarnation": 1, "pid": 4})
    runtime, link, published, sent = take_over(died, "parallel")
    assert link.data.seq == {"keeper/out": 3}                # not the old process's
    assert not hasattr(runtime.driver.node, "restored")
    assert link.started == 100.0                             # parallel: the cycle due now
    link.after_first_step(6)
    (topic, event, tick, _, _), = published
    assert topic == SWAP_TOPIC and tick == 6
    assert (event["kind"], event["state"], event["old_died"]) == ("swap", "fresh", True)
    assert event["old"] == {"incarnation": 1, "pid": 4}
    assert sent == [msg.Swapped(tick=6, first_publish=sent[0].first_publish, restored=False)]
    assert link.after_first_step is None


def test_a_swap_takeover_still_restores_and_goes_on_with_the_old_numbers() -> None:
    snapshot = codec.record_bytes(*codec.encode_payload({"n": 5}))
    swap = msg.Takeover(tick=30, seq={"keeper/out": 40}, snapshot=snapshot)
    runtime, link, published, _ = take_over(swap, "parallel")
    assert link.data.seq == {"keeper/out": 40}
    assert runtime.driver.node.restored == {"n": 5}
    assert link.started != 100.0                             # the old process's next cycle
    link.after_first_step(30)
    event = published[0][1]
    assert (event["kind"], event["state"]) == ("swap", "restored") and "old_died" not in event
