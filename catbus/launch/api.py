"""The Python API under the CLI: ``catbus.run(launch, mode=, seed=, steps=, ...)``.

Scripts, sweeps and tests drive runs exactly as people do from the command line.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from catbus.errors import ConfigError
from catbus.launch.launchfile import LaunchSpec, build_launch, load_launch
from catbus.launch.result import RunResult


def load(launch: str | os.PathLike | Mapping[str, Any] | LaunchSpec, *, mode: str | None = None,
         seed: int | None = None, steps: int | None = None, duration: float | None = None,
         overrides: Sequence[str] | Mapping[str, Any] = (), record: str | os.PathLike | None = None,
         remote: Sequence[str] = (), bus: str | None = None) -> LaunchSpec:
    """A checked LaunchSpec from a file path, a dict (same layout as the YAML) or a spec."""
    if isinstance(overrides, Mapping):
        overrides = [f"{key}={_yaml_scalar(value)}" for key, value in overrides.items()]
    options = dict(mode=mode, seed=seed, steps=steps, duration=duration,
                   overrides=list(overrides), record=record, remote=list(remote), bus=bus)
    if isinstance(launch, LaunchSpec):
        if any(v for v in options.values()):
            launch = build_launch(launch.document, where=str(launch.path or "<launch>"),
                                  base_dir=(launch.path.parent if launch.path else Path.cwd()),
                                  **options)
        return launch
    if isinstance(launch, Mapping):
        return build_launch(launch, **options)
    return load_launch(launch, **options)


def _yaml_scalar(value: Any) -> str:
    import yaml

    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def run(launch: str | os.PathLike | Mapping[str, Any] | LaunchSpec, *, mode: str | None = None,
        seed: int | None = None, steps: int | None = None, duration: float | None = None,
        overrides: Sequence[str] | Mapping[str, Any] = (), record: str | os.PathLike | None = None,
        remote: Sequence[str] = (), bus: str | None = None, remote_timeout: float = 120.0,
        progress: bool | None = False, deadline: float = 30.0,
        evaluate: bool = True) -> RunResult:
    """Run a launch file (or dict) to the end and return its summary and, if it was recorded and
    its environment names an evaluator, its scores.

    ``overrides`` are ``--set`` assignments, as strings (``"robot.safe_controller=Unsafe"``) or a
    mapping ``{"robot.safe_controller": "Unsafe"}``. ``bus`` (``tcp://HOST:PORT``) overrides the
    file's registry address, for nodes on other hosts; ``remote_timeout`` bounds the wait for them. Raises ConfigError before anything starts if
    the launch is wrong, NodeFailed if a node fails.
    """
    spec = load(launch, mode=mode, seed=seed, steps=steps, duration=duration,
                overrides=overrides, record=record, remote=remote, bus=bus)
    if spec.mode == "inline":
        remote_nodes = [n.name for n in spec.nodes if n.remote]
        if remote_nodes:
            raise ConfigError(str(spec.path or "<launch>"), f"nodes.{remote_nodes[0]}.remote",
                              "inline mode runs every node in this process and cannot wait for "
                              "remote nodes; use --mode stepped or parallel")
        from catbus.launch.inline import run_inline

        result = run_inline(spec, progress=progress)
    else:
        from catbus.launch.launcher import launch as launch_processes

        result = launch_processes(spec, progress=progress, deadline=deadline,
                                  remote_timeout=remote_timeout)
    if evaluate and spec.record is not None and not result.interrupted:
        result.scores = _scores(spec.record)
    return result


def _scores(record: Path) -> dict[str, Any] | None:
    from catbus.recording.evaluate import evaluate_file
    from catbus.errors import CatbusError

    try:
        return evaluate_file(record)
    except CatbusError:
        return None
