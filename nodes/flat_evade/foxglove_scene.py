"""flat_evade in Foxglove's 3-D panel: ``FlatEvadeEnv.foxglove_scene`` names :class:`FlatEvadeScene`.

``catbus export`` and the live bridge (``catbus foxglove``, ``catbus launch --foxglove``) build
one per environment node and feed it every message; it answers with ``foxglove.SceneUpdate``
messages (Foxglove's own schema, from the ``foxglove-sdk`` package) on the topic ``scene``, frame
``world`` (the map plane, z = 0):

- from ``<env>/state``: a sphere per body (robot red, human blue, as in ``catbus plot``), a
  smaller translucent sphere per goal, a label per body, and a ring of radius ``d_min`` (the
  robot's ``safe.d_min``) around the robot;
- from ``<agent>/action``: the agent's planned path (``broadcast.planned_traj``) as a line.

Each part is an entity with a fixed id, so a new message replaces the old one.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

FRAME = "world"
TOPIC = "scene"
BODY_DIAMETER = 3.0
GOAL_DIAMETER = 2.0
RING_POINTS = 72
#: Colours as in nodes/flat_evade/plot.py (RGB in 0..1).
COLORS = {"robot": (0.894, 0.102, 0.110), "human": (0.122, 0.373, 0.839),
          "robot_goal": (1.0, 0.498, 0.0), "human_goal": (0.2, 0.6, 1.0)}
DEFAULT_D_MIN = 15.0


class FlatEvadeScene:
    """Turns flat_evade messages into ``foxglove.SceneUpdate`` messages (see the module doc).

    ``env``: the environment node's name; ``nodes``: the run's nodes, ``{name: {"class",
    "params"}}`` (the robot's ``safe.d_min`` is read there, else its class default)."""

    def __init__(self, env: str, nodes: Mapping[str, Mapping[str, Any]]) -> None:
        import foxglove.messages  # noqa: F401  (fail early, with ImportError, without the SDK)

        self.state_topic = f"{env}/state"
        self.agents = [name for name in nodes if name != env]
        robot = nodes.get("robot") or {}
        safe = (robot.get("params") or {}).get("safe") or {}
        self.d_min = float(safe.get("d_min", _default_d_min()))

    def __call__(self, topic: str, value: Any, time_ns: int) -> list[tuple[str, Any]]:
        if topic == self.state_topic and isinstance(value, Mapping):
            return [(TOPIC, self._state(value, time_ns))]
        agent, _, leaf = topic.rpartition("/")
        if leaf == "action" and isinstance(value, Mapping):
            plan = (value.get("broadcast") or {}).get("planned_traj")
            if plan is not None:
                return [(TOPIC, self._plan(agent, plan, time_ns))]
        return []

    def _state(self, state: Mapping[str, Any], time_ns: int) -> Any:
        from foxglove.messages import SceneEntity, SceneUpdate, SpherePrimitive, TextPrimitive

        entities = []
        for name, info in state.items():
            if not isinstance(info, Mapping) or "pos" not in info:
                continue
            x, y = _xy(info["pos"])
            goal = name.endswith("_goal")
            size = GOAL_DIAMETER if goal else BODY_DIAMETER
            color = _color(COLORS.get(name, (0.5, 0.5, 0.5)), 0.5 if goal else 1.0)
            sphere = SpherePrimitive(pose=_pose(x, y), size=_vector(size, size, size), color=color)
            texts = [] if goal else [TextPrimitive(pose=_pose(x, y + size), billboard=True,
                                                   font_size=14.0, scale_invariant=True,
                                                   color=color, text=name)]
            entities.append(SceneEntity(timestamp=_stamp(time_ns), frame_id=FRAME, id=name,
                                        spheres=[sphere], texts=texts))
            if name == "robot":
                entities.append(self._ring(x, y, time_ns))
        return SceneUpdate(entities=entities)

    def _ring(self, x: float, y: float, time_ns: int) -> Any:
        from foxglove.messages import LinePrimitive, LinePrimitiveLineType, SceneEntity

        points = [_point(x + self.d_min * math.cos(a), y + self.d_min * math.sin(a))
                  for a in np.linspace(0.0, 2 * math.pi, RING_POINTS, endpoint=False)]
        line = LinePrimitive(type=LinePrimitiveLineType.LineLoop, pose=_pose(0.0, 0.0),
                             thickness=2.0, scale_invariant=True, points=points,
                             color=_color(COLORS["robot"], 0.6))
        return SceneEntity(timestamp=_stamp(time_ns), frame_id=FRAME, id="robot/d_min",
                           lines=[line], metadata=_metadata(d_min=f"{self.d_min:g}"))

    def _plan(self, agent: str, plan: Any, time_ns: int) -> Any:
        from foxglove.messages import LinePrimitive, LinePrimitiveLineType, SceneEntity, \
            SceneUpdate

        array = np.asarray(plan, dtype=np.float64)
        array = array.reshape(array.shape[0], -1) if array.ndim >= 2 else array.reshape(1, -1)
        points = [_point(float(row[0]), float(row[1])) for row in array
                  if row.size >= 2 and np.isfinite(row[:2]).all()]
        line = LinePrimitive(type=LinePrimitiveLineType.LineStrip, pose=_pose(0.0, 0.0),
                             thickness=1.5, scale_invariant=True, points=points,
                             color=_color(COLORS.get(agent, (0.3, 0.3, 0.3)), 0.8))
        return SceneUpdate(entities=[SceneEntity(timestamp=_stamp(time_ns), frame_id=FRAME,
                                                 id=f"{agent}/plan", lines=[line])])


def _default_d_min() -> float:
    try:
        from nodes.flat_evade.agent import ModelBasedAgent

        return float(ModelBasedAgent.params["safe"]["d_min"].default)
    except Exception:
        return DEFAULT_D_MIN


def _xy(pos: Any) -> tuple[float, float]:
    flat = np.asarray(pos, dtype=np.float64).reshape(-1)
    return float(flat[0]), float(flat[1])


def _stamp(time_ns: int) -> Any:
    from foxglove.messages import Timestamp

    return Timestamp(int(time_ns) // 1_000_000_000, int(time_ns) % 1_000_000_000)


def _pose(x: float, y: float) -> Any:
    from foxglove.messages import Pose, Quaternion, Vector3

    return Pose(position=Vector3(x=x, y=y, z=0.0), orientation=Quaternion(w=1.0))


def _vector(x: float, y: float, z: float) -> Any:
    from foxglove.messages import Vector3

    return Vector3(x=x, y=y, z=z)


def _point(x: float, y: float) -> Any:
    from foxglove.messages import Point3

    return Point3(x=x, y=y, z=0.0)


def _color(rgb: tuple[float, float, float], alpha: float) -> Any:
    from foxglove.messages import Color

    return Color(r=rgb[0], g=rgb[1], b=rgb[2], a=alpha)


def _metadata(**values: str) -> list[Any]:
    from foxglove.messages import KeyValuePair

    return [KeyValuePair(key=k, value=v) for k, v in values.items()]
