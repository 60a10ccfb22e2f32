"""The control plane's state, with nothing but queries on it: the members, every process the
plane talks to, where the run is (started, ended, stopping), and the records it reports (swaps,
restarts, rejoins, failed swaps, spliced episodes). The handlers that change it are in
:mod:`catbus.control.plane`, :mod:`~catbus.control.replace` and :mod:`~catbus.control.liveness`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from catbus.control.config import RunConfig
from catbus.control.instructions import Outbox
from catbus.control.kinds import MemberState
from catbus.control.members import Member, Process
from catbus.control.switch import Switch
from catbus.wire import messages as msg
from catbus.wire.protocol import EVERY_TOPIC


@dataclass
class RunState:
    config: RunConfig
    members: dict[str, Member] = field(default_factory=dict)
    #: Node names in launch order (an open bus appends each newcomer).
    order: list[str] = field(default_factory=list)
    #: Every process the plane talks to, by routing id: members' current processes, swap
    #: replacements before their takeover, old processes after it.
    processes: dict[bytes, Process] = field(default_factory=dict)
    started: bool = False
    started_at: float = 0.0
    end_tick: int | None = None
    end_reason: str | None = None
    #: The node whose end of the episode counts (the first, and not one in the past).
    ended_by: str | None = None
    #: Monotonic time the end of the episode was learnt (parallel: the end grace starts then).
    ended_at: float | None = None
    #: Set once the run is being stopped: why.
    stopping: str | None = None
    #: Every swap and restart done: ``{node, kind, tick, old, new, state, gap, at}``.
    swaps: list[dict[str, Any]] = field(default_factory=list)
    #: Failed swaps: ``{node, message}``.
    swap_failures: list[dict[str, Any]] = field(default_factory=list)
    #: Nodes that came back after losing their link: ``{node, kind: "rejoin", tick, down_s, at}``.
    rejoins: list[dict[str, Any]] = field(default_factory=list)
    #: Nodes that went on mid-episode without their state: ``{node, tick, kind, state}``.
    spliced: list[dict[str, Any]] = field(default_factory=list)
    #: Replacements in progress (a swap or a restart), by node name: at most one per node.
    switches: dict[str, Switch] = field(default_factory=dict)
    #: Processes the host started, pid -> the names of its nodes (one, or a group's; their
    #: exits are reported by pid).
    local_pids: dict[int, list[str]] = field(default_factory=dict)
    #: Tools waiting for the outcome of a swap they asked for (heartbeats keep them waiting).
    requesters: set[bytes] = field(default_factory=set)
    #: Registrations refused for what they said (not counted by the socket).
    refused: int = 0
    #: The graph changed since it was last sent (see :func:`broadcast_graph`).
    graph_dirty: bool = False

    @classmethod
    def for_run(cls, config: RunConfig) -> "RunState":
        members = {name: Member(name, node) for name, node in (config.expected or {}).items()}
        return cls(config, members, list(config.order or members))

    # -- who ----------------------------------------------------------------------------------
    def member_of(self, identity: bytes) -> Member | None:
        """The member whose *current* process is ``identity`` (None for any other)."""
        process = self.processes.get(identity)
        if process is None:
            return None
        member = self.members.get(process.name)
        return member if member is not None and member.process is process else None

    def live_members(self) -> list[Member]:
        """Members with a process that is owed messages (not finished)."""
        return [m for m in self.members.values()
                if m.process is not None and not m.state.finished]

    def missing(self) -> list[str]:
        """Expected nodes that have not registered yet."""
        return [m.name for m in self.members.values() if m.state is MemberState.EXPECTED]

    def not_ready(self) -> list[str]:
        return [m.name for m in self.members.values()
                if m.state in (MemberState.EXPECTED, MemberState.REGISTERED)]

    def running(self) -> list[Member]:
        return [m for m in self.members.values()
                if not m.state.finished and m.state is not MemberState.EXPECTED]

    def min_tick(self) -> int:
        ticks = [m.tick for m in self.members.values()
                 if m.state is not MemberState.FAILED and m.period]
        return min(ticks) if ticks else -1

    def publishers_of(self, member: Member) -> list[str]:
        """The members that publish a topic ``member`` reads (any, if it reads ``*``)."""
        reads = member.reads()
        return [other.name for other in self.members.values() if other is not member and
                (EVERY_TOPIC in reads or reads & other.publishes())]

    def is_over(self) -> bool:
        """Every member finished: the run is over."""
        return bool(self.members) and all(m.state.finished for m in self.members.values())

    def elapsed(self, now: float) -> float:
        """Seconds since the run started (its start delay included), 0 before."""
        if not self.started:
            return 0.0
        return max(0.0, now - self.started_at - self.config.start_delay)

    def run_end(self) -> tuple[float, str] | None:
        """Parallel: when the run is over (monotonic) and why; None if not known."""
        if self.config.mode != "parallel" or not self.started:
            return None
        ends = []
        duration = self.config.duration
        if duration is not None:
            ends.append((self.started_at + self.config.start_delay + duration,
                         f"the run's {duration:g} s duration"))
        if self.ended_at is not None:
            ends.append((self.ended_at, f"the end of the episode ({self.end_reason})"))
        return min(ends) if ends else None

    def others(self) -> list[Process]:
        """Processes that take part in a swap but own no name (a replacement before its
        takeover, an old process after it)."""
        return [p for p in self.processes.values()
                if self.member_of(p.identity) is None]

    def busy(self) -> bool:
        """A replacement is in progress (the stepped stall check waits: the lockstep rightly
        waits for it)."""
        return bool(self.switches)

    # -- what a process is told ----------------------------------------------------------------
    def retire_at(self, name: str, after: int) -> int | None:
        """Stepped: the first tick after ``after`` at which the launch file's schedule swaps
        ``name`` (its process hands over before stepping it), or None."""
        ticks = [s.tick for s in self.config.swaps
                 if s.node == name and s.tick is not None and s.tick > after]
        return min(ticks) if ticks else None

    def welcome(self, member: Member, incarnation: int, params: dict[str, Any], *,
                joining: str = "", overrides: dict[str, Any] | None = None,
                filter_params: bool = False, after: int = -1) -> msg.Welcome:
        """The ``welcome`` of a process of ``member``: the run's terms and its own."""
        config = self.config
        run_info = config.run_info
        if EVERY_TOPIC not in member.reads() and "launch" in run_info:
            # The launch file's text (every node's class, parameters, the bus) goes only to a
            # recorder, which stores it: a stranger registering on an open bus learns no more
            # than the graph and its own parameters.
            run_info = {key: value for key, value in run_info.items() if key != "launch"}
        return msg.Welcome(
            mode=config.mode, seed=config.seed, incarnation=incarnation, params=dict(params),
            period=member.period, inputs=member.inputs, outputs=member.outputs,
            schedule=config.schedule, duration=config.duration, order=self.order,
            run_info=run_info, joining=joining, overrides=dict(overrides or {}),
            filter_params=filter_params, retire_at=self.retire_at(member.name, after))

    # -- the graph ------------------------------------------------------------------------------
    def standby(self, name: str) -> str:
        """The endpoint of the other process of ``name`` that peers stay connected to while it
        is being swapped: the replacement before the takeover, the old process after it."""
        switch = self.switches.get(name)
        if switch is None:
            return ""
        if switch.old is not None:
            return switch.old.endpoint
        process = self.members[name].process
        if switch.candidate is not None and process is not None and \
                process is not switch.candidate:
            return switch.candidate.endpoint
        return ""

    def graph_message(self, *, everyone: bool = False) -> msg.Graph:
        """The ``graph``: every member with a process (``everyone``: also those without, for
        tools), with its standby endpoint and the replacement in progress, if any."""
        entries = []
        for member in self.members.values():
            switch = self.switches.get(member.name)
            # A swap whose old process died: its new process is the one to connect to.
            stand_in = switch.candidate if switch is not None and member.process is None \
                else None
            if not (everyone or member.process is not None or stand_in is not None):
                continue
            entry = member.graph_entry(self.standby(member.name),
                                       switch.describe() if switch is not None else "")
            if stand_in is not None:
                entry.update(endpoint=stand_in.endpoint, pid=stand_in.pid, host=stand_in.host,
                             cls=stand_in.cls, incarnation=stand_in.incarnation)
            entries.append(entry)
        if self.config.graph_filter is not None:
            entries = self.config.graph_filter(entries)
        return msg.Graph(nodes=entries, complete=True, mode=self.config.mode,
                         started=self.started, run=self.config.run_info.get("name", ""))




def broadcast_graph(state: RunState) -> None:
    """The graph changed: every process that connects by it gets the new one, once, when the
    host flushes (:meth:`catbus.control.plane.ControlPlane.flush`) -- after a whole batch of
    events, so that hundreds of nodes registering at once cost one graph each, not one per
    registration to everyone (which grew as the square of the run)."""
    state.graph_dirty = True


def graph_sends(state: RunState, out: Outbox) -> None:
    """Send the graph to every process that connects by it: members still running, and the
    processes of swaps in progress."""
    state.graph_dirty = False
    graph = state.graph_message()
    for member in state.live_members():
        out.send(member.identity, graph)
    for process in state.others():
        out.send(process.identity, graph)


__all__ = ["RunState", "broadcast_graph", "graph_sends"]
