"""``LinearPolicy``: a fixed linear policy, the smallest agent for ``GymnasiumEnv``
(``catbus.adapters.policies:LinearPolicy`` in a launch file).

``action = int(weights . observation + bias > 0)`` (``discrete: true``, e.g. CartPole's two
actions), else ``clip(weights @ observation + bias, low, high)`` as a list (a Box action;
``weights`` is then a list of rows). It reads ``~/observation`` (remap it to the environment's
observation topic) and publishes ``~/action``; nothing before the first observation.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from catbus.node import Node
from catbus.params import Param


class LinearPolicy(Node):
    """A fixed linear map from the observation to the action (see the module documentation)."""

    inputs = ["~/observation"]
    outputs = ["~/action"]
    period = 0.02
    params = {
        "weights": Param(list, [0.0, 0.0, 1.0, 1.0], "weights (a list of rows for a Box action)"),
        "bias": Param(float, 0.0, "added to weights . observation"),
        "discrete": Param(bool, True, "true: action = int(w.x + b > 0); false: a Box action"),
        "low": Param(float, -1.0, "Box action: lower clip"),
        "high": Param(float, 1.0, "Box action: upper clip"),
    }

    def setup(self, params: dict[str, Any]) -> None:
        self.weights = np.asarray(params["weights"], dtype=np.float64)
        self.bias = params["bias"]
        self.discrete = params["discrete"]
        self.low, self.high = params["low"], params["high"]

    def act(self, observation: Any) -> Any:
        """The action for one observation (also usable outside catbus: the tests run the same
        function in a plain Gymnasium loop)."""
        x = np.asarray(observation, dtype=np.float64)
        value = self.weights @ x + self.bias
        if self.discrete:
            return int(value > 0)
        return np.clip(value, self.low, self.high).tolist()

    def step(self, t: float, inputs: dict[str, Any]) -> Optional[dict[str, Any]]:
        observation = inputs["~/observation"]
        if observation is None:
            return None
        return {"~/action": self.act(observation)}
