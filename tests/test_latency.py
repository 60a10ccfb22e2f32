"""Latency models (catbus.runtime.latency; docs/design.md, "Schedule semantics"): a node's
``latency:`` delays when its outputs become visible, on the exact schedule, the same in
``stepped`` and ``inline``; refused in ``parallel``; ``latency: 0`` is the run without it."""

from __future__ import annotations

import subprocess
import sys
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

import catbus
from catbus.errors import ConfigError
from catbus.node import Node
from catbus.recording.reader import Recording
from catbus.recording.verify import first_difference
from catbus.runtime.inbox.buffers import Buffers, InputBinding, Received
from catbus.runtime.latency import (LatencyPlan, delay_ticks, latency_problem, normalized,
                                    plans_for, queue_key, reader_keys)
from catbus.runtime.schedule import build_schedule
from catbus.wire import codec

REPO = Path(__file__).resolve().parent.parent
FLAT_EVADE = REPO / "launch" / "flat_evade.yaml"
DIST = {"dist": "normal", "mean": 0.03, "std": 0.02}


class Noisy(Node):
    """Publishes a draw of its own ``self.rng`` each step: the stream latency must not touch."""

    outputs = ["~/out"]
    period = 0.1

    def step(self, t: float, inputs: dict[str, Any]) -> dict[str, Any]:
        return {"~/out": {"n": self.tick, "draw": float(self.rng.random())}}


def pair(latency_a: Any = None, latency_b: Any = None, steps: int = 6) -> dict:
    """Witnesses a (period 0.1 s: 1 base tick) and b (0.2 s: 2 ticks), each watching the other
    on ``~/left`` (``~/right`` reads a topic no one publishes)."""
    def node(period: float, left: str, latency: Any) -> dict:
        entry = {"class": "tests.schedule_nodes:Witness", "period": period,
                 "remap": {"~/left": left, "~/right": "nobody/out"}}
        if latency is not None:
            entry["latency"] = latency
        return entry

    return {"name": "latency_pair", "steps": steps, "seed": 0, "nodes": {
        "a": node(0.1, "b/out", latency_a), "b": node(0.2, "a/out", latency_b)}}


def seen(path: Path) -> dict[str, list[tuple]]:
    """``{topic: [(tick, n, n seen on left)]}`` of the witnesses' messages."""
    rows: dict[str, list[tuple]] = {}
    for message in Recording(path).messages():
        if not message.topic.startswith("catbus/"):
            value = message.value
            rows.setdefault(message.topic, []).append((message.tick, value["n"], value["left"]))
    return rows


# -- the visibility arithmetic (unit) ------------------------------------------------------------
@pytest.mark.unit
def test_delay_is_the_first_tick_at_or_after_the_latency_on_the_exact_schedule() -> None:
    base = Fraction(1, 100)
    assert delay_ticks(Fraction("0.05"), base) == 5        # 0.05 / 0.01, not 5.000000001
    assert delay_ticks(Fraction("0.005"), base) == 1       # half a tick: the next tick
    assert delay_ticks(Fraction("0.0100001"), base) == 2
    assert delay_ticks(Fraction(0), base) == 0
    assert delay_ticks(Fraction("0.15"), Fraction(1, 10)) == 2
    assert delay_ticks(Fraction("0.3"), Fraction(1, 10)) == 3  # 0.3 as written, not 0.2999...


@pytest.mark.unit
def test_queue_key_applies_the_rule_and_is_the_tick_without_latency() -> None:
    for tick in range(5):
        assert queue_key(tick, tick, True) == tick == queue_key(tick, tick, False)
    # Listed before the reader: shown at reader tick v. Listed after: shown once v <= r and
    # t <= r - 1, i.e. at key <= r - 1.
    assert queue_key(3, 5, True) == 5
    assert queue_key(3, 5, False) == 4
    assert queue_key(3, 4, False) == 3     # one tick of latency: a later publisher's data is
    #                                        shown at t + 1 anyway


