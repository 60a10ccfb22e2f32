"""Unit tests of the flat_evade model code against hand-computed cases from the formulas in
docs/flat_evade.md.

World (physics, goals, reach test, simulate order, measurement, noise), planner, feedback, the
safe controllers (each closed form, ZBF against a brute-force solution of the original's QP,
obstacle selection) and the two nodes driven directly, with messages passed through the codec.
"""

from __future__ import annotations

import math
from typing import Any, Optional

import numpy as np
import pytest

from catbus.wire.codec import decode_payload, encode_payload
from catbus.errors import ConfigError
from catbus.params import Param, resolve
from nodes.flat_evade import agent as agent_module
from nodes.flat_evade.agent import ModelBasedAgent
from nodes.flat_evade.controllers import (SAFE_CONTROLLERS, SafeParams, SafetyIndex,
                                          feedback_control, most_dangerous, obstacle_indices,
                                          project_onto_halfplane, safe_control, safety_index, zbf)
from nodes.flat_evade.env import FlatEvadeEnv
from nodes.flat_evade.noise import SensorNoise
from nodes.flat_evade.planner import NaivePlanner, next_point, plan_trajectory, task_goal
from nodes.flat_evade.world import World, euler_step, goal_reached, place_goal

SQRT_HALF = math.sqrt(0.5)


# -- helpers ---------------------------------------------------------------------------------------
def col(*values: float) -> np.ndarray:
    return np.array(values, dtype=np.float64).reshape(-1, 1)


def wire(value: Any) -> Any:
    """What a subscriber receives: encoded and decoded, arrays read-only views."""
    payload, buffers = encode_payload(value)
    return decode_payload(payload, [bytes(b) for b in buffers])


def make_node(cls: type, name: str, given: Optional[dict] = None, seed: int = 0) -> Any:
    node = cls()
    node.bind(name, seed, cls.period, {})
    node.setup(resolve(cls.params, given or {}, where="test", prefix=f"{name}.params"))
    return node


class ScriptedDraws:
    """A random source that returns given numbers in order, to hand-compute draws."""

    def __init__(self, values: list[float]) -> None:
        self.values = list(values)

    def _take(self, size: Any) -> Any:
        if size is None:
            return self.values.pop(0)
        n = int(np.prod(size))
        return np.array([self.values.pop(0) for _ in range(n)]).reshape(size)

    def random(self, size: Any = None) -> Any:
        return self._take(size)

    def standard_normal(self, size: Any = None) -> Any:
        return self._take(size)


ZERO_WIDTHS = {agent: {alias: 0.0 for alias in ("cartesian_sensor", "state_sensor",
                                                "obstacle_sensor", "goal_sensor")}
               for agent in ("robot", "human")}
INIT = {"robot": col(30, 30, 0, 0), "human": col(80, 80, 0, 0)}
TARGETS = {"robot": None, "human": "robot"}


# -- physics -----------------------------------------------------------------------------------------
@pytest.mark.timeout(10)
def test_euler_step_uses_old_velocity_and_half_the_command():
    x = col(1, 2, 3, 4)
    x_next = euler_step(x, col(10, -20), 0.1)
    # p += dt*v_old; v += dt*0.5*u
    np.testing.assert_allclose(x_next, col(1.3, 2.4, 3.5, 3.0), rtol=0, atol=1e-12)
    np.testing.assert_array_equal(x, col(1, 2, 3, 4))  # a new array, input untouched


@pytest.mark.timeout(10)
def test_no_world_bounds():
    x_next = euler_step(col(1, 99, -100, 100), col(0, 0), 0.1)
    np.testing.assert_allclose(x_next[:2], col(-9, 109), atol=1e-12)


@pytest.mark.timeout(10)
def test_simulate_applies_controls_missing_control_is_zero():
    world = World(INIT, TARGETS, 0.1, ScriptedDraws([0.5, 0.5]))
    world.simulate({"robot": col(2, 4)}, {}, 0.01)
    np.testing.assert_allclose(world.bodies["robot"].x, col(30, 30, 0.01, 0.02), atol=1e-15)
    np.testing.assert_array_equal(world.bodies["human"].x, col(80, 80, 0, 0))


# -- goals -------------------------------------------------------------------------------------------
@pytest.mark.timeout(10)
def test_goal_without_target_is_one_diagonal_draw_and_not_clipped():
    np.testing.assert_allclose(place_goal(col(30, 30), None, 0.25), col(32.5, 32.5), atol=1e-12)
    np.testing.assert_allclose(place_goal(col(95, 99), None, 0.9), col(104, 108), atol=1e-12)


