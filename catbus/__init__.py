"""catbus: benchmark intelligent agents against simulated environments.

Nodes are step functions over topics; the same node runs in ``parallel`` (processes, wall clock),
``stepped`` (processes, deterministic lockstep) or ``inline`` (one process) mode.

    import catbus
    result = catbus.run("launch/flat_evade.yaml", mode="stepped", seed=3, record="runs/a.mcap")
    print(result.scores)

    with catbus.start("launch/demo.yaml", duration=60) as run:   # in the background
        print(run.bus)
        run.stop()                                                # like Ctrl-C
    print(run.wait().table())

The public API is what ``__all__`` lists: writing nodes (:class:`Node`, :class:`Input`,
:class:`Param`), running (:func:`run`, :func:`start`, :func:`load`, :class:`RunResult`,
:class:`RunHandle`; :func:`sweep` over settings x seeds), reading recordings
(:class:`Recording`) and the errors. Testing a node without a bus: :mod:`catbus.testing`.

``import catbus`` is cheap: each name is imported on first use (numpy with :class:`Node`,
ZeroMQ only when a run starts, MCAP with :class:`Recording`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from catbus.errors import CatbusError, ConfigError, NodeFailed, RunTimeout

__version__ = "0.1.0"

#: Public name -> module it is imported from on first use.
_LAZY = {
    "Node": "catbus.node",
    "Input": "catbus.node",
    "Param": "catbus.params",
    "run": "catbus.api.run",
    "start": "catbus.api.run",
    "load": "catbus.api.run",
    "RunResult": "catbus.api.result",
    "RunHandle": "catbus.api.handle",
    "Recording": "catbus.recording.reader",
    "sweep": "catbus.sweep.api",
    # Not in __all__, kept for code that used them from here:
    "ALL_TOPICS": "catbus.node",
}
#: Submodules reachable as attributes without importing them first (``catbus.testing``).
_SUBMODULES = ("testing",)

__all__ = ["Node", "Input", "Param", "run", "start", "load", "RunResult", "RunHandle",
           "Recording", "sweep", "CatbusError", "ConfigError", "NodeFailed", "RunTimeout",
           "__version__"]

if TYPE_CHECKING:   # what type checkers and IDEs see; at run time __getattr__ does it
    from catbus.api.run import load, run, start
    from catbus.api.handle import RunHandle
    from catbus.api.result import RunResult
    from catbus.node import ALL_TOPICS, Input, Node
    from catbus.params import Param
    from catbus.recording.reader import Recording
    from catbus.sweep.api import sweep


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is not None:
        value = getattr(importlib.import_module(module), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(f"module 'catbus' has no attribute {name!r}")
    globals()[name] = value   # looked up once
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | set(_SUBMODULES))
