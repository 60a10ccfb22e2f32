"""A recorded parallel run as ``catbus reproduce`` needs it: its launch document, its step log,
every recorded message by identity, its swaps and restarts, and what its recorder lost.

Read once, checked once: a recording that cannot be reproduced (not a catbus recording, not a
parallel run, recorded before step logs existed) is one line naming the file and what to do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from catbus.errors import CatbusError
from catbus.recording.reader import Recording
from catbus.reproduce.plan import Step, steps_from_log
from catbus.wire.protocol import DROPS_TOPIC, RESERVED_PREFIX, STEPS_TOPIC, SWAP_TOPIC

#: A recorded message's key: (topic, publisher, incarnation, seq).
Key = tuple[str, str, int, int]


@dataclass
class RecordedRun:
    """What :func:`read_run` found in a recording."""

    path: Path
    metadata: dict[str, Any]
    launch: dict[str, Any]
    steps: dict[str, list[Step]]
    #: every message by key -> (publish time ns, data bytes, tick); outside ``catbus/`` and
    #: the step log only: the messages a reproduction produces again
    messages: dict[Key, tuple[int, bytes]]
    #: the same keys in file order (the order a first difference is looked for in)
    order: list[Key]
    #: (node, incarnation) -> the ``catbus/swap`` event that started that process
    takeovers: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)
    #: streams the recorder lost messages of: "publisher topic: N lost"
    losses: list[str] = field(default_factory=list)
    complete: bool = True


def read_run(path: str | Path) -> RecordedRun:
    """Read ``path`` for a reproduction (see the module docstring)."""
    import yaml

    path = Path(path)
    recording = Recording(path)   # CatbusError: no file, not MCAP
    metadata = recording.metadata
    if not metadata.get("launch"):
        raise CatbusError(f"{path}: not a catbus recording (no launch document in its "
                          "metadata); reproduce a file written by catbus launch --record")
    if metadata.get("mode") != "parallel":
        raise CatbusError(f"{path}: a {metadata.get('mode')} recording; reproduce replays "
                          "parallel runs (stepped and inline runs are exact already: run the "
                          "launch file again, or catbus verify FILE.yaml)")
    try:
        launch = yaml.safe_load(metadata["launch"])
    except yaml.YAMLError as exc:
        raise CatbusError(f"{path}: its launch document does not parse ({exc})") from None
    batches: list[tuple[int, Any]] = []
    messages: dict[Key, tuple[int, bytes]] = {}
    order: list[Key] = []
    takeovers: dict[tuple[str, int], dict[str, Any]] = {}
    losses: list[str] = []
    for message in recording.messages(errors="keep"):
        topic = message.topic
        if topic == STEPS_TOPIC:
            batches.append((message.incarnation or 1, message.value))
        elif topic == SWAP_TOPIC:
            event = message.value or {}
            new = event.get("new") or {}
            if event.get("kind") in ("swap", "restart") and "incarnation" in new:
                takeovers[(str(event.get("node")), int(new["incarnation"]))] = event
        elif topic == DROPS_TOPIC:
            for stream in (message.value or {}).get("streams", []):
                if stream.get("lost"):
                    losses.append(f"{stream.get('publisher')} {stream.get('topic')}: "
                                  f"{stream['lost']} lost")
        elif not topic.startswith(RESERVED_PREFIX) and message.publisher is not None:
            key = (topic, message.publisher, message.incarnation or 1, message.sequence)
            messages[key] = (round(message.sim_time * 1e9), message.data)
            order.append(key)
    if not batches:
        raise CatbusError(f"{path}: has no step log (catbus/steps); record the parallel run "
                          "again with this catbus (catbus launch FILE --record RUN.mcap)")
    return RecordedRun(path, metadata, launch, steps_from_log(batches), messages, order,
                       takeovers, losses, recording.complete)


def recorded_durations(path: str | Path, node: str) -> list[float]:
    """The step durations of ``node`` in the parallel recording at ``path``, in step order (all
    its processes): a latency model that replays them (``latency: {recorded: RUN.mcap}``,
    :mod:`catbus.runtime.latency`). Raises :class:`CatbusError` in one line otherwise."""
    from catbus.runtime.latency import RECORDED_REFUSAL

    recording = Recording(path)
    if recording.metadata.get("mode") != "parallel":
        raise CatbusError(f"{path}: a {recording.metadata.get('mode')} recording; a recorded "
                          "latency comes from a parallel run's step durations")
    batches = [(m.incarnation or 1, m.value) for m in recording.messages(STEPS_TOPIC)]
    if not batches:
        raise CatbusError(f"{path}: {RECORDED_REFUSAL}")
    steps = steps_from_log(batches)
    if not steps.get(node):
        raise CatbusError(f"{path}: no steps of node {node!r} in its step log (it has: "
                          f"{', '.join(sorted(steps))}); name one with node: NAME")
    return [step.duration for step in steps[node]]


__all__ = ["Key", "RecordedRun", "read_run", "recorded_durations"]
