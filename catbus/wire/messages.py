"""The control plane's messages as typed values, checked when they are read.

Every control message is one msgpack map with an ``op`` key and the fields of its dataclass below
(``docs/protocol.md`` lists them with their meaning). :func:`encode` writes one; :func:`decode`
reads one and returns the dataclass, or raises :class:`MalformedMessage` if the map is not a
control message of a known op with fields of the declared types. Unknown extra keys are ignored,
so a newer peer may add fields without breaking an older one.

Why dataclasses and not a validation library (msgspec, pydantic): the control plane carries a
few messages per node per second, so checking them in Python costs nothing that shows, and a
node on a remote host should install nothing beyond pyzmq, msgpack and numpy. The data plane,
where speed matters, does not use this module (see :class:`catbus.wire.codec.Header`).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Union

import msgpack

from catbus.wire.protocol import PROTOCOL_VERSION, Op
from catbus.wire.paramsmessages import ParamsApplied, ParamsChange, ParamsQuery, ParamsReply, \
    ParamsRequest


class MalformedMessage(ValueError):
    """A control message that cannot be acted on; receivers count it and drop it. ``op`` is the
    message's op when it had a known one (the registry answers a bad ``register`` with a
    ``reject`` saying why, so a node written by hand learns what to fix)."""

    def __init__(self, reason: str, op: str | None = None) -> None:
        super().__init__(reason)
        self.op = op


# -- node -> registry ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Register:
    """A node asks to join the run. The launch file, when it has the node, overrides ``period``,
    ``inputs``, ``outputs`` and ``params`` (the registry's :class:`Welcome` says what counts)."""

    OP: ClassVar[str] = Op.REGISTER
    name: str
    endpoint: str                       # where the node's XPUB is bound (its data endpoint)
    pid: int = 0
    host: str = ""
    cls: str = ""                       # the node class, "module:Class", for people to read
    period: float | None = None
    inputs: list = field(default_factory=list)    # [[declared, topic, policy], ...]
    outputs: list = field(default_factory=list)   # [[declared, topic], ...]
    params: dict = field(default_factory=dict)
    #: The protocol version the node speaks; absent means a node from before versioning (1).
    protocol: int = 1
    #: Take over from the running process of this name (hot swap, ``catbus node --replace``);
    #: ``params`` are then the swap's overrides.
    replace: bool = False
    #: The running process of this name died and this one takes its place (its host's restart
    #: policy: ``catbus launch --only``); it starts where its readers stopped hearing.
    restart: bool = False


@dataclass(frozen=True)
class Ready:
    """The node is set up and has seen the hello of every neighbour."""

    OP: ClassVar[str] = Op.READY


@dataclass(frozen=True)
class Heartbeat:
    """Both ways every :data:`~catbus.wire.protocol.HEARTBEAT_INTERVAL`. From a node: its last
    completed tick, step count and a free-text state (``CLOSING_STATE`` once in close())."""

    OP: ClassVar[str] = Op.HEARTBEAT
    tick: int = -1
    steps: int = 0
    state: str = ""
    #: From the registry: the control messages and connections it has refused so far (a
    #: recorder writes the last it heard into its recording).
    refused: int = 0


@dataclass(frozen=True)
class Done:
    """The node left its run loop: exit ``code``, statistics, the end of the episode if this
    node ended it (``end`` is the reason, ``end_tick`` the last tick), and the scores it
    reported (``Node.report``; the launcher puts them in ``RunResult.scores``)."""

    OP: ClassVar[str] = Op.DONE
    code: int = 0
    stats: dict = field(default_factory=dict)
    end: str | None = None
    end_tick: int | None = None
    scores: dict = field(default_factory=dict)
    #: The process handed its place over to a replacement (hot swap): not the node's end.
    retired: bool = False


@dataclass(frozen=True)
class Handover:
    """The old process of a hot swap stopped at a tick boundary (after :class:`Retire`): the
    replacement goes on at ``tick`` with the node's ``snapshot()`` (the message codec's bytes,
    :func:`catbus.wire.codec.record_bytes`; None if the node has none), the per-topic sequence
    numbers (so receivers see one unbroken stream) and the wall time of its last message."""

    OP: ClassVar[str] = Op.HANDOVER
    tick: int
    snapshot: bytes | None = None
    seq: dict = field(default_factory=dict)
    last_publish: float = 0.0


@dataclass(frozen=True)
class Swapped:
    """The replacement has completed its first step (``tick``) and sent what it returned; the
    old process may go. ``first_publish``: wall time of its first message (the parallel-mode
    gap); ``restored``: the old process's state was restored into it."""

    OP: ClassVar[str] = Op.SWAPPED
    tick: int
    first_publish: float = 0.0
    restored: bool = False
    #: The tick of the checkpoint a restarted process went on from (-1: none; see
    #: :class:`Checkpoint`): ``tick`` is then the first tick it stepped that its readers lacked.
    checkpoint: int = -1


@dataclass(frozen=True)
class Error:
    """The node failed (an exception in node code, or a catbus error); the run fails."""

    OP: ClassVar[str] = Op.ERROR
    message: str = ""
    traceback: str = ""
    where: str = ""


# -- registry -> node ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Welcome:
    """The registry accepted the node: what it must run with. ``incarnation`` is this process's
    identity beside its name: 1 for the first process of a name, +1 for each later one (a
    restart, a replacement), so peers and recordings tell the processes of one name apart."""

    OP: ClassVar[str] = Op.WELCOME
    mode: str
    seed: int
    incarnation: int = 1
    params: dict = field(default_factory=dict)
    period: float | None = None
    inputs: list | None = None          # the launch file's resolved topics, if it has the node
    outputs: list | None = None
    schedule: dict | None = None        # catbus.runtime.schedule.Schedule.to_dict(); stepped
    duration: float | None = None       # parallel: seconds after start; None: until stopped
    order: list = field(default_factory=list)      # node names in launch-file order
    run_info: dict = field(default_factory=dict)   # metadata for built-in nodes (recorder)
    protocol: int = PROTOCOL_VERSION
    #: ``""``: an ordinary start. ``"swap"``: a replacement waiting, connected, for
    #: :class:`Takeover`. ``"restart"``: the node joins a run going on and starts when told.
    joining: str = ""
    #: A replacement's parameters: ``params`` is the base (the launch file's resolved values for
    #: the same class; for another class only the values the launch file sets, of which the node
    #: keeps those its class declares: ``filter_params``), ``overrides`` go on top.
    overrides: dict = field(default_factory=dict)
    filter_params: bool = False
    #: Stepped: the tick before which this process hands its node over (a swap scheduled in the
    #: launch file); None: no swap scheduled.
    retire_at: int | None = None


@dataclass(frozen=True)
class Reject:
    """The registry refused the node (unknown name, name taken, wrong protocol version...)."""

    OP: ClassVar[str] = Op.REJECT
    reason: str


@dataclass(frozen=True)
class Graph:
    """Who is in the run: one entry per registered node (name, incarnation, endpoint, inputs,
    outputs, period, pid, host, cls, state, tick, steps). ``complete`` once every node the launch
    file expects has registered. Also the answer to a tool's ``graph?``."""

    OP: ClassVar[str] = Op.GRAPH
    nodes: list
    complete: bool = True
    mode: str = ""
    started: bool = False
    run: str = ""


@dataclass(frozen=True)
class Start:
    """Every node is ready: start stepping ``delay`` seconds after receiving this."""

    OP: ClassVar[str] = Op.START
    delay: float = 0.0
    #: A node joining a run going on (restart): seconds of the run already gone (parallel: its
    #: cycles go on from there) and the first tick to step (stepped; its peers may know better,
    #: see ``heard`` in ``docs/protocol.md``).
    elapsed: float = 0.0
    tick: int = 0


@dataclass(frozen=True)
class End:
    """The episode ends at ``tick`` (relayed from the node that ended it)."""

    OP: ClassVar[str] = Op.END
    tick: int
    reason: str = ""


@dataclass(frozen=True)
class Stop:
    """Leave the run now, gracefully (close() runs)."""

    OP: ClassVar[str] = Op.STOP
    reason: str = ""


@dataclass(frozen=True)
class Retire:
    """Hot swap, to the running process: your replacement is connected; finish this step, send
    :class:`Handover` and wait (publishing nothing) for ``stop`` or :class:`Resume`."""

    OP: ClassVar[str] = Op.RETIRE
    reason: str = ""


@dataclass(frozen=True)
class Takeover:
    """Hot swap, to the replacement: go on at ``tick`` with the old process's ``snapshot`` and
    sequence numbers (see :class:`Handover`); ``old`` describes it (incarnation, pid, host,
    class) for the ``catbus/swap`` event."""

    OP: ClassVar[str] = Op.TAKEOVER
    tick: int
    snapshot: bytes | None = None
    seq: dict = field(default_factory=dict)
    last_publish: float = 0.0
    old: dict = field(default_factory=dict)
    kind: str = "swap"
    #: Seconds of the run already gone (a paced stepped run goes on at its pace from there).
    elapsed: float = 0.0


@dataclass(frozen=True)
class Resume:
    """Hot swap, to the old process: the replacement failed before its first step; go on where
    you stopped."""

    OP: ClassVar[str] = Op.RESUME
    reason: str = ""


@dataclass(frozen=True)
class Rejoined:
    """The node's link to the registry was down (a cable out, its host or process frozen) for
    ``away`` seconds and is back; the node records it (``catbus/swap``, kind ``rejoin``)."""

    OP: ClassVar[str] = Op.REJOINED
    away: float = 0.0


@dataclass(frozen=True)
class Checkpoint:
    """Both ways. From a node with ``checkpoint: N``, every N of its steps: its state before
    stepping ``tick`` -- ``state``, the bytes of :func:`catbus.runtime.checkpoints.pack` (its
    ``snapshot()`` through the codec, its ``self.rng``, its scores, its sequence numbers); the
    registry keeps the latest per node. From the registry, right after the ``welcome`` of a
    restarted process of that node: the latest it kept, to go on from (``state`` None: none was
    taken yet, go on from ``tick`` 0 as the node was set up)."""

    OP: ClassVar[str] = Op.CHECKPOINT
    tick: int
    state: bytes | None = None


@dataclass(frozen=True)
class GraphQuery:
    """A tool (``catbus node list``, ``topic echo``...) asks for the :class:`Graph`."""

    OP: ClassVar[str] = Op.GRAPH_QUERY


@dataclass(frozen=True)
class SwapRequest:
    """A tool (``catbus swap``, ``RunHandle.swap``) asks the run to replace node ``node`` by a
    process of class ``cls`` (empty: the same class) with parameter ``params`` overrides. The
    registry answers with :class:`SwapReply` once the swap is done or refused."""

    OP: ClassVar[str] = Op.SWAP
    node: str
    cls: str = ""
    params: dict = field(default_factory=dict)


@dataclass(frozen=True)
class SwapReply:
    """The outcome of a :class:`SwapRequest`: ``ok``, a one-line ``message`` (why not, or what
    happened), the tick of the switch, the state ("restored" or "fresh") and the parallel-mode
    gap in seconds."""

    OP: ClassVar[str] = Op.SWAP_REPLY
    ok: bool
    message: str = ""
    tick: int | None = None
    state: str = ""
    gap: float | None = None


Message = Union[Register, Ready, Heartbeat, Done, Error, Welcome, Reject, Graph, Start, End,
                Stop, GraphQuery, Handover, Swapped, Retire, Takeover, Resume, SwapRequest,
                SwapReply, Rejoined, Checkpoint, ParamsQuery, ParamsRequest, ParamsReply,
                ParamsChange, ParamsApplied]
MESSAGE_TYPES: tuple[type, ...] = typing.get_args(Message)


# -- reading and writing -----------------------------------------------------------------------------
def encode(message: Message) -> bytes:
    """One control message as the bytes of its ZeroMQ frame."""
    fields = {f.name: getattr(message, f.name) for f in dataclasses.fields(message)}
    return msgpack.packb({"op": message.OP, **fields})


def decode(data: bytes) -> Message:
    """The message in ``data``; raises :class:`MalformedMessage` naming what is wrong."""
    try:
        raw = msgpack.unpackb(data, strict_map_key=False)
    except Exception as exc:
        raise MalformedMessage(f"not msgpack: {exc}") from None
    if not isinstance(raw, dict):
        raise MalformedMessage("a control message is a msgpack map")
    return from_map(raw)


def from_map(raw: dict) -> Message:
    """The typed message for an already unpacked map (see :func:`decode`)."""
    op = raw.get("op")
    kind = _BY_OP.get(op) if isinstance(op, str) else None
    if kind is None:
        raise MalformedMessage(f"unknown op {op!r}")
    values = {}
    for name, check, required in _FIELDS[kind]:
        if name not in raw:
            if required:
                raise MalformedMessage(f"{op}: field {name!r} is missing", op)
            continue
        ok, value = check(raw[name])
        if not ok:
            raise MalformedMessage(f"{op}: field {name!r} has the wrong type: {raw[name]!r:.60}",
                                   op)
        values[name] = value
        limits = _LIMITS.get((op, name))
        if limits is not None and value is not None and not limits[0] <= value <= limits[1]:
            raise MalformedMessage(f"{op}: field {name!r} is out of range: {value!r:.60} "
                                   f"(must be in [{limits[0]}, {limits[1]}])", op)
    return kind(**values)


#: Value ranges of the fields used later for arithmetic or waiting (docs/protocol.md, "Control
#: values"), beyond their types: a message with a value outside is malformed (counted and
#: dropped). Every float field must also be finite (see :func:`_checker`); ints are real ints
#: (never bools) everywhere.
_INT_MAX = 2 ** 53 - 1
_LIMITS: dict[tuple[str, str], tuple[float, float]] = {
    (Op.REGISTER, "pid"): (0, 2 ** 31 - 1),
    (Op.REGISTER, "period"): (1e-9, 1e9),
    (Op.REGISTER, "protocol"): (0, 2 ** 31 - 1),
    (Op.HEARTBEAT, "tick"): (-1, _INT_MAX),
    (Op.HEARTBEAT, "steps"): (0, _INT_MAX),
    (Op.HEARTBEAT, "refused"): (0, _INT_MAX),
    (Op.DONE, "code"): (-(2 ** 31), 2 ** 31 - 1),
    (Op.DONE, "end_tick"): (-1, _INT_MAX),
    (Op.WELCOME, "incarnation"): (0, _INT_MAX),
    (Op.WELCOME, "period"): (1e-9, 1e9),
    (Op.WELCOME, "duration"): (0.0, 2.0 ** 34),   # catbus.api.run.RUN_SECONDS_MAX
    (Op.WELCOME, "protocol"): (0, 2 ** 31 - 1),
    (Op.START, "delay"): (0.0, 3600.0),
    (Op.START, "elapsed"): (0.0, 1e9),
    (Op.START, "tick"): (-1, _INT_MAX),
    (Op.HANDOVER, "tick"): (-1, _INT_MAX),
    (Op.TAKEOVER, "tick"): (-1, _INT_MAX),
    (Op.TAKEOVER, "elapsed"): (0.0, 1e9),
    (Op.SWAPPED, "tick"): (-1, _INT_MAX),
    (Op.SWAPPED, "checkpoint"): (-1, _INT_MAX),
    (Op.END, "tick"): (-1, _INT_MAX),
    (Op.REJOINED, "away"): (0.0, 1e9),
    (Op.CHECKPOINT, "tick"): (0, _INT_MAX),
    (Op.PARAMS, "id"): (0, _INT_MAX),
    (Op.PARAMS_APPLIED, "id"): (0, _INT_MAX),
    (Op.PARAMS_APPLIED, "tick"): (-1, _INT_MAX),
    (Op.PARAMS_REPLY, "tick"): (-1, _INT_MAX),
}


def _checker(annotation: Any) -> Callable[[Any], tuple[bool, Any]]:
    """A function ``value -> (ok, value)`` for a field's type (converting int to float)."""
    args = typing.get_args(annotation)
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        inner = [_checker(a) for a in args if a is not type(None)]
        optional = type(None) in args

        def check_union(value: Any) -> tuple[bool, Any]:
            if value is None:
                return optional, None
            for check in inner:
                ok, converted = check(value)
                if ok:
                    return True, converted
            return False, value
        return check_union
    if annotation is float:   # finite: inf or NaN would poison every sum and comparison
        return lambda v: ((True, float(v)) if type(v) in (int, float) and math.isfinite(v)
                          else (False, v))
    if annotation is int:
        return lambda v: (type(v) is int, v)
    if annotation is bool:
        return lambda v: (type(v) is bool, v)
    if annotation in (str, list, dict, bytes):
        return lambda v: (isinstance(v, annotation), v)
    return lambda v: (True, v)


def _field_table(kind: type) -> list[tuple[str, Callable[[Any], tuple[bool, Any]], bool]]:
    hints = typing.get_type_hints(kind)
    return [(f.name, _checker(hints[f.name]),
             f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)
            for f in dataclasses.fields(kind)]


_BY_OP: dict[str, type] = {kind.OP: kind for kind in MESSAGE_TYPES}
_FIELDS = {kind: _field_table(kind) for kind in MESSAGE_TYPES}


def register_problem(message: Register) -> str | None:
    """What is wrong with the contents of a :class:`Register` beyond its field types (None if
    nothing): nodes in other languages build it by hand, so it is checked before the registry
    acts on it."""
    def rows_of_strings(value: list, length: int) -> bool:
        return all(isinstance(item, list) and len(item) == length
                   and all(isinstance(x, str) for x in item) for item in value)

    if not message.name:
        return "malformed register: 'name' must be a non-empty string"
    if not rows_of_strings(message.inputs, 3):
        return "malformed register: 'inputs' must be a list of [declared, topic, policy]"
    if not rows_of_strings(message.outputs, 2):
        return "malformed register: 'outputs' must be a list of [declared, topic]"
    return None


__all__ = ["MalformedMessage", "Register", "Ready", "Heartbeat", "Done", "Error", "Welcome",
           "Reject", "Graph", "Start", "End", "Stop", "GraphQuery", "Handover", "Swapped",
           "Retire", "Takeover", "Resume", "SwapRequest", "SwapReply", "Rejoined", "Checkpoint",
           "ParamsQuery", "ParamsRequest", "ParamsReply", "ParamsChange", "ParamsApplied",
           "Message",
           "encode",
           "decode", "from_map", "register_problem"]
