"""The pure decisions of lockstep by progress (``docs/design.md``, "Lockstep by progress"): no
sockets, no clocks, so every rule here is unit-tested directly (``tests/test_lockstep_logic.py``).

* who a node reads from and who reads from it (:func:`compute_peers`), and which nodes wait for
  it through reactive nodes (:func:`waits_for_me`, parallel mode);
* what a node must know of its peers before it steps a tick (:func:`requirements`,
  :func:`ready`), and how far the run goes (:func:`known_end`);
* what a node that stops may claim to have completed (:func:`final_through`);
* which node a stalled lockstep waits for (:func:`stalled_on`, used by the registry).

The selection of inputs by tick is :meth:`catbus.runtime.inbox.Inbox.take_by_tick`, fed the
limits of :func:`input_limits`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from catbus.runtime.inbox import ALL, InputBinding, PeerProgress
from catbus.runtime.schedule import Schedule
from catbus.wire.protocol import WINDOW


@dataclass
class Peers:
    """Who this node reads from and who reads from it, with their data endpoints."""

    publisher_of: dict[str, str] = field(default_factory=dict)   # topic -> node name
    publishers: list[str] = field(default_factory=list)
    subscribers: list[str] = field(default_factory=list)
    endpoints: dict[str, str] = field(default_factory=dict)
    #: publisher -> the topics we read from it (stepped: whose carried progress we count)
    sources: dict[str, set[str]] = field(default_factory=dict)
    #: neighbour -> the topics of ours it reads (empty for a publisher that reads none)
    reads_from_me: dict[str, frozenset[str]] = field(default_factory=dict)

    @property
    def neighbours(self) -> set[str]:
        return set(self.publishers) | set(self.subscribers)


def compute_peers(name: str, inputs: Sequence[InputBinding], graph: Sequence[Mapping]) -> Peers:
    """From the registry's graph: publishers of our inputs and subscribers of our outputs."""
    peers = Peers()
    my_topics = {b.topic for b in inputs}
    wildcard = ALL in my_topics
    me = next((n for n in graph if n["name"] == name), {"outputs": []})
    my_outputs = {topic for _, topic in me["outputs"]}
    for other in graph:
        other_name = other["name"]
        if other_name == name:
            continue
        peers.endpoints[other_name] = other["endpoint"]
        outputs = {topic for _, topic in other["outputs"]}
        for topic in outputs:
            if topic in my_topics:
                peers.publisher_of[topic] = other_name
        read = outputs if wildcard else outputs & my_topics
        publishes = wildcard or bool(read)
        if publishes:
            peers.publishers.append(other_name)
            peers.sources[other_name] = read
        their_inputs = {topic for _, topic, _ in other["inputs"]}
        everything = ALL in their_inputs
        reads = frozenset(my_outputs if everything else their_inputs & my_outputs)
        if everything or reads:
            peers.subscribers.append(other_name)
        if publishes or everything or reads:
            peers.reads_from_me[other_name] = reads
    return peers


def waits_for_me(name: str, graph: Sequence[Mapping]) -> set[str]:
    """Nodes that, through reactive nodes, wait for ``name`` to finish (parallel mode).

    A reactive node (no period) finishes when the publishers it reads have finished; a periodic
    one by its own clock. So X waits for Y when X is reactive and Y publishes something X reads
    (anything, if X reads ``*``). The result is every node with a path of such waits to ``name``:
    those of ``name``'s publishers in it are in a cycle with ``name`` and never finish before it.
    """
    publishes = {n["name"]: {topic for _, topic in n["outputs"]} for n in graph}
    reads = {n["name"]: {topic for _, topic, _ in n["inputs"]} for n in graph
             if n.get("period") is None}

    def waits(x: str, y: str) -> bool:
        topics = reads[x]
        return x != y and (ALL in topics or bool(topics & publishes.get(y, set())))

    reach = {name}
    grew = True
    while grew:
        grew = False
        for x in reads:
            if x not in reach and any(waits(x, y) for y in reach):
                reach.add(x)
                grew = True
    reach.discard(name)
    return reach


# -- stepping a tick ---------------------------------------------------------------------------
def requirements(name: str, peers: Peers, schedule: Schedule,
                 window: int = WINDOW) -> list[tuple[str, int]]:
    """``(peer, offset)``: before stepping tick ``t`` the peer must have completed tick
    ``t + offset``. Publishers: the schedule's required tick (``t`` or ``t - 1``); subscribers:
    at most ``window`` ticks behind (flow control). Computed once per run, since :func:`ready`
    runs several times per tick."""
    offsets: dict[str, int] = {}
    for publisher in peers.publishers:
        offsets[publisher] = schedule.required_tick(name, publisher, 0)
    for subscriber in peers.subscribers:   # a peer may be both: the stricter counts
        offsets[subscriber] = max(offsets.get(subscriber, -window), -window)
    return list(offsets.items())


