"""Nodes for tests/test_episodes.py: an environment that ends its own episode and reports
scores, an agent that reports too (one key, ``x``, is reported by both), and a variant of the
environment whose recording names an evaluator."""

from __future__ import annotations

from typing import Any

from catbus.node import Node
from catbus.params import Param

REASON = "goal reached"


class EpisodeEnv(Node):
    """Counts its steps from the reset; ends the episode (``REASON``) at tick ``end_at`` (0:
    never) and reports ``steps``, ``x`` and, at the end, ``success``."""

    inputs = ["agent/act"]
    outputs = ["~/obs"]
    params = {"end_at": Param(int, 0, "tick at which the episode ends (0: never)")}
    period = 0.01

    def setup(self, params: dict[str, Any]) -> None:
        self.end_at = params["end_at"]
        self.steps = -1

    def step(self, t: float, inputs: dict[str, Any]) -> dict[str, Any]:
        if self.is_reset:
            self.steps = 0
            self.report(steps=0, x="reset", success=False)
        else:
            self.steps += 1
            self.report(steps=self.steps)   # updates steps, keeps x and success
        if self.end_at and self.tick >= self.end_at:
            self.report(success=True, x="env")
            self.end_episode(REASON)
        return {"~/obs": {"tick": self.tick}}


class EpisodeAgent(Node):
    """Answers every observation; reports how many it saw, and ``x``."""

    inputs = ["env/obs"]
    outputs = ["~/act"]
    period = 0.01

    def setup(self, params: dict[str, Any]) -> None:
        self.seen = 0

    def step(self, t: float, inputs: dict[str, Any]) -> dict[str, Any]:
        if inputs["env/obs"] is not None:
            self.seen += 1
        self.report(seen=self.seen, x=1.5)
        return {"~/act": {"u": 0.0}}


class EvaluatedEnv(EpisodeEnv):
    evaluator = "tests.episode_nodes:evaluate"


def evaluate(recording) -> dict[str, Any]:
    """Overrides the reported ``success`` (evaluator keys win) and adds ``obs``."""
    return {"success": "evaluated", "obs": len(list(recording.messages(["env/obs"])))}
