"""``FlatEvadeEnv``: the flat_evade environment as a catbus node.

Each step applies the latest action of each agent (zero-order hold; zero control before the first
action), advances the world by one Euler step of ``dt = self.period``, and publishes every agent's
sensors and the true state. The first call (tick 0) is the reset: it publishes the reset
observation without advancing, so agents act on it and the step at tick 1 applies their actions.

Randomness: by default every draw comes from ``self.rng``, the node's own Generator (seeded from
the run seed and the node name), and there is one reset. ``rng: legacy`` reproduces the original
toolbox's numbers instead: ``np.random.RandomState(seed)`` with its draw order, including the
double reset (constructor + script) that used 68 draws before step 1 (docs/flat_evade.md,
"Randomness", Q2).
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

import numpy as np

from catbus.errors import ConfigError
from catbus.node import Node
from catbus.params import Param
from nodes.flat_evade.noise import NOISE_MODELS, RandomSource, SensorNoise
from nodes.flat_evade.values import column
from nodes.flat_evade.world import NO_TARGET, NOISY_SENSORS, World

AGENTS: tuple[str, ...] = ("robot", "human")


def _widths(pv: float, state: float, radar: float, goal: float) -> dict[str, Param]:
    values = dict(zip(NOISY_SENSORS, (pv, state, radar, goal)))
    return {alias: Param(float, value, f"full width w of the {alias} noise (>= 0)")
            for alias, value in values.items()}


class FlatEvadeEnv(Node):
    """The robot-and-human world of flat_evade (docs/flat_evade.md, "The world", "Sensors and
    noise"): two double integrators and their goals."""

    inputs = ["robot/action", "human/action"]
    outputs = ["robot/sensors", "human/sensors", "~/state"]
    period = 0.01
    evaluator = "nodes.flat_evade.evaluator:evaluate"
    plotter = "nodes.flat_evade.plot:plot"
    foxglove_scene = "nodes.flat_evade.foxglove_scene:FlatEvadeScene"
    #: The robot as a Gymnasium environment: ``catbus.gym.make(launch, agent="robot")``.
    gym_mapping = {"robot": "nodes.flat_evade.gym_mapping:robot_mapping"}

    params = {
        "rng": Param(str, "generator",
                     "generator: all draws from this node's seeded Generator, one reset; legacy: "
                     "numpy RandomState(seed) in the original's order incl. its 68 reset draws",
                     choices=("generator", "legacy")),
        "reaching_eps": Param(float, 0.1, "a goal is reached when max(|g - p|) < reaching_eps"),
        "init_x": {
            "robot": Param(list, [30.0, 30.0, 0.0, 0.0], "initial [px, py, vx, vy]", shape=(4,)),
            "human": Param(list, [80.0, 80.0, 0.0, 0.0], "initial [px, py, vx, vy]", shape=(4,)),
        },
        "agent_goal": {
            "robot": Param(str, NO_TARGET, "the body the robot's goal chases, or none",
                           choices=(NO_TARGET, "human")),
            "human": Param(str, "robot", "the body the human's goal chases, or none",
                           choices=(NO_TARGET, "robot")),
        },
        "noise_model": Param(str, "uniform",
                             "uniform: y + w*U - w/2 (the original's); gaussian: sigma = w/sqrt(12)",
                             choices=NOISE_MODELS),
        "noise_width": {
            "robot": _widths(pv=0.0, state=0.1, radar=0.1, goal=0.1),
            "human": _widths(pv=0.1, state=0.1, radar=0.1, goal=0.0),
        },
    }

    def setup(self, params: dict[str, Any]) -> None:
        self.reaching_eps = params["reaching_eps"]
        self.legacy = params["rng"] == "legacy"
        self.source: RandomSource = np.random.RandomState(self.seed) if self.legacy else self.rng
        self.noise = SensorNoise(self.source, params["noise_model"])
        self.widths = _check_widths(params["noise_width"], where=f"node {self.name}")
        self.init_x = {name: column(params["init_x"][name], 4, f"init_x.{name}") for name in AGENTS}
        self.goal_targets = {name: None if target == NO_TARGET else target
                             for name, target in params["agent_goal"].items()}
        self.world: Optional[World] = None
        self.controls: dict[str, np.ndarray] = {}
        self.broadcasts: dict[str, dict] = {}

    def step(self, t: float, inputs: dict[str, Any]) -> dict[str, Any]:
        if self.world is None:
            self.reset()
        else:
            self._hold_actions(inputs)
            self.world.simulate(self.controls, self.broadcasts, self.period)
        return self._publish()

    def snapshot(self) -> dict[str, Any]:
        """The world and the held actions, for a restart from a checkpoint (``checkpoint: N``)
        or a hot swap. ``self.rng`` is catbus's to carry; the legacy ``RandomState`` is ours."""
        state: dict[str, Any] = {
            "world": None if self.world is None else self.world.state(),
            "controls": self.controls, "broadcasts": self.broadcasts}
        if self.legacy:
            state["legacy_rng"] = list(self.source.get_state())
        return state

    def restore(self, state: Mapping[str, Any]) -> None:
        """Go on from what :meth:`snapshot` gave (after ``setup`` with the same parameters)."""
        if self.legacy and state.get("legacy_rng") is not None:
            self.source.set_state(tuple(state["legacy_rng"]))
        self.world = None if state["world"] is None else World.from_state(
            state["world"], self.goal_targets, self.reaching_eps, self.source)
        self.controls = {name: np.array(u, dtype=np.float64)
                         for name, u in state["controls"].items()}
        self.broadcasts = {name: dict(value or {}) for name, value in state["broadcasts"].items()}

    def reset(self) -> None:
        """Build the world and forget held actions. In legacy mode, also spend the draws of the
        original's first (constructor) reset: world + measurement, thrown away."""
        if self.legacy:
            self._new_world().measure(self.noise, self.widths)
        self.world = self._new_world()
        self.controls = {name: np.zeros((2, 1)) for name in AGENTS}
        self.broadcasts = {name: {} for name in AGENTS}

    def _new_world(self) -> World:
        return World(self.init_x, self.goal_targets, self.reaching_eps, self.source)

    def _hold_actions(self, inputs: Mapping[str, Any]) -> None:
        """Zero-order hold: keep each agent's newest action until another arrives.

        The control is copied into a fresh column (and checked); the broadcast is kept as
        received (read-only, never modified) because the world copies it into every measurement.
        """
        for name in AGENTS:
            action = inputs.get(f"{name}/action")
            if action is None:
                continue
            if "control" not in action:
                raise ValueError(f"{name}/action has no 'control' entry (keys: {list(action)})")
            self.controls[name] = column(action["control"], 2, f"{name}/action control")
            self.broadcasts[name] = action.get("broadcast") or {}

    def _publish(self) -> dict[str, Any]:
        assert self.world is not None
        sensors = self.world.measure(self.noise, self.widths)
        out: dict[str, Any] = {f"{name}/sensors": sensors[name] for name in AGENTS}
        out["~/state"] = self.world.env_info()
        return out


def _check_widths(widths: Mapping[str, Mapping[str, float]], where: str) -> dict[str, dict[str, float]]:
    for agent, per_sensor in widths.items():
        for alias, width in per_sensor.items():
            if not width >= 0:
                raise ConfigError(where, f"noise_width.{agent}.{alias}",
                                  f"must be a width >= 0, got {width!r}")
    return {agent: dict(per_sensor) for agent, per_sensor in widths.items()}
