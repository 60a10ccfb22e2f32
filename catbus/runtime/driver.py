"""One node's side of a run without any socket: the same object under every runner.

A :class:`NodeDriver` owns the :class:`~catbus.node.Node` instance, its
:class:`~catbus.runtime.inbox.Inbox`, its :class:`~catbus.runtime.stats.NodeStats` and its map of
declared outputs to topics, and applies every check the same way in every mode. The runner only
decides *when* to step and *how* a message travels: it gives the driver a ``publish`` callback
(a node process encodes and sends on its data socket; ``inline`` encodes and hands the frames to
the other drivers' inboxes). Before, each runner had its own copy of this logic, and they had
drifted apart (an undeclared output was a ValueError in one and NodeFailed in the other; only one
survived an undecodable payload).

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
from catbus.errors import CatbusError
from catbus.node import Node
from catbus.runtime.inbox import Inbox, InputBinding, Received
from catbus.runtime.stats import NodeStats
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


class OutputError(CatbusError):
    """A node returned something it cannot publish: an undeclared output, or a value (or a part
    of one) that has no wire encoding. Fails the run, in every mode."""

    exit_code = 1


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
        #: Stepped: for each neighbour, the topics of ours it reads; None where data never
        #: carries progress (parallel, inline). See :meth:`plan_carrying`.
        self._carry_needs: list[frozenset[str]] | None = None
        self._covered: dict[tuple, bool] = {}
        #: The sim time of the current step or message (what a ``catbus/log`` message carries).
        self.sim_time = 0.0
        #: Between the first step (or message) and ``close()``: the node's logs are published.
        self.running = False
        self._log_publisher: Any = None
        self.params: dict[str, Any] = {}   # the validated parameters the node was set up with

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
        """The node's ``snapshot()`` as the message codec's bytes, or None if its class has no
        ``snapshot``/``restore`` (the replacement then starts fresh). A snapshot that fails or
        cannot be encoded is logged and sent as None: the swap goes on, fresh."""
        node = self.node
        if node is None or not can_snapshot(type(node)):
            return None
        try:
            payload, buffers = codec.encode_payload(node.snapshot())
        except Exception as exc:   # the node's own code: never fatal to the swap
            node.log.warning("snapshot() failed, the replacement starts fresh: %s: %s",
                             type(exc).__name__, exc)
            return None
        return codec.record_bytes(payload, buffers)

    def restore(self, data: bytes | None) -> bool:
        """Give the node a predecessor's snapshot (see :meth:`snapshot`); returns whether it
        took it (False: no snapshot, or a class without ``restore``: it starts fresh)."""
        node = self.node
        if data is None or node is None or not can_snapshot(type(node)):
            return False
        payload, buffers = codec.split_record_bytes(data)
        node.restore(codec.decode_payload(payload, buffers))
        return True

    def replace_node(self, node_class: type[Node], params: Mapping[str, Any], seed: int,
                     run_info: Mapping[str, Any], log_level: str | None = None) -> bool:
        """A hot swap within this process (``inline``): close the node, then set up a node of
        ``node_class`` in its place -- same name, same inbox (it sees exactly what the old one
        would have seen next) -- with the old one's state if both classes carry it. Returns
        whether the state went across (else the new node starts fresh)."""
        snapshot = self.snapshot() if can_snapshot(node_class) else None
        self.close()
        self.node_class, self.node = node_class, None
        self.setup(params, seed, run_info, log_level)
        return self.restore(snapshot)

    def publish_log(self, record: Any) -> None:
        """One log record of the node on ``catbus/log`` (``foxglove.Log`` shape), at the
        node's current tick and sim time."""
        from catbus.runtime.logs import log_message

        self._send(LOG_TOPIC, log_message(record, self.name, self.sim_time), self.node.tick,
                   self.sim_time, None)

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
        self._carry_needs = list(reads_from_me)
        self._covered = {}

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
            raise self._unsendable(topic, value, exc) from exc
        if through is None or self._carry_needs is None:
            return False
        key = tuple(outputs)
        covered = self._covered.get(key)
        if covered is None:
            published = {topics[name] for name in key}
            covered = self._covered[key] = all(
                needs and needs <= published for needs in self._carry_needs)
        return covered

    def _unsendable(self, topic: str | None, value: Any, exc: Exception) -> Exception:
        found = unsendable_field(value)
        if topic is None or found is None:
            return exc   # not about the value (nothing in it fails alone): the original error
        path, reason = found
        where = f"field {path}: " if path else ""
        return OutputError(f"node {self.name}: output {topic}: {where}{reason}")


def can_snapshot(node_class: type) -> bool:
    """Does the class carry its state across processes (both ``snapshot`` and ``restore``)?"""
    return callable(getattr(node_class, "snapshot", None)) and \
        callable(getattr(node_class, "restore", None))


def unsendable_field(value: Any) -> tuple[str, str] | None:
    """The first part of ``value`` that has no wire encoding, as ``(path, reason)``: the path
    reads like the Python that reaches it (``"u"[1]`` for ``value["u"][1]``; empty for the value
    itself), the reason is the codec's. None if every part encodes on its own."""
    def walk(item: Any, path: str) -> tuple[str, str] | None:
        if type(item) is dict:
            for key, inner in item.items():
                if type(key) is not str:
                    bad = walk(key, f"{path}{'.' if path else ''}<key {key!r}>")
                    if bad:
                        return bad
                step = f'"{key}"' if type(key) is str else f"[{key!r}]"
                bad = walk(inner, f"{path}.{step}" if path and step[0] == '"' else path + step)
                if bad:
                    return bad
            return None
        if type(item) in (list, tuple):
            for index, inner in enumerate(item):
                bad = walk(inner, f"{path}[{index}]")
                if bad:
                    return bad
            return None
        try:
            codec.encode_payload(item)
        except (TypeError, ValueError, OverflowError) as exc:
            return path, str(exc)
        return None

    return walk(value, "")
