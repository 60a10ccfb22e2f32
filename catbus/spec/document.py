"""The launch data after every override, as plain YAML: recorded as metadata, and
``build_launch(spec.document)`` rebuilds the same spec (sweeps rely on that)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from catbus.spec.nodespec import NodeSpec
from catbus.spec.runchecks import RunValues
from catbus.spec.swapplan import ScheduledSwap


def launch_document(run: RunValues, *, description: Any, record: Path | None,
                    import_path: Sequence[Path], nodes: Sequence[NodeSpec],
                    swaps: Sequence[ScheduledSwap], keys: Path | None) -> dict[str, Any]:
    """Every run-wide value spelled out, every node with its full parameters and effective
    period, paths absolute."""
    doc: dict[str, Any] = {"name": run.name}
    if description is not None:
        doc["description"] = description
    # The whole import path, absolute: the document resolves the same classes from any folder
    # (build_launch(document) adds only its own base folder and current folder after them), and
    # a recording's metadata tells `catbus eval` where its evaluator came from.
    doc.update({"mode": run.mode, "steps": run.steps, "duration": run.duration,
                "max_steps": run.max_steps, "seed": run.seed,
                "record": str(record) if record is not None else None, "bus": run.bus,
                "pythonpath": [str(folder) for folder in import_path]})
    doc["nodes"] = {spec.name: _node_document(spec) for spec in nodes}
    if run.pace is not None:
        doc["pace"] = run.pace
    if swaps:
        doc["swap"] = [entry.document() for entry in swaps]
    if keys is not None:
        doc["security"] = {"keys": str(keys)}
    return plain(doc)


def _node_document(spec: NodeSpec) -> dict[str, Any]:
    entry: dict[str, Any] = {"class": spec.class_path}
    if spec.period is not None:
        entry["period"] = spec.period
    entry["params"] = spec.params
    if spec.remap:
        entry["remap"] = spec.remap
    entry["remote"] = spec.remote
    if spec.restart.enabled:
        entry.update(restart=spec.restart.policy, max_restarts=spec.restart.max_restarts,
                     restart_backoff=spec.restart.backoff)
    if spec.latency is not None:
        entry["latency"] = spec.latency
    if spec.checkpoint is not None:
        entry["checkpoint"] = spec.checkpoint
    if spec.group is not None:
        entry["group"] = spec.group
    return entry


def plain(value: Any) -> Any:
    """Only YAML's own types: numpy values, tuples and paths become plain Python."""
    if isinstance(value, Mapping):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    if value is None or type(value) in (bool, int, float, str):
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if hasattr(value, "tolist"):  # numpy arrays and scalars (np.float64 is a float subclass,
        return plain(value.tolist())  # which safe_dump refuses)
    for kind in (bool, int, float, str):
        if isinstance(value, kind):
            return kind(value)
    return str(value)


__all__ = ["launch_document", "plain"]
