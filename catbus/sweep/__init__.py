"""``catbus sweep``: a grid of settings x seeds, one isolated episode each, results as a table.

Modules, one job each: :mod:`~catbus.sweep.grid` (``--seeds``/``--set`` parsing, the grid),
:mod:`~catbus.sweep.episode` (one episode in a worker -> a row), :mod:`~catbus.sweep.workers`
(owned worker processes), :mod:`~catbus.sweep.mpservices` (multiprocessing's fork server,
borrowed for one sweep), :mod:`~catbus.sweep.results` (CSV + JSON lines as rows come),
:mod:`~catbus.sweep.stats` (summary: mean, std, 95% CI), :mod:`~catbus.sweep.api` (:func:`sweep`).

``catbus.sweep(...)`` is the function; since this package is also reachable as ``catbus.sweep``
(after ``import catbus.sweep.grid``, Python binds the package there), the package itself is
callable and calls :func:`sweep`.
"""

from __future__ import annotations

import sys
import types

from catbus.sweep.api import sweep

__all__ = ["sweep"]


class _CallableModule(types.ModuleType):
    def __call__(self, *args, **kwargs):
        return sweep(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
__wrapped__ = sweep   # inspect.signature(catbus.sweep) is sweep's, whichever object it is
