"""The flat_evade world: double-integrator bodies, their goals, one step and one measurement.

Pure model code (no node, no bus), so it can be tested with hand-computed numbers. Behaviour is
docs/flat_evade.md ("The world", "Sensors and noise"), with the decisions listed there: the plant
applies 0.5*u although the agents'
models assume u (Q6), there are no world bounds (Q20), goals are placed with one scalar draw and
reached by the Chebyshev test (Q4, Q5), and everything handed out is a copy (Q15, Q16).

Entities are kept in registration order ``robot, robot_goal, human, human_goal`` (each body
followed by its goal): that order fixes the simulation order, the order of random draws, and the
key order of the environment state and of every measurement.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

import numpy as np

from nodes.flat_evade.noise import RandomSource, SensorNoise
from nodes.flat_evade.values import copy_value

#: The plant applies this fraction of the commanded acceleration (the original's G matrix). The
#: agents' models assume 1; the mismatch is part of the scenario (docs/flat_evade.md, Q6) and kept
#: on purpose.
PLANT_GAIN = 0.5
#: Distance scale of goal placement: the random offset is up to this on both axes, and a chasing
#: goal sits this far beyond its target.
GOAL_OFFSET = 10.0
#: A chasing goal is clipped to the drawn map [0, 100]^2; a goal without target is not (Q4).
MAP_LOW, MAP_HIGH = 0.0, 100.0
#: ``adv_target`` of a goal that chases nobody, as the original wrote it.
NO_TARGET = "none"
#: The noisy sensors of every agent, in the original's yaml order (which is also the draw order).
#: The ``communication_sensor`` follows them and draws nothing.
NOISY_SENSORS: tuple[str, ...] = ("cartesian_sensor", "state_sensor", "obstacle_sensor",
                                  "goal_sensor")


def euler_step(x: np.ndarray, u: np.ndarray, dt: float) -> np.ndarray:
    """One explicit Euler step of the plant ``x' = f(x) + G u``: ``p += dt*v_old``,
    ``v += dt*0.5*u``. Returns a new (4,1) array."""
    x_dot = np.vstack([x[2:], PLANT_GAIN * u])
    return x + dt * x_dot


def place_goal(owner_pos: np.ndarray, target_pos: Optional[np.ndarray], r: float) -> np.ndarray:
    """Where a goal goes, given one uniform scalar ``r`` (docs/flat_evade.md, "Goals").

    Without target: ``owner + 10*r*[1,1]``, a diagonal offset, not clipped. With a target: 10 units
    beyond the target on the line from the owner, plus the same diagonal jitter, clipped to the
    map. If owner and target coincide the direction is the zero vector, as in the original.
    """
    ones = np.ones((2, 1))
    if target_pos is None:
        return owner_pos + GOAL_OFFSET * r * ones
    direction = target_pos - owner_pos
    norm = np.linalg.norm(direction)
    unit = direction / norm if norm != 0 else direction
    return np.clip(target_pos + GOAL_OFFSET * unit + GOAL_OFFSET * r * ones, MAP_LOW, MAP_HIGH)


def goal_reached(goal_pos: np.ndarray, owner_pos: np.ndarray, eps: float) -> bool:
    """The original's reach test: Chebyshev distance (largest axis gap) strictly below ``eps``."""
    return bool(np.max(np.abs(goal_pos - owner_pos)) < eps)


@dataclass
class Body:
    """A double-integrator body (the original's BB8Agent); ``x = [p; v]`` is (4,1)."""

    name: str
    x: np.ndarray
    #: The ``broadcast`` entry of this body's last applied action, ``{}`` if none.
    broadcast: dict[str, Any] = field(default_factory=dict)

    @property
    def pos(self) -> np.ndarray:
        return self.x[:2]

    @property
    def vel(self) -> np.ndarray:
        return self.x[2:]


@dataclass
class Goal:
    """A static goal point of one body, optionally placed to chase another body."""

    owner: str
    target: Optional[str]
    pos: np.ndarray
    count: int = 0

    @property
    def state(self) -> np.ndarray:
        """``[g; 0; 0]``: a goal never moves between placements."""
        return np.vstack([self.pos, np.zeros((2, 1))])


