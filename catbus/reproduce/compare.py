"""The messages of a reproduction compared with the recorded ones, and what it found.

A message computed again is the recorded one when its bytes (``msgpack([payload, *buffers])``,
what the recorder stores) and its time are; it is found by publisher, incarnation and sequence
number. Messages the recording lacks (its recorder lost them) and recorded messages of steps the
step log lacks (a process killed before it sent its last batch) cannot be checked: they are
listed, never counted as equal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from catbus.reproduce.plan import time_ns
from catbus.reproduce.source import Key, RecordedRun
from catbus.wire import codec


@dataclass(frozen=True)
class Difference:
    """The first message computed again that is not the recorded one."""

    node: str
    topic: str
    incarnation: int
    seq: int
    t: float
    detail: str

    def __str__(self) -> str:
        return (f"node {self.node}, {self.topic} message seq {self.seq} (incarnation "
                f"{self.incarnation}) at t={self.t:.6f} s: {self.detail}")


@dataclass
class Outcome:
    """What a reproduction did and found."""

    steps: int = 0
    compared: int = 0
    first: Difference | None = None
    differences: int = 0
    #: messages that could not be checked, each as one line (why)
    unchecked: list[str] = field(default_factory=list)
    #: messages given to nodes from the recording (their publisher was not run again)
    from_recording: int = 0
    losses: list[str] = field(default_factory=list)
    ended: str | None = None
    nodes: list[str] = field(default_factory=list)
    record: Path | None = None

    @property
    def exact(self) -> bool:
        return self.first is None


class Checker:
    """Compares what a reproduction publishes with ``run`` (nothing in a what-if), into
    ``outcome``."""

    def __init__(self, run: RecordedRun, outcome: Outcome, what_if: bool) -> None:
        self.run = run
        self.outcome = outcome
        self.what_if = what_if
        self.produced: set[Key] = set()

    def check(self, name: str, topic: str, incarnation: int, seq: int, t: float,
              frames: list[bytes]) -> None:
        """Compare one message computed again with the recorded one (not in a what-if)."""
        key = (topic, name, incarnation, seq)
        self.produced.add(key)
        if self.what_if:
            return
        recorded = self.run.messages.get(key)
        if recorded is None:
            self.outcome.unchecked.append(f"{name} {topic} seq {seq} (incarnation "
                                          f"{incarnation}): not in the recording")
            return
        self.outcome.compared += 1
        when, data = recorded
        _, _, payload = codec.open_envelope(frames[0])
        if codec.record_bytes(payload, frames[1:]) != data:
            self.differs(Difference(name, topic, incarnation, seq, t, "the data differs"))
        elif when != time_ns(t):
            self.differs(Difference(name, topic, incarnation, seq, t,
                                    f"recorded at t={when / 1e9:.6f} s"))

    def differs(self, difference: Difference) -> None:
        self.outcome.differences += 1
        if self.outcome.first is None:
            self.outcome.first = difference

    def missing(self, drivers: Mapping[str, Any],
                by_time: Mapping[tuple[str, int, int], int]) -> None:
        """Recorded messages of nodes run again that were not computed again: a difference
        when the step that sent them was run again, else not checked (its process was killed
        before it sent the last of its step log)."""
        if self.what_if:
            return
        for key in self.run.order:
            topic, publisher, incarnation, seq = key
            if publisher not in drivers or key in self.produced:
                continue
            when = self.run.messages[key][0]
            if (publisher, incarnation, when) in by_time:
                self.differs(Difference(publisher, topic, incarnation, seq, when / 1e9,
                                        "recorded, but not published again"))
            else:
                self.outcome.unchecked.append(
                    f"{publisher} {topic} seq {seq} (incarnation {incarnation}): its step is "
                    "not in the step log")


__all__ = ["Checker", "Difference", "Outcome"]
