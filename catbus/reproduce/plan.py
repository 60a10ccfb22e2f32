"""What a recorded parallel run's step log says, and in which order to step it again: pure
bookkeeping, no node, no socket (docs/reproduce.md).

A parallel node's outputs depend on its inputs, its time ``t`` and its own state, nothing else
(for a node that does not read the wall clock or an unseeded generator). The step log
(:mod:`catbus.runtime.steplog`) names, for every step, the newest message of each input it had
taken. So a step can be run again as soon as the steps that *produced* those messages have
been run again: the message's recorded publish time is its producer's step time, which finds
the producing step in the producer's own log. Any order that respects these dependencies, and
each node's own order, gives every node the same inputs; :func:`order_steps` picks the one
closest to the recorded times.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

from catbus.errors import CatbusError

#: A message's identity: (publisher, incarnation, sequence number) on its topic.
Identity = tuple[str, int, int]


def time_ns(t: float) -> int:
    """A time in seconds as the recorder stores it (``publish_time``)."""
    return max(0, round(t * 1e9))


@dataclass(frozen=True, slots=True)
class Consumed:
    """The newest message of one input a step had taken, and how many it took since the step
    before (what an ``all`` input shows)."""

    topic: str
    publisher: str
    incarnation: int
    seq: int
    taken: int

    @property
    def key(self) -> tuple[int, int]:
        """Its place in its topic's stream: (incarnation, seq)."""
        return (self.incarnation, self.seq)


@dataclass(frozen=True, slots=True)
class Step:
    """One recorded step of one node process."""

    node: str
    incarnation: int
    index: int            # its place in the node's list of steps (all incarnations)
    cycle: int
    t: float
    duration: float
    consumed: tuple[Consumed | None, ...]
    topics: tuple[str, ...]


def steps_from_log(batches: Iterable[tuple[int, Mapping[str, Any]]]) -> dict[str, list[Step]]:
    """Each node's steps, in order, from ``catbus/steps`` messages given as ``(incarnation of
    the process that sent it, payload)``. Raises :class:`CatbusError` for a payload that is not
    a step log."""
    raw: dict[str, list[tuple[int, int, float, float, Any, tuple[str, ...]]]] = {}
    for incarnation, batch in batches:
        try:
            node = str(batch["node"])
            topics = tuple(str(topic) for topic in batch["topics"])
            for cycle, t, duration, consumed in batch["steps"]:
                raw.setdefault(node, []).append(
                    (int(incarnation or 1), int(cycle), float(t), float(duration), consumed,
                     topics))
        except (KeyError, TypeError, ValueError) as exc:
            raise CatbusError(f"a catbus/steps message is not a step log ({exc})") from None
    steps: dict[str, list[Step]] = {}
    for node, entries in raw.items():
        entries.sort(key=lambda entry: (entry[0], entry[1]))
        steps[node] = [
            Step(node, inc, i, cycle, t, duration,
                 tuple(None if c is None else Consumed(topic, str(c[0]), int(c[1]), int(c[2]),
                                                        int(c[3]))
                       for topic, c in zip(topics, consumed)), topics)
            for i, (inc, cycle, t, duration, consumed, topics) in enumerate(entries)]
    return steps


class Producers:
    """Which logged step published a recorded message: by its publisher, incarnation and
    publish time (a step's ``t`` is the sim time of everything it publishes)."""

    def __init__(self, steps: Mapping[str, Sequence[Step]],
                 recorded: Mapping[tuple[str, str, int, int], int]) -> None:
        #: (node, incarnation, publish time ns) -> step index
        self.by_time = {(s.node, s.incarnation, time_ns(s.t)): s.index
                        for node_steps in steps.values() for s in node_steps}
        #: (topic, publisher, incarnation, seq) -> publish time ns, as recorded
        self.recorded = recorded
        #: (topic, publisher, incarnation) -> sorted recorded seqs (to place a message the
        #: recording lacks between two it has)
        self.seqs: dict[tuple[str, str, int], list[int]] = {}
        for topic, publisher, incarnation, seq in sorted(recorded):
            self.seqs.setdefault((topic, publisher, incarnation), []).append(seq)
        self.last: dict[tuple[str, int], int] = {}
        for node_steps in steps.values():
            for s in node_steps:
                self.last[(s.node, s.incarnation)] = s.index

    def step_of(self, consumed: Consumed) -> int | None:
        """The index of the step of ``consumed.publisher`` that published it, or None: its
        publisher's log does not have that step (not a logged node, or a process killed before
        it sent its last steps); the message is then taken from the recording."""
        when = self.recorded.get((consumed.topic, consumed.publisher, consumed.incarnation,
                                  consumed.seq))
        if when is not None:
            return self.by_time.get((consumed.publisher, consumed.incarnation, when))
        # Not in the recording (its recorder lost it): the step that published the next
        # recorded message of the stream has published it too.
        seqs = self.seqs.get((consumed.topic, consumed.publisher, consumed.incarnation), [])
        place = bisect.bisect_right(seqs, consumed.seq)
        if place < len(seqs):
            later = self.recorded[(consumed.topic, consumed.publisher, consumed.incarnation,
                                   seqs[place])]
            return self.by_time.get((consumed.publisher, consumed.incarnation, later))
        return self.last.get((consumed.publisher, consumed.incarnation))


def order_steps(steps: Mapping[str, Sequence[Step]],
                needs: Callable[[Step], Iterable[tuple[str, int]]],
                order: Mapping[str, int]) -> list[Step]:
    """Every step once, each node's in its own order, each after the steps it ``needs`` (as
    (node, step index)); among the steps that may go next, the one recorded earliest (then the
    launch order). Raises :class:`CatbusError` if the dependencies go round in a circle, which
    a real run cannot produce (a message is published before it is consumed)."""
    nexts = {node: 0 for node in steps}
    done: dict[str, int] = {node: 0 for node in steps}   # steps done per node
    wanted = {s: tuple(needs(s)) for node_steps in steps.values() for s in node_steps}
    result: list[Step] = []
    total = sum(len(node_steps) for node_steps in steps.values())
    while len(result) < total:
        best: Step | None = None
        for node, position in nexts.items():
            node_steps = steps[node]
            if position >= len(node_steps):
                continue
            step = node_steps[position]
            if any(done.get(other, 0) <= index for other, index in wanted[step]):
                continue
            if best is None or (step.t, order.get(node, len(order))) < \
                    (best.t, order.get(best.node, len(order))):
                best = step
        if best is None:
            waiting = [steps[n][p] for n, p in nexts.items() if p < len(steps[n])]
            raise CatbusError("the step log cannot be ordered: "
                              + ", ".join(f"{s.node} cycle {s.cycle} waits for "
                                          f"{list(wanted[s])}" for s in waiting[:3]))
        result.append(best)
        nexts[best.node] += 1
        done[best.node] = best.index + 1
    return result


__all__ = ["Consumed", "Identity", "Producers", "Step", "order_steps", "steps_from_log",
           "time_ns"]
