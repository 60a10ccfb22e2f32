"""The agent's task goal and the naive planner (docs/flat_evade.md, "The agent", steps 2-5), kept
as the original had them.

The planner draws a straight line of ``horizon`` points from the measured state towards the goal
(never including the goal itself, Q14), replans every ``replanning_cycle`` calls, and hands the
controller the first point of the line that lies ahead of the agent.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

import numpy as np

from nodes.flat_evade.values import stack


def cartesian_state(estimate: Mapping[str, Any]) -> np.ndarray:
    """``[pos; vel]`` from the cartesian (PV) sensor, the state the planner and controllers use."""
    cart = estimate["cartesian_sensor"]
    return stack(cart["pos"], cart["vel"])


def task_goal(estimate: Mapping[str, Any]) -> np.ndarray:
    """The goal's estimated absolute state: relative goal reading plus own cartesian reading.

    Its velocity part is about zero (goals are static) plus the noise of both readings.
    """
    goal = estimate["goal_sensor"]
    return stack(goal["rel_pos"], goal["rel_vel"]) + cartesian_state(estimate)


def plan_trajectory(start: np.ndarray, goal: np.ndarray, horizon: int) -> np.ndarray:
    """``T_i = s + i*((goal - s)/H)`` for i = 0..H-1, shape (H, n, 1).

    The last point is (H-1)/H of the way; the goal itself is never in the plan (Q14). The
    expression keeps the original's operation order so legacy runs match bit for bit.
    """
    increment = (goal - start) / horizon
    steps = np.arange(horizon, dtype=np.float64).reshape(horizon, 1, 1)
    return start[np.newaxis] + steps * increment[np.newaxis]


def next_point(trajectory: np.ndarray, pos: np.ndarray, state_dimension: int) -> np.ndarray:
    """The first point ``T_i`` ahead of ``pos``: ``(l_p - pos)^T (T_i,p - pos) > 0`` with l the
    plan's last point and ``_p`` the first ``state_dimension`` rows; the last point if none is
    (which happens only when ``pos`` is exactly on it).

    The whole plan is scanned every time, whatever the replanning timer says (as the original), so
    an agent that overshot the line's end is sent back to its start until the next replan.
    """
    last = trajectory[-1]
    ahead = (last[:state_dimension] - pos).T
    for point in trajectory:
        if (ahead @ (point[:state_dimension] - pos)).item() > 0:
            return point.copy()
    return last.copy()


class NaivePlanner:
    """Replans every ``replanning_cycle`` calls (the first call plans) and picks the next point."""

    def __init__(self, horizon: int = 20, replanning_cycle: int = 10,
                 state_dimension: int = 2) -> None:
        if horizon < 1 or replanning_cycle < 1 or state_dimension < 1:
            raise ValueError("horizon, replanning_cycle and state_dimension must be >= 1")
        self.horizon = horizon
        self.replanning_cycle = replanning_cycle
        self.state_dimension = state_dimension
        self.timer = replanning_cycle
        self.trajectory: Optional[np.ndarray] = None

    def __call__(self, state: np.ndarray, goal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(plan, next point)`` for the measured ``state`` [p; v] and the task ``goal``."""
        if self.timer == self.replanning_cycle:
            self.trajectory = plan_trajectory(state, goal, self.horizon)
            self.timer = 0
        point = next_point(self.trajectory, state[:self.state_dimension], self.state_dimension)
        self.timer += 1
        return self.trajectory, point
