"""One node driver in every mode: the same checks, the node's tick, the inline deadline, and a
node stopped in the middle of a stepped run (the Ctrl-C bug)."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import pytest

import catbus
from catbus.errors import NodeFailed
from catbus.recording.reader import Recording
from catbus.runtime.schedule import build_schedule
from tests.conftest import wait_until

pytestmark = pytest.mark.usefixtures("bus_sandbox")

LOCK = "tests.lockstep_nodes"
MODES = ["inline", "stepped", "parallel"]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind, expected", [
    ("set", 'node bad: output bad/action: field "u"[1]: cannot send a value of type set'),
    ("undeclared", "node bad: output '~/other' is not one of its declared outputs"),
])
def test_what_a_node_cannot_publish_fails_the_run_the_same_way_in_every_mode(
        mode: str, kind: str, expected: str) -> None:
    launch = {"name": "bad", "steps": 20, "nodes": {
        "bad": {"class": f"{LOCK}:BadOutputs", "period": 0.05, "params": {"kind": kind}}}}
    with pytest.raises(NodeFailed) as failure:
        catbus.run(launch, mode=mode, duration=None if mode != "parallel" else 5.0,
                   steps=20 if mode != "parallel" else None)
    assert "node bad failed" in str(failure.value) and expected in str(failure.value)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("mode", MODES)
def test_the_node_knows_its_tick_and_the_reset_in_every_mode(mode: str, tmp_path: Path) -> None:
    record = tmp_path / "probe.mcap"
    launch = {"name": "probe", "nodes": {"probe": {"class": f"{LOCK}:TickProbe",
                                                   "period": 0.02}}}
    if mode == "parallel":
        catbus.run(launch, mode=mode, duration=0.3, record=record)
    else:
        catbus.run(launch, mode=mode, steps=5, record=record)
    values = [m.value for m in Recording(record).messages(["probe/out"])]
    ticks = [v["tick"] for v in values]
    assert ticks[0] == 0 and ticks == sorted(set(ticks)), ticks
    if mode != "parallel":
        assert ticks == list(range(6))
    assert [v["reset"] for v in values] == [t == 0 for t in ticks]


@pytest.mark.timeout(60)
def test_inline_fails_a_step_past_the_deadline_naming_node_and_tick() -> None:
    launch = {"name": "stall", "steps": 20, "nodes": {
        "stuck": {"class": "tests.schedule_nodes:Staller", "params": {"stall_at": 2}},
        "listener": {"class": "tests.toy_nodes:Listener", "remap": {"talker/out": "stuck/out"}}}}
    with pytest.raises(NodeFailed) as failure:
        catbus.run(launch, mode="inline", deadline=1.0)
    assert str(failure.value) == ("node stuck failed: stuck in step at tick 2 for more than the "
                                  "1 s deadline (last completed: tick 1)")
    assert not [t for t in threading.enumerate() if t.name == "catbus-step-deadline"]


@pytest.mark.timeout(90)
def test_a_node_stopped_mid_run_lets_no_peer_step_past_what_it_completed(
        tmp_path: Path) -> None:
    """The cart blocks in its step at tick BLOCK and gets SIGINT there, alone (by pid): it
    completed ticks 0..BLOCK-1. Its peers may step only what those ticks allow, per the
    schedule; they must not take its last word for "everything is complete" and run on stale
    inputs to the end of the run. The run fails naming the cart and the signal that ended it
    (catbus did not send it, so its "done" is no clean end), and every process exits."""
    block, steps = 30, 5000
    pid_file = tmp_path / "cart.pid"
    launch = {"name": "carts", "steps": steps, "nodes": {
        "cart": {"class": f"{LOCK}:Cart",
                 "params": {"block_at": block, "pid_file": str(pid_file)}},
        "controller": {"class": f"{LOCK}:Controller"},
        "monitor": {"class": f"{LOCK}:Monitor"}}}

    def interrupt_the_cart() -> None:
        pid = int(wait_until(lambda: pid_file.exists() and pid_file.read_text(), 60,
                             what="the cart to block"))
        os.kill(pid, signal.SIGINT)

    interrupter = threading.Thread(target=interrupt_the_cart, daemon=True)
    interrupter.start()
    with pytest.raises(NodeFailed) as failure:
        catbus.run(launch, mode="stepped", deadline=2.0)
    interrupter.join(5)
    nodes = failure.value.result.nodes
    assert nodes["cart"]["returncode"] == 128 + signal.SIGINT
    assert nodes["cart"]["steps"] == block
    # What the cart's ticks 0..block-1 allow: the controller (after it) sees its tick t-1, the
    # monitor (after it, every 2nd tick) too; neither may step a tick beyond that.
    schedule = build_schedule([("cart", 0.1), ("controller", 0.1), ("monitor", 0.2)],
                              steps=steps, duration=None)
    completed = block - 1
    for name in ("controller", "monitor"):
        allowed = [t for t in schedule.due_ticks(name)
                   if schedule.required_tick(name, "cart", t) <= completed]
        assert nodes[name]["steps"] <= len(allowed), (name, nodes[name], len(allowed))
    assert all(info.get("returncode") is not None for info in nodes.values()), nodes
    assert "node cart failed" in str(failure.value) and "SIGINT" in str(failure.value)
