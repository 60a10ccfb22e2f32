"""``ModelBasedAgent``: the original's model-based agent (docs/flat_evade.md, "The agent") as a
catbus node.

Pipeline per step: pass-through estimate, task goal, naive plan (every ``replanning_cycle``
calls), next point, PD feedback towards it, then the chosen safe controller. The robot runs
``SafeSet``; the human is the same class with ``safe_controller: Unsafe``.

``dt`` of the safety index is the time since this agent last acted (``t - t_last``; the first is
the agent's own period), so it means the same in every mode: simulated time in ``stepped`` and
``inline``, measured time in ``parallel`` (docs/flat_evade.md, Q7).
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

import numpy as np

from catbus.node import Node
from catbus.params import Param, deep_merge
from nodes.flat_evade.controllers import (SAFE_CONTROLLERS, SafeParams, feedback_control,
                                          safe_control)
from nodes.flat_evade.planner import NaivePlanner, cartesian_state, task_goal
from nodes.flat_evade.values import column


class ModelBasedAgent(Node):
    """Plan a straight line to the goal, track it with PD, filter the command for safety."""

    inputs = ["~/sensors"]
    outputs = ["~/action"]
    period = 0.01

    params = {
        "safe_controller": Param(str, "SafeSet", "safety layer applied to the feedback command",
                                 choices=tuple(SAFE_CONTROLLERS)),
        "planner": {
            "horizon": Param(int, 20, "points in a plan (the goal itself is never one)"),
            "replanning_cycle": Param(int, 10, "replan every this many steps"),
            "state_dimension": Param(int, 2, "rows of a plan point that are position"),
        },
        "feedback": {
            "kp": Param(float, 200.0, "position gain"),
            "kv": Param(float, 50.0, "velocity gain"),
            "u_max": Param(list, [200.0, 200.0], "feedback command clipped to +-u_max", shape=(2,)),
        },
        "safe": {
            "d_min": Param(float, 15.0, "distance the safety index keeps from obstacles"),
            "k_v": Param(float, 5.0, "weight of the approach speed in the safety index"),
            "eta": Param(float, 1.0, "margin: SafeSet enforces phi_dot <= -eta; phi adds eta*dt"),
            "c": Param(float, 1000.0, "gain of PotentialField and SlidingMode"),
            "lambd": Param(float, 1.0, "rate of Sublevel and ZBF (phi_dot <= lambd*phi)"),
            "u_max": Param(list, [200.0, 200.0], "bound used when saturate is true", shape=(2,)),
            "saturate": Param(bool, False, "clip the safe command to +-u_max (the original did not)"),
        },
    }

    def setup(self, params: dict[str, Any]) -> None:
        self.params = params
        self.planner = NaivePlanner(**params["planner"])
        self._controllers(params)
        self.t_last: Optional[float] = None

    def on_params(self, changed: dict[str, Any]) -> None:
        """Live changes (``catbus param set robot safe.d_min 20``): the safety layer and the
        gains take the new values at this step; a planner change keeps the current plan."""
        self.params = deep_merge(self.params, changed)
        if "planner" in changed:
            timer, trajectory = self.planner.timer, self.planner.trajectory
            self.planner = NaivePlanner(**self.params["planner"])
            self.planner.timer = min(timer, self.planner.replanning_cycle)
            self.planner.trajectory = trajectory
        self._controllers(self.params)

    def _controllers(self, params: dict[str, Any]) -> None:
        self.law: str = params["safe_controller"]
        feedback = params["feedback"]
        self.kp, self.kv = feedback["kp"], feedback["kv"]
        self.feedback_u_max = column(feedback["u_max"], 2, "feedback.u_max")
        safe = params["safe"]
        self.safe = SafeParams(d_min=safe["d_min"], k_v=safe["k_v"], eta=safe["eta"], c=safe["c"],
                               lambd=safe["lambd"], u_max=column(safe["u_max"], 2, "safe.u_max"),
                               saturate=safe["saturate"])

    def snapshot(self) -> dict[str, Any]:
        """The planner's plan and timer, and when this agent last acted: for a restart from a
        checkpoint (``checkpoint: N``) or a hot swap (a swap to other parameters keeps them)."""
        return {"t_last": self.t_last, "timer": self.planner.timer,
                "trajectory": self.planner.trajectory}

    def restore(self, state: Mapping[str, Any]) -> None:
        """Go on from what :meth:`snapshot` gave."""
        self.t_last = state["t_last"]
        # (never past the cycle: a swap to a shorter replanning_cycle must still replan)
        self.planner.timer = min(int(state["timer"]), self.planner.replanning_cycle)
        trajectory = state["trajectory"]
        self.planner.trajectory = None if trajectory is None else np.array(trajectory)

    def step(self, t: float, inputs: dict[str, Any]) -> Optional[dict[str, Any]]:
        sensors = inputs["~/sensors"]
        if sensors is None:          # nothing measured yet: publish nothing, the env holds zero
            return None
        dt = self.period if self.t_last is None else t - self.t_last
        self.t_last = t
        return {"~/action": self.act(dt, sensors)}

    def act(self, dt: float, sensors: Mapping[str, Any]) -> dict[str, Any]:
        """One action from one measurement group (docs/flat_evade.md, "The agent"). The estimate
        is the measurement."""
        estimate = sensors
        state = cartesian_state(estimate)
        trajectory, point = self.planner(state, task_goal(estimate))
        u_ref = feedback_control(point, state, self.kp, self.kv, self.feedback_u_max)
        u = safe_control(self.law, estimate, u_ref, dt, self.safe)
        return {
            "control": np.array(u, dtype=np.float64),
            "broadcast": {
                "planned_traj": trajectory.copy(),
                "state": np.array(estimate["state_sensor"]["state"], dtype=np.float64),
                "next_point": point.copy(),
            },
        }
