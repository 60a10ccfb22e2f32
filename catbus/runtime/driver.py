"""One node's side of a run without any socket: the same object under every runner.

A :class:`NodeDriver` owns the :class:`~catbus.node.Node` instance, its
:class:`~catbus.runtime.inbox.Inbox`, its :class:`~catbus.runtime.stats.NodeStats` and its map of
declared outputs to topics, and applies every check the same way in every mode. The runner only
decides *when* to step and *how* a message travels: it gives the driver a ``publish`` callback
(a node process encodes and sends on its data socket; ``inline`` encodes and hands the frames to
the other drivers' inboxes). One copy of this logic, so the modes cannot drift apart.

Stricter behaviour wins everywhere:

* a step returning an undeclared output, or a value that cannot be encoded, fails the run with
  an :class:`OutputError` naming the node, the topic and the field inside the value;
* a received payload that cannot be decoded is counted (``inbox.malformed``) and skipped.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

from catbus import params as params_mod
from catbus.node import Node
from catbus.runtime.inbox import Inbox, InputBinding, Received
from catbus.runtime.lockstep import CarryPlan
from catbus.runtime.nodestate import can_snapshot, restore_bytes, snapshot_bytes
from catbus.runtime.stats import NodeStats
from catbus.runtime.unsendable import OutputError, unsendable_error, unsendable_field
from catbus.wire import codec
from catbus.wire.protocol import LOG_TOPIC, SCORES_TOPIC

_perf_counter = time.perf_counter

#: ``publish(topic, value, tick, sim_time, through)``: encode and send one message. ``through``
#: (stepped mode) is the progress the message carries for its topic, else None.
Publish = Callable[[str, Any, int, float, "int | None"], None]


@dataclass(frozen=True, slots=True)
class StepOutcome:
    """What one call of the node (:meth:`NodeDriver.step`, :meth:`NodeDriver.deliver`) did that
    its runner must act on.

    ``carried``: the step's data told every neighbour our progress (stepped mode), so no
    ``catbus/progress`` is needed for the tick. ``ended``: the reason the node gave to
    :meth:`~catbus.node.Node.end_episode` in this call, or None.

    Why a value rather than the runner reading the node: the node's private fields stay the
    driver's business, and every runner (both process loops, ``inline``) learns of an end the
    same way. Immutable, and for calls that do not end the episode one of two preallocated
    constants (:data:`CARRIED`, :data:`NOT_CARRIED`): the step path allocates nothing.
    """

    carried: bool
    ended: str | None = None

    def __bool__(self) -> bool:
        # step() used to return the bare ``carried`` bool; an outcome is always truthy, so a
        # caller still testing it as one would silently never send progress.
        raise TypeError("a StepOutcome has no truth value: test .carried or .ended")


#: A step that did not end the episode and whose data carried our progress to every neighbour.
CARRIED = StepOutcome(True)
#: A step (or a delivery) that did not end the episode and left progress to tell (parallel and
#: inline: always, their data carries no progress).
NOT_CARRIED = StepOutcome(False)


class NodeDriver:
    """Bind and set up a node, step it, deliver messages to it, publish what it returns."""

    def __init__(self, node_class: type[Node], name: str, *, inputs: Sequence[InputBinding],
                 outputs: Sequence[tuple[str, str]], period: float | None,
                 order: Mapping[str, int], publish: Publish) -> None:
        self.node_class = node_class
        self.name = name
        self.period = period
        self.inputs = list(inputs)
        self.outputs = [tuple(o) for o in outputs]
        #: declared output name -> topic
        self.output_topics: dict[str, str] = dict(self.outputs)
        self.inbox = Inbox(self.inputs, order, reactive=period is None)
        self.stats = NodeStats()
        self.node: Node | None = None
        #: The last tick this node has completed, everything it publishes for it sent (-1:
        #: none). What its final progress may claim, never more (see lockstep.final_through).
        #: Kept by :meth:`step` and :meth:`deliver` (and :meth:`continue_from`), not the runners.
        self.completed = -1
        #: The reason the node ended the episode with, once a call has reported it in its
        #: :class:`StepOutcome` (None: not ended). A node's end request stays set, so this is
        #: how a later call knows the end is not news.
        self.ended: str | None = None
        self._send = publish
        #: Stepped: when a step's data carried our progress to every neighbour; None where
        #: data never carries progress (parallel, inline). See :meth:`plan_carrying`.
        self._carry: CarryPlan | None = None
        #: The sim time of the current step or message (what a ``catbus/log`` message carries).
        self.sim_time = 0.0
        #: Between the first step (or message) and ``close()``: the node's logs are published.
        self.running = False
        self._log_publisher: Any = None
        self.params: dict[str, Any] = {}   # the validated parameters the node was set up with
        #: Live parameter changes due before a step (:class:`catbus.runtime.liveparams.
        #: LiveParams`), set only while one is due: None costs :meth:`step` one test.
        self.live: Any = None

    # -- lifecycle ------------------------------------------------------------------------------
    def setup(self, given_params: Mapping[str, Any] | None, seed: int,
              run_info: Mapping[str, Any], log_level: str | None = None) -> None:
        """Validate the parameters (declared defaults merged under the given values), create
        and bind the node, call its ``setup``. With ``log_level``, the node's log records at that
        level and above are published on ``catbus/log`` while it runs (see
        :mod:`catbus.runtime.logs`)."""
        params = params_mod.resolve(self.node_class.params, given_params, where=f"node {self.name}",
                                    prefix="params")
        self.params = params
        node = self.node_class()
        node.bind(self.name, seed, self.period, dict(run_info))
        self.node = node
        self.ended = None   # a new node (a swap's, inline) has asked for no end yet
        if log_level is not None:
            from catbus.runtime.logs import LogPublisher

            self._log_publisher = LogPublisher(self, log_level)
            node.log.addHandler(self._log_publisher)
        node.setup(params)

    def close(self) -> None:
        """The node's ``close`` (if it was created): always called, also after a failure."""
        self.running = False   # what close() logs goes to the terminal only
        try:
            if self.node is not None:
                if hasattr(type(self.node), "inbox_malformed"):   # the recorder: for catbus.end
                    self.node.inbox_malformed = self.inbox.malformed
                self.node.close()
        finally:
            if self._log_publisher is not None:
                self.node.log.removeHandler(self._log_publisher)
                self._log_publisher = None

    # -- state across processes (hot swap) -----------------------------------------------------
    def snapshot(self) -> bytes | None:
        """The node's state as bytes for a replacement (:func:`catbus.runtime.nodestate.
        snapshot_bytes`), or None: it starts fresh."""
        return snapshot_bytes(self.node)

    def restore(self, data: bytes | None) -> bool:
        """Give the node a predecessor's snapshot; whether it took it (:func:`catbus.runtime.
        nodestate.restore_bytes`)."""
        return restore_bytes(self.node, data)

    def publish_log(self, record: Any) -> None:
        """One log record of the node on ``catbus/log`` (``foxglove.Log`` shape), at the
        node's current tick and sim time."""
        from catbus.runtime.logs import log_message

        self._send(LOG_TOPIC, log_message(record, self.name, self.sim_time), self.node.tick,
                   self.sim_time, None)

    def publish_reserved(self, topic: str, value: Any, tick: int, t: float) -> None:
        """A framework message about this node (its step log), sent as outputs are sent."""
        self._send(topic, value, tick, t, None)

    @property
    def end_requested(self) -> str | None:
        """The reason the node gave to :meth:`~catbus.node.Node.end_episode`, or None."""
        return None if self.node is None else self.node._end_requested

    @property
    def scores(self) -> dict[str, Any]:
        """What the node reported with :meth:`~catbus.node.Node.report` (a copy; {} if
        nothing)."""
        scores = None if self.node is None else self.node._scores
        return dict(scores) if scores else {}

    def _publish_scores(self, tick: int, t: float) -> None:
        """After a call that changed the node's scores: its whole score set on
        ``catbus/scores`` (the recorder keeps it), before the call's outputs, so that it is
        sent before anything that carries this tick's progress."""
        node = self.node
        node._scores_changed = False
        self._send(SCORES_TOPIC, {"node": self.name, "scores": dict(node._scores)}, tick, t,
                   None)

    def summary(self, sent: int | None) -> dict[str, Any]:
        """The statistics a run reports for this node."""
        return self.stats.to_dict(sent, self.inbox,
                                  node_malformed=getattr(self.node, "malformed_input", 0))

    # -- stepping -------------------------------------------------------------------------------
    def step(self, tick: int, t: float, inputs: dict[str, Any],
             through: int | None = None) -> StepOutcome:
        """Step the node at ``(tick, t)`` and publish what it returns. With ``through``
        (stepped), every message carries that progress for its topic and the step completes
        the ticks through it; without, it completes ``tick``.

        Returns what the runner must act on: whether the data told every neighbour everything
        (else it sends ``catbus/progress``), and the end of the episode if the node asked for
        it in this call (the runner then ends the episode at ``tick``). Allocates nothing
        unless the episode ends: this is every node's hot path."""
        stats = self.stats
        node = self.node
        if self.live is not None:   # live parameter changes, applied before the step
            self.live.before_step(tick, t)
        stats.state = f"stepping tick {tick}"
        node.tick = tick
        self.sim_time = t
        self.running = True
        began = _perf_counter()
        outputs = node.step(t, inputs)
        ended = _perf_counter()
        stats.record_step(ended - began, ended)
        stats.tick = tick
        if node._scores_changed:
            self._publish_scores(tick, t)
        if node._end_requested is None:
            carried = self.publish(outputs, tick, t, through)
            # Only now: an output that cannot be sent raises above, and the tick is not done.
            self.completed = tick if through is None else through
            return CARRIED if carried else NOT_CARRIED
        # The end travels in its own progress message, together with the end tick: a peer
        # that learnt "complete through this tick" from a data header without the end could
        # already step the next tick. So the data carries no progress, and the node has
        # completed the end tick only (never the rest of its period: there is none).
        self.publish(outputs, tick, t, None)
        self.completed = tick
        return self._end_outcome()

    def _end_outcome(self) -> StepOutcome:
        """The outcome of a call after which the node's end request is set: the end, the first
        time it is seen (the call that asked for it), else nothing new."""
        if self.ended is not None:
            return NOT_CARRIED
        self.ended = self.node._end_requested
        return StepOutcome(False, self.ended)

    def continue_from(self, tick: int) -> None:
        """A process taking over mid-run (hot swap, restart) steps ``tick`` first: its
        predecessor completed every tick before it, so its final progress may claim them."""
        self.completed = tick - 1

    def deliver(self, messages: Iterable[Received], through: int | None = None) -> StepOutcome:
        """Hand received messages, in the order given, to ``on_message`` (decoded; one that
        cannot be decoded is counted in ``inbox.malformed`` and skipped, never fatal) or, for a
        node that wants raw frames, to ``on_raw``; publish what ``on_message`` returns.

        ``through`` (stepped): the messages are everything up to that tick, which this call
        then completes; without, it completes the tick of the last message handled. Returns
        :data:`NOT_CARRIED`, or the end of the episode if the node asked for it in this call
        (at the tick it has completed)."""
        node = self.node
        stats = self.stats
        began = time.perf_counter()
        header = None
        self.running = True
        if node.wants_raw:
            for message in messages:
                header = message.header
                node.tick = header.tick
                self.sim_time = header.sim_time
                node.on_raw(message.topic, header, message.payload, message.buffers)
        else:
            declared_of = self.inbox.declared_of
            for message in messages:
                try:
                    value = message.value
                except codec.DecodeError:
                    self.inbox.malformed += 1
                    continue
                header = message.header
                node.tick = header.tick
                self.sim_time = header.sim_time
                outputs = node.on_message(declared_of.get(message.topic, message.topic), value)
                if node._scores_changed:
                    self._publish_scores(header.tick, header.sim_time)
                if outputs:
                    self.publish(outputs, header.tick, header.sim_time)
        stats.record_step(time.perf_counter() - began)
        if through is not None:
            stats.tick = through
        elif header is not None:
            stats.tick = header.tick
        self.completed = stats.tick
        if node._end_requested is None:
            return NOT_CARRIED
        return self._end_outcome()

    # -- publishing -----------------------------------------------------------------------------
    def plan_carrying(self, reads_from_me: Iterable[frozenset[str]]) -> None:
        """Stepped mode, from the graph: for each neighbour the topics of ours it reads, so that
        :meth:`publish` knows when a tick's data carried all our progress to every neighbour."""
        self._carry = CarryPlan(reads_from_me)

    def publish(self, outputs: Mapping[str, Any] | None, tick: int, t: float,
                through: int | None = None) -> bool:
        """Publish a step's outputs. With ``through`` each message carries it: "everything on
        this topic for ticks <= through is sent" (a periodic node publishes a topic at most once
        per step). Returns True when those messages reach every neighbour on every topic it
        reads from us, i.e. no ``catbus/progress`` is needed for this tick."""
        if not outputs:
            return False
        topics = self.output_topics
        send = self._send
        topic = declared = value = None
        try:
            for declared, value in outputs.items():
                topic = topics.get(declared)
                if topic is None:
                    raise OutputError(
                        f"node {self.name}: output {declared!r} is not one of its declared "
                        f"outputs {list(topics)}")
                send(topic, value, tick, t, through)
        except (TypeError, ValueError, OverflowError) as exc:
            # Only now, on the way to failing: nothing per message on the good path.
            raise unsendable_error(self.name, topic, value, exc) from exc
        if through is None or self._carry is None:
            return False
        return self._carry.carried(outputs, topics)


__all__ = ["NodeDriver", "StepOutcome", "CARRIED", "NOT_CARRIED", "OutputError", "Publish",
           "can_snapshot", "unsendable_field"]