@pytest.mark.unit
def test_a_constant_plan_and_a_drawn_one() -> None:
    base = Fraction(1, 100)
    constant = LatencyPlan(0.05, name="robot", seed=0, period_ticks=1, base_tick=base)
    assert [constant.visible(t) for t in range(3)] == [5, 6, 7]
    drawn = LatencyPlan(DIST, name="robot", seed=0, period_ticks=2, base_tick=base)
    ticks = [drawn.visible(t) for t in range(0, 2000, 2)]
    assert all(v >= t for v, t in zip(ticks, range(0, 2000, 2)))
    assert ticks == sorted(ticks)                          # never overtakes an earlier step
    assert len({v - t for v, t in zip(ticks, range(0, 2000, 2))}) > 3   # it does vary
    again = LatencyPlan(DIST, name="robot", seed=0, period_ticks=2, base_tick=base)
    assert [again.visible(t) for t in reversed(range(0, 2000, 2))] == ticks[::-1]
    other = LatencyPlan(DIST, name="robot", seed=1, period_ticks=2, base_tick=base)
    assert [other.visible(t) for t in range(0, 2000, 2)] != ticks
    # Its own generator: the node's self.rng stream (seed, name) is another one.
    node_rng = np.random.default_rng(np.random.SeedSequence([0, *b"robot"]))
    assert node_rng.normal(0.03, 0.02, 8).tolist() != \
        np.random.default_rng(np.random.SeedSequence(
            [0, *b"robot"], spawn_key=(0x6C6174,))).normal(0.03, 0.02, 8).tolist()


@pytest.mark.unit
def test_a_drawn_latency_is_clipped_at_zero_and_a_lognormal_has_the_mean_given() -> None:
    base = Fraction(1, 100)
    wide = LatencyPlan({"dist": "normal", "mean": 0.0, "std": 0.05}, name="x", seed=0,
                       period_ticks=1, base_tick=base)
    assert min(wide.visible(t) - t for t in range(500)) == 0
    # Steps 0.1 s apart (1000 ticks of 0.1 ms), so no delay is raised to an earlier one's.
    log = LatencyPlan({"dist": "lognormal", "mean": 0.05, "std": 0.01}, name="x", seed=0,
                      period_ticks=1000, base_tick=Fraction(1, 10000))
    delays = [log.visible(t) - t for t in range(0, 4_000_000, 1000)]
    assert 490 < sum(delays) / len(delays) < 510           # ~0.05 s
    assert 80 < float(np.std(delays)) < 120                 # ~0.01 s


@pytest.mark.unit
def test_readers_key_only_the_topics_of_publishers_with_latency() -> None:
    schedule = build_schedule([("env", 0.01), ("robot", 0.01), ("human", 0.01)], steps=10,
                              duration=None)
    plans = plans_for({"robot": 0.02}, 0, schedule)
    publishers = {"robot/action": "robot", "human/action": "human"}
    keys = reader_keys("env", publishers, plans, schedule)
    assert list(keys) == ["robot/action"]
    assert keys["robot/action"](7) == 8      # visible at 9, env listed before robot: key 9 - 1
    assert reader_keys("human", {"robot/action": "robot"}, plans, schedule)["robot/action"](7) \
        == 9
    assert plans_for(None, 0, schedule) == {} and plans_for({}, 0, schedule) == {}


@pytest.mark.unit
def test_keyed_buffers_show_a_message_when_it_becomes_visible_and_refile_queued_ones() -> None:
    buffers = Buffers([InputBinding("in", "p/out")], {"p": 0})

    def put(tick: int) -> None:
        payload, frames = codec.encode_payload({"tick": tick})
        received = Received("p/out", codec.Header("p", tick, tick, 0.0, 0.0), payload,
                            list(frames))
        buffers.file(received, "p/out", "p", tick, tick)

    put(0)                                   # came before the keys were set (a takeover)
    buffers.set_keys({"p/out": lambda tick: tick + 3})
    put(1)
    assert buffers.take_by_tick({"p/out": 2}) == {"in": None}
    assert buffers.take_by_tick({"p/out": 3}) == {"in": {"tick": 0}}
    assert buffers.take_by_tick({"p/out": 4}) == {"in": {"tick": 1}}


