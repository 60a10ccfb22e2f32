"""catbus.testing: a node driven without a bus sees what it would see on one, and what it
returns is checked as a run checks it."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import catbus
from catbus import Input, Node, Param
from catbus.errors import ConfigError
from catbus.testing import Ended, NodeHarness, OutputError, Sent, roundtrip
from nodes.demo import Listener, Talker
from tests.conftest import ROOT
from nodes.flat_evade.agent import ModelBasedAgent
from nodes.flat_evade.env import FlatEvadeEnv

pytestmark = pytest.mark.timeout(20)


# -- small nodes for the edges ----------------------------------------------------------------------
class Spy(Node):
    """Keeps what it was handed; publishes whatever ``reply`` says."""

    inputs = ["~/in", Input("~/many", "all")]
    outputs = ["~/out", "shared/out"]
    period = 0.5

    def setup(self, params: dict[str, Any]) -> None:
        self.seen: list[tuple[float, dict]] = []
        self.reply: dict | None = None
        self.closed = 0

    def step(self, t: float, inputs: dict[str, Any]) -> dict[str, Any] | None:
        self.seen.append((t, inputs))
        if isinstance(self.reply, dict) and self.reply.get("end"):
            self.end_episode("spy saw enough")
        return self.reply

    def close(self) -> None:
        self.closed += 1


class Doubler(Node):
    """Reactive: answers every message at once."""

    inputs = ["~/in"]
    outputs = ["~/out"]
    params = {"gain": Param(float, 2.0, "factor")}

    def setup(self, params: dict[str, Any]) -> None:
        self.gain = params["gain"]
        self.tuples: list[Any] = []

    def on_message(self, topic: str, message: Any) -> dict[str, Any]:
        self.tuples.append((topic, message))
        return {"~/out": {"x": self.gain * message["x"]}}


# -- flat_evade: the agent on the environment's real messages ---------------------------------------
def test_agent_acts_on_the_environments_messages():
    with NodeHarness(FlatEvadeEnv, name="env") as env, \
            NodeHarness(ModelBasedAgent, name="robot", period=0.01) as robot:
        assert robot.inputs == {"~/sensors": "robot/sensors"}
        assert robot.outputs == {"~/action": "robot/action"}
        assert robot.step(tick=0) == {}                   # no sensors yet: nothing to publish
        reset = env.step(tick=0)
        assert set(reset) == {"robot/sensors", "human/sensors", "~/state"}
        sensors = reset["robot/sensors"]
        assert not sensors["state_sensor"]["state"].flags.writeable   # as received on the bus
        outputs = robot.step({"~/sensors": sensors}, tick=1)
        action = outputs["~/action"]
        assert list(action) == ["control", "broadcast"]
        assert list(action["broadcast"]) == ["planned_traj", "state", "next_point"]
        assert [action["control"].shape, action["broadcast"]["planned_traj"].shape] == [
            (2, 1), (20, 4, 1)]
        assert not action["control"].flags.writeable     # decoded, as a subscriber gets it
        assert robot.sent[-1] == Sent("~/action", "robot/action", 1, 0.01, action)
        # The environment applies it at its next step.
        state = env.step({"robot/action": action}, tick=1)["~/state"]
        assert state["robot"]["state"].shape == (4, 1)


def test_harness_matches_calling_the_node_by_hand():
    """Same control as the hand-made node on hand-round-tripped sensors (the old test helper)."""
    from catbus.params import resolve

    env = NodeHarness(FlatEvadeEnv, name="env", seed=4)
    sensors = env.step(tick=0)["human/sensors"]
    harness = NodeHarness(ModelBasedAgent, {"safe_controller": "Unsafe"}, name="human", seed=4)
    by_hand = ModelBasedAgent()
    by_hand.bind("human", 4, ModelBasedAgent.period, {})
    by_hand.setup(resolve(ModelBasedAgent.params, {"safe_controller": "Unsafe"}, where="test",
                          prefix="params"))
    for tick in range(3):
        got = harness.step({"~/sensors": sensors}, tick=tick)["~/action"]
        want = by_hand.step(tick * 0.01, {"~/sensors": roundtrip(sensors)})["~/action"]
        np.testing.assert_array_equal(got["control"], want["control"])
    np.testing.assert_array_equal(got["control"], [[-200.0], [-200.0]])   # clipped feedback
    harness.close()
    env.close()


def test_agent_parameters_are_validated_like_a_launch_file():
    with pytest.raises(ConfigError, match=r"params\.safe\.dmin: unknown parameter \(this node "
                                          r"has: .*d_min"):
        NodeHarness(ModelBasedAgent, {"safe": {"dmin": 15.0}}, name="robot")
    with pytest.raises(ConfigError, match=r"params\.safe_controller: must be one of"):
        NodeHarness(ModelBasedAgent, {"safe_controller": "Reckless"}, name="robot")
    harness = NodeHarness(ModelBasedAgent, {"safe": {"d_min": 15}}, name="robot")
    assert harness.params["safe"]["d_min"] == 15.0 and isinstance(
        harness.params["safe"]["d_min"], float)
    assert harness.params["safe_controller"] == "SafeSet"       # the declared default
    harness.close()


# -- nodes/demo.py ------------------------------------------------------------------------------------
def test_demo_talker_and_listener():
    with NodeHarness(Talker, {"noise": 0.0}, name="talker") as talker, \
            NodeHarness(Listener, name="listener") as listener:
        first = talker.step()["~/chatter"]
        assert first["count"] == 1 and first["t"] == 0.0
        np.testing.assert_array_equal(first["values"], [0.0, 1.0, 2.0, 3.0])
        second = talker.step()["~/chatter"]                      # tick 1: t = 1 * 0.05
        assert second["t"] == pytest.approx(0.05)
        assert talker.step(tick=10)["~/chatter"]["t"] == pytest.approx(0.5)
        assert talker.step(tick=11, t=7.0)["~/chatter"]["t"] == 7.0
        assert listener.step() == {}                             # nothing heard yet
        heard = listener.step({"talker/chatter": first})["~/mean"]
        assert heard["heard"] == 1
        # A latest input keeps its newest message, as on the bus.
        assert listener.step()["~/mean"]["heard"] == 2
        assert listener.step({"talker/chatter": second})["~/mean"]["heard"] == 3


def test_rng_is_seeded_from_the_seed_and_the_name():
    def values(seed: int, name: str) -> np.ndarray:
        with NodeHarness(Talker, name=name, seed=seed) as talker:
            return talker.step()["~/chatter"]["values"]

    rng = np.random.default_rng(np.random.SeedSequence([3, *b"talker"]))
    np.testing.assert_array_equal(values(3, "talker"), np.arange(4.0) + rng.normal(0, 0.1, 4))
    assert np.array_equal(values(3, "talker"), values(3, "talker"))
    assert not np.array_equal(values(3, "talker"), values(4, "talker"))
    assert not np.array_equal(values(3, "talker"), values(3, "other"))


# -- what a node sees -----------------------------------------------------------------------------------
def test_inputs_go_through_the_wire():
    with NodeHarness(Spy, name="spy") as harness:
        sent = {"a": np.arange(6.0).reshape(2, 3), "big": np.zeros(1000), "pair": (1, "x"),
                "n": np.int16(7)}
        harness.step({"~/in": sent, "~/many": [{"k": 1}, {"k": 2}]})
        t, inputs = harness.node.seen[-1]
        assert t == 0.0 and list(inputs) == ["~/in", "~/many"]
        got = inputs["~/in"]
        assert got["pair"] == [1, "x"]                           # tuples become lists
        assert type(got["n"]) is np.int16
        for name in ("a", "big"):                                # inline and buffer arrays
            np.testing.assert_array_equal(got[name], sent[name])
            assert not got[name].flags.writeable
            assert not np.shares_memory(got[name], sent[name])
            with pytest.raises(ValueError):
                got[name][0] = 1.0
        assert inputs["~/many"] == [{"k": 1}, {"k": 2}]
        harness.step()
        _, inputs = harness.node.seen[-1]
        assert inputs["~/in"]["pair"] == [1, "x"]                # latest: kept
        assert inputs["~/many"] == []                            # all: nothing new
        harness.deliver("spy/many", {"k": 3})                    # by bus topic, between steps
        harness.deliver("~/many", {"k": 4})
        harness.step()
        assert harness.node.seen[-1][1]["~/many"] == [{"k": 3}, {"k": 4}]


def test_input_mistakes_are_named():
    with NodeHarness(Spy, name="spy") as harness:
        with pytest.raises(ValueError, match=r"no input '~/nope' \(its inputs: ~/in, ~/many\)"):
            harness.step({"~/nope": 1})
        with pytest.raises(TypeError, match="give a list of messages"):
            harness.step({"~/many": {"k": 1}})
        with pytest.raises(TypeError, match=r'input ~/in: field "s": .*set'):
            harness.step({"~/in": {"s": {1, 2}}})


def test_outputs_are_checked_as_a_run_checks_them():
    with NodeHarness(Spy, name="spy") as harness:
        harness.node.reply = {"~/out": {"u": [1.0, object()]}}
        with pytest.raises(OutputError, match=r'output spy/out: field "u"\[1\]: .*object'):
            harness.step()
        harness.node.reply = {"~/typo": 1}
        with pytest.raises(OutputError, match=r"output '~/typo' is not one of its declared "
                                              r"outputs \['~/out', 'shared/out'\]"):
            harness.step()
        assert issubclass(OutputError, catbus.CatbusError)
        harness.node.reply = {"~/out": 1, "shared/out": (2, 3)}
        assert harness.step() == {"~/out": 1, "shared/out": [2, 3]}
        assert [(s.output, s.topic) for s in harness.sent] == [("~/out", "spy/out"),
                                                                ("shared/out", "shared/out")]


def test_end_episode_and_close():
    harness = NodeHarness(Spy, name="spy")
    assert harness.end_requested is None
    harness.node.reply = {"end": True}
    with pytest.raises(OutputError):                             # "end" is no declared output
        harness.step()
    assert harness.end_requested == "spy saw enough"
    node = harness.node
    harness.close()
    harness.close()
    assert node.closed == 1
    with pytest.raises(RuntimeError, match="closed"):
        harness.step()


def test_reactive_node_answers_each_delivered_message():
    with NodeHarness(Doubler, {"gain": 3}, name="doubler", remap={"~/in": "src/x"}) as harness:
        assert harness.period is None and harness.inputs == {"~/in": "src/x"}
        assert harness.deliver("~/in", {"x": 2.0}) == {"~/out": {"x": 6.0}}
        assert harness.deliver("src/x", {"x": (1, 2)[0]}) == {"~/out": {"x": 3.0}}
        assert harness.node.tuples[0] == ("~/in", {"x": 2.0})    # the declared name
        with pytest.raises(TypeError, match="only reacts to messages; use deliver"):
            harness.step()


def test_period_and_name_are_checked():
    with pytest.raises(ConfigError, match="period: must be a positive number"):
        NodeHarness(Talker, period=0)
    with pytest.raises(ConfigError, match="name"):
        NodeHarness(Talker, name="has space")
    with pytest.raises(TypeError, match="Node subclass"):
        NodeHarness(dict)
    with NodeHarness(Talker) as harness:
        assert harness.name == "talker" and harness.period == 0.05


def test_roundtrip_names_the_field_that_cannot_be_sent():
    assert roundtrip({"a": (1, 2)}) == {"a": [1, 2]}
    with pytest.raises(TypeError, match=r'field "a"\."b": cannot send a value of type object'):
        roundtrip({"a": {"b": object()}})


# -- scores and the end of the episode ------------------------------------------------------------
class Referee(Node):
    """Reports a running score and a verdict; ends the episode at tick ``last``."""

    outputs = ["~/out"]
    params = {"last": Param(int, 2, "the tick that ends the episode")}
    period = 0.1

    def setup(self, params: dict[str, Any]) -> None:
        self.last = params["last"]

    def step(self, t: float, inputs: dict[str, Any]) -> dict[str, Any]:
        self.report(points=self.tick * 10, won=self.tick >= self.last)
        if self.tick == self.last:
            self.end_episode("the referee blew the whistle")
        return {"~/out": {"tick": self.tick}}


def test_scores_and_the_end_are_read_from_the_harness():
    with NodeHarness(Referee, {"last": 1}, name="ref") as harness:
        assert harness.scores == {} and harness.ended is None
        assert harness.step() == {"~/out": {"tick": 0}}          # scores are not outputs
        assert harness.scores == {"points": 0, "won": False} and harness.ended is None
        harness.step()
        assert harness.scores == {"points": 10, "won": True}
        assert harness.ended == Ended(by="ref", reason="the referee blew the whistle", tick=1)
        harness.step()                                           # a test may go on stepping
        assert harness.ended.tick == 1 and harness.scores["points"] == 20
        assert [s.output for s in harness.sent] == ["~/out"] * 3
        copy = harness.scores
        copy["points"] = -1
        assert harness.scores["points"] == 20                    # a copy


def test_the_end_is_kept_when_the_step_that_asked_fails():
    with NodeHarness(Spy, name="spy") as harness:
        harness.node.reply = {"end": True}
        with pytest.raises(OutputError):
            harness.step(tick=4)
        assert harness.ended == Ended("spy", "spy saw enough", 4)


def test_harness_scores_match_a_runs():
    """What the harness shows is what ``catbus.run`` reports for the node."""
    result = catbus.run({"name": "ref", "steps": 3, "pythonpath": [str(ROOT)], "nodes": {
        "ref": {"class": "tests.test_testing:Referee", "params": {"last": 2}}}}, mode="inline")
    with NodeHarness(Referee, {"last": 2}, name="ref") as harness:
        while harness.ended is None:
            harness.step()
    assert harness.scores == result.scores
    assert harness.ended.reason == result.end_reason
