"""Sensor noise: the original's uniform operator under its honest name, plus a Gaussian option.

The original called its noise ``_gaussian_noise`` with a ``noise_var`` key, but drew
``y + w*U - w/2`` with U uniform on [0, 1): uniform on [-w/2, w/2), variance w^2/12
(docs/flat_evade.md, Q3).
catbus keeps that as the default (``uniform``, parameter ``noise_width``) so results stay
comparable, and offers ``gaussian`` with the same variance (sigma = w/sqrt(12)).

Both models take their draws even when w = 0, so changing one sensor's width never shifts the
random stream seen by every later sensor (and the legacy stream stays the original's).
"""

from __future__ import annotations

import math
from typing import Literal, Union

import numpy as np

NoiseModel = Literal["uniform", "gaussian"]
NOISE_MODELS: tuple[str, ...] = ("uniform", "gaussian")

#: Both kinds of generator offer ``random(size)`` (uniform on [0, 1), C order) and
#: ``standard_normal(size)``; ``RandomState`` is only used for the legacy compatibility mode.
RandomSource = Union[np.random.Generator, np.random.RandomState]


class SensorNoise:
    """The noise operator ``N_w(y)`` of one environment, bound to its random source."""

    def __init__(self, source: RandomSource, model: NoiseModel = "uniform") -> None:
        if model not in NOISE_MODELS:
            raise ValueError(f"noise model must be one of {', '.join(NOISE_MODELS)}, got {model!r}")
        self.source = source
        self.model = model

    def __call__(self, y: np.ndarray, width: float) -> np.ndarray:
        """``y`` plus zero-mean noise of variance width^2/12, as a new array.

        ``uniform``: ``y + w*U - w/2`` with U of y's shape, the original's exact expression (and
        operation order, so the legacy mode reproduces its numbers to the last bit).
        """
        if self.model == "uniform":
            return y + width * self.source.random(y.shape) - width / 2
        return y + (width / math.sqrt(12.0)) * self.source.standard_normal(y.shape)
