"""flat_evade's robot as a Gymnasium environment: the mapping ``catbus/FlatEvade-v0`` uses.

    import catbus.gym, gymnasium
    env = gymnasium.make("catbus/FlatEvade-v0")            # or:
    env = catbus.gym.make("launch/flat_evade.yaml", agent="robot")   # FlatEvadeEnv names it

- **Observation** (``Box(-inf, inf, (12,), float32)``), from ``robot/sensors`` (the robot's noisy
  measurements, what its own agent sees): its state ``[px, py, vx, vy]``, the goal's relative
  position and velocity (2 + 2), and the human's relative position and velocity (2 + 2).
- **Action** (``Box(-1, 1, (2,), float32)``): the robot's 2-D acceleration command, scaled by
  ``U_MAX`` (200, the agent's default ``u_max``) into ``robot/action``'s ``control``.
- **Reward** per step, from the true state ``env/state``: the progress towards the goal (its
  distance before minus after; ``GOAL_BONUS`` = 10 instead when a goal is reached, as the goal
  then moves), minus ``(D_MIN - d) / D_MIN`` while the human is within ``D_MIN`` = 15 (the safe
  controller's ``d_min``) at distance ``d``.
- **Termination**: when a node ends the episode (the flat_evade environment itself never does);
  **truncation** after ``MAX_STEPS`` = 500 steps (5 s, the launch file's length).
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

import gymnasium
import numpy as np

from catbus.gym.mapping import GymMapping

U_MAX = 200.0
D_MIN = 15.0
GOAL_BONUS = 10.0
MAX_STEPS = 500


def _flat(*arrays: Any) -> list[np.ndarray]:
    return [np.asarray(a, dtype=np.float64).reshape(-1) for a in arrays]


def observation(messages: Mapping[str, Any]) -> np.ndarray:
    sensors = messages["robot/sensors"]
    goal = sensors["goal_sensor"]
    human = sensors["obstacle_sensor"]["human"]
    parts = _flat(sensors["state_sensor"]["state"], goal["rel_pos"], goal["rel_vel"],
                  human["rel_pos"], human["rel_vel"])
    return np.concatenate(parts).astype(np.float32)


def action(a: Any) -> dict[str, Any]:
    u = np.clip(np.asarray(a, dtype=np.float64).reshape(2), -1.0, 1.0) * U_MAX
    return {"robot/action": {"control": u, "broadcast": {}}}


def _distances(state: Mapping[str, Any]) -> tuple[float, float, int]:
    robot = np.asarray(state["robot"]["pos"], dtype=np.float64).reshape(2)
    goal = np.asarray(state["robot_goal"]["pos"], dtype=np.float64).reshape(2)
    human = np.asarray(state["human"]["pos"], dtype=np.float64).reshape(2)
    return (float(np.linalg.norm(goal - robot)), float(np.linalg.norm(human - robot)),
            int(state["robot_goal"]["count"]))


def reward(previous: Optional[Mapping[str, Any]], messages: Mapping[str, Any]) -> float:
    goal_now, human_now, count_now = _distances(messages["env/state"])
    if previous is None:
        progress = 0.0
    else:
        goal_before, _, count_before = _distances(previous["env/state"])
        progress = GOAL_BONUS if count_now > count_before else goal_before - goal_now
    penalty = (D_MIN - human_now) / D_MIN if human_now < D_MIN else 0.0
    return progress - penalty


def info(messages: Mapping[str, Any]) -> dict[str, Any]:
    goal, human, count = _distances(messages["env/state"])
    return {"goal_distance": goal, "human_distance": human, "goals_reached": count}


robot_mapping = GymMapping(
    observation_space=gymnasium.spaces.Box(-np.inf, np.inf, (12,), np.float32),
    action_space=gymnasium.spaces.Box(-1.0, 1.0, (2,), np.float32),
    observation=observation,
    action=action,
    reward=reward,
    info=info,
    topics=("env/state",),
    max_steps=MAX_STEPS,
)
