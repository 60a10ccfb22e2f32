"""What the launcher needs to start a replacement process (a hot swap's, a restart's): its
command line, and the checks against the launch file that come before it. When to start one is
the control plane's decision (:mod:`catbus.control`)."""

from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

from catbus.control.config import NodeConfig, RunConfig, ScheduledSwap
from catbus.errors import ConfigError
from catbus.spec.imports import node_process_command
from catbus.spec.launchfile import LaunchSpec
from catbus.spec.nodespec import import_node_class
from catbus.spec.swapplan import fit_problem, replacement_params, swap_tick
from catbus.runtime.schedule import Schedule


def replacement_command(class_path: str, name: str, bus: str,
                        import_path: Sequence[os.PathLike | str],
                        keys: os.PathLike | str | None = None, *,
                        restart: bool = False) -> list[str]:
    """``python -P -m catbus node CLASS --name NAME --bus ADDR --replace --path DIR ...``: the
    command a user types on any host to swap a node by hand (``catbus node ... --replace``);
    ``--restart`` for the new process of a node whose process died."""
    extra = ["--restart" if restart else "--replace",
             *(["--keys", os.fspath(keys)] if keys else [])]
    return node_process_command(class_path, name, bus, import_path, extra)


def replacement_problem(spec: LaunchSpec, name: str, class_path: str,
                        overrides: Mapping[str, Any]) -> str | None:
    """Why a swap of ``name`` to ``class_path`` with ``overrides`` cannot work -- the class
    does not import or fit, the parameters do not validate -- or None. Checked before anything
    is started, so that a swap that cannot work fails at once, naming why."""
    try:
        node = spec.node(name)
        if not class_path or class_path == node.class_path:
            class_path, node_class = node.class_path, node.node_class
        else:
            class_path, node_class = import_node_class(
                class_path, "swap", "", import_path=spec.import_path)
        params = replacement_params(node, node_class, class_path, overrides, where="swap",
                                    prefix="params")
    except ConfigError as exc:
        return str(exc)
    return fit_problem(node, node_class, params)


def run_config(spec: LaunchSpec, schedule: Schedule | None, run_info: dict[str, Any], *,
               duration: float | None, deadline: float, rejoin_timeout: float | None,
               end_grace: float) -> RunConfig:
    """The control plane's view of a launch spec: its nodes, bounds and swap schedule."""
    nodes = {n.name: NodeConfig(
        params=n.params, given=n.given_params, period=n.period,
        inputs=[[b.declared, b.topic, b.policy] for b in n.inputs],
        outputs=[[b.declared, b.topic] for b in n.outputs], class_path=n.class_path,
        restart=n.restart, local=not n.remote) for n in spec.nodes}
    swaps = []
    for entry in spec.swaps:
        cls = entry.class_path or spec.node(entry.node).class_path
        if spec.mode == "stepped" and schedule is not None:
            swaps.append(ScheduledSwap(entry.node, cls, dict(entry.overrides),
                                       tick=swap_tick(schedule, entry.node, entry.at)))
        elif spec.mode == "parallel":
            swaps.append(ScheduledSwap(entry.node, cls, dict(entry.overrides), at=entry.at))
    return RunConfig(mode=spec.mode, seed=spec.seed, expected=nodes, run_info=run_info,
                     schedule=schedule.to_dict() if schedule else None, duration=duration,
                     order=[n.name for n in spec.nodes], deadline=deadline,
                     rejoin_timeout=rejoin_timeout, end_grace=end_grace, can_spawn=True,
                     swaps=swaps)


__all__ = ["replacement_command", "replacement_problem", "run_config"]