class World:
    """Bodies and their goals in registration order, stepped and measured like the original.

    Building a world is the original's reset: the bodies start at ``init_x`` and every goal is
    placed with one scalar draw from ``source``, in registration order. All bodies exist before
    the first goal is placed, so a goal may chase any other body (the original required the
    target to be registered first; the draws are the same either way).
    """

    def __init__(self, init_x: Mapping[str, np.ndarray], goal_targets: Mapping[str, Optional[str]],
                 reaching_eps: float, source: RandomSource) -> None:
        self.reaching_eps = reaching_eps
        self.source = source
        self.bodies: dict[str, Body] = {
            name: Body(name, np.array(x, dtype=np.float64).reshape(4, 1)) for name, x in init_x.items()
        }
        self.goals: dict[str, Goal] = {}
        for name in self.bodies:
            target = goal_targets.get(name)
            if target is not None and (target == name or target not in self.bodies):
                raise ValueError(f"the goal of {name!r} cannot chase {target!r}; "
                                 f"choose another body ({', '.join(self.bodies)}) or none")
            self.goals[name] = Goal(name, target, np.zeros((2, 1)))
            self._place(self.goals[name])

    # -- state (a checkpoint, a hot swap) ------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """Everything that changes as the world runs: each body's ``x`` and last broadcast,
        each goal's place and count (what :meth:`from_state` rebuilds the world from)."""
        return {"bodies": {name: {"x": body.x, "broadcast": body.broadcast}
                           for name, body in self.bodies.items()},
                "goals": {name: {"pos": goal.pos, "count": goal.count}
                          for name, goal in self.goals.items()}}

    @classmethod
    def from_state(cls, state: Mapping[str, Any], goal_targets: Mapping[str, Optional[str]],
                   reaching_eps: float, source: RandomSource) -> "World":
        """The world :meth:`state` described, built without a draw (building one anew places
        every goal with one)."""
        world = cls.__new__(cls)
        world.reaching_eps = reaching_eps
        world.source = source
        world.bodies = {name: Body(name, np.array(body["x"], dtype=np.float64),
                                   dict(body["broadcast"] or {}))
                        for name, body in state["bodies"].items()}
        world.goals = {name: Goal(name, goal_targets.get(name),
                                  np.array(goal["pos"], dtype=np.float64), int(goal["count"]))
                       for name, goal in state["goals"].items()}
        return world

    # -- dynamics -------------------------------------------------------------------------------
    def simulate(self, controls: Mapping[str, np.ndarray], broadcasts: Mapping[str, dict],
                 dt: float) -> None:
        """One step (docs/flat_evade.md, "Order within one environment step"): for each body in
        order, Euler with its control, store its
        broadcast, then run its goal's reach test against the positions as they are now (so the
        human goal's re-placement sees both bodies already moved). A missing control is zero."""
        for name, body in self.bodies.items():
            body.x = euler_step(body.x, controls.get(name, np.zeros((2, 1))), dt)
            body.broadcast = broadcasts.get(name) or {}
            goal = self.goals[name]
            if goal_reached(goal.pos, body.pos, self.reaching_eps):
                goal.count += 1
                self._place(goal)

    def _place(self, goal: Goal) -> None:
        r = float(self.source.random())
        target = None if goal.target is None else self.bodies[goal.target].pos
        goal.pos = place_goal(self.bodies[goal.owner].pos, target, r)

    # -- observation ----------------------------------------------------------------------------
    def env_info(self) -> dict[str, dict[str, Any]]:
        """The true state of every entity in registration order (docs/flat_evade.md, "Topics"), as
        copies."""
        info: dict[str, dict[str, Any]] = {}
        for name, body in self.bodies.items():
            info[name] = _kinematics(body.x)
            goal = self.goals[name]
            info[f"{name}_goal"] = {**_kinematics(goal.state), "count": int(goal.count),
                                    "adv_target": goal.target or NO_TARGET}
        return info

    def measure(self, noise: SensorNoise,
                widths: Mapping[str, Mapping[str, float]]) -> dict[str, dict[str, Any]]:
        """Every agent's noisy measurement group M[agent] (docs/flat_evade.md, "Sensors and
        noise"), agents in registration order.

        Draw order (which the legacy mode depends on): per agent, cartesian pos, vel; state;
        per obstacle rel_pos, rel_vel; goal rel_pos, rel_vel. 16 uniforms per agent with one
        obstacle. ``widths[agent][alias]`` is the noise width of that sensor.
        """
        return {name: self._measure_one(body, noise, widths[name])
                for name, body in self.bodies.items()}

    def _measure_one(self, body: Body, noise: SensorNoise,
                     width: Mapping[str, float]) -> dict[str, Any]:
        others = [other for other in self.bodies.values() if other is not body]
        goal = self.goals[body.name]
        group: dict[str, Any] = {}
        w = width["cartesian_sensor"]
        group["cartesian_sensor"] = {"pos": noise(body.pos, w), "vel": noise(body.vel, w)}
        group["state_sensor"] = {"state": noise(body.x, width["state_sensor"])}
        w = width["obstacle_sensor"]
        group["obstacle_sensor"] = {
            other.name: {"rel_pos": noise(other.pos - body.pos, w),
                         "rel_vel": noise(other.vel - body.vel, w)}
            for other in others
        }
        w = width["goal_sensor"]
        group["goal_sensor"] = {"rel_pos": noise(goal.pos - body.pos, w),
                                "rel_vel": noise(np.zeros((2, 1)) - body.vel, w)}
        group["communication_sensor"] = {other.name: copy_value(other.broadcast)
                                         for other in others if other.broadcast}
        return group


def _kinematics(x: np.ndarray) -> dict[str, np.ndarray]:
    return {"state": x.copy(), "pos": x[:2].copy(), "vel": x[2:].copy()}
