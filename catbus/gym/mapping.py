"""How a Gymnasium trainer sees one agent of a catbus graph: :class:`GymMapping`.

It names the spaces and turns the agent's inputs into an observation, a reward and termination,
and the trainer's action into the agent's outputs. Everything is keyed by *topic* (after
remapping, e.g. ``"robot/sensors"``), never by declared name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional, Sequence

#: The agent's inputs at one of its steps: topic -> newest message (None before any came).
Messages = Mapping[str, Any]


def _no_reward(previous: Optional[Messages], current: Messages) -> float:
    return 0.0


def _never(current: Messages) -> bool:
    return False


def _no_info(current: Messages) -> dict:
    return {}


@dataclass
class GymMapping:
    """One agent of a graph as a Gymnasium environment.

    Attributes:
        observation_space: A ``gymnasium.spaces.Space``; ``observation`` returns members of it.
        action_space: A ``gymnasium.spaces.Space`` of the trainer's actions.
        observation: ``observation(messages) -> obs`` from the agent's inputs at its step
            (``messages``: topic -> newest message, the agent's inputs plus ``topics``).
        action: ``action(a) -> {topic: message}``: what the agent publishes for the trainer's
            action ``a`` (topics among the agent's outputs; an output left out is not published).
        reward: ``reward(previous, messages) -> float``; ``previous`` is the messages of the
            step before (None right after the reset).
        terminated: ``terminated(messages) -> bool`` (e.g. read an environment's done topic).
            Independently, a run that ends because a node ended the episode is terminated.
        truncated: ``truncated(messages) -> bool``; independently, ``max_steps`` truncates.
        info: ``info(messages) -> dict`` (also returned by ``reset``).
        topics: Topics the trainer reads besides the agent's own inputs (e.g. a true state for
            the reward); the stand-in agent subscribes to them too.
        max_steps: Truncate after this many ``step`` calls (None: only when the run ends).
    """

    observation_space: Any
    action_space: Any
    observation: Callable[[Messages], Any]
    action: Callable[[Any], Mapping[str, Any]]
    reward: Callable[[Optional[Messages], Messages], float] = _no_reward
    terminated: Callable[[Messages], bool] = _never
    truncated: Callable[[Messages], bool] = _never
    info: Callable[[Messages], dict] = _no_info
    topics: Sequence[str] = field(default_factory=tuple)
    max_steps: Optional[int] = None


__all__ = ["GymMapping", "Messages"]
