"""Restarts (``restart: on-failure``): a node whose process failed gets a new one, and the run
waits for it.

A failed process is first waited for (``WAITING_EXIT``: it is exiting, or its host kills it if it
was stuck or lost), then the backoff is waited out (``DUE``), then its host starts a new process
(``STARTING``: the launcher for a node of its own; a ``catbus launch --only`` host for its
nodes, which registers the new one with ``restart``). The new process registers (``JOINING``),
connects, is started at the tick after the last one every reader has from the old process
(``STARTED``), and its first step completes the restart. A node with ``checkpoint: N`` gets
its latest checkpoints right after its ``welcome`` (:mod:`catbus.control.checkpoints`) and goes
on from one (stepped: exactly; its first step then is the first tick its readers lack); any
other restarted node goes on without its state, and the run is marked *spliced* so that no
score of it passes for an unbroken episode.
"""

from __future__ import annotations

from typing import Any

from catbus.control.checkpoints import Checkpoints, state_text
from catbus.control.instructions import Outbox
from catbus.control.kinds import MemberState, NoticeKind, Phase, SwitchKind
from catbus.control.members import Member, Process
from catbus.control.state import RunState, broadcast_graph
from catbus.control.switch import Switch
from catbus.wire import messages as msg
from catbus.wire.protocol import EVERY_TOPIC


class Restarts:
    """The restart protocol over a :class:`~catbus.control.state.RunState`."""

    def __init__(self, state: RunState, checkpoints: Checkpoints | None = None) -> None:
        self.state = state
        #: The nodes' checkpoints, handed to their restarted processes.
        self.checkpoints = checkpoints if checkpoints is not None else Checkpoints()

    def allowed(self, member: Member) -> bool:
        """Would a failure of ``member``'s process now be answered by a restart?"""
        state = self.state
        return state.end_tick is None and state.started and state.stopping is None and \
            member.config is not None and member.config.restart.allows(member.restarts)

    def begin(self, member: Member, why: str, *, exited: bool, now: float, wall: float,
              out: Outbox, joined: bool = False) -> bool:
        """``member``'s current process failed (``exited``: it is gone already; else it is
        leaving, or its host is killing it; ``joined``: its new process is registering
        already). True if its restart policy answers; False: the failure is the run's."""
        if not self.allowed(member):
            return False
        state = self.state
        config = member.config
        policy = config.restart
        delay = policy.delay(member.restarts)
        member.restarts += 1
        switch = Switch(member.name, SwitchKind.RESTART, Phase.DUE, cls=config.class_path,
                        since=now, due=now + delay, why=why)
        for other in state.switches.values():
            if other.kind is SwitchKind.RESTART and \
                    neighbours(member, state.members[other.node]):
                switch.together.add(other.node)
                other.together.add(member.name)
        process = member.process
        if process is not None:
            state.processes.pop(process.identity, None)
            if not exited and config.local:
                switch.phase, switch.dead_pid = Phase.WAITING_EXIT, process.pid
            out.send(process.identity, msg.Stop(reason=f"restarted: {why}"))
        if not config.local:   # its own host starts the new process (catbus launch --only)
            switch.phase = Phase.STARTING
        member.process, member.state = None, MemberState.RESTARTING
        member.failed_at, member.link_down_since, member.lost = wall, None, False
        state.switches[member.name] = switch
        count = f"restart {member.restarts} of {policy.max_restarts}"
        if joined:
            out.notify(NoticeKind.RESTARTING, member.name,
                       f"node {member.name}: {why}; it takes the node's place ({count})")
            return True
        who = ("" if config.local else
               "; its host starts it again (catbus launch --only applies restart: on-failure)")
        out.notify(NoticeKind.RESTARTING, member.name,
                   f"node {member.name} failed ({why}); restarting it in {delay:g} s "
                   f"({count}){who}")
        return True

    def process_exited(self, switch: Switch, pid: int, now: float) -> bool:
        """A process of the host exited: the failed one being waited for (the backoff
        starts), True; else False."""
        if switch.phase is Phase.WAITING_EXIT and switch.dead_pid == pid:
            member = self.state.members[switch.node]
            switch.phase, switch.dead_pid = Phase.DUE, None
            switch.due = now + member.config.restart.delay(member.restarts - 1)
            return True
        return False

    def start_due(self, now: float, out: Outbox) -> None:
        """Ask the host to start every new process whose backoff is over."""
        for switch in list(self.state.switches.values()):
            if switch.kind is SwitchKind.RESTART and switch.phase is Phase.DUE \
                    and now >= switch.due:
                switch.phase, switch.since = Phase.STARTING, now
                out.start(switch.node, switch.cls, restart=True)

    def register(self, identity: bytes, message: msg.Register, member: Member, switch: Switch,
                 now: float, out: Outbox) -> None:
        """The new process of a restart registers: it owns the name from now on."""
        state = self.state
        if switch.candidate is not None:
            out.send(identity, msg.Reject(reason=f"a new process of {member.name!r} is joining "
                                                 f"already (pid {switch.candidate.pid})"))
            return
        member.issued = max(member.issued, member.incarnation) + 1
        process = Process.from_register(identity, message, member.issued, now)
        state.processes[identity] = process
        member.process, member.state = process, MemberState.REGISTERED
        member.last_seen, member.link_down_since, member.lost = now, None, False
        switch.candidate, switch.phase, switch.since = process, Phase.JOINING, now
        config = member.config
        same_class = config is None or message.cls == config.class_path
        base = (config.params if same_class else config.given) if config is not None else {}
        out.send(identity, state.welcome(member, process.incarnation, base, joining="restart",
                                         filter_params=not same_class, after=member.tick))
        if same_class:   # another class could not restore this one's state
            self.checkpoints.send(identity, member.name, out)
        broadcast_graph(state)

    def on_ready(self, member: Member, switch: Switch, now: float, out: Outbox) -> None:
        """The new process is connected: it starts where its readers stopped hearing from the
        old one (it works that out from their answers; ``tick`` is the registry's guess)."""
        if switch.phase is not Phase.JOINING:
            return
        switch.phase, switch.since = Phase.STARTED, now
        member.state = MemberState.RUNNING
        out.send(member.identity, msg.Start(delay=0.0, elapsed=self.state.elapsed(now),
                                            tick=max(0, member.tick + 1)))

    def on_swapped(self, member: Member, switch: Switch, swapped: msg.Swapped, wall: float,
                   out: Outbox) -> dict[str, Any] | None:
        """The new process did its first step: the restart is done. Returns its record."""
        if switch.phase is not Phase.STARTED:
            return None
        del self.state.switches[member.name]
        gap = None
        if self.state.config.mode == "parallel" and member.failed_at:
            gap = max(0.0, swapped.first_publish - member.failed_at)
        record = {"node": member.name, "kind": "restart", "tick": swapped.tick, "old": {},
                  "new": member.process.describe(),
                  "state": "restored" if swapped.restored else "fresh", "gap": gap,
                  "at": wall}
        if swapped.checkpoint >= 0:
            record["state"] = state_text(swapped.checkpoint)
        if switch.together:
            record["together"] = sorted(switch.together)
        self.state.swaps.append(record)
        broadcast_graph(self.state)
        return record


def neighbours(one: Member, other: Member) -> bool:
    """Does either read what the other publishes (a reader of every topic reads everyone)?"""
    return any(reads & publishes or (EVERY_TOPIC in reads and publishes)
               for reads, publishes in ((one.reads(), other.publishes()),
                                        (other.reads(), one.publishes())))


__all__ = ["Restarts", "neighbours"]
