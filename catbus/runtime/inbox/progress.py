"""How far each peer has got, as this node has heard it.

"Publisher P is complete through tick t": P has sent everything it will ever send for ticks
<= t (docs/design.md, "Lockstep by progress"). A node learns it from P's ``catbus/progress``
messages, and from the ``through`` its data messages carry for their own topic; P's end of the
episode and its last word (``final``) come only as progress messages. The lockstep rules
(:mod:`catbus.runtime.lockstep`) read what is kept here and nothing else.

An end of the episode stops every node that hears it, so one is refused (and counted) unless it
can be true (:func:`end_problem`): never in the past of the node announcing it, never from a
node that cannot end the episode.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Callable, Collection, Mapping, Sequence

from catbus.wire import codec


@dataclass
class PeerProgress:
    """What one peer has said of itself: complete ``through``, its ``end``, whether ``final``."""

    through: int = -1
    end: int | None = None
    final: bool = False


#: Integers in progress messages are below this (as in headers, see codec.INT_MAX).
_INT_MAX = codec.INT_MAX


def _tick_ok(value: Any, low: int = -1) -> bool:
    """A real int (not a bool, not a float) with ``low <= value < 2**53``."""
    return type(value) is int and low <= value < _INT_MAX


def progress_problem(fields: Any) -> str | None:
    """What is wrong with an unpacked ``catbus/progress`` payload, or None: ``[name, tick,
    through, end_tick | nil, final, {topic: count}]`` and optionally ``{node: through}`` (the
    rules of docs/protocol.md, "Progress values")."""
    if type(fields) is not list or len(fields) < 6:
        return "not a list of at least 6 elements"
    name, tick, through, end, final, counts = fields[:6]
    if type(name) is not str or not name:
        return "name is not a non-empty string"
    if not _tick_ok(tick):
        return "tick is not an int in [-1, 2**53)"
    if not _tick_ok(through):
        return "through is not an int in [-1, 2**53)"
    if end is not None and not _tick_ok(end):
        return "end_tick is not nil or an int in [-1, 2**53)"
    if type(final) is not bool:
        return "final is not a bool"
    if type(counts) is not dict or not all(type(k) is str and _tick_ok(v, 0)
                                           for k, v in counts.items()):
        return "counts is not a map of topic to int in [0, 2**53)"
    if len(fields) > 6:
        heard = fields[6]
        if heard is not None and (type(heard) is not dict or not all(
                type(k) is str and k and _tick_ok(v) for k, v in heard.items())):
            return "heard is not nil or a map of node name to int in [-1, 2**53)"
    return None


def end_problem(end: int, through: int, final: bool, completed: int, newest: int,
                may_end: bool) -> str | None:
    """Why an end of the episode at tick ``end``, announced by a peer's progress, cannot be
    true, or None (docs/protocol.md, "Progress values"). ``through`` is the same message's;
    ``completed`` the through this node had from the peer before it; ``newest`` the newest
    tick of the peer's data it has; ``may_end`` whether the peer may end the episode at all.

    A node ends the episode at a tick it has reached and never completes a tick past its end,
    so an end below what it already said it completed, or below the ticks of its data, is in
    its past: a confused or forged message, which would stop its readers at once. A node that
    relays an end it learnt from another (its final progress) leaves it out when it is in its
    own past (:meth:`catbus.runtime.dataplane.DataPlane.publish_progress`); its readers learn
    it from the node that ended the episode, or from the registry.
    """
    if end < through:
        return f"end_tick {end} is before its own through {through}"
    if end < completed:
        return f"end_tick {end} is before tick {completed}, which it had already completed"
    if end < newest:
        return f"end_tick {end} is before tick {newest}, which its data already had"
    if not (may_end or final):
        return "it cannot end the episode (a node without a period, in a stepped run)"
    return None


class PeersProgress:
    """Each publisher's completed-through, end tick and final word, and how far it has heard.

    ``progress`` and ``heard`` keep their identity for the inbox's life: the stepped loop binds
    them once and reads them every tick. ``advances`` is how a waiting reader avoids looking at
    every peer again when nothing changed.

    ``newest_tick(peer)`` is the newest tick of the peer's data this node has (the inbox's
    admission knows it), for :func:`end_problem`.
    """

    def __init__(self, newest_tick: Callable[[str], int] | None = None) -> None:
        self.newest_tick = newest_tick or (lambda peer: -1)
        #: Peers whose progress may not end the episode (it is only relayed in their final
        #: progress): stepped, the nodes without a period -- their publishers may already be up
        #: to WINDOW ticks further, so no tick could be the same for all (docs/design.md,
        #: "Lockstep by progress"). Set by the inbox.
        self.cannot_end: frozenset[str] = frozenset()
        #: peer -> what it has told us of its progress
        self.progress: dict[str, PeerProgress] = {}
        #: Stepped: publisher -> the topics we receive from it, set by :meth:`set_sources` once
        #: the graph is known; a ``through`` carried on data counts only from then on.
        self.sources: dict[str, tuple[str, ...]] = {}
        #: publisher -> {topic: newest ``through`` carried on that topic}
        self.carried: dict[str, dict[str, int]] = {}
        #: Counts changes of any peer's progress or end: a reader that saw the same count
        #: before need not look at ``progress`` again.
        self.advances = 0
        self.end: int | None = None   # the earliest end any peer announced
        #: sender -> the optional 7th progress element: {node: through}, how far the sender
        #: has received from those nodes (see docs/protocol.md, "catbus/progress").
        self.heard: dict[str, dict[str, int]] = {}
        self.malformed = 0   # progress messages refused (see :meth:`add_progress`)
        #: sender -> how many of its progress messages were refused
        self.malformed_from: defaultdict[str, int] = defaultdict(int)
        #: Why the latest refused ``catbus/progress`` was refused (for logs and tests).
        self.refused_progress: str | None = None

    # -- learning -------------------------------------------------------------------------------
    def add_progress(self, payload: Any, publisher: str | None = None) -> None:
        """One ``catbus/progress`` payload. Every element is checked before any of it is used
        (docs/protocol.md, "Progress values"), and so is its end of the episode
        (:func:`end_problem`); a bad one is counted in ``malformed`` and changes nothing.
        ``publisher`` is the header's, when the caller passes it (the inbox has checked it
        against the socket the message came on): a progress message speaks only for the node
        that sent it."""
        try:
            fields = codec.unpack_bounded(payload)
        except Exception:
            self._refuse(publisher, "not msgpack, or too large")
            return
        problem = progress_problem(fields)
        if problem is None and publisher is not None and fields[0] != publisher:
            problem = "its name is not the header's publisher"
        if problem is None and fields[3] is not None:
            name = fields[0]
            peer = self.progress.get(name)
            problem = end_problem(fields[3], fields[2], fields[4],
                                  peer.through if peer is not None else -1,
                                  self.newest_tick(name), name not in self.cannot_end)
        if problem is not None:
            self._refuse(publisher if publisher is not None else
                         fields[0] if type(fields) is list and fields and
                         type(fields[0]) is str else "", problem)
            return
        name, _tick, through, end, final = fields[:5]
        if len(fields) > 6 and fields[6] is not None:
            self.heard[name] = dict(fields[6])
        peer = self.progress.setdefault(name, PeerProgress())
        self.advances += 1
        peer.through = max(peer.through, through)
        if end is not None:
            peer.end = end if peer.end is None else min(peer.end, end)
        peer.final = peer.final or bool(final)
        if end is not None and (self.end is None or end < self.end):
            self.end = end

    def _refuse(self, sender: str | None, problem: str) -> None:
        """Count one refused progress message of ``sender`` ("" or None: not known)."""
        self.malformed += 1
        self.malformed_from[sender or ""] += 1
        self.refused_progress = problem

    def carry(self, publisher: str, topic: str, through: int) -> None:
        """A data message's ``through``: its publisher has sent everything *on this topic* for
        ticks <= ``through``. The publisher is complete through ``t`` for us once every topic we
        receive from it has carried ``t`` (or a ``catbus/progress`` said so)."""
        topics = self.carried.get(publisher)
        if topics is None:
            topics = self.carried[publisher] = {}
        if through <= topics.get(topic, -1):
            return
        topics[topic] = through
        wanted = self.sources.get(publisher)
        if wanted:
            peer = self.progress.get(publisher)
            if peer is None or through > peer.through:
                self._complete_through(publisher, topics, wanted)

    def _complete_through(self, publisher: str, topics: dict[str, int],
                          wanted: tuple[str, ...]) -> None:
        """Raise ``publisher``'s progress to the lowest ``through`` carried on the topics we
        read from it."""
        low = topics.get(wanted[0], -1) if len(wanted) == 1 else \
            min(topics.get(t, -1) for t in wanted)
        peer = self.progress.get(publisher)
        if peer is None:
            peer = self.progress[publisher] = PeerProgress()
        if low > peer.through:
            peer.through = low
            self.advances += 1

    def set_sources(self, sources: Mapping[str, Collection[str]]) -> None:
        """Which topics we receive from each publisher (stepped mode; see :meth:`carry`).
        Progress carried by messages that came before is counted now."""
        self.sources = {publisher: tuple(sorted(set(topics)))
                        for publisher, topics in sources.items() if topics}
        for publisher, topics in self.carried.items():
            wanted = self.sources.get(publisher)
            if wanted:
                self._complete_through(publisher, topics, wanted)
        self.advances += 1

    # -- reading --------------------------------------------------------------------------------
    def through(self, peer: str) -> int:
        """The last tick ``peer`` is known to have completed (-1: none yet)."""
        progress = self.progress.get(peer)
        return progress.through if progress else -1

    def end_tick(self) -> int | None:
        """The earliest end any peer announced (kept up to date as progress arrives)."""
        return self.end

    def all_final(self, peers: Sequence[str]) -> bool:
        """Has every one of ``peers`` sent its last word?"""
        progress = self.progress
        return all(p in progress and progress[p].final for p in peers)
