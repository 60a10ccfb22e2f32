"""What a node has received, and which of it the node sees at a step.

The inbox is pure bookkeeping (no sockets), shared by the three runners so that they hand a node
exactly the same inputs:

* ``stepped`` / ``inline``: inputs are selected *by tick*, not by arrival. At tick ``t`` an input
  holds the newest message whose tick its publisher is allowed to show (``t`` for publishers
  earlier in the launch file, ``t - 1`` for later ones); a publisher running ahead changes
  nothing. ``catbus/progress`` messages tell how far each peer has completed.
* ``parallel``: inputs are the newest message received (``latest``) or everything received since
  the last step (``all``).

Frames are kept raw and decoded only when a node actually gets to see them, so a node that steps
slower than its inputs arrive does not pay for decoding messages it never reads.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, Collection, Mapping, Sequence

import msgpack

from catbus.wire import codec
from catbus.wire import localcopy
from catbus.wire.protocol import EVERY_TOPIC, HELLO_PREFIX, PROGRESS_TOPIC

#: The wildcard input topic (kept under its short name: the runtime compares against it often).
ALL = EVERY_TOPIC


@dataclass(frozen=True)
class InputBinding:
    """One declared input after name resolution (what the registry tells the runtime)."""

    declared: str
    topic: str
    policy: str = "latest"


@dataclass(slots=True)
class Received:
    """One data message as it came off the wire; ``value`` is decoded on first use."""

    topic: str
    header: codec.Header
    payload: Any
    buffers: list
    _value: Any = field(default=None)
    _decoded: bool = False

    @property
    def value(self) -> Any:
        if not self._decoded:
            self._value = codec.decode_payload(self.payload, self.buffers)
            self._decoded = True
        return self._value


class Shared:
    """The value of one in-process message (inline), built once by :func:`localcopy.local_copy`,
    and how many readers may still take it. Every reader but the last gets its own copy
    (:func:`localcopy.local_fresh`); the last takes this one: no reader ever sees another's
    changes to a received dict or list."""

    __slots__ = ("value", "left")

    def __init__(self, value: Any, readers: int) -> None:
        self.value = value
        self.left = readers


class LocalMessage:
    """A data message delivered in process (inline): what a :class:`Received` is to a reader,
    with the value already in decoded form (``decode(encode(value))``, see
    :func:`localcopy.local_copy`) instead of frames to decode, and the header's fields kept as
    they are (its :class:`~catbus.wire.codec.Header` is built only if asked for). Nodes that
    want raw frames are given frames, never these."""

    __slots__ = ("topic", "publisher", "seq", "tick", "sim_time", "wall_time", "shared",
                 "_value", "_decoded")

    def __init__(self, topic: str, publisher: str, seq: int, tick: int, sim_time: float,
                 wall_time: float, shared: Shared) -> None:
        self.topic = topic
        self.publisher = publisher
        self.seq = seq
        self.tick = tick
        self.sim_time = sim_time
        self.wall_time = wall_time
        self.shared = shared
        self._decoded = False

    @property
    def header(self) -> codec.Header:
        return codec.Header(self.publisher, self.seq, self.tick, self.sim_time, self.wall_time)

    @property
    def value(self) -> Any:
        if not self._decoded:
            shared = self.shared
            shared.left -= 1
            self._value = shared.value if shared.left <= 0 else localcopy.local_fresh(shared.value)
            self._decoded = True
            self.shared = None
        return self._value


@dataclass
class PeerProgress:
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


def _buffer(frame: Any) -> Any:
    """A frame's bytes without a copy: bytes as they are, a ``zmq.Frame`` as its buffer."""
    if type(frame) is bytes:
        return frame
    return frame.buffer if hasattr(frame, "buffer") else frame


_open_envelope = codec.open_envelope
_unpack_header = codec.Header.unpack


