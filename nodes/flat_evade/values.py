"""Messages are values: helpers that copy what goes into a message and shape what comes out.

Received arrays are read-only views of wire buffers, and arrays a node returns are sent zero-copy,
so anything that crosses a node boundary is copied exactly once here instead of being shared (the
original toolbox leaked live references into its records: docs/flat_evade.md, Q15, Q16).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def copy_value(value: Any) -> Any:
    """A deep copy of a message value: dicts, lists and tuples are rebuilt, arrays copied.

    Immutable leaves (str, int, float, bool, None, numpy scalars) are returned as they are.
    """
    if isinstance(value, np.ndarray):
        return np.array(value, copy=True)
    if isinstance(value, dict):
        return {key: copy_value(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [copy_value(item) for item in value]
    return value


def column(values: Any, size: int, what: str) -> np.ndarray:
    """``values`` as a new float64 column array of ``size`` rows; a clear error if it cannot be.

    Used on everything that arrives from outside (parameters, actions) so that a wrong shape fails
    at the boundary with a message naming it, not deep inside a matrix product.
    """
    array = np.array(values, dtype=np.float64, copy=True)
    if array.size != size:
        raise ValueError(f"{what}: expected {size} numbers, got shape {array.shape}")
    return array.reshape(size, 1)


def stack(*parts: np.ndarray) -> np.ndarray:
    """Column arrays stacked on top of each other (``[p; v]``), as a new float64 array."""
    return np.vstack(parts).astype(np.float64, copy=False)