@pytest.mark.unit
def test_latency_values_checked_and_normalized() -> None:
    assert latency_problem(None) is None and latency_problem(0.05) is None
    assert latency_problem(DIST) is None
    assert "must be >= 0" in latency_problem(-0.1)
    assert "must be a number of seconds" in latency_problem("fast")
    assert "dist must be one of normal, lognormal" in latency_problem(
        {"dist": "gamma", "mean": 1, "std": 1})
    assert "lognormal latency needs mean > 0" in latency_problem(
        {"dist": "lognormal", "mean": 0, "std": 1})
    assert latency_problem({"recorded": "a.mcap"}) is None   # read at load (test_reproduce.py)
    assert "has the keys recorded and node" in latency_problem({"recorded": "a.mcap", "x": 1})
    assert normalized(0) is None and normalized(0.0) is None and normalized(None) is None
    assert normalized(1) == 1.0


@pytest.mark.unit
def test_set_latency_is_a_node_key_and_parallel_refuses_it_with_the_reason() -> None:
    spec = catbus.load(FLAT_EVADE, mode="inline", overrides=["robot.latency=0.05"])
    assert spec.node("robot").latency == 0.05 and spec.document["nodes"]["robot"]["latency"] \
        == 0.05
    assert catbus.load(spec.document, mode="stepped").node("robot").latency == 0.05
    assert "latency" not in catbus.load(FLAT_EVADE, mode="inline", overrides=[
        "robot.latency=0"]).document["nodes"]["robot"]
    drawn = catbus.load(FLAT_EVADE, mode="inline", overrides={"robot.latency": DIST})
    assert drawn.node("robot").latency == DIST
    with pytest.raises(ConfigError, match=r"nodes\.robot\.latency: a latency model is for "
                                          r"stepped and inline runs; in parallel the latency "
                                          r"is real"):
        catbus.load(FLAT_EVADE, overrides=["robot.latency=0.05"])
    with pytest.raises(ConfigError, match=r"--set: robot\.latency: must be >= 0"):
        catbus.load(FLAT_EVADE, mode="inline", overrides=["robot.latency=-1"])
    graph = pair()
    graph["nodes"]["tap"] = {"class": "tests.toy_nodes:Tap", "latency": 0.1}
    with pytest.raises(ConfigError, match=r"nodes\.tap\.latency: a node without a period"):
        catbus.load(graph, mode="inline")


# -- runs ----------------------------------------------------------------------------------------
# By hand, from the rule (docs/design.md, "Schedule semantics"): a's latency 0.15 s is 2 ticks,
# b's 0.25 s is 3 (ceil(2.5)). b at tick r sees a's step t (a listed before it) once t + 2 <= r;
# a at r sees b's step t (listed after it) once t + 3 <= r and t <= r - 1. Rows: (tick, n,
# n seen on left). Without latency b would see a's n = r, and a b's step from tick <= r - 1.
EXPECTED = {
    "a/out": [(0, 0, None), (1, 1, None), (2, 2, None), (3, 3, 0), (4, 4, 0), (5, 5, 1),
              (6, 6, 1)],
    "b/out": [(0, 0, None), (2, 1, 0), (4, 2, 2), (6, 3, 4)],
}
UNDELAYED = {
    "a/out": [(0, 0, None), (1, 1, 0), (2, 2, 0), (3, 3, 1), (4, 4, 1), (5, 5, 2), (6, 6, 2)],
    "b/out": [(0, 0, 0), (2, 1, 2), (4, 2, 4), (6, 3, 6)],
}


@pytest.mark.timeout(90)
@pytest.mark.usefixtures("bus_sandbox")
@pytest.mark.parametrize("mode", ["inline", "stepped"])
def test_the_first_tick_an_output_takes_effect_matches_the_hand_computed_table(
        mode: str, tmp_path: Path) -> None:
    record = tmp_path / f"{mode}.mcap"
    catbus.run(pair(0.15, 0.25), mode=mode, record=record)
    assert seen(record) == EXPECTED
    plain = tmp_path / f"{mode}-plain.mcap"
    catbus.run(pair(), mode=mode, record=plain)
    assert seen(plain) == UNDELAYED


