"""A launch file's ``swap:`` schedule: swaps as part of the experiment, so that they reproduce.

::

    swap:
      - {at: 2.5, node: robot, params: {safe_controller: Unsafe}}       # same class
      - {at: 4.0, node: robot, class: mypkg.ctrl:Other, params: {...}}  # another class

``at`` is sim time in ``stepped`` and ``inline`` (the swap lands before the node's first due tick
at or after it, so both modes switch at the same tick and record the same data) and wall-clock
seconds since the start in ``parallel``. Everything is checked at load time, like the rest of the
file: the node exists and is not the recorder, the class imports and declares the same inputs and
outputs, and the parameters validate (the class's defaults, the launch file's values for the
parameters it declares, then the entry's ``params``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from catbus import params as params_mod
from catbus.errors import ConfigError
from catbus.spec.fieldcheck import _is_number, _unknown_key, _unknown_node_message
from catbus.spec.nodespec import NodeSpec, import_node_class
from catbus.topics import ALL_TOPICS, topic_differences

SWAP_KEYS = ("at", "node", "class", "params")


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


def parse_swaps(value: Any, nodes: Sequence[NodeSpec], *, where: str,
                import_path: Sequence[Any]) -> tuple[ScheduledSwap, ...]:
    """The checked ``swap:`` list, in the order of ``at``."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ConfigError(where, "swap", "must be a list of {at: SECONDS, node: NAME, class: "
                                         "module:Class (optional), params: {...}} entries")
    by_name = {spec.name: spec for spec in nodes}
    swaps = [_entry(index, raw, by_name, where, import_path) for index, raw in enumerate(value)]
    return tuple(sorted(swaps, key=lambda s: s.at))


def _entry(index: int, raw: Any, nodes: Mapping[str, NodeSpec], where: str,
           import_path: Sequence[Any]) -> ScheduledSwap:
    prefix = f"swap[{index}]"
    if not isinstance(raw, Mapping):
        raise ConfigError(where, prefix, f"must be a mapping {{at:, node:, class:, params:}}, "
                                         f"got {raw!r}")
    for key in raw:
        if key not in SWAP_KEYS:
            raise _unknown_key(where, f"{prefix}.{key}", key, SWAP_KEYS)
    at = raw.get("at")
    if not _is_number(at) or at < 0:
        raise ConfigError(where, f"{prefix}.at", f"must be a number of seconds >= 0 (sim time in "
                                                 f"stepped/inline, wall time in parallel), got "
                                                 f"{at!r}")
    name = raw.get("node")
    spec = nodes.get(name) if isinstance(name, str) else None
    if spec is None:
        raise ConfigError(where, f"{prefix}.node", _unknown_node_message(str(name), list(nodes)))
    if any(b.topic == ALL_TOPICS for b in spec.inputs):
        raise ConfigError(where, f"{prefix}.node", f"node {name} reads every topic (a recorder) "
                                                   f"and cannot be swapped")
    class_path, node_class = spec.class_path, spec.node_class
    if raw.get("class") is not None:
        class_path, node_class = import_node_class(raw["class"], where, f"{prefix}.class",
                                                   import_path=import_path)
    overrides = raw.get("params") or {}
    if not isinstance(overrides, Mapping):
        raise ConfigError(where, f"{prefix}.params", f"must be a mapping of parameter values, "
                                                     f"got {overrides!r}")
    params = replacement_params(spec, node_class, class_path, dict(overrides),
                                where=where, prefix=f"{prefix}.params")
    problem = fit_problem(spec, node_class, params)
    if problem:
        raise ConfigError(where, f"{prefix}.class", problem)
    same = class_path == spec.class_path
    return ScheduledSwap(float(at), name, "" if same else class_path, node_class,
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
