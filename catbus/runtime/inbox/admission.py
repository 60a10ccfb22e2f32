"""Which data messages a node accepts, and the count of those it does not.

A message is admitted once, from the node the run assigned its topic to, from that node's
newest process, in sequence (docs/design.md, "Hot swap and restarts": receivers drop duplicates
by process and sequence number; docs/protocol.md, "Validation"). Everything refused is counted,
never fatal: ``malformed`` (not a message this node may be sent; by publisher in
``malformed_from``), ``duplicates`` (one it has already, or one a newer process replaced) and
``dropped`` (gaps in a sequence: lost before they reached us).

That the header's publisher is the node that sent the message is not this part's business: the
inbox checks it against the socket the message came in on (:meth:`catbus.runtime.inbox.Inbox.
add_frames`) before anything here runs.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Callable

from catbus.wire.protocol import SWAP_TOPIC


class Admission:
    """Owners, process incarnations, sequence numbers and floors, with the loss counters.

    ``completed_through(publisher)`` is how far ``publisher`` is known to have completed: what a
    restarted process of it is not listened to for (it may step those ticks again).
    """

    def __init__(self, completed_through: Callable[[str], int]) -> None:
        self.completed_through = completed_through
        #: topic -> the node the run assigned it to (from the graph): data on a topic from any
        #: other publisher is refused and counted as malformed.
        self.owners: dict[str, str] = {}
        #: publisher -> the process (incarnation) its newest messages come from
        self.process_of: dict[str, int] = {}
        #: (publisher, topic) -> the newest sequence number admitted
        self.last_seq: dict[tuple[str, str], int] = {}
        #: (publisher, topic) -> (seq before, messages counted lost) of the latest jump in
        #: ``seq``: taken back if the stream then goes on right after the number before it
        #: (one message with a bad ``seq``, not a loss; docs/protocol.md, "Sequence jumps").
        self.seq_jumps: dict[tuple[str, str], tuple[int, int]] = {}
        #: Stepped: publisher -> ticks up to which a new process of it is not listened to (what
        #: the old one had completed: a restarted process may step those ticks again).
        self.floors: dict[str, int] = {}
        #: (publisher, topic) -> the newest tick admitted on it (see :attr:`topic_floors`).
        self.last_ticks: dict[tuple[str, str], int] = {}
        #: Stepped: (publisher, topic) -> the newest tick an older process of the publisher had
        #: on that topic: a new process is not listened to for it either. A process may die
        #: half-way through publishing a tick (some topics sent, the rest not): its completed
        #: tick (:attr:`floors`) is then the one before, though this node has the tick's
        #: messages on the topics that went out -- which a restart stepping it again would
        #: otherwise deliver twice.
        self.topic_floors: dict[tuple[str, str], int] = {}
        #: Stepped: the schedule's last tick, once known; a data message of a later tick is
        #: refused as malformed (it could never be shown, and at the head of an input's queue
        #: it would hold back every message after it).
        self.last_tick: int | None = None
        #: publisher -> the newest tick of the data admitted from its current process: an end
        #: of the episode it announces below this is in its past (see
        #: :meth:`catbus.runtime.inbox.progress.PeersProgress.add_progress`).
        self.newest: dict[str, int] = {}
        self.received = 0
        self.dropped = 0        # sequence gaps: messages lost before they reached us
        #: Messages we had already (sent again to a neighbour that subscribed again), or from a
        #: process its successor replaced: dropped, never delivered twice.
        self.duplicates = 0
        self.malformed = 0      # from the wrong publisher, past the last tick, a bad seq
        #: publisher (as its header names it) -> how many of its messages were malformed
        self.malformed_from: defaultdict[str, int] = defaultdict(int)

    def admit(self, topic: str, publisher: str, seq: int, tick: int,
              incarnation: int = 0) -> bool:
        """Count a data message (and any gap in its publisher's sequence before it); False if
        it is refused: not from ``topic``'s owner, past the last tick, or one we have already
        (see :attr:`duplicates`)."""
        owners = self.owners
        if owners and owners.get(topic, publisher) != publisher:
            self._refuse(publisher)   # not from the node the run assigned this topic to
            return False
        if self.process_of.get(publisher) != incarnation and \
                not self._switch_process(publisher, incarnation):
            self.duplicates += 1
            return False
        last_tick = self.last_tick
        if last_tick is not None and tick > last_tick:
            self._refuse(publisher)   # past the run's end: never shown, it would block its queue
            return False
        key = (publisher, topic)
        last_seq = self.last_seq
        previous = last_seq.get(key)
        if previous is not None and (seq != previous + 1 or self.seq_jumps) and \
                not self._in_sequence(key, seq, previous):
            return False
        if self.floors and self._had(key, tick):
            self.duplicates += 1
            return False
        last_seq[key] = seq
        self.last_ticks[key] = tick
        newest = self.newest
        if tick > newest.get(publisher, -1):
            newest[publisher] = tick
        self.received += 1
        return True

    def newest_tick(self, publisher: str) -> int:
        """The newest tick of the data admitted from ``publisher``'s current process (-1:
        none yet)."""
        return self.newest.get(publisher, -1)

    def _had(self, key: tuple[str, str], tick: int) -> bool:
        """From a new process of a publisher: is ``tick`` on the topic one this node has from
        an older process? On ``catbus/swap`` only the ticks it had on that topic: a new
        process's one event of its takeover (``catbus.runtime.takeover``) is new whatever its
        tick, and comes at the first tick its readers lacked -- the lowest of what they had,
        which this reader (the recorder) may have completed already."""
        floor = self.topic_floors.get(key, -1)
        if key[1] != SWAP_TOPIC:
            floor = max(floor, self.floors.get(key[0], -1))
        return tick <= floor

    def _refuse(self, publisher: str) -> None:
        """Count one malformed message of ``publisher``."""
        self.malformed += 1
        self.malformed_from[publisher] += 1

    def _in_sequence(self, key: tuple[str, str], seq: int, previous: int) -> bool:
        """``seq`` after ``previous`` is not simply the next number: count a gap as dropped
        (remembered as a jump), take back the jump before if this number contradicts it, and
        refuse (False) a number we have had."""
        jump = self.seq_jumps.pop(key, None)
        if jump is not None and seq == jump[0] + 1 and seq <= previous:
            # The stream goes on right after the number before the jump: the jump was one
            # message with a bad seq, not a loss (docs/protocol.md, "Sequence jumps").
            self.dropped -= jump[1]
            self._refuse(key[0])
            previous = jump[0]
        elif seq <= previous:
            self.duplicates += 1
            return False
        if seq > previous + 1:
            self.dropped += seq - previous - 1
            self.seq_jumps[key] = (previous, seq - previous - 1)
        return True

    def _switch_process(self, publisher: str, incarnation: int) -> bool:
        """A message from another process of ``publisher`` than the last one: a later process
        (a replacement, a restart) takes over its sequence numbers; an earlier one is late and
        dropped (False). From a restarted process, the ticks the old one had completed are
        dropped too: it may step them again (:attr:`floors`)."""
        known = self.process_of.get(publisher)
        if known is not None and incarnation < known:
            return False
        self.process_of[publisher] = incarnation
        # A new process starts its own record: a restarted one may step ticks the old one had
        # stepped (what of them is dropped is the floors' business, below).
        self.newest.pop(publisher, None)
        if known is not None:
            # Stepped only (a last tick is known): a parallel process's ticks are its cycles.
            topic_floors = self.topic_floors if self.last_tick is not None else {}
            for key in [k for k in self.last_seq if k[0] == publisher]:
                del self.last_seq[key]
                self.seq_jumps.pop(key, None)
                tick = self.last_ticks.pop(key, -1)
                if tick > topic_floors.get(key, -1):
                    topic_floors[key] = tick
            through = self.completed_through(publisher)
            if through >= 0 or any(key[0] == publisher for key in topic_floors):
                self.floors[publisher] = max(through, self.floors.get(publisher, -1))
        return True