def ready(progress: Mapping[str, PeerProgress], tick: int,
          requirements: Sequence[tuple[str, int]]) -> bool:
    """Has every peer completed what stepping ``tick`` needs? ``progress`` is the inbox's view
    of each peer (a peer never heard of has completed nothing)."""
    for peer, offset in requirements:
        done = progress.get(peer)
        if (-1 if done is None else done.through) < tick + offset:
            return False
    return True


def input_limits(name: str, peers: Peers, schedule: Schedule) -> dict[str, int]:
    """``{topic: offset}``: at tick ``t`` an input may show its publisher's messages of ticks
    ``<= t + offset`` (0 for a publisher earlier in the launch file, -1 for a later one); the
    limits :meth:`~catbus.runtime.inbox.Inbox.take_by_tick` wants are ``t + offset``."""
    return {topic: (0 if schedule.precedes(publisher, name) else -1)
            for topic, publisher in peers.publisher_of.items()}


def known_end(last_tick: int, *ends: int | None) -> int:
    """The last tick of the run as far as it is known: the schedule's last tick, or an earlier
    end of the episode (announced by the registry or in a peer's progress)."""
    end = last_tick
    for other in ends:
        if other is not None and other < end:
            end = other
    return end


def final_through(completed: int, end_tick: int | None) -> int:
    """``through`` of a node's last progress message: the last tick it *actually* completed.

    Never more: a node stopped early (Ctrl-C, the registry's stop, a failure) that claimed the
    rest of the run let a peer not yet stopped believe every remaining tick ready, and step on
    stale inputs to the end of the run. A node that ended the episode completed its end tick.
    """
    if end_tick is not None and end_tick < completed:
        return end_tick
    return completed


# -- stall detection (the registry) ------------------------------------------------------------
@dataclass(frozen=True)
class Position:
    """A running node as the registry sees it, for :func:`stalled_on`."""

    name: str
    tick: int
    silent_for: float                   # seconds since its last heartbeat
    publishers: tuple[str, ...] = ()    # the nodes it reads from


def stalled_on(running: Sequence[Position], *, unchanged_for: float, deadline: float,
               heartbeat_interval: float) -> str | None:
    """The node a stalled stepped run waits for, or None if the run is not stalled.

    A lockstep in which every node is alive (heartbeating) but none has completed a tick for
    ``deadline`` seconds (``unchanged_for``: since the positions last changed) is stuck waiting
    on itself -- a message that never came -- and would otherwise wait for ever. A node silent
    in a long step is left to the heartbeat deadline, which names it. The node named is the
    furthest behind and not itself waiting for a node as far behind (of a listener and the
    silent publisher it waits on, the publisher).
    """
    if not running or unchanged_for <= deadline or any(
            p.silent_for > 2 * heartbeat_interval for p in running):
        return None
    lowest = min(p.tick for p in running)
    candidates = [p for p in running if p.tick == lowest]
    names = {p.name for p in candidates}
    behind = next((p for p in candidates if names.isdisjoint(p.publishers)), candidates[0])
    return behind.name


def retain_horizon(schedule: Schedule, window: int = WINDOW) -> int:
    """How many ticks of its messages a stepped publisher keeps to send again to a neighbour
    that subscribes again (see :meth:`catbus.runtime.dataplane.DataPlane.retain`): a subscriber
    is at most ``window`` ticks behind, and its next step may show messages back to one of its
    periods before that."""
    periods = [schedule.period_ticks(name) or 1 for name in schedule.order]
    return window + 1 + max(periods, default=1)


def reporting_interval(has_readers: bool, window: int = WINDOW) -> int:
    """How many ticks a reactive stepped node lets pass between its progress messages: every
    tick when others read its data, else (only flow control reads it: the recorder) every few
    ticks -- less traffic for everyone."""
    return 1 if has_readers else max(1, window // 2)


def frontier(throughs: Iterable[int], end: int) -> int:
    """A reactive stepped node may handle every message of ticks ``<=`` this: the lowest tick
    all its publishers have completed, and never past the end."""
    return min([*throughs, end])


class CarryPlan:
    """Stepped mode: whether a step's data messages told every neighbour our progress (each
    carries ``through`` for its topic), so that no ``catbus/progress`` is needed for the tick.
    Built from the graph: for each neighbour, the topics of ours it reads; a neighbour that
    reads none of them (it reads only our progress, for flow control) is never covered."""

    __slots__ = ("needs", "covered")

    def __init__(self, reads_from_me: Iterable[frozenset[str]]) -> None:
        self.needs = list(reads_from_me)
        #: The answer per tuple of declared outputs a step returned (a node returns the same
        #: few sets over and over: computed once each).
        self.covered: dict[tuple, bool] = {}

    def carried(self, outputs: Mapping[str, Any], topics: Mapping[str, str]) -> bool:
        key = tuple(outputs)
        covered = self.covered.get(key)
        if covered is None:
            published = {topics[name] for name in key}
            covered = self.covered[key] = all(needs and needs <= published
                                              for needs in self.needs)
        return covered