@pytest.mark.timeout(10)
def test_goal_with_target_sits_beyond_target_plus_jitter():
    g = place_goal(col(80, 80), col(30, 30), 0.5)  # owner human, target robot
    expected = 30 - 10 * SQRT_HALF + 5
    np.testing.assert_allclose(g, col(expected, expected), atol=1e-12)


@pytest.mark.timeout(10)
def test_goal_with_target_is_clipped_to_map():
    g = place_goal(col(50, 50), col(5, 95), 0.9)
    # e = (-45, 45): (5 - 7.071 + 9, 95 + 7.071 + 9) -> clipped to (6.929, 100)
    np.testing.assert_allclose(g, col(5 - 10 * SQRT_HALF + 9, 100), atol=1e-12)
    g = place_goal(col(80, 80), col(2, 2), 0.0)
    np.testing.assert_array_equal(g, col(0, 0))


@pytest.mark.timeout(10)
def test_goal_with_coinciding_owner_and_target_uses_zero_direction():
    np.testing.assert_allclose(place_goal(col(40, 40), col(40, 40), 0.2), col(42, 42), atol=1e-12)


@pytest.mark.timeout(10)
def test_world_places_goals_in_registration_order_one_draw_each():
    world = World(INIT, TARGETS, 0.1, ScriptedDraws([0.25, 0.5]))
    np.testing.assert_allclose(world.goals["robot"].pos, col(32.5, 32.5), atol=1e-12)
    human_goal = 30 - 10 * SQRT_HALF + 5
    np.testing.assert_allclose(world.goals["human"].pos, col(human_goal, human_goal), atol=1e-12)


@pytest.mark.timeout(10)
def test_reach_test_is_chebyshev_and_strict():
    # Euclidean distance 0.103 > 0.1, but the largest axis gap 0.09 < 0.1: reached
    assert goal_reached(col(30.09, 30.05), col(30, 30), 0.1)
    assert not goal_reached(col(0.1, 0.0), col(0, 0), 0.1)
    assert not goal_reached(col(0.0, -0.2), col(0, 0), 0.1)


@pytest.mark.timeout(10)
def test_reach_counts_and_replaces_with_next_draw():
    # robot goal placed on the robot (r = 0), human goal r = 0.5, re-placement r = 0.3
    world = World(INIT, TARGETS, 0.1, ScriptedDraws([0.0, 0.5, 0.3]))
    world.simulate({}, {}, 0.01)
    assert world.goals["robot"].count == 1
    np.testing.assert_allclose(world.goals["robot"].pos, col(33, 33), atol=1e-12)
    assert world.goals["human"].count == 0
    world.simulate({}, {}, 0.01)  # not reached again: no draw needed (the script is empty)
    assert world.goals["robot"].count == 1


@pytest.mark.timeout(10)
def test_human_goal_replacement_sees_both_bodies_already_moved():
    world = World({"robot": col(30, 30, 10, 0), "human": col(50, 50, 0, 0)}, TARGETS, 0.1,
                  ScriptedDraws([0.9, 0.0, 0.4]))
    world.goals["human"].pos = col(50, 50)  # the human stands on its goal
    world.simulate({}, {}, 0.1)              # robot moves to (31, 30) first
    assert world.goals["human"].count == 1
    e = col(31 - 50, 30 - 50)
    expected = np.clip(col(31, 30) + 10 * e / np.linalg.norm(e) + 4, 0, 100)
    np.testing.assert_allclose(world.goals["human"].pos, expected, atol=1e-12)


# -- measurement and noise -----------------------------------------------------------------------------
@pytest.mark.timeout(10)
def test_uniform_noise_is_the_original_expression():
    noise = SensorNoise(ScriptedDraws([0.25, 0.75]), "uniform")
    # y + w*U - w/2 with w = 0.4
    np.testing.assert_allclose(noise(col(1, 2), 0.4), col(0.9, 2.1), atol=1e-15)


@pytest.mark.timeout(10)
def test_uniform_noise_has_full_width_w():
    w = 2.0
    samples = SensorNoise(np.random.default_rng(1), "uniform")(np.zeros((200_000, 1)), w)
    assert samples.min() >= -w / 2 and samples.max() < w / 2
    assert samples.min() < -0.99 and samples.max() > 0.99
    assert abs(samples.mean()) < 0.01
    assert samples.var() == pytest.approx(w ** 2 / 12, rel=0.02)


@pytest.mark.timeout(10)
def test_gaussian_noise_has_the_same_variance():
    w = 2.0
    samples = SensorNoise(np.random.default_rng(2), "gaussian")(np.zeros((200_000, 1)), w)
    assert abs(samples.mean()) < 0.01
    assert samples.std() == pytest.approx(w / math.sqrt(12), rel=0.01)
    assert samples.max() > w / 2  # unbounded, unlike the uniform model


