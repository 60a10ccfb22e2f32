"""catbus: benchmark intelligent agents against simulated environments.

Nodes are step functions over topics; the same node runs in ``parallel`` (processes, wall clock),
``stepped`` (processes, deterministic lockstep) or ``inline`` (one process) mode.

    import catbus
    result = catbus.run("launch/flat_evade.yaml", mode="stepped", seed=3, record="runs/a.mcap")
    print(result.scores)
"""

from catbus.node import ALL_TOPICS, Input, Node
from catbus.params import Param

__version__ = "0.1.0"


def run(*args, **kwargs):  # noqa: D401 - thin re-export, documented in catbus.launch.api.run
    from catbus.launch.api import run as _run

    return _run(*args, **kwargs)


run.__doc__ = "See :func:`catbus.launch.api.run`."

__all__ = ["Node", "Input", "Param", "ALL_TOPICS", "run", "__version__"]