class Inbox:
    """Per-node message buffers, progress of peers and loss counters."""

    def __init__(self, inputs: Sequence[InputBinding], order: Mapping[str, int], *,
                 reactive: bool = False) -> None:
        self.inputs = list(inputs)
        self.wildcard = any(b.topic == ALL for b in self.inputs)
        # Nodes without a period get every message, in order, rather than a selection per step.
        self.in_order = reactive or self.wildcard
        self.order = dict(order)
        self.by_topic = {b.topic: b for b in self.inputs if b.topic != ALL}
        #: The declared name a message on a topic is delivered under (the first binding wins).
        self.declared_of: dict[str, str] = {}
        for binding in self.inputs:
            self.declared_of.setdefault(binding.topic, binding.declared)
        self.queues: dict[str, deque[tuple[int, Received]]] = {t: deque() for t in self.by_topic}
        self.current: dict[str, Received | None] = {t: None for t in self.by_topic}
        self.last_good: dict[str, Received] = {}   # newest message that decoded, per topic
        self.pending_all: dict[str, list[Received]] = {t: [] for t in self.by_topic}
        self.raw: list[tuple[int, int, int, Received]] = []   # in-order (reactive) buffer
        self.progress: dict[str, PeerProgress] = {}
        #: Stepped: publisher -> the topics we receive from it, set by :meth:`set_sources` once
        #: the graph is known; a ``through`` carried on data counts only from then on.
        self.sources: dict[str, tuple[str, ...]] = {}
        #: publisher -> {topic: newest ``through`` carried on that topic}
        self.carried: dict[str, dict[str, int]] = {}
        #: Counts changes of any peer's progress or end: a reader that saw the same count
        #: before need not look at ``progress`` again.
        self.advances = 0
        self.end: int | None = None   # min of the peers' announced ends, see end_tick()
        self.last_seq: dict[tuple[str, str], int] = {}
        #: topic -> the node the run assigned it to (from the graph): data on a topic from any
        #: other publisher is refused and counted as malformed.
        self.owners: dict[str, str] = {}
        #: publisher -> the process (incarnation) its newest messages come from
        self.process_of: dict[str, int] = {}
        #: Stepped: publisher -> ticks up to which a new process of it is not listened to (what
        #: the old one had completed: a restarted process may step those ticks again).
        self.floors: dict[str, int] = {}
        #: (declared, topic, policy is "all") of the inputs but the wildcard; see _assemble
        self._plan: list[tuple[str, str, bool]] | None = None
        self.received = 0
        self.dropped = 0        # sequence gaps: messages lost before they reached us
        #: Messages we had already (sent again to a neighbour that subscribed again), or from a
        #: process its successor replaced: dropped, never delivered twice.
        self.duplicates = 0
        self.malformed = 0      # frames that are not catbus messages: counted, never fatal
        #: sender -> the optional 7th progress element: {node: through}, how far the sender
        #: has received from those nodes (see docs/protocol.md, "catbus/progress").
        self.heard: dict[str, dict[str, int]] = {}
        #: (publisher, topic) -> (seq before, messages counted lost) of the latest jump in
        #: ``seq``: taken back if the stream then goes on right after the number before it
        #: (one message with a bad ``seq``, not a loss; docs/protocol.md, "Sequence jumps").
        self.seq_jumps: dict[tuple[str, str], tuple[int, int]] = {}
        #: Stepped: the schedule's last tick, once known; a data message of a later tick is
        #: refused as malformed (it could never be shown, and at the head of an input's queue
        #: it would hold back every message after it).
        self.last_tick: int | None = None
        #: Why the latest refused ``catbus/progress`` was refused (for logs and tests).
        self.refused_progress: str | None = None

    # -- receiving ------------------------------------------------------------------------------
    def add_frames(self, frames: Sequence[Any]) -> Received | None:
        """Take one multipart message (zmq.Frame objects or bytes). Returns the data message, or
        None for progress, malformed frames and topics we did not ask for."""
        # Runs once per message on every receiver: _buffer is called only for frames that are
        # not bytes already (receive_frames hands over the envelope as bytes).
        try:
            first = frames[0]
            topic, header, payload = _open_envelope(
                first if type(first) is bytes else bytes(_buffer(first)))
            header = _unpack_header(header)
            if topic == PROGRESS_TOPIC:
                self._add_progress(payload, header.publisher)
                return None
        except (codec.DecodeError, ValueError, TypeError, IndexError, msgpack.UnpackException):
            self.malformed += 1
            return None
        if topic.startswith(HELLO_PREFIX):
            return None
        buffers = [_buffer(frame) for frame in frames[1:]] if len(frames) > 1 else []
        message = Received(topic, header, payload, buffers)
        # Filed first: the first message of a new process of a publisher sets what of it is
        # dropped (:meth:`_switch_process`) from the progress known before this message.
        filed = self._file(message, topic, header.publisher, header.seq, header.tick,
                           header.incarnation)
        through = header.through
        if through is not None:
            self._carry(header.publisher, topic, through)
        return message if filed else None

    def add_local(self, message: LocalMessage) -> None:
        """Take one in-process data message (inline): :meth:`add_frames` without the frames
        (and without ``through``: inline messages carry no progress)."""
        self._file(message, message.topic, message.publisher, message.seq, message.tick)

    def _file(self, message: Any, topic: str, publisher: str, seq: int, tick: int,
              incarnation: int = 0) -> bool:
        """Count a data message (and any gap in its publisher's sequence before it) and queue
        it where a step or the in-order delivery will take it; False if no input reads it, or
        if it is one we have already (see :attr:`duplicates`)."""
        if self.owners and self.owners.get(topic, publisher) != publisher:
            self.malformed += 1   # not from the node the run assigned this topic to
            return False
        if self.process_of.get(publisher) != incarnation and \
                not self._switch_process(publisher, incarnation):
            self.duplicates += 1
            return False
        if self.last_tick is not None and tick > self.last_tick:
            self.malformed += 1   # past the run's end: never shown, and it would block its queue
            return False
        key = (publisher, topic)
        previous = self.last_seq.get(key)
        if previous is not None:
            jump = self.seq_jumps.pop(key, None) if self.seq_jumps else None
            if jump is not None and seq == jump[0] + 1 and seq <= previous:
                # The stream goes on right after the number before the jump: the jump was one
                # message with a bad seq, not a loss (docs/protocol.md, "Sequence jumps").
                self.dropped -= jump[1]
                self.malformed += 1
                previous = jump[0]
            elif seq <= previous:
                self.duplicates += 1
                return False
            if seq > previous + 1:
                self.dropped += seq - previous - 1
                self.seq_jumps[key] = (previous, seq - previous - 1)
        if self.floors and tick <= self.floors.get(publisher, -1):
            self.duplicates += 1
            return False
        self.last_seq[key] = seq
        self.received += 1
        if self.in_order:
            if not (self.wildcard or topic in self.queues):
                return False
            self.raw.append((tick, self.order.get(publisher, len(self.order)), seq, message))
        elif topic in self.queues:
            self.queues[topic].append((tick, message))
        else:
            return False
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
        if known is not None:
            for key in [k for k in self.last_seq if k[0] == publisher]:
                del self.last_seq[key]
                self.seq_jumps.pop(key, None)
            peer = self.progress.get(publisher)
            if peer is not None and peer.through >= 0:
                self.floors[publisher] = peer.through
        return True

    def _add_progress(self, payload: Any, publisher: str | None = None) -> None:
        """One ``catbus/progress`` payload. Every element is checked before any of it is used
        (docs/protocol.md, "Progress values"); a bad one is counted in ``malformed`` and
        changes nothing. ``publisher`` is the header's, when the caller passes it: a progress
        message speaks only for the node that sent it."""
        try:
            fields = msgpack.unpackb(payload)
        except Exception:
            self.malformed += 1
            return
        problem = progress_problem(fields)
        if problem is None and publisher is not None and fields[0] != publisher:
            problem = "its name is not the header's publisher"
        if problem is not None:
            self.malformed += 1
            self.refused_progress = problem
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

    def _carry(self, publisher: str, topic: str, through: int) -> None:
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
        """Which topics we receive from each publisher (stepped mode; see :meth:`_carry`).
        Progress carried by messages that came before is counted now."""
        self.sources = {publisher: tuple(sorted(set(topics)))
                        for publisher, topics in sources.items() if topics}
        for publisher, topics in self.carried.items():
            wanted = self.sources.get(publisher)
            if wanted:
                self._complete_through(publisher, topics, wanted)
        self.advances += 1

    # -- progress -------------------------------------------------------------------------------
    def through(self, peer: str) -> int:
        progress = self.progress.get(peer)
        return progress.through if progress else -1

    def end_tick(self) -> int | None:
        """The earliest end any peer announced (kept up to date as progress arrives)."""
        return self.end

    def all_final(self, peers: Sequence[str]) -> bool:
        return all(self.progress.get(p, PeerProgress()).final for p in peers)

    # -- selecting inputs -----------------------------------------------------------------------
    def take_by_tick(self, limits: Mapping[str, int]) -> dict[str, Any]:
        """Inputs for a stepped/inline step: ``limits`` maps each input topic to the newest tick
        its publisher may show. Returns ``{declared: value}`` in declaration order."""
        for topic, queue in self.queues.items():
            limit = limits.get(topic, -1)
            while queue and queue[0][0] <= limit:
                _, message = queue.popleft()
                self.current[topic] = message
                self.pending_all[topic].append(message)
        return self._assemble()

    def take_latest(self) -> dict[str, Any]:
        """Inputs for a parallel (and inline) step: everything received so far counts."""
        current = self.current
        pending_all = self.pending_all
        for topic, queue in self.queues.items():
            if queue:
                pending = pending_all[topic]
                for _, message in queue:
                    pending.append(message)
                current[topic] = message
                queue.clear()
        return self._assemble()

    def _assemble(self) -> dict[str, Any]:
        # Once per step of every node: the bindings are walked as prepared tuples, and the
        # newest message's value is taken here (the helpers only for an undecodable one).
        plan = self._plan
        if plan is None:
            plan = self._plan = [(b.declared, b.topic, b.policy == "all")
                                 for b in self.inputs if b.topic != ALL]
        current = self.current
        pending_all = self.pending_all
        inputs: dict[str, Any] = {}
        for declared, topic, every in plan:
            pending = pending_all[topic]
            if every:
                inputs[declared] = self._values(pending)
            else:
                message = current[topic]
                if message is None:
                    inputs[declared] = None
                else:
                    try:
                        inputs[declared] = message.value
                    except codec.DecodeError:
                        inputs[declared] = self._latest_value(topic)
                    else:
                        self.last_good[topic] = message
            pending.clear()
        return inputs

    # Payloads are decoded lazily, so a message whose header was fine but whose payload is not
    # (garbage, a missing buffer frame) shows only here. It is counted as malformed and skipped,
    # like frames refused on arrival; raising would have failed the node over one bad message.
    def _values(self, messages: list[Received]) -> list[Any]:
        values = []
        for message in messages:
            try:
                values.append(message.value)
            except codec.DecodeError:
                self.malformed += 1
        return values

    def _latest_value(self, topic: str) -> Any:
        message = self.current[topic]
        if message is None:
            return None
        try:
            value = message.value
        except codec.DecodeError:
            self.malformed += 1
            # Show the newest message that does decode instead: one that arrived since the last
            # step, else the last good one. The bad one is replaced, so it is counted once.
            for older in reversed(self.pending_all[topic][:-1]):
                try:
                    value = older.value
                except codec.DecodeError:
                    self.malformed += 1
                    continue
                self.current[topic] = self.last_good[topic] = older
                return value
            message = self.current[topic] = self.last_good.get(topic)
            return None if message is None else message.value
        self.last_good[topic] = message
        return value

    def take_raw_through(self, tick: int) -> list[Received]:
        """In-order messages with tick <= ``tick`` in schedule order (tick, launch order, seq)."""
        ready = [entry for entry in self.raw if entry[0] <= tick]
        if not ready:
            return []
        self.raw = [entry for entry in self.raw if entry[0] > tick]
        ready.sort(key=lambda entry: entry[:3])
        return [entry[3] for entry in ready]

    def take_raw_all(self) -> list[Received]:
        """In-order messages in arrival order (parallel mode)."""
        ready, self.raw = self.raw, []
        return [entry[3] for entry in ready]

    def topic_of(self, declared: str) -> str:
        return next(b.topic for b in self.inputs if b.declared == declared)

    def resume_after(self, limits: Mapping[str, int], raw_through: int) -> None:
        """A process taking over a node mid-run (hot swap, restart): take, and forget, what the
        node's previous process had already been given -- messages up to ``limits`` (per topic,
        as for :meth:`take_by_tick`) become the current values and the ``all`` lists start
        empty; in-order messages up to tick ``raw_through`` are dropped -- so the next step
        sees exactly what the old process's next step would have seen."""
        if self.queues:
            self.take_by_tick(limits)
        if self.raw:
            self.raw = [entry for entry in self.raw if entry[0] > raw_through]