@pytest.mark.timeout(10)
def test_unknown_noise_model_is_refused():
    with pytest.raises(ValueError, match="noise model"):
        SensorNoise(np.random.default_rng(0), "laplace")  # type: ignore[arg-type]


@pytest.mark.timeout(10)
@pytest.mark.parametrize("model", ["uniform", "gaussian"])
def test_draws_are_used_even_when_width_is_zero(model):
    source = np.random.RandomState(7)
    world = World(INIT, TARGETS, 0.1, source)
    measured = world.measure(SensorNoise(source, model), ZERO_WIDTHS)
    np.testing.assert_array_equal(measured["robot"]["state_sensor"]["state"], INIT["robot"])
    reference = np.random.RandomState(7)
    reference.random_sample(2)                           # two goal placements
    (reference.random_sample if model == "uniform" else reference.standard_normal)(32)
    assert source.random() == reference.random_sample()  # 32 measurement draws spent


@pytest.mark.timeout(10)
def test_measurement_layout_order_and_contents():
    world = World(INIT, TARGETS, 0.1, ScriptedDraws([0.25, 0.5]))
    m = world.measure(SensorNoise(np.random.default_rng(0)), ZERO_WIDTHS)
    assert list(m) == ["robot", "human"]
    for agent in m:
        assert list(m[agent]) == ["cartesian_sensor", "state_sensor", "obstacle_sensor",
                                  "goal_sensor", "communication_sensor"]
        assert m[agent]["communication_sensor"] == {}  # nothing broadcast yet
    robot = m["robot"]
    assert list(robot["obstacle_sensor"]) == ["human"]  # goals are invisible
    assert list(m["human"]["obstacle_sensor"]) == ["robot"]
    np.testing.assert_array_equal(robot["obstacle_sensor"]["human"]["rel_pos"], col(50, 50))
    np.testing.assert_allclose(robot["goal_sensor"]["rel_pos"], col(2.5, 2.5), atol=1e-12)
    for array, shape in [(robot["cartesian_sensor"]["pos"], (2, 1)),
                         (robot["cartesian_sensor"]["vel"], (2, 1)),
                         (robot["state_sensor"]["state"], (4, 1)),
                         (robot["goal_sensor"]["rel_vel"], (2, 1))]:
        assert array.shape == shape and array.dtype == np.float64


@pytest.mark.timeout(10)
def test_measurement_draw_order_per_agent():
    # widths 1 make every reading = truth + U - 0.5; U = 0.5 + k/100 tags draw number k
    draws = [0.0, 0.0] + [0.5 + k / 100 for k in range(32)]
    world = World(INIT, TARGETS, 0.1, ScriptedDraws(draws))
    ones = {agent: {alias: 1.0 for alias in ZERO_WIDTHS[agent]} for agent in ZERO_WIDTHS}
    m = world.measure(SensorNoise(world.source), ones)

    def tags(noisy: np.ndarray) -> list[float]:
        return list(np.round(noisy.ravel() * 100) / 100)
    robot, human = m["robot"], m["human"]
    assert tags(robot["cartesian_sensor"]["vel"]) == [0.02, 0.03]
    assert tags(robot["state_sensor"]["state"] - INIT["robot"]) == [0.04, 0.05, 0.06, 0.07]
    assert tags(robot["obstacle_sensor"]["human"]["rel_vel"]) == [0.10, 0.11]
    assert tags(robot["goal_sensor"]["rel_vel"]) == [0.14, 0.15]
    assert tags(human["cartesian_sensor"]["pos"] - col(80, 80)) == [0.16, 0.17]
    assert tags(human["goal_sensor"]["rel_vel"]) == [0.30, 0.31]


@pytest.mark.timeout(10)
def test_communication_sensor_carries_copies_of_other_broadcasts():
    world = World(INIT, TARGETS, 0.1, ScriptedDraws([0.5, 0.5]))
    broadcast = {"state": col(1, 2, 3, 4)}
    world.simulate({}, {"robot": broadcast}, 0.01)
    m = world.measure(SensorNoise(np.random.default_rng(0)), ZERO_WIDTHS)
    assert m["robot"]["communication_sensor"] == {}       # the human broadcast nothing
    heard = m["human"]["communication_sensor"]["robot"]["state"]
    np.testing.assert_array_equal(heard, col(1, 2, 3, 4))
    assert not np.shares_memory(heard, broadcast["state"])


