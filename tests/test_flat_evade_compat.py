"""Compatibility with the original toolbox: its seed-0 reference run
(docs/flat_evade.md, "Randomness"), reproduced by the nodes.

Setup of the reference run: env (``rng: legacy``, seed 0), robot (SafeSet) and human (Unsafe), all
at period 0.01, so agents act on every environment step, as in the original's sequential loop.
The nodes are driven by a plain loop with catbus's schedule (tick 0 is the reset; agents act on a
tick's sensors; the env applies those actions at the next tick), and every message goes through
the codec, so nodes see exactly what the wire gives them (read-only arrays).

The reference numbers were printed to 6 (some 5) decimals, so each is checked to half a unit
of its last printed digit; numbers printed as integers are exact and checked to 1e-9.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import numpy as np
import pytest

from catbus.wire.codec import decode_payload, encode_payload
from catbus.node import Node
from catbus.params import resolve
from nodes.flat_evade import controllers
from nodes.flat_evade.agent import ModelBasedAgent
from nodes.flat_evade.env import FlatEvadeEnv

STEPS = 500
PERIOD = 0.01


# -- a plain inline driver -------------------------------------------------------------------------
def wire(value: Any) -> Any:
    payload, buffers = encode_payload(value)
    return decode_payload(payload, [bytes(b) for b in buffers])


def make_node(cls: type, name: str, given: dict, seed: int) -> Node:
    node = cls()
    node.bind(name, seed, PERIOD, {})
    node.setup(resolve(cls.params, given, where="test", prefix=f"{name}.params"))
    return node


def published(node: Node, out: dict[str, Any] | None) -> dict[str, Any]:
    """A node's outputs under their bus names (``~/`` is the node's name), as received."""
    return {topic.replace("~/", f"{node.name}/", 1): wire(msg) for topic, msg in (out or {}).items()}


def run_inline(seed: int = 0, steps: int = STEPS) -> list[dict[str, Any]]:
    """Ticks 0..steps of env + robot + human; entry k holds every message published at tick k."""
    env = make_node(FlatEvadeEnv, "env", {"rng": "legacy"}, seed)
    agents = [make_node(ModelBasedAgent, "robot", {}, seed),
              make_node(ModelBasedAgent, "human", {"safe_controller": "Unsafe"}, seed)]
    ticks: list[dict[str, Any]] = []
    actions: dict[str, Any] = {"robot/action": None, "human/action": None}
    for k in range(steps + 1):
        t = k * PERIOD
        bus = published(env, env.step(t, actions))
        for agent in agents:
            bus.update(published(agent, agent.step(t, {"~/sensors": bus[f"{agent.name}/sensors"]})))
        actions = {topic: bus[topic] for topic in actions}
        ticks.append(bus)
    return ticks


@pytest.fixture(scope="module")
def seed0() -> list[dict[str, Any]]:
    return run_inline(seed=0)


# -- reference numbers (the original toolbox, seed 0) -----------------------------------------------------
CHECKPOINTS = {  # step: (robot x, human x, robot goal, human goal), as printed
    1: ("30 30 0.008560 0.008637", "80 80 -1 -1", "30.187898 30.187898", "29.105287 29.105287"),
    100: ("30.085273 30.081362 0.102099 0.119441", "58.046574 57.959347 -31.180417 -31.134554",
          "30.187898 30.187898", "29.105287 29.105287"),
    250: ("18.058301 18.245770 -5.485446 -5.420231", "29.173719 29.213816 -1.685946 -1.982244",
          "39.64179 39.638293", "29.105287 29.105287"),
    500: ("9.368566 9.565820 -1.968086 -1.990236", "19.634586 19.928565 -3.876920 -3.913091",
          "39.64179 39.638293", "7.879246 8.014295"),
}


def assert_printed(actual: np.ndarray, printed: str, what: str) -> float:
    """Check ``actual`` against numbers as printed; returns the largest absolute error."""
    words = printed.split()
    values = np.asarray(actual, dtype=np.float64).ravel()
    assert values.size == len(words), what
    worst = 0.0
    for value, word in zip(values, words):
        decimals = -Decimal(word).as_tuple().exponent
        tolerance = 0.5 * 10.0 ** -decimals + 1e-12 if decimals > 0 else 1e-9
        error = abs(value - float(word))
        assert error <= tolerance, f"{what}: {value!r} vs printed {word} (tolerance {tolerance:g})"
        worst = max(worst, error)
    return worst


@pytest.mark.timeout(30)
@pytest.mark.parametrize("step", sorted(CHECKPOINTS))
def test_seed0_checkpoints(seed0, step):
    robot_x, human_x, robot_goal, human_goal = CHECKPOINTS[step]
    state = seed0[step]["env/state"]
    assert_printed(state["robot"]["state"], robot_x, f"robot x after step {step}")
    assert_printed(state["human"]["state"], human_x, f"human x after step {step}")
    assert_printed(state["robot_goal"]["pos"], robot_goal, f"robot goal after step {step}")
    assert_printed(state["human_goal"]["pos"], human_goal, f"human goal after step {step}")


@pytest.mark.timeout(30)
def test_seed0_first_actions(seed0):
    assert_printed(seed0[0]["robot/action"]["control"], "1.711958 1.727341", "robot first u")
    assert_printed(seed0[0]["human/action"]["control"], "-200 -200", "human first u")


@pytest.mark.timeout(30)
def test_seed0_reset_is_the_second_reset(seed0):
    # goals at tick 0 are those of the second reset (draws 35 and 36 of RandomState(0))
    draws = np.random.RandomState(0).random_sample(36)
    state = seed0[0]["env/state"]
    np.testing.assert_allclose(state["robot_goal"]["pos"], np.full((2, 1), 30 + 10 * draws[34]),
                               rtol=0, atol=1e-12)
    np.testing.assert_array_equal(state["robot"]["state"], [[30], [30], [0], [0]])


@pytest.mark.timeout(30)
def test_seed0_summary(seed0):
    final = seed0[STEPS]["env/state"]
    assert final["robot_goal"]["count"] == 1      # achieved goal
    assert final["human_goal"]["count"] == 2
    distances = [float(np.linalg.norm(seed0[k]["env/state"]["robot"]["pos"]
                                      - seed0[k]["env/state"]["human"]["pos"]))
                 for k in range(1, STEPS + 1)]
    closest = int(np.argmin(distances))
    assert closest + 1 == 189
    assert_printed(np.array(distances[closest]), "12.574", "min true distance")


@pytest.mark.timeout(30)
def test_seed0_safe_set_activity_in_reported_range(monkeypatch):
    """The original saw the SafeSet projection active on 237-270 of the 500 applied actions."""
    active: list[bool] = []
    original = controllers.project_onto_halfplane

    def spy(u, L, bound):
        projected = original(u, L, bound)
        active.append(projected is not u)
        return projected
    monkeypatch.setattr(controllers, "project_onto_halfplane", spy)
    run_inline(seed=0, steps=STEPS - 1)       # actions at ticks 0..499 are the applied ones
    assert 237 <= sum(active) <= 270


@pytest.mark.timeout(30)
def test_legacy_runs_are_bit_identical(seed0):
    again = run_inline(seed=0, steps=50)
    for k in (1, 25, 50):
        for topic in ("env/state", "robot/sensors", "human/action"):
            first, second = encode_payload(seed0[k][topic]), encode_payload(again[k][topic])
            assert first[0] == second[0] and list(map(bytes, first[1])) == list(map(bytes, second[1]))
