"""``GymnasiumEnv``: any registered Gymnasium environment as a catbus environment node.

Name it in a launch file as ``catbus.adapters.gymnasium:GymnasiumEnv`` (installed with catbus;
Gymnasium itself comes with ``pip install 'catbus[gym]'`` and is imported in ``setup``).

Parameters: ``env_id`` (a registered id, e.g. ``CartPole-v1``) and ``env_kwargs`` (keyword
arguments for ``gymnasium.make``, e.g. ``{max_episode_steps: 50}``).

Topics (``~/`` is the node's name; every one can be remapped in the launch file):

- ``~/action`` (input): the action, as the environment's action space takes it: an int for a
  ``Discrete`` space, a number or a list/array for a ``Box``. Remap it to the agent's output
  (``remap: {"~/action": policy/action}``).
- ``~/observation``: the observation (a numpy array for Box spaces, else the value itself).
- ``~/reward``: the reward of the last step, a float (0.0 at the reset).
- ``~/done``: ``{"terminated": bool, "truncated": bool, "episode_return": float,
  "episode_length": int}``.
- ``~/info``: the ``info`` dict, with the entries that can travel (numbers, strings, bools, numpy
  arrays, and lists/dicts of them); others are left out.

At tick 0 (``self.is_reset``) the node calls ``env.reset(seed=self.seed)`` and publishes the reset
observation (reward 0, not done) without stepping. At every later tick it applies the newest
action (``latest``): with the environment listed first in the launch file, the agent acts on this
tick's observation and the environment applies it at its next tick, as a plain Gymnasium loop
would. Until a first action has arrived (only possible in ``parallel``) it publishes nothing.
When the environment is terminated or truncated it reports ``episode_return`` and
``episode_length`` (``self.report``) and ends the episode (``end_episode("terminated")`` or
``"truncated"``).
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from catbus.node import Node
from catbus.params import Param


class GymnasiumEnv(Node):
    """A Gymnasium environment (``env_id``) stepped once per period on the newest action."""

    inputs = ["~/action"]
    outputs = ["~/observation", "~/reward", "~/done", "~/info"]
    period = 0.02
    params = {
        "env_id": Param(str, "CartPole-v1", "a registered Gymnasium environment id"),
        "env_kwargs": Param(dict, {}, "keyword arguments for gymnasium.make"),
    }

    def setup(self, params: dict[str, Any]) -> None:
        import gymnasium

        self.env_id = params["env_id"]
        self.env = gymnasium.make(self.env_id, **dict(params["env_kwargs"] or {}))
        self.discrete = isinstance(self.env.action_space, gymnasium.spaces.Discrete)
        self.episode_return = 0.0
        self.episode_length = 0
        self.started = False

    def step(self, t: float, inputs: dict[str, Any]) -> Optional[dict[str, Any]]:
        if self.is_reset:
            observation, info = self.env.reset(seed=self.seed)
            self.episode_return, self.episode_length = 0.0, 0
            self.started = True
            return self._publish(observation, 0.0, False, False, info)
        if not self.started:   # a restarted node never resets the world itself
            return None
        action = inputs["~/action"]
        if action is None:
            return None
        observation, reward, terminated, truncated, info = self.env.step(self._action(action))
        self.episode_return += float(reward)
        self.episode_length += 1
        if terminated or truncated:
            self.report(episode_return=self.episode_return, episode_length=self.episode_length)
            self.end_episode("terminated" if terminated else "truncated")
        return self._publish(observation, float(reward), bool(terminated), bool(truncated), info)

    def _action(self, action: Any) -> Any:
        if isinstance(action, dict) and "action" in action:
            action = action["action"]
        if self.discrete:
            return int(action)
        space = self.env.action_space
        dtype = getattr(space, "dtype", None)
        return np.asarray(action, dtype=dtype) if dtype is not None else action

    def _publish(self, observation: Any, reward: float, terminated: bool, truncated: bool,
                 info: dict) -> dict[str, Any]:
        return {
            "~/observation": _sendable(observation),
            "~/reward": reward,
            "~/done": {"terminated": terminated, "truncated": truncated,
                       "episode_return": self.episode_return,
                       "episode_length": self.episode_length},
            "~/info": {str(k): v for k, v in ((k, _sendable(v)) for k, v in info.items())
                       if v is not _UNSENDABLE},
        }

    def close(self) -> None:
        env = getattr(self, "env", None)
        if env is not None:
            env.close()


_UNSENDABLE = object()


def _sendable(value: Any) -> Any:
    """``value`` as a message value (numpy scalars become Python ones), or ``_UNSENDABLE``."""
    if isinstance(value, (bool, int, float, str, bytes)) or value is None:
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value if value.dtype != object else _UNSENDABLE
    if isinstance(value, (list, tuple)):
        items = [_sendable(v) for v in value]
        return _UNSENDABLE if any(v is _UNSENDABLE for v in items) else items
    if isinstance(value, dict):
        return {str(k): v for k, v in ((k, _sendable(v)) for k, v in value.items())
                if v is not _UNSENDABLE}
    return _UNSENDABLE
