"""Checkpoints of one node (``checkpoint: N`` in a launch file; ``docs/design.md``,
"Checkpoints"): every N of its own steps the node's state goes to the run's registry, and a
process that restarts it after its predecessor died goes on from the latest one.

Why the registry keeps them and not the node's host: the registry outlives every node process
and already hands a restarted process its terms (``welcome``), so the checkpoint travels the
same way to a process on any host, with no file system shared between hosts.

What a checkpoint holds, taken between two steps (before tick ``tick``): the node's
``snapshot()`` through the message codec, and the state catbus owns for it -- its ``self.rng``
(in place: a node may hold the generator under other names), the scores it reported, and its
per-topic sequence numbers, so that what a restored process publishes again for ticks its
readers have is dropped by them as the duplicate it is. Its inputs are not in it: the restored
process takes them again from its publishers' retained messages (each publisher keeps
:func:`retention` ticks of them), from the checkpoint's tick on, exactly as a hot swap's
replacement does (:meth:`catbus.runtime.inbox.Buffers.resume_after`).

A stepped restart is exact: the restored process steps again from the checkpoint's tick with
the same inputs, and readers drop what they have by publisher and tick; the ``catbus/swap``
event and the registry's ``swapped`` wait until it steps a tick every reader lacks. A parallel
restart restores the state of the checkpoint's cycle at the cycle due now: not exact, and the
event says how many cycles it went back (``rewound``).
"""

from __future__ import annotations

from typing import Any, Mapping

from catbus.control.checkpoints import state_text
from catbus.errors import CatbusError
from catbus.runtime.lockstep import retain_horizon
from catbus.runtime.schedule import Schedule
from catbus.wire import codec
from catbus.wire import messages as msg

#: ``run_info`` key: ``{node name: N}`` for every node with ``checkpoint: N``.
RUN_INFO_KEY = "checkpoints"
#: The most ticks a stepped publisher keeps to send again (messages are held in memory): a
#: checkpoint interval whose retention would exceed it is refused at launch.
MAX_RETAINED_TICKS = 1000
#: A big int inside a generator's state (PCG64's 128-bit words), which msgpack cannot carry.
_BIG_INT = "\0int"


def intervals(run_info: Mapping[str, Any]) -> dict[str, int]:
    """``{node: N}`` from the run's ``run_info`` (nodes without ``checkpoint:`` are absent)."""
    given = run_info.get(RUN_INFO_KEY) if isinstance(run_info, Mapping) else None
    if not isinstance(given, Mapping):
        return {}
    return {str(name): every for name, every in given.items()
            if type(every) is int and every > 0}


def needed_ticks(every: int, period_ticks: int) -> int:
    """Ticks a node's publishers must retain past the lockstep's own horizon for a restart
    from its checkpoints: two intervals, because the latest checkpoint may be one the node sent
    just before it died and the registry never got (it then goes on from the one before)."""
    return 2 * every * period_ticks


def retention(schedule: Schedule, run_info: Mapping[str, Any]) -> int:
    """Ticks every stepped publisher of this run retains (see
    :meth:`catbus.runtime.dataplane.DataPlane.retain`): the lockstep's horizon, plus what a
    node restarted from its checkpoint needs (:func:`needed_ticks`)."""
    extra = [needed_ticks(every, schedule.period_ticks(name) or 1)
             for name, every in intervals(run_info).items() if name in schedule.order]
    return retain_horizon(schedule) + max(extra, default=0)


def inline_checkpoints(schedule: Schedule, run_info: Mapping[str, Any]) -> dict[str, int]:
    """``{node: ticks between its checkpoints}`` for an inline run, which takes them at the
    ticks a stepped run takes them (multiples of N times the node's period)."""
    return {name: every * k for name, every in intervals(run_info).items()
            if (k := schedule.period_ticks(name) if name in schedule.order else None)}