@pytest.mark.timeout(180)
@pytest.mark.usefixtures("bus_sandbox")
@pytest.mark.parametrize("latency", [0.05, DIST], ids=["constant", "normal"])
def test_stepped_equals_inline_message_by_message_with_latency(latency: Any,
                                                               tmp_path: Path) -> None:
    inline, stepped = tmp_path / "inline.mcap", tmp_path / "stepped.mcap"
    overrides = {"robot.latency": latency, "human.latency": 0.02}
    catbus.run(FLAT_EVADE, mode="inline", seed=3, steps=150, record=inline, overrides=overrides)
    result = catbus.run(FLAT_EVADE, mode="stepped", seed=3, steps=150, record=stepped,
                        overrides=overrides)
    assert first_difference(inline, stepped) is None
    assert all(stats.get("dropped", 0) == 0 for stats in result.nodes.values())
    # The latency changed the run (the comparison could not pass by comparing equal runs).
    plain = tmp_path / "plain.mcap"
    catbus.run(FLAT_EVADE, mode="inline", seed=3, steps=150, record=plain)
    assert first_difference(plain, inline) is not None


@pytest.mark.timeout(120)
@pytest.mark.usefixtures("bus_sandbox")
@pytest.mark.parametrize("mode", ["inline", "stepped"])
def test_latency_zero_is_the_run_without_the_key(mode: str, tmp_path: Path) -> None:
    without, zero = tmp_path / "without.mcap", tmp_path / "zero.mcap"
    catbus.run(FLAT_EVADE, mode=mode, seed=4, steps=60, record=without)
    catbus.run(FLAT_EVADE, mode=mode, seed=4, steps=60, record=zero,
               overrides={"robot.latency": 0})
    assert first_difference(without, zero) is None


@pytest.mark.timeout(60)
def test_a_drawn_latency_leaves_the_nodes_own_generator_alone(tmp_path: Path) -> None:
    graph = {"name": "noisy", "steps": 20, "seed": 7, "nodes": {
        "noisy": {"class": "tests.test_latency:Noisy"},
        "a": {"class": "tests.schedule_nodes:Witness",
              "remap": {"~/left": "noisy/out", "~/right": "nobody/out"}}}}
    plain, drawn = tmp_path / "plain.mcap", tmp_path / "drawn.mcap"
    catbus.run(graph, mode="inline", record=plain)
    graph["nodes"]["noisy"]["latency"] = {"dist": "normal", "mean": 0.2, "std": 0.1}
    catbus.run(graph, mode="inline", record=drawn)

    def draws(path: Path) -> list:
        return [m.value["draw"] for m in Recording(path).messages() if m.topic == "noisy/out"]

    assert draws(plain) == draws(drawn) and len(draws(plain)) == 21


@pytest.mark.timeout(60)
def test_catbus_launch_refuses_latency_in_parallel_with_the_reason(tmp_path: Path) -> None:
    launch = tmp_path / "pair.yaml"
    launch.write_text(yaml.safe_dump(pair()))
    done = subprocess.run([sys.executable, "-m", "catbus", "launch", str(launch), "--set",
                           "a.latency=0.05"], cwd=REPO, capture_output=True, text=True,
                          timeout=50)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "nodes.a.latency: a latency model is for stepped and inline runs; in parallel the " \
           "latency is real" in done.stderr


@pytest.mark.timeout(180)
@pytest.mark.usefixtures("bus_sandbox")
def test_swaps_of_a_delayed_publisher_and_of_its_reader_keep_stepped_equal_to_inline(
        tmp_path: Path) -> None:
    """A new process of the robot (drawn latency) has the same plan; a new process of the
    environment (its reader) is sent the robot's last messages as it joins and files them by
    when they become visible, before it steps."""
    launch = yaml.safe_load(FLAT_EVADE.read_text())
    launch.pop("record", None)
    launch["pythonpath"] = [str(REPO)]
    launch["nodes"]["robot"]["latency"] = {"dist": "normal", "mean": 0.05, "std": 0.03}
    launch["swap"] = [{"at": 0.7, "node": "robot", "params": {"safe_controller": "Unsafe"}},
                      {"at": 1.2, "node": "env"}]
    for mode in ("inline", "stepped"):
        result = catbus.run(launch, mode=mode, steps=180, record=tmp_path / f"{mode}.mcap",
                            evaluate=False)
        assert [(s["node"], s["tick"]) for s in result.swaps] == [("robot", 70), ("env", 120)]
    assert first_difference(tmp_path / "inline.mcap", tmp_path / "stepped.mcap") is None