@pytest.mark.timeout(10)
def test_env_info_is_a_value_in_registration_order():
    world = World(INIT, TARGETS, 0.1, ScriptedDraws([0.0, 0.5, 0.3]))
    info = world.env_info()
    assert list(info) == ["robot", "robot_goal", "human", "human_goal"]
    assert list(info["robot"]) == ["state", "pos", "vel"]
    assert list(info["human_goal"]) == ["state", "pos", "vel", "count", "adv_target"]
    assert info["robot_goal"]["adv_target"] == "none" and info["human_goal"]["adv_target"] == "robot"
    world.simulate({}, {}, 0.01)  # the robot goal is reached and re-placed
    np.testing.assert_array_equal(info["robot_goal"]["state"], col(30, 30, 0, 0))  # not live (Q15)
    assert info["robot_goal"]["count"] == 0 and world.env_info()["robot_goal"]["count"] == 1


# -- planner ------------------------------------------------------------------------------------------
@pytest.mark.timeout(10)
def test_plan_is_a_line_that_stops_short_of_the_goal():
    plan = plan_trajectory(col(0, 0, 0, 0), col(20, 40, 2, 0), 20)
    assert plan.shape == (20, 4, 1)
    for i in range(20):
        np.testing.assert_allclose(plan[i], col(i, 2 * i, 0.1 * i, 0), atol=1e-12)
    np.testing.assert_allclose(plan[-1], col(19, 38, 1.9, 0), atol=1e-12)  # 19/20 of the way


@pytest.mark.timeout(10)
def test_next_point_is_first_point_strictly_ahead():
    plan = plan_trajectory(col(0, 0, 0, 0), col(20, 40, 0, 0), 20)
    # at the start T_0 is not strictly ahead (dot product 0): T_1
    np.testing.assert_array_equal(next_point(plan, col(0, 0), 2), plan[1])
    np.testing.assert_array_equal(next_point(plan, col(5, 10), 2), plan[6])
    # on the last point every product is 0, nothing is strictly ahead: the last point
    np.testing.assert_array_equal(next_point(plan, col(19, 38), 2), plan[-1])
    # the whole plan is scanned: from behind the start, T_0 is ahead; and from beyond the end
    # the "ahead" direction points back along the line, so T_0 again
    np.testing.assert_array_equal(next_point(plan, col(-1, -2), 2), plan[0])
    np.testing.assert_array_equal(next_point(plan, col(25, 50), 2), plan[0])


@pytest.mark.timeout(10)
def test_planner_replans_every_cycle_calls_starting_with_the_first():
    planner = NaivePlanner(horizon=20, replanning_cycle=10, state_dimension=2)
    plans = []
    for call in range(25):
        plan, _ = planner(col(call, 0, 0, 0), col(100, 0, 0, 0))
        plans.append(plan)
    starts = [float(p[0, 0, 0]) for p in plans]
    assert starts == [0.0] * 10 + [10.0] * 10 + [20.0] * 5  # plans at calls 1, 11, 21


@pytest.mark.timeout(10)
def test_task_goal_is_relative_goal_plus_own_cartesian_state():
    estimate = {"cartesian_sensor": {"pos": col(1, 2), "vel": col(3, 4)},
                "goal_sensor": {"rel_pos": col(10, 20), "rel_vel": col(-3, -4)}}
    np.testing.assert_array_equal(task_goal(estimate), col(11, 22, 0, 0))


# -- feedback -----------------------------------------------------------------------------------------
@pytest.mark.timeout(10)
def test_feedback_is_pd_clipped_per_component():
    u_max = col(200, 200)
    u = feedback_control(col(0.01, -0.02, 0.1, 0), col(0, 0, 0, 0), 200, 50, u_max)
    np.testing.assert_allclose(u, col(7, -4), atol=1e-12)
    u = feedback_control(col(10, -10, 0, 0), col(0, 0, 0, 0), 200, 50, u_max)
    np.testing.assert_array_equal(u, col(200, -200))


# -- safe controllers ----------------------------------------------------------------------------------
def estimate_for(pos, vel, obstacles, state_vel=None) -> dict:
    """A measurement group with cartesian (pos, vel), state-sensor velocity and radar readings."""
    state_vel = vel if state_vel is None else state_vel
    return {
        "cartesian_sensor": {"pos": col(*pos), "vel": col(*vel)},
        "state_sensor": {"state": col(*pos, *state_vel)},
        "obstacle_sensor": {f"o{k}": {"rel_pos": col(*rp), "rel_vel": col(*rv)}
                            for k, (rp, rv) in enumerate(obstacles)},
    }


# Agent at the origin moving (1, 0) (state sensor says (2, 0): the sensors disagree, Q10);
# obstacle 10 ahead on x, relative velocity (-3, 1), so its velocity is (-2, 1).
# dp = (-10, 0), dv = (3, -1), d = 10, d_dot = -3
# phi = 225 - 100 + 5*3 + 1*0.01 = 140.01
# a = -2 dp - k_v (dv/d - d_dot dp/d^2) = (20, 0) - 5 ((0.3, -0.1) - (0.3, 0)) = (20, 0.5)
# b = -k_v dp/d = (5, 0); L = b^T; drift = a^T (v_s - v_o) = (20, 0.5).(4, -1) = 79.5
CASE = estimate_for((0, 0), (1, 0), [((10, 0), (-3, 1))], state_vel=(2, 0))
DT = 0.01
P = SafeParams()