def retention_problem(name: str, every: int, schedule: Schedule) -> str | None:
    """Why ``checkpoint: every`` of node ``name`` cannot be restored exactly (None: it can):
    its publishers would have to retain more than :data:`MAX_RETAINED_TICKS` ticks."""
    k = schedule.period_ticks(name)
    if k is None:
        return "a node without a period (it only reacts to messages) cannot checkpoint"
    ticks = retain_horizon(schedule) + needed_ticks(every, k)
    if ticks <= MAX_RETAINED_TICKS:
        return None
    most = max(0, (MAX_RETAINED_TICKS - retain_horizon(schedule)) // (2 * k))
    return (f"every {every} steps needs its publishers to retain {ticks} ticks of messages "
            f"(two intervals, to feed a restarted process again), more than the "
            f"{MAX_RETAINED_TICKS} they may retain; checkpoint at most every {most} steps")


# -- the bytes of one checkpoint ------------------------------------------------------------------
def _small_ints(value: Any) -> Any:
    """A generator's state with the ints msgpack cannot carry as strings (see :func:`_big_ints`)."""
    if isinstance(value, dict):
        return {key: _small_ints(item) for key, item in value.items()}
    if type(value) is int and not -2 ** 63 <= value < 2 ** 64:
        return {_BIG_INT: hex(value)}
    return value


def _big_ints(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {_BIG_INT}:
            return int(value[_BIG_INT], 16)
        return {key: _big_ints(item) for key, item in value.items()}
    return value


def pack(node: Any, scores: Mapping[str, Any], seq: Mapping[str, int]) -> bytes:
    """The bytes of a checkpoint of ``node``, which has reported ``scores`` (see the module's
    documentation). A ``snapshot()`` that fails or cannot be encoded fails the node, naming it:
    a restart from a checkpoint that was never taken would silently not be exact."""
    try:
        snapshot = node.snapshot()
        state = {"snapshot": snapshot, "rng": _small_ints(node.rng.bit_generator.state),
                 "scores": dict(scores) or None, "seq": dict(seq)}
        payload, buffers = codec.encode_payload(state)
    except Exception as exc:
        raise CatbusError(f"node {node.name}: checkpoint at tick {node.tick + 1}: snapshot() "
                          f"failed or cannot be encoded: {type(exc).__name__}: {exc}") from exc
    return codec.record_bytes(payload, buffers)


def unpack(data: bytes) -> dict[str, Any]:
    """The state :func:`pack` packed (arrays read-only, as received messages are)."""
    payload, buffers = codec.split_record_bytes(data)
    return codec.decode_payload(payload, buffers)


def apply(node: Any, state: Mapping[str, Any]) -> None:
    """Give ``node`` (set up as a new process sets it up) a checkpoint's state: its own through
    ``restore()``, then its generator's (in place) and its scores (reported again: its next
    step publishes the whole set on ``catbus/scores``)."""
    node.restore(state["snapshot"])
    node.rng.bit_generator.state = _big_ints(state["rng"])
    if state.get("scores"):
        node.report(**state["scores"])


def choose(kept: list[msg.Checkpoint], resume: int) -> msg.Checkpoint:
    """Of the checkpoints the registry sent (oldest first), the latest one no later than
    ``resume`` -- the first tick some reader lacks -- so that the restored process steps again
    every tick a reader may lack; with none, tick 0 as set up (``state`` None)."""
    fitting = [point for point in kept if point.tick <= resume]
    return max(fitting, key=lambda point: point.tick) if fitting else \
        msg.Checkpoint(tick=0, state=None)


class NodeCheckpoints:
    """A node process's checkpoints: when to take one, taking it, and restoring one.

    ``every`` is in ticks (stepped: N times the node's period in base ticks; parallel: N
    cycles). Checkpoints fall on multiples of it, so that every process of the node takes them
    at the same ticks."""

    def __init__(self, link: Any, driver: Any, every: int) -> None:
        self.link = link
        self.driver = driver
        self.every = every
        #: The next tick to take one at (the loops compare, then call :meth:`take`).
        self.next_tick = every
        #: What the registry sent a restarted process (``checkpoint`` messages, oldest first).
        self.received: list[msg.Checkpoint] = []

    def take(self, tick: int) -> None:
        """Between two steps, before ``tick``: send the node's state to the registry."""
        self.next_tick = (tick // self.every + 1) * self.every
        link = self.link
        control = link.control
        beat = control.last_sent
        link.send(msg.Checkpoint(tick=tick, state=pack(self.driver.node, self.driver.scores,
                                                       link.data.seq)))
        # A checkpoint is no heartbeat: sent more often than one, it would keep the node's
        # tick and state (what the registry reports and judges stalls by) from being sent.
        control.last_sent = beat

    def restore(self, resume: int, stepped: bool) -> int:
        """A restarted process, before its first step: restore the checkpoint to go on from
        (:func:`choose`; ``resume``, stepped: the first tick a reader lacks). Returns its tick.
        Stepped, the sequence numbers go on from it too."""
        point = choose(self.received, resume) if stepped else (
            self.received[-1] if self.received else msg.Checkpoint(tick=0, state=None))
        if point.state is not None:
            state = unpack(point.state)
            apply(self.driver.node, state)
            if stepped:
                self.link.data.seq.clear()
                self.link.data.seq.update(state["seq"])
        self.next_tick = (point.tick // self.every + 1) * self.every
        return point.tick


def restore_restarted(link: Any, driver: Any, terms: Any) -> tuple[int, int] | None:
    """A restarted process of a node with checkpoints, connected, before its first step:
    restore the checkpoint to go on from. Returns ``(its tick, the first tick a reader lacks)``
    -- stepped: the process steps again from the first, and tells the run it has taken the
    node's place only once it steps the second; parallel: the second is the cycle due now --
    or None (no checkpoints, or not a restart: a swap hands its state over itself)."""
    checkpoints = link.checkpoints
    if checkpoints is None or link.takeover is not None or link.joining != "restart":
        return None
    if terms.mode != "stepped":
        return checkpoints.restore(0, stepped=False), -1
    from catbus.runtime.loops.stepped import first_tick

    resume = first_tick(link, terms.require_schedule(), driver.name)
    link.resume_tick = checkpoints.restore(resume, stepped=True)
    return link.resume_tick, resume


def prepare(link: Any, driver: Any, terms: Any) -> None:
    """In a node process, after its node's ``setup`` and before anything else is received:
    how much it retains for its readers' checkpoints (stepped), and its own checkpoints
    (``link.checkpoints``; None if it takes none: no ``checkpoint:``, or no period)."""
    schedule = terms.schedule
    if schedule is not None and terms.mode == "stepped":
        link.data.retain_ticks = retention(schedule, terms.run_info)
    every = intervals(terms.run_info).get(driver.name)
    if every is None or driver.period is None:
        return
    k = schedule.period_ticks(driver.name) if schedule is not None else None
    link.checkpoints = NodeCheckpoints(link, driver, every * (k or 1)
                                       if terms.mode == "stepped" else every)


__all__ = ["RUN_INFO_KEY", "state_text", "MAX_RETAINED_TICKS", "NodeCheckpoints", "intervals",
           "needed_ticks", "retention", "inline_checkpoints", "retention_problem", "pack", "unpack", "apply",
           "choose", "prepare",
           "restore_restarted"]
