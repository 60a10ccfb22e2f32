"""The messages a node has been sent, held per input, and which of them a step gets.

Selection is the one place the three runners must agree exactly, so it is pure bookkeeping here:

* ``stepped`` / ``inline`` (:meth:`Buffers.take_by_tick`): an input holds the newest message
  whose tick its publisher is allowed to show at the step, whatever arrived after it;
* ``parallel`` (:meth:`Buffers.take_latest`): the newest message received (``latest``) or
  everything received since the last step (``all``);
* nodes without a period, or reading every topic, get every message in order instead
  (:meth:`Buffers.take_raw_through`, :meth:`Buffers.take_raw_all`).

Messages are kept raw and decoded only when a node gets to see them: a node that steps slower
than its inputs arrive does not pay for decoding messages it never reads.
"""

from __future__ import annotations

from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from catbus.wire import codec
from catbus.wire import localcopy
from catbus.wire.protocol import EVERY_TOPIC

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


#: What the buffers hold: a message from the wire or from the same process.
Message = Received | LocalMessage


class Buffers:
    """Per-topic queues of admitted messages and the selection of a step's inputs.

    Every container here keeps its identity for the inbox's life (emptied in place, never
    replaced): the runtime binds them once (``inbox.raw``) and reads them on every message.
    """

    def __init__(self, inputs: Sequence[InputBinding], order: Mapping[str, int], *,
                 reactive: bool = False) -> None:
        self.inputs = list(inputs)
        self.wildcard = any(b.topic == ALL for b in self.inputs)
        #: Nodes without a period get every message, in order, rather than a selection per step.
        self.in_order = reactive or self.wildcard
        #: publisher -> its place in the launch file (the order of in-order delivery in a tick)
        self.order = dict(order)
        self.by_topic = {b.topic: b for b in self.inputs if b.topic != ALL}
        #: The declared name a message on a topic is delivered under (the first binding wins).
        self.declared_of: dict[str, str] = {}
        for binding in self.inputs:
            self.declared_of.setdefault(binding.topic, binding.declared)
        #: topic -> (tick, message) not yet taken by a step, in arrival order
        self.queues: dict[str, deque[tuple[int, Message]]] = {t: deque() for t in self.by_topic}
        #: topic -> the newest message taken (what a ``latest`` input shows)
        self.current: dict[str, Message | None] = {t: None for t in self.by_topic}
        self.last_good: dict[str, Message] = {}   # newest message that decoded, per topic
        #: topic -> messages taken since the last step (what an ``all`` input shows)
        self.pending_all: dict[str, list[Message]] = {t: [] for t in self.by_topic}
        #: In-order buffer: (tick, launch order of the publisher, seq, message).
        self.raw: list[tuple[int, int, int, Message]] = []
        #: (declared, topic, policy is "all", last binding of its topic) of every input but
        #: the wildcard, in order: a topic bound twice shows its ``all`` list to both.
        bound = [b for b in self.inputs if b.topic != ALL]
        self.plan = [(b.declared, b.topic, b.policy == "all",
                      all(later.topic != b.topic for later in bound[i + 1:]))
                     for i, b in enumerate(bound)]
        self.malformed = 0   # payloads that did not decode when a step took them
        #: publisher -> how many of its payloads did not decode
        self.malformed_from: defaultdict[str, int] = defaultdict(int)
        #: Queue an admitted message where a step or the in-order delivery will take it;
        #: False if no input reads its topic. Runs once per message: a closure over the
        #: containers it fills.
        self.file: Callable[[Message, str, str, int, int], bool] = \
            self._in_order_filer() if self.in_order else self._by_topic_filer()

    # -- filing ---------------------------------------------------------------------------------
    def _in_order_filer(self) -> Callable[[Message, str, str, int, int], bool]:
        """Filing for in-order readers: every message read goes to :attr:`raw`, with what
        :meth:`take_raw_through` sorts it by."""
        append = self.raw.append
        read = self.queues
        order = self.order
        unknown = len(order)   # a publisher not in the launch file comes after every one in it
        every = self.wildcard

        def file(message: Message, topic: str, publisher: str, seq: int, tick: int) -> bool:
            if not (every or topic in read):
                return False
            append((tick, order.get(publisher, unknown), seq, message))
            return True
        return file

    def _by_topic_filer(self) -> Callable[[Message, str, str, int, int], bool]:
        """Filing for stepping readers: each message to its topic's queue, with its tick (what
        :meth:`take_by_tick` selects by)."""
        queue_of = self.queues.get

        def file(message: Message, topic: str, publisher: str, seq: int, tick: int) -> bool:
            queue = queue_of(topic)
            if queue is None:
                return False
            queue.append((tick, message))
            return True
        return file

    def set_keys(self, keys: Mapping[str, Callable[[int], int]]) -> None:
        """Latency (:mod:`catbus.runtime.latency`): file the messages of these topics under the
        key each function gives their tick, not the tick itself, so that :meth:`take_by_tick`
        shows them when they become visible. Only readers of a delayed publisher get this
        filer: every other one keeps the plain one, and pays nothing. Messages queued before
        (a process taking over mid-run is sent its publishers' last ones as it joins) are
        filed again, under their keys."""
        if not keys or self.in_order:
            return
        for topic, key in keys.items():
            queue = self.queues.get(topic)
            if queue:
                entries = list(queue)   # filed under their ticks so far
                queue.clear()
                queue.extend((key(tick), message) for tick, message in entries)
        self.file = self._keyed_filer(dict(keys))

    def _keyed_filer(self, keys: dict[str, Callable[[int], int]]
                     ) -> Callable[[Message, str, str, int, int], bool]:
        """:meth:`_by_topic_filer` with a key per delayed topic (non-decreasing along a
        topic's messages, so that the queue is still taken from its head)."""
        queue_of = self.queues.get
        key_of = keys.get

        def file(message: Message, topic: str, publisher: str, seq: int, tick: int) -> bool:
            queue = queue_of(topic)
            if queue is None:
                return False
            key = key_of(topic)
            queue.append((tick if key is None else key(tick), message))
            return True
        return file

    # -- selecting inputs -----------------------------------------------------------------------
    def take_by_tick(self, limits: Mapping[str, int]) -> dict[str, Any]:
        """Inputs for a stepped/inline step: ``limits`` maps each input topic to the newest tick
        its publisher may show. Returns ``{declared: value}`` in declaration order."""
        current = self.current
        pending_all = self.pending_all
        for topic, queue in self.queues.items():
            limit = limits.get(topic, -1)
            while queue and queue[0][0] <= limit:
                message = queue.popleft()[1]
                current[topic] = message
                pending_all[topic].append(message)
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
        current = self.current
        pending_all = self.pending_all
        inputs: dict[str, Any] = {}
        for declared, topic, every, last in self.plan:
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
            if last:
                pending.clear()
        return inputs

    # Payloads are decoded lazily, so a message whose header was fine but whose payload is not
    # (garbage, a missing buffer frame) shows only here. It is counted as malformed and skipped,
    # like frames refused on arrival; raising would have failed the node over one bad message.
    def _values(self, messages: list[Message]) -> list[Any]:
        values = []
        for message in messages:
            try:
                values.append(message.value)
            except codec.DecodeError:
                self._undecodable(message)
        return values

    def _undecodable(self, message: Message) -> None:
        """Count one message whose payload did not decode, against its publisher."""
        self.malformed += 1
        self.malformed_from[message.header.publisher] += 1

    def _latest_value(self, topic: str) -> Any:
        message = self.current[topic]
        if message is None:
            return None
        try:
            value = message.value
        except codec.DecodeError:
            self._undecodable(message)
            # Show the newest message that does decode instead: one that arrived since the last
            # step, else the last good one. The bad one is replaced, so it is counted once.
            for older in reversed(self.pending_all[topic][:-1]):
                try:
                    value = older.value
                except codec.DecodeError:
                    self._undecodable(older)
                    continue
                self.current[topic] = self.last_good[topic] = older
                return value
            message = self.current[topic] = self.last_good.get(topic)
            return None if message is None else message.value
        self.last_good[topic] = message
        return value

    # -- in-order delivery ----------------------------------------------------------------------
    def take_raw_through(self, tick: int) -> list[Message]:
        """In-order messages with tick <= ``tick`` in schedule order (tick, launch order, seq)."""
        raw = self.raw
        ready = [entry for entry in raw if entry[0] <= tick]
        if not ready:
            return []
        raw[:] = [entry for entry in raw if entry[0] > tick]
        ready.sort(key=lambda entry: entry[:3])
        return [entry[3] for entry in ready]

    def take_raw_all(self) -> list[Message]:
        """In-order messages in arrival order (parallel mode)."""
        raw = self.raw
        ready = [entry[3] for entry in raw]
        raw.clear()
        return ready

    # -- taking over ----------------------------------------------------------------------------
    def resume_after(self, limits: Mapping[str, int], raw_through: int) -> None:
        """A process taking over a node mid-run (hot swap, restart): take, and forget, what the
        node's previous process had already been given -- messages up to ``limits`` (per topic,
        as for :meth:`take_by_tick`) become the current values and the ``all`` lists start
        empty; in-order messages up to tick ``raw_through`` are dropped -- so the next step
        sees exactly what the old process's next step would have seen."""
        if self.queues:
            self.take_by_tick(limits)
        raw = self.raw
        if raw:
            raw[:] = [entry for entry in raw if entry[0] > raw_through]

    def topic_of(self, declared: str) -> str:
        """The topic a declared input is bound to."""
        return next(b.topic for b in self.inputs if b.declared == declared)