@pytest.mark.timeout(10)
def test_safety_index_by_hand():
    (index,) = obstacle_indices(CASE, DT, P)
    assert index.phi == pytest.approx(140.01, abs=1e-12)
    np.testing.assert_allclose(index.a, col(20, 0.5), atol=1e-12)
    np.testing.assert_allclose(index.b, col(5, 0), atol=1e-12)
    np.testing.assert_allclose(index.L, [[5, 0]], atol=1e-12)
    assert index.drift == pytest.approx(79.5, abs=1e-12)


@pytest.mark.timeout(10)
def test_safety_index_clamps_distance():
    index = safety_index(col(0, 0, 0, 0), col(0, 0, 0, 0), col(0, 0), 0.0, P)
    assert index.phi == pytest.approx(225 - 1e-6)
    np.testing.assert_array_equal(index.b, col(0, 0))


@pytest.mark.timeout(10)
def test_projection_lands_on_the_boundary_along_L():
    rng = np.random.default_rng(3)
    for _ in range(50):
        u, L, bound = col(*rng.normal(size=2) * 50), rng.normal(size=(1, 2)), rng.normal() * 10
        v = project_onto_halfplane(u, L, bound)
        if (L @ u).item() <= bound:
            assert v is u
        else:
            assert (L @ v).item() == pytest.approx(bound, abs=1e-9)
            step = u - v
            assert abs(step[0, 0] * L[0, 1] - step[1, 0] * L[0, 0]) < 1e-9  # parallel to L^T


@pytest.mark.timeout(10)
def test_safe_set_projects_onto_phi_dot_equal_minus_eta():
    u = safe_control("SafeSet", CASE, col(100, 30), DT, P)
    # S = -eta - drift = -80.5; u = u_ref - ((500 + 80.5)/25) (5, 0)
    np.testing.assert_allclose(u, col(-16.1, 30), atol=1e-12)
    assert (col(5, 0).T @ u).item() == pytest.approx(-80.5, abs=1e-12)


@pytest.mark.timeout(10)
def test_safe_set_keeps_reference_when_satisfied_or_safe():
    u_ref = col(-50, 10)  # L u_ref = -250 < S = -80.5
    assert safe_control("SafeSet", CASE, u_ref, DT, P) is u_ref
    far = estimate_for((0, 0), (0, 0), [((100, 0), (0, 0))])  # phi < 0
    u_ref = col(100, 30)
    for law in ("SafeSet", "Sublevel", "SlidingMode", "Unsafe"):
        assert safe_control(law, far, u_ref, DT, P) is u_ref, law


@pytest.mark.timeout(10)
def test_sublevel_uses_lambda_phi():
    u = safe_control("Sublevel", CASE, col(100, 30), DT, P)
    # S = 140.01 - 79.5 = 60.51; u = 100 - (500 - 60.51)/5
    np.testing.assert_allclose(u, col(100 - (500 - 60.51) / 5, 30), atol=1e-12)


@pytest.mark.timeout(10)
def test_zbf_returns_twice_the_reference_when_inactive():
    u_ref = col(-50, 10)  # L 2u_ref = -500 <= beta = 60.51
    np.testing.assert_array_equal(safe_control("ZBF", CASE, u_ref, DT, P), col(-100, 20))


@pytest.mark.timeout(10)
def test_zbf_active_meets_constraint_with_equality():
    u = safe_control("ZBF", CASE, col(100, 30), DT, P)
    np.testing.assert_allclose(u, col(200 - (1000 - 60.51) / 5, 60), atol=1e-12)
    assert (col(5, 0).T @ u).item() == pytest.approx(60.51, abs=1e-12)


@pytest.mark.timeout(10)
def test_zbf_acts_even_when_phi_is_negative():
    far = estimate_for((0, 0), (0, 0), [((30, 0), (0, 0))])
    (index,) = obstacle_indices(far, DT, P)
    assert index.phi < 0
    u = safe_control("ZBF", far, col(100, 0), DT, P)
    beta = P.lambd * index.phi - index.drift
    assert (index.L @ u).item() == pytest.approx(beta, abs=1e-9)  # strong repulsion (Q11)
    assert u[0, 0] < 0


