"""Live parameters (``catbus param get|set``): the control plane's part event by event (unit),
a node's side through its real driver (unit), and real runs, stepped and parallel, changed from
the Python client and from the command line, recorded on ``catbus/params`` and applied again
at the same tick by ``catbus play``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import catbus
from catbus.client.params import ParamsRefused, get_params, set_params
from catbus.control import MemberState
from catbus.errors import ConfigError
from catbus.runtime.driver import NodeDriver
from catbus.runtime.liveparams import LiveParams, checked_change, live_problem
from catbus.wire import messages as msg
from catbus.wire.protocol import PARAMS_TOPIC
from tests.control_sim import Sim
from tests.params_nodes import Fixed, Gain, Shaped

REPO = Path(__file__).resolve().parents[1]
TOOL = b"tool"


# -- the control plane (no process, no socket) ------------------------------------------------------
def replies(sim: Sim, tool: bytes = TOOL) -> list[msg.ParamsReply]:
    return [m for m in sim.tools.get(tool, []) if isinstance(m, msg.ParamsReply)]


@pytest.mark.unit
def test_query_answers_the_launch_files_params_and_names_the_nodes_when_unknown() -> None:
    sim = Sim()
    sim.start_run()
    sim.ask(TOOL, msg.ParamsQuery(node="robot"))
    sim.ask(TOOL, msg.ParamsQuery(node="robto"))
    ok, unknown = replies(sim)
    assert ok.ok and ok.params == {"gain": 1}
    assert not unknown.ok and "no node named 'robto'" in unknown.message
    assert "env, robot" in unknown.message


@pytest.mark.unit
def test_a_change_goes_to_the_nodes_process_and_its_answer_back_to_the_tool() -> None:
    sim = Sim()
    procs = sim.start_run()
    sim.ask(TOOL, msg.ParamsRequest(node="robot", changes={"gain": 3}))
    change = procs["robot"].last(msg.ParamsChange)
    assert change.changes == {"gain": 3} and replies(sim) == []
    sim.ask(b"other", msg.ParamsRequest(node="robot", changes={"gain": 4}))
    assert "still being applied" in replies(sim, b"other")[0].message   # one at a time
    sim.tick()
    assert TOOL in sim.state.requesters   # kept waiting with heartbeats
    sim.send(procs["robot"], msg.ParamsApplied(id=change.id, ok=True, tick=42,
                                               params={"gain": 3}, changed={"gain": 3}))
    [reply] = replies(sim)
    assert reply.ok and reply.tick == 42 and reply.changed == {"gain": 3}
    assert TOOL not in sim.state.requesters
    sim.ask(b"asker", msg.ParamsQuery(node="robot"))
    assert replies(sim, b"asker")[0].params == {"gain": 3}   # a restart would get these too
    assert sim.state.members["robot"].config.given == {"gain": 3}


@pytest.mark.unit
def test_a_refusal_by_the_node_reaches_the_tool_with_its_reason() -> None:
    sim = Sim()
    procs = sim.start_run()
    sim.ask(TOOL, msg.ParamsRequest(node="env", changes={"gain": "x"}))
    change = procs["env"].last(msg.ParamsChange)
    sim.send(procs["env"], msg.ParamsApplied(id=change.id, ok=False, message="no on_params"))
    [reply] = replies(sim)
    assert not reply.ok and reply.message == "no on_params" and reply.params == {"gain": 1}


@pytest.mark.unit
def test_a_change_whose_process_dies_is_answered_not_applied() -> None:
    sim = Sim()
    procs = sim.start_run()
    sim.ask(TOOL, msg.ParamsRequest(node="robot", changes={"gain": 3}))
    sim.send(procs["robot"], msg.Error(message="boom"))
    sim.tick()
    [reply] = replies(sim)
    assert not reply.ok and reply.message.startswith("not applied:")


@pytest.mark.unit
def test_changes_are_refused_when_the_run_cannot_take_them() -> None:
    sim = Sim()
    sim.ask(TOOL, msg.ParamsRequest(node="robot", changes={"gain": 3}))
    assert "expected, not running" in replies(sim)[-1].message
    procs = sim.start_run()
    sim.ask(TOOL, msg.ParamsRequest(node="robot", changes={}))
    assert "no parameter to change" in replies(sim)[-1].message
    sim.send(procs["env"], msg.Done(end="caught", end_tick=7))
    sim.ask(TOOL, msg.ParamsRequest(node="robot", changes={"gain": 3}))
    assert replies(sim)[-1].message == "the episode has ended"
    assert procs["robot"].got(msg.ParamsChange) == []
    assert sim.state.members["robot"].state is MemberState.RUNNING


# -- a node's side, through its real driver (no socket) ------------------------------------------
def driver_of(node_class: type) -> tuple[NodeDriver, list[tuple[str, Any, int]]]:
    sent: list[tuple[str, Any, int]] = []
    driver = NodeDriver(node_class, "g", inputs=[], outputs=[("~/out", "g/out")], period=0.01,
                        order={"g": 0},
                        publish=lambda topic, value, tick, t, through: sent.append(
                            (topic, value, tick)))
    driver.setup({}, 0, {})
    return driver, sent


@pytest.mark.unit
def test_a_change_applies_before_the_next_step_and_is_published_at_its_tick() -> None:
    driver, sent = driver_of(Gain)
    answers: list[msg.Message] = []
    live = LiveParams(driver, driver_publish(sent), answers.append)
    driver.step(0, 0.0, {})
    live.order(msg.ParamsChange(id=7, changes={"gain": 3}))
    assert driver.node.gain == 1.0 and answers == []    # not inside or between steps
    driver.step(1, 0.01, {})
    assert [topic for topic, _, _ in sent] == ["g/out", PARAMS_TOPIC, "g/out"]
    assert sent[1][1]["changed"] == {"gain": 3.0} and sent[1][2] == 1
    assert sent[2][1]["x"] == 6.0 and driver.params["gain"] == 3.0
    [answer] = answers
    assert answer.ok and answer.tick == 1 and answer.params["limits"] == {"high": 10.0}
    assert driver.live is None   # nothing due: the step path tests one attribute


def driver_publish(sent: list) -> Any:
    return lambda topic, value, tick, t, through: sent.append((topic, value, tick))


@pytest.mark.unit
def test_bad_changes_are_refused_as_the_launch_refuses_them() -> None:
    driver, _ = driver_of(Gain)
    answers: list[msg.Message] = []
    live = LiveParams(driver, lambda *a: None, answers.append)
    live.order(msg.ParamsChange(id=1, changes={"gian": 2}))
    live.order(msg.ParamsChange(id=2, changes={"gain": "fast"}))
    assert [a.ok for a in answers] == [False, False]
    assert "unknown parameter" in answers[0].message and "did you mean 'gain'" in answers[0].message
    assert answers[1].message.startswith("node g: params.gain:")
    assert "no on_params(changed)" in live_problem(Fixed, "f", 0.01)
    assert "catbus swap f --param KEY=VALUE" in live_problem(Fixed, "f", 0.01)
    assert "no period" in live_problem(Gain, "g", None)
    new, changed = checked_change(Gain, "g", driver.params, {"limits": {"high": 5}})
    assert changed == {"limits": {"high": 5.0}} and new["gain"] == 1.0
    with pytest.raises(ConfigError, match="outputs"):
        checked_change(Shaped, "s", {"names": ["out"]}, {"names": ["other"]})


# -- real runs ------------------------------------------------------------------------------------
LAUNCH = """\
name: live_params
nodes:
  g: {class: tests.params_nodes:Gain}
  f: {class: tests.params_nodes:Fixed}
