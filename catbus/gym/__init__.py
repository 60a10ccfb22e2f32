"""catbus graphs as Gymnasium environments (``pip install 'catbus[gym]'``).

    import catbus.gym
    env = catbus.gym.make("launch/flat_evade.yaml", agent="robot")   # the mapping the env names
    obs, info = env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step(env.action_space.sample())

Importing this package imports Gymnasium and registers ``catbus/FlatEvade-v0``
(``gymnasium.make("catbus/FlatEvade-v0")``; ``gymnasium.make("catbus.gym:catbus/FlatEvade-v0")``
imports this package first, so it also works in a fresh process such as an
``AsyncVectorEnv`` worker started with ``spawn``). ``import catbus`` never imports it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium

from catbus.gym.env import CatbusEnv, make
from catbus.gym.mapping import GymMapping


def _default_flat_evade() -> Path:
    """The repo's launch/flat_evade.yaml: beside the package (a source checkout, editable
    install), else in the current folder."""
    here = Path(__file__).resolve().parents[2] / "launch" / "flat_evade.yaml"
    return here if here.is_file() else Path("launch") / "flat_evade.yaml"


def make_flat_evade(launch: Any = None, **options: Any) -> CatbusEnv:
    """The entry point of ``catbus/FlatEvade-v0``: the robot of flat_evade, with the human
    chasing it, as a Gymnasium environment (the mapping its environment names,
    ``nodes/flat_evade/gym_mapping.py``). Not recorded unless ``record=`` is given."""
    return make(launch if launch is not None else _default_flat_evade(), agent="robot", **options)


if "catbus/FlatEvade-v0" not in gymnasium.registry:
    gymnasium.register("catbus/FlatEvade-v0", entry_point="catbus.gym:make_flat_evade")

__all__ = ["CatbusEnv", "GymMapping", "make", "make_flat_evade"]