def qp_brute_force(u_ref: np.ndarray, L: np.ndarray, beta: float, centre: np.ndarray,
                   radius: float, n: int = 801) -> tuple[float, float]:
    """The least value of the original's objective over a grid of feasible points (feasible for
    its scaled constraint ``(L/|beta|) u <= beta/|beta|``), and the grid spacing."""
    axis = np.linspace(-radius, radius, n)
    ux, uy = np.meshgrid(centre[0, 0] + axis, centre[1, 0] + axis)
    objective = 0.5 * (ux ** 2 + uy ** 2) - 2 * (u_ref[0, 0] * ux + u_ref[1, 0] * uy)
    scale = abs(beta)
    feasible = (L[0, 0] / scale) * ux + (L[0, 1] / scale) * uy <= beta / scale
    objective = np.where(feasible, objective, np.inf)
    return float(objective.min()), float(axis[1] - axis[0])


@pytest.mark.timeout(20)
def test_zbf_closed_form_equals_the_qp_solution():
    rng = np.random.default_rng(11)
    checked_active = 0
    for _ in range(40):
        u_ref = col(*rng.normal(size=2) * 40)
        b = col(*rng.normal(size=2) * 5)
        beta = float(rng.normal() * 100)
        index = SafetyIndex(phi=beta, a=col(0, 0), b=b, drift=0.0)  # lambd = 1: beta = phi
        u = zbf(index, u_ref, P)
        objective = lambda v: 0.5 * (v.T @ v).item() - 2 * (u_ref.T @ v).item()  # noqa: E731
        assert (b.T @ u).item() <= beta + 1e-9                     # feasible
        gap = float(np.linalg.norm(u - 2 * u_ref))
        best_value, spacing = qp_brute_force(u_ref, b.T, beta, u, gap + 5)
        assert objective(u) <= best_value + 1e-9                   # no grid point does better
        # and the grid gets as close as its spacing allows (a feasible point within s*sqrt(2))
        assert best_value - objective(u) <= gap * spacing * math.sqrt(2) + spacing ** 2
        # KKT: u = 2 u_ref - mu L^T with mu >= 0 and mu (L u - beta) = 0
        mu = ((2 * u_ref - u).T @ b).item() / (b.T @ b).item()
        np.testing.assert_allclose(2 * u_ref - mu * b, u, atol=1e-9)
        assert mu >= -1e-12 and abs(mu * ((b.T @ u).item() - beta)) < 1e-7
        checked_active += mu > 0
    assert 5 <= checked_active <= 35  # both branches exercised


@pytest.mark.timeout(10)
def test_zbf_degenerate_cases():
    u_ref = col(10, -4)
    # beta = 0: the half-plane L u <= 0
    u = zbf(SafetyIndex(phi=0.0, a=col(0, 0), b=col(1, 0), drift=0.0), u_ref, P)
    np.testing.assert_allclose(u, col(0, -8), atol=1e-12)
    # L = 0, beta >= 0: unconstrained optimum; beta < 0: infeasible, the reference
    np.testing.assert_array_equal(zbf(SafetyIndex(1.0, col(0, 0), col(0, 0), 0.0), u_ref, P), 2 * u_ref)
    assert zbf(SafetyIndex(-1.0, col(0, 0), col(0, 0), 0.0), u_ref, P) is u_ref


@pytest.mark.timeout(10)
def test_safe_set_with_zero_L_returns_reference():
    index = SafetyIndex(phi=5.0, a=col(1, 1), b=col(0, 0), drift=3.0)
    u_ref = col(1, 2)
    assert SAFE_CONTROLLERS["SafeSet"](index, u_ref, P) is u_ref


@pytest.mark.timeout(10)
def test_potential_field_and_sliding_mode():
    np.testing.assert_allclose(safe_control("PotentialField", CASE, col(100, 30), DT, P),
                               col(-5000, 0), atol=1e-9)
    np.testing.assert_allclose(safe_control("SlidingMode", CASE, col(100, 30), DT, P),
                               col(-4900, 30), atol=1e-9)
    far = estimate_for((0, 0), (0, 0), [((100, 0), (0, 0))])
    np.testing.assert_allclose(safe_control("PotentialField", far, col(100, 30), DT, P),
                               col(-5000, 0), atol=1e-9)  # ignores phi and u_ref


@pytest.mark.timeout(10)
def test_saturation_is_optional():
    u = safe_control("PotentialField", CASE, col(0, 0), DT, SafeParams(saturate=True))
    np.testing.assert_array_equal(u, col(-200, 0))
    u = safe_control("PotentialField", CASE, col(0, 0), DT, SafeParams())
    assert u[0, 0] == pytest.approx(-5000)


