"""The node API: a node is a step function over topics.

A node class declares what it reads, what it writes, its parameters and its period, and implements
``step``. It never learns how it is run: the same class runs in ``parallel`` (own process, wall
clock), ``stepped`` (own process, lockstep on simulated time) and ``inline`` (one process, plain
calls). A minimal node::

    from catbus import Node, Param

    class Counter(Node):
        outputs = ["~/count"]                 # "~/" is this node's name: counter/count
        params = {"start": Param(int, 0, "first value")}
        period = 0.1                           # seconds; None means it only reacts to messages

        def setup(self, params):
            self.n = params["start"]

        def step(self, t, inputs):
            self.n += 1
            return {"~/count": {"n": self.n, "t": t}}

Names used inside the node (``inputs`` keys, ``step`` return keys) are always the *declared* names;
renaming and remapping happen outside (see :mod:`catbus.topics`).

**Inputs and their policies.** ``inputs = ["~/sensors", Input("~/events", "all")]``: a plain name
(or ``Input(topic)``, policy ``"latest"``) hands ``step`` the newest message on that topic, or
``None`` until one came; ``Input(topic, "all")`` hands it the list, oldest first, of every message
received since the previous step (possibly empty). In ``stepped`` and ``inline`` "received" means
"allowed by the schedule" (docs/design.md, "Schedule semantics"), so both policies give the same values in both.

**Reacting instead of stepping.** A node with ``period = None`` is not stepped; it gets every
message on its inputs, in schedule order, as ``on_message(self, topic, message)`` (``topic`` the
declared input name, ``message`` the decoded value) and may return outputs like ``step``.

**The tick and the reset.** ``self.tick`` is the schedule tick of the current call, set before
every ``step`` and ``on_message`` (``parallel``: the node's cycle number; in ``on_message``: the
tick of the message). ``self.is_reset`` is True exactly at tick 0, the reset -- keyed on the tick,
not on "the first call", so a node restarted in the middle of a run does not reset the world::

    def step(self, t, inputs):
        if self.is_reset:
            return {"~/obs": self.reset_observation()}
        ...

**Scoring and plotting a run.** An environment names the functions that read a recording of a run
it took part in; ``catbus eval`` / ``catbus plot`` find them in the recording's metadata::

    class Arena(Node):
        evaluator = "mypkg.arena_eval:evaluate"   # fn(recording, **options) -> {score: value}
        plotter = "mypkg.arena_eval:plot"         # fn(recording, out, mp4=False, **options)

    def evaluate(recording, d_min=15.0):
        distances = [m.value["distance"] for m in recording.messages(["arena/state"])]
        return {"min_distance": min(distances), "steps": len(distances)}

The function gets a :class:`catbus.Recording`: ``recording.messages([topics])`` yields messages
with ``topic``, ``tick``, ``sequence`` (0: the first of its topic, the reset) and the decoded
``value``; keyword options it accepts come from ``catbus eval`` (``--d-min``) or
``catbus.recording.evaluate.evaluate_file(path, **options)``; see ``nodes/flat_evade/evaluator.py``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Mapping, Sequence

import numpy as np

from catbus.params import Param

Policy = Literal["latest", "all"]
ALL_TOPICS = "*"


@dataclass(frozen=True)
class Input:
    """A declared input: a topic name and how messages are kept until the next step.

    ``latest`` (the default, like a ROS QoS depth of 1) hands ``step`` the newest message or
    ``None``; ``all`` hands it the list of every message received since the previous step, oldest
    first (possibly empty). The topic ``"*"`` subscribes to every topic on the bus (the recorder).
    """

    topic: str
    policy: Policy = "latest"


class Node:
    """Base class of every node. Override ``setup``, ``step`` and, if needed, ``close``.

    Attributes set by catbus before ``setup`` is called:

    * ``name``   -- this instance's name from the launch file (its identity on the bus);
    * ``period`` -- the effective period in seconds (launch file may override the class default),
      or ``None`` for a node that only reacts to messages;
    * ``seed``   -- the run seed (an int), for nodes that need a generator of their own kind;
    * ``rng``    -- ``numpy.random.Generator`` seeded from ``SeedSequence([seed, *name.encode()])``,
      so every node gets its own reproducible stream, the same in every mode and process;
    * ``log``    -- a ``logging.Logger`` named ``catbus.node.<name>``; its records reach stderr as
      ``[<name>] LEVEL message`` and the recording (``catbus/log``) at the run's ``--log-level``.

    Set by catbus before every ``step`` and ``on_message``:

    * ``tick``   -- the schedule tick of the call (``parallel``: the cycle number; in
      ``on_message``: the message's tick); -1 before the first call;
    * ``is_reset`` (read-only) -- True exactly when ``tick == 0``, the reset.

    Services: :meth:`end_episode` ends the episode after this tick; :meth:`report` reports
    scores of the run.
    """

    inputs: ClassVar[Sequence[str | Input]] = ()
    outputs: ClassVar[Sequence[str]] = ()
    params: ClassVar[Mapping[str, Any]] = {}
    period: float | None = None
    #: ``"module:function"`` scoring a recording of a run that contains this node (environments).
    evaluator: ClassVar[str | None] = None
    #: ``"module:function"`` drawing such a recording (``catbus plot``).
    plotter: ClassVar[str | None] = None
    #: Built-in nodes such as the recorder receive raw frames in :meth:`on_raw` instead of decoded
    #: messages in ``step`` / ``on_message``.
    wants_raw: ClassVar[bool] = False

    name: str
    seed: int
    rng: np.random.Generator
    log: logging.Logger
    #: The schedule tick of the current step or message (see the class docstring).
    tick: int = -1

    @property
    def is_reset(self) -> bool:
        """True exactly at tick 0, the reset (whichever call of this instance that is)."""
        return self.tick == 0

    # -- lifecycle ------------------------------------------------------------------------------
    def setup(self, params: dict[str, Any]) -> None:
        """Called once, with validated parameters (declared defaults merged with given values)."""

    def step(self, t: float, inputs: dict[str, Any]) -> dict[str, Any] | None:
        """Called when the period is due. ``t`` is the time in seconds (simulated in ``stepped``
        and ``inline``, since the start in ``parallel``); ``self.tick`` is the tick. ``inputs`` is
        keyed by the declared input names in declaration order: the newest message or None
        (``latest``), or the list of messages since the last step (``all``). Return
        ``{declared_output: message}`` for what to publish; an output that is not declared, or a
        value that cannot be sent (a ``set``, an arbitrary object), fails the run naming the
        output and the field."""
        return None

    def on_message(self, topic: str, message: Any) -> dict[str, Any] | None:
        """Called for every message on an input of a node without a period: ``topic`` is the
        declared input name, ``message`` the decoded value, ``self.tick`` its tick. In
        ``stepped`` and ``inline`` messages come in schedule order (tick, launch order), in
        ``parallel`` as they arrive. Return outputs like ``step`` does. A message that cannot
        be decoded is counted as malformed and skipped."""
        return None

    def on_raw(self, topic: str, header: Any, payload: bytes, buffers: Sequence[Any]) -> None:
        """Raw frames of every received message, for nodes with ``wants_raw = True``."""

    def close(self) -> None:
        """Always called at the end, also after an error or Ctrl-C: release files and devices."""

    # -- services for node code -----------------------------------------------------------------
    def end_episode(self, reason: str = "") -> None:
        """Ask for the episode to end after the current tick (like Gymnasium's terminated).

        Every node stops at the same tick; the run's summary records ``reason``.
        """
        self._end_requested = reason or f"ended by {self.name}"

    def report(self, **scores: Any) -> None:
        """Report scores of the run: ``self.report(reward=12.5, success=True)``.

        Values are numbers, strings or booleans (numpy scalars become plain Python); a later
        call updates the keys it names and keeps the others. The scores land in
        ``RunResult.scores`` (and ``catbus launch``'s output) in every mode, and, when the run
        records, in the recording (a ``catbus/scores`` message after the step that reported;
        ``catbus eval`` shows them). A key that two nodes report is prefixed with each node's
        name (``env.x``, ``robot.x``). Call it from ``step``, ``on_message`` or ``close``
        (scores reported in ``close`` reach the result but not the recording).
        """
        checked = {}
        for key, value in scores.items():
            if hasattr(value, "item") and getattr(value, "ndim", None) == 0:
                value = value.item()   # numpy scalar -> Python
            if type(value) not in (bool, int, float, str):
                raise TypeError(f"node {getattr(self, 'name', '?')}: report({key}=...): a score "
                                f"is a number, a string or a bool, got {type(value).__name__}")
            checked[key] = value
        if self._scores is None:
            self._scores = {}
        self._scores.update(checked)
        self._scores_changed = True

    # -- runtime plumbing (not for node code) ---------------------------------------------------
    _end_requested: str | None = None
    #: What :meth:`report` collected (None: nothing yet), and whether it changed since the
    #: runtime last published it.
    _scores: dict[str, Any] | None = None
    _scores_changed: bool = False
    #: Metadata of the run (launch spec, mode, seed, versions, evaluators) for built-in nodes such
    #: as the recorder. Ordinary nodes must not depend on it: that would break mode independence.
    run_info: dict[str, Any] = {}

    @classmethod
    def declared_inputs(cls) -> list[Input]:
        return [item if isinstance(item, Input) else Input(item) for item in cls.inputs]

    @classmethod
    def declared_outputs(cls, params: Mapping[str, Any]) -> Sequence[str]:
        """The outputs of an instance with these validated ``params``; default ``cls.outputs``.

        Why a hook: a few nodes publish topics that only their parameters name (the replay
        player, :class:`catbus.play.Player`, publishes the recorded topics of its ``file``).
        The launch checks call it with the node's final parameters, so remaps, the
        one-publisher rule and the lockstep graph use the result like a class attribute. To
        refuse parameters, raise ``ConfigError("", "param.path", "what is wrong")``: the launch
        adds the file and ``nodes.NAME.params``.
        """
        return cls.outputs

    @classmethod
    def declared_period(cls, params: Mapping[str, Any]) -> float | None:
        """The period when the launch file gives none; default ``cls.period``. A hook for the
        same reason as :meth:`declared_outputs` (the player steps at its recorded period)."""
        return cls.period

    def bind(self, name: str, seed: int, period: float | None, run_info: dict[str, Any]) -> None:
        """Give the node its identity before ``setup``; called by every runner the same way."""
        self.name = name
        self.seed = int(seed)
        self.period = period
        self.rng = np.random.default_rng(np.random.SeedSequence([int(seed), *name.encode()]))
        self.log = logging.getLogger(f"catbus.node.{name}")
        self.run_info = run_info
        self.tick = -1
        self._end_requested = None
        self._scores = None
        self._scores_changed = False


def param_declarations(node_class: type[Node]) -> Mapping[str, Any]:
    """The nested ``{name: Param}`` declaration of a node class."""
    return node_class.params


__all__ = ["Node", "Input", "Param", "ALL_TOPICS", "Policy", "param_declarations"]
