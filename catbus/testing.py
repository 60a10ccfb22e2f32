"""Unit-test a node without a bus: :class:`NodeHarness`.

The harness drives one node the way every runner does -- the same
:class:`~catbus.runtime.driver.NodeDriver` (parameter validation, ``bind``, ``setup``, output
checks), the same :class:`~catbus.runtime.inbox.Inbox` and the same codec -- minus the sockets.
Every message in or out goes through the wire encoding and back, so the node sees exactly what
it would see on the bus (read-only arrays, tuples as lists, numpy scalars kept) and what it
returns is checked as the bus would check it::

    from catbus.testing import NodeHarness
    from nodes.flat_evade.agent import ModelBasedAgent

    with NodeHarness(ModelBasedAgent, params={"safe_controller": "Unsafe"}, name="human") as h:
        outputs = h.step({"~/sensors": sensors}, tick=0)     # t = tick * period
        control = outputs["~/action"]["control"]              # decoded, read-only

* ``step(inputs)`` hands the node messages that arrived since its last step, keyed by declared
  input name (or by bus topic), then steps it. As on the bus, a ``latest`` input keeps its newest
  message until a new one comes (``None``: nothing new); an ``all`` input takes a list of messages
  and shows the node those received since its previous step.
* ``deliver(topic, message)`` is one message arriving between steps: a node without a period
  (reactive) handles it at once in ``on_message``; a periodic node sees it at its next step.
* Both return what the node published, ``{declared output: decoded message}`` (``{}`` for
  nothing); every published message is also kept in :attr:`NodeHarness.sent`.
* :attr:`NodeHarness.scores` is what the node reported with ``self.report(...)`` so far (as a
  run's ``result.scores`` would have it for this node), and :attr:`NodeHarness.ended` says
  whether it ended the episode with ``self.end_episode(reason)``: ``None``, or an
  :class:`Ended` with ``by`` (the node's name), ``reason`` and ``tick``. A run stops every node
  after that tick; the harness lets a test go on stepping.
* An undeclared output, or a value with no wire encoding, raises
  :class:`~catbus.runtime.driver.OutputError` naming the output topic and the field, as it would
  fail a run; bad parameters raise :class:`~catbus.errors.ConfigError` naming the parameter.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from catbus.errors import ConfigError
from catbus.node import Node
from catbus.params import resolve
from catbus.runtime.driver import NodeDriver, OutputError, unsendable_field
from catbus.runtime.inbox import ALL, InputBinding
from catbus.topics import resolve_topic, validate_node_name
from catbus.wire import codec
from catbus.wire.protocol import LOG_TOPIC, SCORES_TOPIC

#: The publisher name on messages the harness hands the node.
PUBLISHER = "harness"

_CLASS_PERIOD: Any = object()


def roundtrip(value: Any) -> Any:
    """``value`` as a subscriber receives it: encoded to frames, buffers copied as the wire does,
    decoded (arrays come back as read-only views). Raises TypeError naming the field that has no
    wire encoding."""
    try:
        payload, buffers = codec.encode_payload(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise TypeError(_unsendable_message("value", value, exc)) from exc
    return codec.decode_payload(payload, [bytes(buffer) for buffer in buffers])


@dataclass(frozen=True)
class Sent:
    """One message the node published, decoded as a subscriber gets it."""

    output: str      # the declared output name (the key the node returned)
    topic: str       # the bus topic it resolves to
    tick: int
    t: float
    value: Any


@dataclass(frozen=True)
class Ended:
    """How the episode ended: the node that asked (``by``), the ``reason`` it gave to
    :meth:`~catbus.node.Node.end_episode` and the ``tick`` of the step (or message) in which it
    asked; the run's ``result.end_reason`` would be ``reason``."""

    by: str
    reason: str
    tick: int


#: Run-level topics a node's driver publishes for it (its scores, its log records): a run gives
#: them to the recorder, not to subscribers of the node's outputs, so the harness keeps them out
#: of what :meth:`NodeHarness.step` returns and of :attr:`NodeHarness.sent`.
_RUN_TOPICS = (SCORES_TOPIC, LOG_TOPIC)


def find_input(bindings: Sequence[InputBinding], node: str, key: str,
               wildcard_ok: bool = False) -> InputBinding:
    """The input of ``node`` that ``key`` names: its declared name first, then its topic, then
    (``wildcard_ok``) a reader of every topic; ValueError naming the inputs there are."""
    for binding in bindings:
        if key == binding.declared and binding.topic != ALL:
            return binding
    for binding in bindings:
        if key == binding.topic:
            return binding
    if wildcard_ok:
        for binding in bindings:
            if binding.topic == ALL:
                return binding
    declared = [b.declared for b in bindings if b.topic != ALL]
    raise ValueError(f"node {node} has no input {key!r} (its inputs: "
                     f"{', '.join(declared) or 'none'})")


