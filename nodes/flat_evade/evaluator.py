"""Scores of a flat_evade run, read from its recording (docs/flat_evade.md, "Scores").

The original evaluator's two scores keep their formulas, so results stay comparable:

* ``achieved_goals`` -- how often the robot reached its own random goal (the last state's
  ``robot_goal.count``);
* ``safety`` -- ``sum_k min(0, ln(delta_k / d0))`` over environment steps k >= 1 with ``d0 = 1``,
  where ``delta_k`` is the smallest ``|rel_pos|`` in the robot's *noisy* radar reading
  (``robot/sensors`` -> ``obstacle_sensor``), 1e9 with no obstacle. Only steps measured closer than
  1 count, and the score is <= 0. The reset's reading is left out, as the original's record left
  it out.

and catbus adds what the original did not report, from the *true* positions (``env/state``,
reset included): ``min_distance`` (with its tick and time) and ``steps_below_d_min``.

The reset is the environment's first publication on a topic: sequence 0 (tick 0 in
stepped/inline). Using the sequence keeps this right in parallel mode, where ticks are derived
from wall-clock time.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from catbus.errors import CatbusError
from catbus.recording.reader import Recording

D0 = 1.0
NO_OBSTACLE = 1e9


def distance(a: Any, b: Any) -> float:
    """Euclidean distance of two (2,1) position columns."""
    return float(np.linalg.norm(np.asarray(a, dtype=float) - np.asarray(b, dtype=float)))


def radar_distance(obstacle_sensor: dict[str, Any] | None) -> float:
    """The smallest measured distance to any obstacle, or 1e9 when the radar sees none."""
    if not obstacle_sensor:
        return NO_OBSTACLE
    return min(float(np.linalg.norm(np.asarray(o["rel_pos"], dtype=float)))
               for o in obstacle_sensor.values())


def safety_term(delta: float, d0: float = D0) -> float:
    """``min(0, ln(delta / d0))``; a measured distance of 0 is -inf, as in the original."""
    if delta <= 0:
        return -math.inf
    return min(0.0, math.log(delta / d0))


def evaluate(recording: Recording, d_min: float = 15.0, *, state_topic: str = "env/state",
             sensors_topic: str = "robot/sensors") -> dict[str, Any]:
    """Score a flat_evade recording. ``d_min`` is the safety distance for ``steps_below_d_min``
    (the robot's SafeSet d_min by default); the topic names matter only for remapped launches."""
    safety = 0.0
    safety_steps = 0
    min_radar = math.inf
    for message in recording.messages([sensors_topic]):
        if message.sequence == 0:  # the reset's reading: not part of the original's record
            continue
        delta = radar_distance(message.value.get("obstacle_sensor"))
        min_radar = min(min_radar, delta)
        term = safety_term(delta)
        if term < 0:
            safety_steps += 1
        safety += term

    steps = 0
    last_state: dict[str, Any] | None = None
    min_distance, min_message = math.inf, None
    below = 0
    for message in recording.messages([state_topic]):
        state = message.value
        if message.sequence != 0:
            steps += 1
        last_state = state
        true_distance = distance(state["robot"]["pos"], state["human"]["pos"])
        if true_distance < d_min:
            below += 1
        if true_distance < min_distance:
            min_distance, min_message = true_distance, message

    if last_state is None or min_message is None:
        raise CatbusError(f"{recording.path}: no {state_topic} messages, so nothing to score "
                          "(is this a flat_evade run, and did the environment get to publish?)")
    return {
        "achieved_goals": int(last_state["robot_goal"]["count"]),
        "safety": safety,
        "min_distance": min_distance,
        "steps_below_d_min": below,
        "d_min": float(d_min),
        "min_distance_tick": min_message.tick,
        "min_distance_time": min_message.sim_time,
        "steps": steps,
        "human_goals": int(last_state["human_goal"]["count"]),
        "min_radar_distance": min_radar if math.isfinite(min_radar) else None,
        "steps_radar_below_d0": safety_steps,
    }


__all__ = ["evaluate", "distance", "radar_distance", "safety_term"]