"""


def gains_by_tick(record: Path, topic: str = "g/out") -> list[tuple[int, float]]:
    return [(m.value["tick"], m.value["x"] / m.value["n"])
            for m in catbus.Recording(record).messages([topic])]


@pytest.mark.timeout(240)
def test_stepped_change_is_recorded_at_its_tick_and_replayed_there(tmp_path: Path) -> None:
    launch = tmp_path / "live.yaml"
    launch.write_text(LAUNCH)
    record = tmp_path / "live.mcap"
    with catbus.start(launch, mode="stepped", steps=100_000, pace=1.0, record=record,
                      deadline=60) as run:
        assert run.wait_until_started(60)
        reply = set_params(run.bus, "g", {"gain": 3.0})
        with pytest.raises(ParamsRefused, match="no on_params"):
            set_params(run.bus, "f", {"gain": 2.0})
        with pytest.raises(ParamsRefused, match="unknown parameter"):
            set_params(run.bus, "g", {"gian": 2.0})
        cli = subprocess.run([sys.executable, "-m", "catbus", "param", "set", "g", "gain", "4",
                              "--bus", run.bus, "--json"], cwd=REPO, capture_output=True,
                             text=True, timeout=60)
        assert cli.returncode == 0, cli.stderr
        second = json.loads(cli.stdout)
        assert second["changed"] == {"gain": 4.0} and second["tick"] > reply.tick
        got = subprocess.run([sys.executable, "-m", "catbus", "param", "get", "g", "gain",
                              "--bus", run.bus], cwd=REPO, capture_output=True, text=True,
                             timeout=60)
        assert (got.returncode, got.stdout.strip()) == (0, "4.0")
        refused = subprocess.run([sys.executable, "-m", "catbus", "param", "set", "f", "gain",
                                  "2", "--bus", run.bus], cwd=REPO, capture_output=True,
                                 text=True, timeout=60)
        assert refused.returncode == 1 and "Traceback" not in refused.stderr
        assert refused.stderr.strip().splitlines()[-1].startswith(
            "catbus: Fixed has no on_params(changed) method")
        assert get_params(run.bus, "g").params["gain"] == 4.0
        run.stop()
        run.wait(60)
    first, then = reply.tick, second["tick"]
    expected = [(tick, 1.0 if tick < first else 3.0 if tick < then else 4.0)
                for tick, _ in gains_by_tick(record)]
    assert gains_by_tick(record) == expected and expected[-1][0] > then
    recorded = [(m.value["tick"], m.value["changed"])
                for m in catbus.Recording(record).messages([PARAMS_TOPIC])]
    assert recorded == [(first, {"gain": 3.0}), (then, {"gain": 4.0})]

    replay = tmp_path / "replay.mcap"
    played = subprocess.run([sys.executable, "-m", "catbus", "play", str(record), "--with",
                             str(launch), "--topics", "f/out", "--mode", "inline", "--record",
                             str(replay), "--no-progress"], cwd=REPO, capture_output=True,
                            text=True, timeout=120)
    assert played.returncode == 0, played.stderr
    assert f"parameters changed again at tick {first}, {then}" in played.stderr
    assert gains_by_tick(replay) == gains_by_tick(record)[:len(gains_by_tick(replay))]
    assert [(m.value["tick"], m.value["changed"])
            for m in catbus.Recording(replay).messages([PARAMS_TOPIC])] == recorded


@pytest.mark.timeout(120)
def test_parallel_change_applies_at_the_nodes_next_cycle(tmp_path: Path) -> None:
    launch = tmp_path / "live.yaml"
    launch.write_text(LAUNCH)
    record = tmp_path / "live.mcap"
    with catbus.start(launch, mode="parallel", duration=600, record=record, deadline=60) as run:
        assert run.wait_until_started(60)
        reply = set_params(run.bus, "g", {"gain": 2.5})
        assert reply.changed == {"gain": 2.5} and reply.params["limits"] == {"high": 10.0}
        run.stop()
        run.wait(60)
    gains = gains_by_tick(record)
    assert gains == [(tick, 1.0 if tick < reply.tick else 2.5) for tick, _ in gains]
    assert gains[-1][0] >= reply.tick
    assert [m.value["tick"] for m in catbus.Recording(record).messages([PARAMS_TOPIC])] == \
        [reply.tick]


@pytest.mark.timeout(60)
def test_param_without_a_run_is_one_line(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "catbus", "param", "get", "g", "--bus",
                           f"ipc://{tmp_path}/nothing.sock"], cwd=REPO, capture_output=True,
                          text=True, timeout=50)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    assert textwrap.shorten(done.stderr, 200).startswith("catbus: no catbus run answers")
