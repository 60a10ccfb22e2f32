"""What every runner needs to know about a run before it starts: schedule and metadata.

Computed once from the launch spec, the same way for every mode, so that a recording made in
``stepped`` and one made in ``inline`` carry the same description of the run.
"""

from __future__ import annotations

import platform
import sys
from importlib import metadata
from typing import Any

from catbus.spec.launchfile import LaunchSpec
from catbus.runtime.schedule import Schedule, build_schedule


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version(), "machine": platform.machine()}
    for package in ("catbus", "numpy", "pyzmq", "msgpack", "mcap"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return versions


def schedule_for(spec: LaunchSpec) -> Schedule | None:
    """The tick schedule (stepped/inline); parallel runs have none but use the same end."""
    if spec.mode == "parallel" and spec.steps is None and spec.duration is None:
        return None
    return build_schedule([(n.name, n.period) for n in spec.nodes], steps=spec.steps,
                          duration=spec.duration, max_steps=spec.max_steps,
                          where=str(spec.path or "<launch>"))


def parallel_duration(spec: LaunchSpec) -> float | None:
    """Seconds a parallel run lasts: ``steps`` periods of the first periodic node, or
    ``duration``; with neither, ``max_steps`` periods of that node (the bound of a run that a
    node is expected to end). None (no periodic node, no duration) means until Ctrl-C or the
    end of the episode."""
    if spec.duration is not None:
        return float(spec.duration)
    first = next((n.period for n in spec.nodes if n.period is not None), None)
    if first is None:
        return None
    return (spec.steps if spec.steps is not None else spec.max_steps) * float(first)


def build_run_info(spec: LaunchSpec, schedule: Schedule | None,
                   log_level: str | None = None) -> dict[str, Any]:
    """Metadata for built-in nodes (the recorder writes it into the MCAP file), and the run's
    ``log_level`` (node processes, also remote ones, log at it; see catbus.runtime.logs) and
    ``pace`` (stepped nodes step no faster than that many times real time)."""
    from catbus.runtime.logs import API_DEFAULT_LEVEL, check_level

    def declared(attr: str) -> list[str]:
        return sorted({value for n in spec.nodes if (value := getattr(n.node_class, attr, None))})

    info = {"name": spec.name, "launch": spec.to_yaml(), "seed": spec.seed, "mode": spec.mode,
            "base_tick_ns": schedule.base_tick_ns if schedule else None,
            "last_tick": schedule.last_tick if schedule else None,
            "versions": package_versions(), "evaluators": declared("evaluator"),
            "plotters": declared("plotter"), "argv": sys.argv,
            "log_level": check_level(log_level or API_DEFAULT_LEVEL), "pace": spec.pace}
    # ``checkpoint: N`` of every node that has it (catbus.runtime.checkpoints); only then.
    checkpoints = {n.name: n.checkpoint for n in spec.nodes if n.checkpoint}
    if checkpoints:
        info["checkpoints"] = checkpoints
    # Latency models (catbus.runtime.latency): every reader computes its publishers' visible
    # ticks from them. Only when a node has one, so a run without is described as before.
    latency = {n.name: n.latency for n in spec.nodes if n.latency is not None}
    if latency:
        info["latency"] = latency
    # A recorded parallel run: every periodic node logs its steps (catbus.runtime.steplog),
    # so that ``catbus reproduce`` can rerun it exactly. Only then: nothing to pay otherwise.
    if spec.record and spec.mode == "parallel":
        from catbus.runtime.steplog import DEFAULT_BATCH, STEP_LOG_KEY

        info[STEP_LOG_KEY] = DEFAULT_BATCH
    # Live parameter changes applied again at their ticks (``catbus play`` of a recording with
    # ``catbus/params``; catbus.runtime.liveparams). Only when there are some.
    if spec.param_changes:
        from catbus.runtime.liveparams import SCHEDULE_KEY

        info[SCHEDULE_KEY] = {name: [[tick, changes] for tick, changes in entries]
                              for name, entries in spec.param_changes.items()}
    return info
