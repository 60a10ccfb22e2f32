"""The node runtime of ``catbus node``, which tells the user when the run's launch file overrules
a ``--param``.

Kept apart from :mod:`catbus.cli.node` because subclassing
:class:`~catbus.runtime.process.NodeRuntime` imports ZeroMQ and numpy, which ``catbus --help``
and the other commands should not load.
"""

from __future__ import annotations

import sys
from typing import Any, Mapping

from catbus.runtime.process import NodeRuntime


def _flat(values: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(values, dict):
        return {prefix: values}
    flat: dict[str, Any] = {}
    for key, value in values.items():
        flat.update(_flat(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def overruled_params(given: Mapping[str, Any], used: Mapping[str, Any]) -> dict[str, Any]:
    """``{dotted key: value used}`` for each ``--param`` the run did not use as given."""
    used_flat = _flat(dict(used))
    return {key: used_flat.get(key) for key, value in _flat(dict(given)).items()
            if key not in used_flat or used_flat[key] != value}


class CliNodeRuntime(NodeRuntime):
    """The node runtime, telling the user when the registry's parameters overrule --param.
    The node still joins: a value the launch file sets is the run's, not a failure."""

    def _join(self, link: Any) -> Any:
        terms = super()._join(link)
        if self.given_params and not terms.joining:   # a replacement's --param are overrides
            overruled = overruled_params(self.given_params, terms.params)
            if overruled:
                used = ", ".join(f"{k}={v!r}" for k, v in overruled.items())
                sets = " ".join(f"--set {self.name}.{k}=..." for k in overruled)
                print(f"catbus: node {self.name}: warning: --param ignored: the run's launch "
                      f"file sets this node's parameters (used: {used}); change them there or "
                      f"with `catbus launch ... {sets}`", file=sys.stderr, flush=True)
        return terms


__all__ = ["CliNodeRuntime", "overruled_params"]
