"""A launch file's ``swap:`` schedule: swaps as part of the experiment, so that they reproduce.

::

    swap:
      - {at: 2.5, node: robot, params: {safe_controller: Unsafe}}       # same class
      - {at: 4.0, node: robot, class: mypkg.ctrl:Other, params: {...}}  # another class

``at`` is sim time in ``stepped`` and ``inline`` (the swap lands before the node's first due tick
at or after it, so both modes switch at the same tick and record the same data) and wall-clock
seconds since the start in ``parallel``. The entries' structure is
:class:`~catbus.spec.schema.SwapEntry`; here they are checked at load time against the rest of
the file: the node exists and is not the recorder, the class imports and declares the same
inputs and outputs, and the parameters validate (the class's defaults, the launch file's values
for the parameters it declares, then the entry's ``params``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from catbus import params as params_mod
from catbus.errors import ConfigError
from catbus.spec.fieldcheck import unknown_node_message
from catbus.spec.nodeclass import import_node_class
from catbus.spec.nodespec import NodeSpec
from catbus.spec.schema import SwapEntry
from catbus.topics import ALL_TOPICS, topic_differences


@dataclass(frozen=True)
class ScheduledSwap:
    """One checked entry of ``swap:``."""

    at: float
    node: str
    class_path: str
    node_class: type
    #: The entry's ``params`` (what a replacement process gets on top of its base).
    overrides: dict
    #: The parameters the new node runs with, resolved (inline mode uses them directly).
    params: dict

    @property
    def same_class(self) -> bool:
        return self.class_path == ""

    def document(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"at": self.at, "node": self.node}
        if self.class_path:
            entry["class"] = self.class_path
        if self.overrides:
            entry["params"] = self.overrides
        return entry


def parse_swaps(entries: Sequence[SwapEntry] | None, nodes: Sequence[NodeSpec], *, where: str,
                import_path: Sequence[Any]) -> tuple[ScheduledSwap, ...]:
    """The decoded ``swap:`` entries checked against the nodes, in the order of ``at``."""
    by_name = {spec.name: spec for spec in nodes}
    swaps = [_entry(index, entry, by_name, where, import_path)
             for index, entry in enumerate(entries or ())]
    return tuple(sorted(swaps, key=lambda s: s.at))


def _entry(index: int, entry: SwapEntry, nodes: Mapping[str, NodeSpec], where: str,
           import_path: Sequence[Any]) -> ScheduledSwap:
    prefix = f"swap[{index}]"
    spec = nodes.get(entry.node)
    if spec is None:
        raise ConfigError(where, f"{prefix}.node", unknown_node_message(entry.node, list(nodes)))
    if any(b.topic == ALL_TOPICS for b in spec.inputs):
        raise ConfigError(where, f"{prefix}.node", f"node {entry.node} reads every topic (a "
                                                   f"recorder) and cannot be swapped")
    class_path, node_class = spec.class_path, spec.node_class
    if entry.class_ is not None:
        class_path, node_class = import_node_class(entry.class_, where, prefix,
                                                   import_path=import_path)
    overrides = entry.params or {}
    params = replacement_params(spec, node_class, class_path, overrides,
                                where=where, prefix=f"{prefix}.params")
    problem = fit_problem(spec, node_class, params)
    if problem:
        raise ConfigError(where, f"{prefix}.class", problem)
    same = class_path == spec.class_path
    return ScheduledSwap(entry.at, entry.node, "" if same else class_path, node_class,
                         dict(overrides), params)


def swap_tick(schedule: Any, name: str, at: float) -> int:
    """Stepped and inline: the tick a swap scheduled ``at`` seconds of sim time lands on, the
    node's first due tick at or after it (exact: the schedule's base tick is a fraction)."""
    from catbus.runtime.schedule import exact

    k = schedule.period_ticks(name) or 1
    first = -(-exact(at) // schedule.base_tick)   # at as written (0.2 is 1/5, like periods)
    return int(-(-first // k) * k)


def replacement_params(spec: NodeSpec, node_class: type, class_path: str,
                       overrides: Mapping[str, Any], *, where: str, prefix: str) -> dict:
    """The parameters a replacement of ``spec`` of ``node_class`` runs with: with the same class
    the launch file's plus ``overrides``; with another class its defaults, the launch file's
    values for the parameters it declares, then ``overrides`` -- validated, naming any that do
    not."""
    if class_path == spec.class_path:
        base = dict(spec.params)
    else:
        base = {key: value for key, value in spec.given_params.items()
                if key in node_class.params}
    return params_mod.resolve(node_class.params, params_mod.deep_merge(base, overrides),
                              where=where, prefix=prefix)


def fit_problem(spec: NodeSpec, node_class: type, params: Mapping[str, Any]) -> str | None:
    """Why ``node_class`` cannot take the place of ``spec`` (other declared inputs or outputs),
    or None."""
    differences = topic_differences(
        {b.declared for b in spec.inputs}, {i.topic for i in node_class.declared_inputs()},
        {b.declared for b in spec.outputs}, set(node_class.declared_outputs(params)))
    if not differences:
        return None
    return (f"{node_class.__name__} does not fit node {spec.name} ({spec.class_path}): "
            f"{'; '.join(differences)}; a replacement must declare the same inputs and outputs")


__all__ = ["ScheduledSwap", "parse_swaps", "replacement_params", "fit_problem", "swap_tick"]