class NodeHarness:
    """One node, set up and driven by hand; see the module documentation.

    Args:
        node_class: The :class:`~catbus.node.Node` subclass to test.
        params: Parameters as in a launch file's ``params:`` (nested dict); validated and merged
            over the declared defaults exactly as a run does.
        name: The node's name (``~/`` topics resolve under it; its ``rng`` is seeded from it).
            Default: the class name in lower case.
        seed: The run seed (``self.seed``; with ``name``, seeds ``self.rng``).
        period: The node's period in seconds, as a launch file's ``period:`` would set it;
            default: the class's. ``None``: a reactive node (only ``deliver``).
        remap: A launch file's ``remap:`` (declared name -> topic).
        run_info: ``Node.run_info`` (only built-in nodes such as the recorder read it).

    Raises:
        ConfigError: A parameter, name or period a run would refuse.
        TypeError: ``node_class`` is not a Node subclass.
    """

    def __init__(self, node_class: type[Node], params: Mapping[str, Any] | None = None, *,
                 name: str | None = None, seed: int = 0, period: float | None = _CLASS_PERIOD,
                 remap: Mapping[str, str] | None = None,
                 run_info: Mapping[str, Any] | None = None) -> None:
        if not (isinstance(node_class, type) and issubclass(node_class, Node)):
            raise TypeError(f"NodeHarness needs a catbus.Node subclass, got {node_class!r}")
        name = node_class.__name__.lower() if name is None else name
        where = f"NodeHarness({node_class.__name__})"
        problem = validate_node_name(name)
        if problem:
            raise ConfigError(where, "name", problem)
        if period is _CLASS_PERIOD:
            period = node_class.period
        if period is not None and (isinstance(period, bool) or not isinstance(period, (int, float))
                                   or period <= 0):
            raise ConfigError(where, "period", f"must be a positive number of seconds or None, "
                                               f"got {period!r}")
        self.name = name
        self.seed = int(seed)
        self.period: float | None = None if period is None else float(period)
        remap = dict(remap or {})
        inputs = [InputBinding(i.topic, resolve_topic(i.topic, name, remap), i.policy)
                  for i in node_class.declared_inputs()]
        outputs = [(declared, resolve_topic(declared, name, remap))
                   for declared in node_class.outputs]
        self._output_of = {}
        for declared, topic in outputs:
            self._output_of.setdefault(topic, declared)
        #: Validated parameters: the declared defaults with ``params`` merged over them.
        self.params = resolve(node_class.params, params, where=where, prefix="params")
        #: Every message the node published, in order.
        self.sent: list[Sent] = []
        self._published: dict[str, Any] = {}
        self._seq: dict[str, int] = {}
        self._tick = 0
        self._closed = False
        self._ended: Ended | None = None
        self._driver = NodeDriver(node_class, name, inputs=inputs, outputs=outputs,
                                  period=self.period, order={name: 0, PUBLISHER: 1},
                                  publish=self._send)
        self._driver.setup(self.params, self.seed, dict(run_info or {}))

    # -- what a test looks at -------------------------------------------------------------------
    @property
    def node(self) -> Node:
        """The node instance (set up)."""
        assert self._driver.node is not None
        return self._driver.node

    @property
    def inputs(self) -> dict[str, str]:
        """Declared input name -> bus topic."""
        return {b.declared: b.topic for b in self._driver.inputs}

    @property
    def outputs(self) -> dict[str, str]:
        """Declared output name -> bus topic."""
        return dict(self._driver.output_topics)

    @property
    def end_requested(self) -> str | None:
        """The reason the node gave to :meth:`~catbus.node.Node.end_episode`, or None."""
        return self._driver.end_requested

    @property
    def ended(self) -> Ended | None:
        """``None`` while the node has not ended the episode; then who ended it, why and at
        which tick (an :class:`Ended`). Set by the first step or message in which the node
        called ``end_episode``, and kept."""
        return self._ended

    @property
    def scores(self) -> dict[str, Any]:
        """What the node reported with :meth:`~catbus.node.Node.report`, ``{key: value}``
        (later reports update the keys they name; ``{}`` if nothing). A copy: what a run would
        put in ``result.scores`` for this node (where a key another node also reports is
        prefixed with the node's name)."""
        return self._driver.scores

    @property
    def stats(self) -> Any:
        """The node's :class:`~catbus.runtime.stats.NodeStats` (steps, step times)."""
        return self._driver.stats

    # -- driving it -----------------------------------------------------------------------------
    def step(self, inputs: Mapping[str, Any] | None = None, *, tick: int | None = None,
             t: float | None = None) -> dict[str, Any]:
        """Deliver ``inputs`` and step the node once.

        Args:
            inputs: Messages that arrived since the last step, keyed by declared input name (or
                bus topic): a message for a ``latest`` input (``None``: none came), a list of
                messages for an ``all`` input. Inputs not given keep what they had (``latest``)
                or show nothing new (``all``), as on the bus.
            tick: The schedule tick; default: one after the previous step's (0 first).
            t: The time the node sees; default ``tick * period``.

        Returns:
            ``{declared output: message}`` as subscribers decode it; ``{}`` if nothing.

        Raises:
            OutputError: The node returned an undeclared output or a value with no wire
                encoding (the message names the topic and the field).
            TypeError: A reactive node (use :meth:`deliver`), or an input with no encoding.
            ValueError: An input the node does not declare.
        """
        self._check_open()
        if self.period is None:
            raise TypeError(f"node {self.name} has no period: it only reacts to messages; use "
                            f"deliver(topic, message)")
        tick = self._tick if tick is None else int(tick)
        t = tick * self.period if t is None else float(t)
        for key, value in (inputs or {}).items():
            binding = find_input(self._driver.inputs, self.name, key)
            if binding.policy == "all":
                if not isinstance(value, (list, tuple)):
                    raise TypeError(f"input {key!r} keeps all messages: give a list of messages, "
                                    f"got {type(value).__name__}")
                messages = list(value)
            else:
                messages = [] if value is None else [value]
            for message in messages:
                self._receive(key, binding.topic, message, tick, t)
        driver = self._driver
        self._published = {}
        try:
            if driver.inbox.in_order:   # a node reading every topic gets its messages one by one
                driver.deliver(driver.inbox.take_raw_all())
            driver.step(tick, t, driver.inbox.take_latest())
        finally:   # also when the step fails after asking for the end
            self._note_end(tick)
        self._tick = tick + 1
        return self._published

    def deliver(self, topic: str, message: Any, *, tick: int | None = None,
                t: float | None = None) -> dict[str, Any]:
        """One message arriving on an input, between steps.

        A node without a period (reactive) handles it at once (``on_message``, or ``on_raw``);
        a periodic node sees it at its next :meth:`step`.

        Args:
            topic: The declared input name or the bus topic (any topic for a ``"*"`` input).
            message: The message (encoded and decoded on the way, as on the bus).
            tick: The message's tick; default: the current one (the next step's).
            t: Its time; default ``tick * period`` (0 for a reactive node).

        Returns:
            What the node published in response, ``{declared output: message}``.
        """
        self._check_open()
        binding = find_input(self._driver.inputs, self.name, topic, wildcard_ok=True)
        bus_topic = topic if binding.topic == ALL else binding.topic
        tick = self._tick if tick is None else int(tick)
        t = (tick * self.period if self.period else 0.0) if t is None else float(t)
        self._published = {}
        self._receive(topic, bus_topic, message, tick, t)
        driver = self._driver
        try:
            if driver.inbox.in_order:
                driver.deliver(driver.inbox.take_raw_all())
        finally:
            self._note_end(tick)
        return self._published

    def close(self) -> None:
        """Call the node's ``close`` (once; later calls do nothing)."""
        if not self._closed:
            self._closed = True
            self._driver.close()

    def __enter__(self) -> "NodeHarness":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"<NodeHarness {self.name} ({type(self._driver.node).__name__}) "
                f"period={self.period} tick={self._tick}>")

    # -- plumbing -------------------------------------------------------------------------------
    def _note_end(self, tick: int) -> None:
        reason = self._driver.end_requested
        if self._ended is None and reason is not None:
            self._ended = Ended(self.name, reason, tick)

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"node {self.name} is closed")

    def _receive(self, key: str, topic: str, value: Any, tick: int, t: float) -> None:
        seq = self._seq.get(topic, 0)
        self._seq[topic] = seq + 1
        header = codec.Header(PUBLISHER, seq, tick, t, time.time())
        try:
            frames = codec.encode_message(topic, header, value)
        except (TypeError, ValueError, OverflowError) as exc:
            raise TypeError(_unsendable_message(f"input {key}", value, exc)) from exc
        self._driver.inbox.add_frames(_as_received(frames))

    def _send(self, topic: str, value: Any, tick: int, t: float, through: int | None) -> None:
        """The driver's publish callback: encode (errors become OutputError in the driver),
        then decode as a subscriber would. Run-level topics (scores, logs) are encoded too, so
        a score with no wire encoding fails here as in a run, and kept apart."""
        if topic in _RUN_TOPICS:
            codec.encode_payload(value)
            return
        seq = self._seq.get(f"\0{topic}", 0)
        self._seq[f"\0{topic}"] = seq + 1
        frames = codec.encode_message(topic, codec.Header(self.name, seq, tick, t, time.time(),
                                                          through), value)
        _, _, decoded = codec.decode_message(_as_received(frames))
        declared = self._output_of.get(topic, topic)
        self._published[declared] = decoded
        self.sent.append(Sent(declared, topic, tick, t, decoded))


def _as_received(frames: Sequence[Any]) -> list[Any]:
    """What the wire does: the receiver gets its own copy of every buffer."""
    return [frames[0], *(bytes(buffer) for buffer in frames[1:])]


def _unsendable_message(what: str, value: Any, exc: Exception) -> str:
    found = unsendable_field(value)
    if found is None:
        return f"{what}: {exc}"
    path, reason = found
    return f"{what}: " + (f"field {path}: " if path else "") + reason


__all__ = ["NodeHarness", "Sent", "Ended", "roundtrip", "OutputError", "PUBLISHER"]
