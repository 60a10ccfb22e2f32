"""``catbus verify``: check the determinism contract for a launch file; for a recording
(``catbus verify RUN.mcap``), whether a parallel run reproduces (:func:`verify_recording`).

Runs it ``inline`` and ``stepped`` with recording, then compares, on every channel outside
``catbus/``, the sequence of (tick, data bytes). The first difference is reported with its
channel, index and tick -- the place to look when a node of yours is not deterministic (it reads
the wall clock, uses ``hash()``, iterates a set, or keeps state across episodes).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from catbus.recording.reader import Recording


@dataclass(frozen=True)
class Difference:
    topic: str
    index: int
    detail: str

    def __str__(self) -> str:
        return f"{self.topic} message {self.index}: {self.detail}"


def channel_sequences(path: str | Path) -> dict[str, list[tuple[int | None, bytes]]]:
    """``{topic: [(tick, data), ...]}`` for every topic outside ``catbus/``, in file order.

    Keyed by topic, not by MCAP channel: the recorder keeps a channel per (topic, publisher,
    incarnation), and which channels a topic has says which processes published it, not what
    they published -- a hot swap adds one in both modes, but a file from an older recorder
    (channels per topic and incarnation) would otherwise never compare equal to a new one."""
    sequences: dict[str, list[tuple[int | None, bytes]]] = {}
    for message in Recording(path).messages():
        if not message.topic.startswith("catbus/"):
            sequences.setdefault(message.topic, []).append((message.tick, message.data))
    return sequences


def first_difference(a: str | Path, b: str | Path) -> Difference | None:
    """None if the two recordings satisfy the determinism contract, else the first mismatch."""
    left, right = channel_sequences(a), channel_sequences(b)
    if set(left) != set(right):
        only = sorted(set(left) ^ set(right))
        return Difference(only[0], 0, f"channel only in one recording ({', '.join(only)})")
    for topic in sorted(left):
        for index, (one, two) in enumerate(zip(left[topic], right[topic])):
            if one[0] != two[0]:
                return Difference(topic, index, f"tick {one[0]} vs {two[0]}")
            if one[1] != two[1]:
                return Difference(topic, index, f"data differs at tick {one[0]}")
        if len(left[topic]) != len(right[topic]):
            return Difference(topic, min(len(left[topic]), len(right[topic])),
                              f"{len(left[topic])} vs {len(right[topic])} messages")
    return None


def verify_recording(path: str | Path, *, out: Any = print) -> int:
    """``catbus verify RUN.mcap``: step the parallel run recorded in ``path`` again
    (:func:`catbus.reproduce.reproduce`) and say whether every message is the recorded one;
    returns 0 if so, 1 naming the first node and message that differ."""
    from catbus.reproduce.api import describe, reproduce

    outcome = reproduce(path)
    lines = describe(outcome)
    if outcome.exact:
        out(lines[0].replace("reproduced:", "identical:", 1))
    else:
        out(lines[0])
    for line in lines[1:]:
        out(f"  {line}")
    return 0 if outcome.exact else 1


def verify(launch: str, *, seed: int | None = None, steps: int | None = None,
           duration: float | None = None, overrides: Sequence[str] = (),
           out: Any = print, args: Any = None, groups: Sequence[str] = ()) -> int:
    """Run both modes and report; returns 0 when they agree, 1 otherwise. ``args``: the launch
    file's arguments (``--arg``); ``groups``: node groups of the stepped run (``--group``)."""
    from catbus.api.run import run

    with tempfile.TemporaryDirectory(prefix="catbus-verify-") as folder:
        paths = {}
        for mode in ("inline", "stepped"):
            paths[mode] = Path(folder) / f"{mode}.mcap"
            run(launch, mode=mode, seed=seed, steps=steps, duration=duration,
                overrides=overrides, record=paths[mode], evaluate=False, args=args,
                groups=groups if mode == "stepped" else ())
        difference = first_difference(paths["inline"], paths["stepped"])
        counts = {t: len(v) for t, v in channel_sequences(paths["inline"]).items()}
    if difference is None:
        total = sum(counts.values())
        out(f"identical: {total} messages on {len(counts)} channels agree between inline and "
            "stepped")
        return 0
    out(f"DIFFERENT: inline and stepped disagree first at {difference}")
    return 1