@pytest.mark.timeout(10)
def test_most_dangerous_obstacle_decides():
    far, near = ((40, 0), (0, 0)), ((0, 12), (0, -1))
    u_ref = col(20, 80)
    alone = safe_control("SafeSet", estimate_for((0, 0), (0, 0), [near]), u_ref, DT, P)
    for order in ([far, near], [near, far]):
        both = estimate_for((0, 0), (0, 0), order)
        np.testing.assert_array_equal(safe_control("SafeSet", both, u_ref, DT, P), alone)
    assert not np.array_equal(alone, u_ref)


@pytest.mark.timeout(10)
def test_most_dangerous_prefers_first_on_ties():
    first = SafetyIndex(1.0, col(0, 0), col(1, 0), 0.0)
    second = SafetyIndex(1.0, col(0, 0), col(0, 1), 0.0)
    assert most_dangerous([first, second]) is first
    assert most_dangerous([]) is None


@pytest.mark.timeout(10)
@pytest.mark.parametrize("law", sorted(SAFE_CONTROLLERS))
def test_no_obstacle_returns_reference(law):
    u_ref = col(3, 4)
    lonely = estimate_for((0, 0), (0, 0), [])
    assert safe_control(law, lonely, u_ref, DT, P) is u_ref
    del lonely["obstacle_sensor"]
    assert safe_control(law, lonely, u_ref, DT, P) is u_ref


# -- nodes --------------------------------------------------------------------------------------------
@pytest.mark.timeout(10)
def test_declared_parameters_follow_the_scenario():
    values = resolve(FlatEvadeEnv.params, {}, where="t", prefix="env")
    assert values["noise_width"] == {
        "robot": {"cartesian_sensor": 0.0, "state_sensor": 0.1, "obstacle_sensor": 0.1,
                  "goal_sensor": 0.1},
        "human": {"cartesian_sensor": 0.1, "state_sensor": 0.1, "obstacle_sensor": 0.1,
                  "goal_sensor": 0.0},
    }
    assert values["rng"] == "generator" and values["noise_model"] == "uniform"
    agent = resolve(ModelBasedAgent.params, {}, where="t", prefix="robot")
    assert agent["safe_controller"] == "SafeSet"
    assert agent["safe"] == {"d_min": 15.0, "k_v": 5.0, "eta": 1.0, "c": 1000.0, "lambd": 1.0,
                             "u_max": [200.0, 200.0], "saturate": False}

    def leaves(tree):
        for value in tree.values():
            yield from leaves(value) if isinstance(value, dict) else [value]
    assert all(isinstance(p, Param) for p in leaves(FlatEvadeEnv.params))
    assert all(isinstance(p, Param) for p in leaves(ModelBasedAgent.params))


@pytest.mark.timeout(10)
def test_negative_noise_width_is_a_config_error():
    with pytest.raises(ConfigError, match="noise_width.human.goal_sensor"):
        make_node(FlatEvadeEnv, "env", {"noise_width": {"human": {"goal_sensor": -0.1}}})


@pytest.mark.timeout(10)
def test_env_tick_zero_publishes_reset_without_advancing():
    env = make_node(FlatEvadeEnv, "env")
    out = wire(env.step(0.0, {"robot/action": None, "human/action": None}))
    assert list(out) == ["robot/sensors", "human/sensors", "~/state"]
    np.testing.assert_array_equal(out["~/state"]["robot"]["state"], col(30, 30, 0, 0))
    np.testing.assert_array_equal(out["~/state"]["human"]["state"], col(80, 80, 0, 0))
    assert out["human/sensors"]["communication_sensor"] == {}


@pytest.mark.timeout(10)
def test_env_draws_from_its_own_generator_with_one_reset():
    env = make_node(FlatEvadeEnv, "env", seed=5)
    expected_r = np.random.default_rng(np.random.SeedSequence([5, *b"env"])).random()
    state = env.step(0.0, {})["~/state"]
    np.testing.assert_allclose(state["robot_goal"]["pos"], col(30, 30) + 10 * expected_r,
                               atol=1e-12)


@pytest.mark.timeout(10)
def test_env_legacy_spends_the_first_reset_draws():
    env = make_node(FlatEvadeEnv, "env", {"rng": "legacy"}, seed=3)
    reference = np.random.RandomState(3)
    reference.random_sample(34)  # constructor reset: 2 goal draws + 32 measurement draws
    r = reference.random_sample()
    state = env.step(0.0, {})["~/state"]
    np.testing.assert_allclose(state["robot_goal"]["pos"], col(30, 30) + 10 * r, atol=1e-12)


