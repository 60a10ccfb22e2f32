"""What a failing process leads to: its swap goes on without it or fails, its restart policy
starts another, or the run fails because of it; and the bounds on every phase of a replacement.
The plane (:mod:`catbus.control.plane`) routes every failure here, whatever saw it first: the
process's own ``error``, its exit, a deadline, a lost link."""

from __future__ import annotations

from catbus.control.events import ProcessExited
from catbus.control.guests import guest_left, guest_member
from catbus.control.instructions import Outbox
from catbus.control.kinds import MemberState, NoticeKind, Phase, SwitchKind
from catbus.control.liveness import Verdict
from catbus.control.members import Member, Process
from catbus.control.restarts import Restarts
from catbus.control.state import RunState
from catbus.control.swaps import Swaps
from catbus.control.switch import Switch
from catbus.wire import messages as msg


class Failures:
    """Failures of processes over a :class:`~catbus.control.state.RunState`."""

    def __init__(self, state: RunState, swaps: Swaps, restarts: Restarts) -> None:
        self.state = state
        self.swaps = swaps
        self.restarts = restarts

    def force_restart(self, member: Member, why: str, now: float, wall: float,
                       out: Outbox) -> None:
        """A new process of a lost node came without a restart policy to answer for it: the
        user restarted it by hand, which is a restart all the same."""
        process = member.process
        if process is not None:
            self.state.processes.pop(process.identity, None)
            out.send(process.identity, msg.Stop(reason=f"restarted: {why}"))
        member.process, member.state, member.failed_at = None, MemberState.RESTARTING, wall
        member.link_down_since, member.lost = None, False
        self.state.switches[member.name] = Switch(member.name, SwitchKind.RESTART,
                                                  Phase.STARTING, since=now, why=why)
        out.notify(NoticeKind.RESTARTING, member.name,
                   f"node {member.name}: {why}; it takes the node's place")

    def process_exited(self, event: ProcessExited, out: Outbox) -> None:
        """A process this host started exited: for each of its nodes (a group's process has
        several), what that means."""
        for name in self.state.local_pids.pop(event.pid, ()):
            self._node_process_exited(name, event, out)

    def _node_process_exited(self, name: str, event: ProcessExited, out: Outbox) -> None:
        state, pid = self.state, event.pid
        member = state.members.get(name)
        switch = state.switches.get(name)
        if member is None:
            return
        current = member.process is not None and member.process.pid == pid
        if switch is not None:
            if switch.kind is SwitchKind.RESTART:
                if self.restarts.process_exited(switch, pid, event.now):
                    return
                if switch.candidate is None and switch.spawned_pid == pid:
                    self.restart_failed(switch, f"its new process {event.how} before "
                                                 "registering", out)
                    return
            else:
                if switch.old is not None and switch.old.pid == pid:
                    state.processes.pop(switch.old.identity, None)
                    switch.old = None   # told to stop; nothing else depended on it
                    return
                mine = switch.candidate.pid == pid if switch.candidate is not None else \
                    switch.spawned_pid == pid
                if mine and current:   # the new process, after its takeover
                    self.process_failed(member, event.how, event.now, event.wall, out,
                                         exited=True, kill=False)
                    return
                if mine:
                    if not self.swaps.candidate_failed(switch, event.how, out) and \
                            not member.state.finished:
                        # Its old process had died: the node has no process left.
                        self.process_failed(member, f"its replacement {event.how}", event.now,
                                             event.wall, out, exited=True, kill=False)
                    return
                if current:
                    self.swaps.old_died(switch, f"process {event.how}", event.now, out)
                    return
        if member.process is None and switch is None and not member.state.finished:
            # Its first process never registered (an interpreter without catbus, a crash in
            # an import): waiting for it would only end in the start-up timeout.
            self.process_failed(member, f"its process {event.how} before registering",
                                 event.now, event.wall, out, exited=True, kill=False)
        elif current and not member.state.finished:
            self.process_failed(member, f"process {event.how} before the run ended",
                                 event.now, event.wall, out, exited=True, kill=False)
        elif current and event.signal and member.state is MemberState.DONE:
            # It said done, then a signal catbus did not send ended it (an abort in its last
            # moments, a kill from outside): its run did not end cleanly.
            member.state = MemberState.FAILED
            out.notify(NoticeKind.FAILED, member.name,
                       f"its process {event.how} after it said done")

    def check_switches(self, now: float, wall: float, out: Outbox) -> None:
        """Every phase of a replacement is bounded by the deadline: a new process that does
        not register, get ready or step in time fails it, naming what it waited for."""
        deadline = self.state.config.deadline
        for switch in list(self.state.switches.values()):
            candidate = switch.candidate
            limit = deadline + (self.state.config.rejoin_s if switch.phase is Phase.STARTING
                                and not self._local(switch.node) else 0.0)
            why = None
            if candidate is not None and now - candidate.last_seen > deadline:
                why = f"was silent for {deadline:g} s"
            elif switch.phase in (Phase.ORDERED, Phase.STARTING, Phase.JOINING, Phase.TAKEN_OVER,
                                  Phase.STARTED) and now - switch.since > limit:
                report = f" (its last report: {candidate.activity})" if candidate is not None \
                    and candidate.activity else ""
                why = f"did not get past '{switch.phase.value}' within {limit:g} s{report}"
            if why is None:
                continue
            member = self.state.members[switch.node]
            if switch.kind is SwitchKind.SWAP and candidate is not None \
                    and member.process is candidate:   # it took over and does not step
                self.process_failed(member, why, now, wall, out, exited=False, kill=True)
            elif switch.kind is SwitchKind.SWAP:
                if candidate is not None and self._ours(candidate):
                    out.kill(switch.node, candidate.pid)   # it must not linger
                if not self.swaps.candidate_failed(switch, why, out) and \
                        not member.state.finished:
                    self.process_failed(member, f"its replacement {why}", now, wall, out,
                                         exited=False, kill=False)
            else:
                self.restart_failed(switch, f"its new process {why}", out)

    def verdict(self, verdict: Verdict, now: float, wall: float, out: Outbox) -> None:
        member = self.state.members[verdict.node]
        if member.state.finished:
            return
        if verdict.final and not guest_member(self.state, member):   # (a guest: it leaves)
            member.state = MemberState.FAILED
            out.notify(NoticeKind.FAILED, member.name, verdict.why)
            return
        self.process_failed(member, verdict.why, now, wall, out, exited=False,
                             kill=verdict.kill)

    def process_failed(self, member: Member, why: str, now: float, wall: float, out: Outbox,
                        *, exited: bool, kill: bool, detail: str = "") -> None:
        """``member``'s current process failed (``exited``: it is gone; ``kill``: it may be
        alive -- stuck or lost -- and is killed if it is this host's; neither: it reported an
        error and is leaving). Its swap, its restart policy or the run's failure answers."""
        if guest_member(self.state, member):   # a `catbus topic pub` gone: not the run's failure
            guest_left(member, why, out)
            return
        switch = self.state.switches.get(member.name)
        process = member.process
        ours = process is not None and self._ours(process)

        def kill_it() -> None:   # a SIGKILL: it steps no more from here on
            if kill and ours:
                out.kill(member.name, process.pid)

        if switch is not None and switch.kind is SwitchKind.SWAP:
            if process is not None and switch.candidate is not process:
                # Its old process, during a swap: the new one takes the node over.
                kill_it()
                self.swaps.old_died(switch, why, now, out)
                return
            kill_it()
            if self.swaps.candidate_failed(switch, why, out, stopped=exited or not kill or ours):
                return   # the new one had taken over: the old process resumes
            if member.process is not None:   # it may still be stepping: nothing can replace it
                member.state = MemberState.FAILED
                out.notify(NoticeKind.FAILED, member.name, why, detail)
                return
        elif self.restarts.allowed(member):
            kill_it()   # a stuck or lost process of ours makes room for its restart
        if self.restarts.begin(member, why, exited=exited or member.process is None, now=now,
                               wall=wall, out=out):
            return
        member.state = MemberState.FAILED   # stopped with everyone else: its close() runs
        out.notify(NoticeKind.FAILED, member.name, why, detail)

    def restart_failed(self, switch: Switch, why: str, out: Outbox) -> None:
        """A restart could not bring the node back: the run fails because of it."""
        state = self.state
        state.switches.pop(switch.node, None)
        member = state.members[switch.node]
        if member.process is not None:
            state.processes.pop(member.process.identity, None)
            out.send(member.process.identity, msg.Stop(reason=f"restart failed: {why}"))
        member.state = MemberState.FAILED
        out.notify(NoticeKind.FAILED, member.name, f"{why} (restarting after: {switch.why})")

    def _ours(self, process: Process) -> bool:
        """Was ``process`` started by this plane's host (which can kill it)?"""
        return process.name in self.state.local_pids.get(process.pid, ())

    def _local(self, name: str) -> bool:
        config = self.state.members[name].config
        return config is not None and config.local


__all__ = ["Failures"]