@pytest.mark.timeout(10)
def test_env_holds_the_latest_action_and_starts_from_zero():
    env = make_node(FlatEvadeEnv, "env")
    env.step(0.0, {})
    state = wire(env.step(0.01, {"robot/action": None, "human/action": None}))["~/state"]
    np.testing.assert_array_equal(state["robot"]["state"], col(30, 30, 0, 0))  # zero control
    action = wire({"control": col(2, 4), "broadcast": {"state": col(1, 2, 3, 4)}})
    state = env.step(0.02, {"robot/action": action, "human/action": None})["~/state"]
    np.testing.assert_allclose(state["robot"]["state"], col(30, 30, 0.01, 0.02), atol=1e-15)
    out = env.step(0.03, {"robot/action": None, "human/action": None})  # held
    np.testing.assert_allclose(out["~/state"]["robot"]["state"],
                               col(30.0001, 30.0002, 0.02, 0.04), atol=1e-15)
    heard = out["human/sensors"]["communication_sensor"]["robot"]["state"]
    np.testing.assert_array_equal(heard, col(1, 2, 3, 4))
    assert not np.shares_memory(heard, action["broadcast"]["state"])


@pytest.mark.timeout(10)
def test_env_messages_are_values():
    env = make_node(FlatEvadeEnv, "env")
    first = env.step(0.0, {})
    first["~/state"]["robot"]["state"][:] = -1.0
    first["robot/sensors"]["state_sensor"]["state"][:] = -1.0
    second = env.step(0.01, {})
    np.testing.assert_array_equal(second["~/state"]["robot"]["state"], col(30, 30, 0, 0))


@pytest.mark.timeout(10)
def test_env_same_seed_same_run_other_seed_other_run():
    def run(seed: int, model: str = "uniform") -> bytes:
        env = make_node(FlatEvadeEnv, "env", {"noise_model": model}, seed=seed)
        outs = [env.step(k * 0.01, {"robot/action": {"control": col(1, -1)}}) for k in range(5)]
        payload, buffers = encode_payload(outs)
        return payload + b"".join(bytes(b) for b in buffers)
    assert run(1) == run(1)
    assert run(1) != run(2)
    assert run(1, "gaussian") == run(1, "gaussian") != run(1)


@pytest.mark.timeout(10)
def test_env_goal_targets_are_configurable():
    env = make_node(FlatEvadeEnv, "env", {"agent_goal": {"robot": "human", "human": "none"}})
    state = env.step(0.0, {})["~/state"]
    assert state["robot_goal"]["adv_target"] == "human"
    assert state["human_goal"]["adv_target"] == "none"


@pytest.mark.timeout(10)
def test_agent_action_format_and_values_on_wire_inputs():
    env = make_node(FlatEvadeEnv, "env")
    robot = make_node(ModelBasedAgent, "robot")
    sensors = wire(env.step(0.0, {}))["robot/sensors"]
    assert not sensors["state_sensor"]["state"].flags.writeable
    action = robot.step(0.0, {"~/sensors": sensors})["~/action"]
    assert list(action) == ["control", "broadcast"]
    assert list(action["broadcast"]) == ["planned_traj", "state", "next_point"]
    shapes = [action["control"].shape, action["broadcast"]["planned_traj"].shape,
              action["broadcast"]["state"].shape, action["broadcast"]["next_point"].shape]
    assert shapes == [(2, 1), (20, 4, 1), (4, 1), (4, 1)]
    assert action["control"].dtype == np.float64
    assert not np.shares_memory(action["broadcast"]["state"], sensors["state_sensor"]["state"])
    assert not np.shares_memory(action["broadcast"]["planned_traj"], robot.planner.trajectory)
    wire(action)  # encodable
    assert robot.step(0.01, {"~/sensors": None}) is None


@pytest.mark.timeout(10)
def test_agent_dt_is_time_since_it_last_acted(monkeypatch):
    seen: list[float] = []

    def spy(law, estimate, u_ref, dt, p):
        seen.append(dt)
        return u_ref
    monkeypatch.setattr(agent_module, "safe_control", spy)
    env = make_node(FlatEvadeEnv, "env")
    robot = make_node(ModelBasedAgent, "robot")
    robot.period = 0.2
    sensors = wire(env.step(0.0, {}))["robot/sensors"]
    robot.step(0.0, {"~/sensors": None})    # no sensors: not an action
    for t in (0.1, 0.3, 0.35):
        robot.step(t, {"~/sensors": sensors})
    assert seen == pytest.approx([0.2, 0.2, 0.05])


@pytest.mark.timeout(10)
def test_unsafe_human_outputs_clipped_feedback():
    env = make_node(FlatEvadeEnv, "env")
    human = make_node(ModelBasedAgent, "human", {"safe_controller": "Unsafe"})
    sensors = wire(env.step(0.0, {}))["human/sensors"]
    action = human.step(0.0, {"~/sensors": sensors})["~/action"]
    np.testing.assert_array_equal(action["control"], col(-200, -200))
