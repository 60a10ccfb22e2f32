"""Hot swaps (``docs/protocol.md``, "Replacing a running node"): a new process of a node's name
takes over from the running one between two steps.

A swap is ordered (by a tool's ``swap`` request, the launch file's schedule, or a replacement
that registers with ``replace`` by itself), then:

1. ``ORDERED``: the host starts the new process (:class:`~catbus.control.instructions.
   StartProcess`); it registers with ``replace`` and is welcomed with ``joining: swap``.
2. ``JOINING``: it connects to every neighbour while the old process goes on (peers connect to
   both: the graph's ``standby``) and says ``ready`` once each has answered its hello.
3. ``READY``: the old process is told to ``retire``; between two steps it sends its
   ``handover`` (the next tick, its ``snapshot()``, its sequence numbers).
4. ``TAKEN_OVER``: the new process gets them in ``takeover``, steps that tick and says
   ``swapped``; only then is the old process stopped.

Until ``swapped`` a failing new process costs nothing: the old process is told to ``resume`` at
the same tick. An old process that dies during the swap is replaced at once by the new one, which
then starts as a restarted process would (and the episode is marked spliced).
"""

from __future__ import annotations

from typing import Any

from catbus.control.instructions import Outbox
from catbus.control.kinds import MemberState, NoticeKind, Phase, SwitchKind
from catbus.control.members import Member, Process
from catbus.control.orders import SwapOrders
from catbus.control.state import RunState, broadcast_graph
from catbus.control.switch import Switch
from catbus.topics import topic_differences
from catbus.wire import messages as msg


class Swaps:
    """The swap protocol over a :class:`~catbus.control.state.RunState`."""

    def __init__(self, state: RunState) -> None:
        self.state = state
        #: Asking for swaps: the checks and the orders.
        self.orders = SwapOrders(state)

    # -- the new process joins -------------------------------------------------------------------
    def register(self, identity: bytes, message: msg.Register, member: Member, now: float,
                 out: Outbox) -> None:
        """``register`` with ``replace`` while the node runs: the new process of a swap."""
        state = self.state
        name = member.name
        switch = state.switches.get(name)
        problem = None
        if switch is None:
            problem = self.orders.problem(name)   # a replacement started by hand: a swap of its own
        elif switch.candidate is not None:
            problem = f"a replacement of {name!r} is joining already (pid {switch.candidate.pid})"
        if problem is None:
            problem = fit_problem(message, member)
        if problem is not None:
            out.send(identity, msg.Reject(reason=problem))
            if switch is not None and switch.candidate is None:
                self.fail(switch, problem, out)
            return
        if switch is None:
            switch = Switch(name, SwitchKind.SWAP, Phase.ORDERED, cls=message.cls,
                            params=dict(message.params), since=now)
            state.switches[name] = switch
        member.issued = max(member.issued, member.incarnation) + 1
        process = Process.from_register(identity, message, member.issued, now)
        state.processes[identity] = process
        switch.candidate, switch.phase, switch.since = process, Phase.JOINING, now
        # The order's parameters, on top of the launch file's: all of them for the same class,
        # those it gives for another (whose own defaults then apply).
        same_class = member.config is None or message.cls == member.config.class_path
        config = member.config
        base = (config.params if same_class else config.given) if config is not None else {}
        after = switch.handover.tick if switch.handover is not None else member.tick
        out.send(identity, state.welcome(member, process.incarnation, base, joining="swap",
                                         overrides=switch.params, filter_params=not same_class,
                                         after=after))
        broadcast_graph(state)

    def on_ready(self, switch: Switch, now: float, out: Outbox) -> None:
        """The new process is connected: ask the old one to hand over (or take over at once
        if it did, or died)."""
        if switch.phase is not Phase.JOINING:
            return
        switch.candidate.ready = True
        switch.phase, switch.since = Phase.READY, now
        if switch.handover is not None or switch.old_died:
            self._take_over(switch, now, out)
        else:
            member = self.state.members[switch.node]
            out.send(member.identity, msg.Retire(reason=f"replaced by pid {switch.candidate.pid}"))

    def on_handover(self, member: Member, handover: msg.Handover, now: float,
                    out: Outbox) -> None:
        """The node's process stopped between two steps and handed over: asked to retire, or
        at a tick the launch file scheduled a swap for."""
        state = self.state
        switch = state.switches.get(member.name)
        if switch is None:
            scheduled = [s for s in state.config.swaps
                         if s.node == member.name and s.tick == handover.tick]
            if not scheduled or self.orders.problem(member.name) is not None:
                # A handover nobody asked for (or the episode is over): the node goes on.
                out.send(member.identity, msg.Resume())   # no reason: no failure to record
                return
            switch = self.orders.order(member.name, scheduled[0].cls, dict(scheduled[0].params), now,
                                out)
        if switch.kind is not SwitchKind.SWAP or switch.handover is not None:
            return
        switch.handover = handover
        if switch.phase is Phase.READY:
            self._take_over(switch, now, out)

    def on_back(self, member: Member, out: Outbox) -> None:
        """The node's link is back: a ``retire`` sent while it was down may have been lost."""
        switch = self.state.switches.get(member.name)
        if switch is not None and switch.kind is SwitchKind.SWAP and \
                switch.phase is Phase.READY and switch.handover is None:
            out.send(member.identity, msg.Retire(reason=f"replaced by pid {switch.candidate.pid}"))

    def _take_over(self, switch: Switch, now: float, out: Outbox) -> None:
        state = self.state
        member = state.members[switch.node]
        candidate = switch.candidate
        old = member.process
        if old is not None and not switch.old_died:
            switch.old = old
        member.process = candidate
        member.last_seen, member.link_down_since, member.lost = now, None, False
        handover = switch.handover
        if handover is not None:
            takeover = msg.Takeover(tick=handover.tick, snapshot=handover.snapshot,
                                    seq=dict(handover.seq), last_publish=handover.last_publish,
                                    old=old.describe() if old is not None else {}, kind="swap",
                                    elapsed=state.elapsed(now))
        else:   # the old process died before handing over: go on as a restart would
            takeover = msg.Takeover(tick=max(0, member.tick + 1), kind="restart",
                                    elapsed=state.elapsed(now))
        switch.phase, switch.since = Phase.TAKEN_OVER, now
        out.send(candidate.identity, takeover)
        broadcast_graph(state)

    def on_swapped(self, member: Member, switch: Switch, swapped: msg.Swapped, wall: float,
                   out: Outbox) -> dict[str, Any] | None:
        """The new process did its first step: the swap is done. Returns its record."""
        state = self.state
        if switch.phase is not Phase.TAKEN_OVER:
            return None
        del state.switches[member.name]
        gap = None
        if state.config.mode == "parallel" and switch.handover is not None \
                and switch.handover.last_publish:
            gap = max(0.0, swapped.first_publish - switch.handover.last_publish)
        record = {"node": member.name, "kind": "swap", "tick": swapped.tick,
                  "old": switch.old.describe() if switch.old is not None else {},
                  "new": member.process.describe(),
                  "state": "restored" if swapped.restored else "fresh", "gap": gap, "at": wall}
        if switch.old_died:
            record["old_died"] = switch.old_died
        state.swaps.append(record)
        if switch.old is not None:
            out.send(switch.old.identity, msg.Stop(
                reason=f"replaced by incarnation {member.incarnation} (pid {member.pid})"))
        broadcast_graph(state)
        self._answer(switch, msg.SwapReply(ok=True, message=describe(record),
                                           tick=swapped.tick, state=record["state"], gap=gap),
                     out)
        out.notify(NoticeKind.SWAPPED, member.name, describe(record))
        return record

    # -- failures ---------------------------------------------------------------------------------
    def candidate_failed(self, switch: Switch, why: str, out: Outbox, *,
                         stopped: bool = True) -> bool:
        """The new process failed (an error, its exit, silence). Before ``swapped`` the old
        process goes on (True) -- unless the new one had taken over and may still be stepping
        (``stopped`` False: unreachable on another host), when the old one must not resume:
        two processes would step the node. False: the node has no process it can go on with;
        what then is the plane's call (restart policy, or the run fails)."""
        if switch.phase is Phase.TAKEN_OVER:
            why = f"the replacement failed before its first step: {why}"
        elif switch.phase is Phase.ORDERED:
            why = f"the replacement {why} before registering"
        else:
            why = f"the replacement failed before taking over: {why}"
        if switch.phase is Phase.TAKEN_OVER and not stopped:
            self.fail(switch, f"{why}; it may still be running, so the old process cannot "
                              "resume", out)
            return False
        old_alive = not switch.old_died
        self.fail(switch, why, out, candidate_stopped=True)
        return old_alive

    def old_died(self, switch: Switch, why: str, now: float, out: Outbox) -> None:
        """The node's old process died during its swap: the new one (joining, or about to)
        takes the node over at once, from where the old one's readers stopped hearing."""
        member = self.state.members[switch.node]
        process = member.process
        if process is not None:
            self.state.processes.pop(process.identity, None)
        switch.old_died = why
        member.process = None
        if switch.phase is Phase.READY:
            self._take_over(switch, now, out)
        else:   # peers connect to the new process alone from now on
            broadcast_graph(self.state)

    def fail(self, switch: Switch, reason: str, out: Outbox, *,
             candidate_stopped: bool = False) -> None:
        """The swap failed: the old process goes on (told to ``resume`` if it had handed
        over), the graph forgets the new one, the requester is told why. A new process that
        has taken over and is not known to be stopped (``candidate_stopped``) may be
        stepping: then it stays the node's and the old process is stopped instead, so that
        never two processes step one node."""
        state = self.state
        name = switch.node
        if state.switches.get(name) is not switch:
            return
        del state.switches[name]
        member = state.members[name]
        candidate = switch.candidate
        if switch.phase is Phase.TAKEN_OVER and not candidate_stopped:
            if switch.old is not None:
                state.processes.pop(switch.old.identity, None)
                out.send(switch.old.identity, msg.Stop(reason=f"swap failed: {reason}"))
            self._record_failure(switch, reason, out)
            return
        if candidate is not None:
            state.processes.pop(candidate.identity, None)
            out.send(candidate.identity, msg.Stop(reason=f"swap failed: {reason}"))
        elif switch.spawned_pid is not None:   # started for it, not registered: never will be
            out.kill(name, switch.spawned_pid)
        if switch.old is not None:   # after the takeover: the old process is the node's again
            member.process = switch.old
            member.state = MemberState.RUNNING
        elif switch.old_died:
            member.process = None
        if member.process is not None:   # it goes on (a retire it was told is void)
            out.send(member.identity, msg.Resume(reason=reason))
        broadcast_graph(state)
        self._record_failure(switch, reason, out)

    def _record_failure(self, switch: Switch, reason: str, out: Outbox) -> None:
        name = switch.node
        goes_on = self.state.members[name].process is not None and switch.old is not None \
            or switch.candidate is None or not switch.old_died
        self.state.swap_failures.append({"node": name, "message": reason})
        self._answer(switch, msg.SwapReply(
            ok=False, message=f"swap of {name} failed, the old process goes on: {reason}"
            if goes_on and self.state.members[name].process is not None else
            f"swap of {name} failed: {reason}"), out)
        out.notify(NoticeKind.SWAP_FAILED, name, reason)

    def fail_all(self, reason: str, out: Outbox) -> None:
        """The run ends or stops: every swap not done fails (the old processes go on to the
        end), so that no run ends with a swap neither done nor failed."""
        for switch in [s for s in self.state.switches.values() if s.kind is SwitchKind.SWAP]:
            self.fail(switch, reason, out)

    def _answer(self, switch: Switch, reply: msg.SwapReply, out: Outbox) -> None:
        if switch.requester is not None:
            self.state.requesters.discard(switch.requester)
            out.send(switch.requester, reply)


def fit_problem(message: msg.Register, member: Member) -> str | None:
    """The new process's class must declare the same inputs and outputs (the launch file's
    remaps then give the same topics)."""
    if not member.inputs and not member.outputs:
        return None
    differences = topic_differences(
        {row[0] for row in member.inputs}, {row[0] for row in message.inputs},
        {row[0] for row in member.outputs}, {row[0] for row in message.outputs})
    if not differences:
        return None
    return (f"{message.cls or 'the replacement'} does not fit node {member.name!r} "
            f"({member.cls}): {'; '.join(differences)}; a replacement must declare the "
            "same inputs and outputs")


def describe(record: dict[str, Any]) -> str:
    """One line for a swap, restart or rejoin record."""
    if record["kind"] == "rejoin":
        return (f"{record['node']} lost its link at tick {record['tick']} and came back after "
                f"{record['down_s']:.1f} s")
    old, new = record.get("old") or {}, record["new"]
    what = ("restarted" if record["kind"] == "restart" else
            f"swapped {old.get('class', '?')} -> {new['class']}")
    gap = f", gap {record['gap'] * 1000:.0f} ms" if record.get("gap") is not None else ""
    died = f"; its old process died first ({record['old_died']})" if record.get("old_died") \
        else ""
    return (f"{record['node']} {what} at tick {record['tick']} (incarnation "
            f"{new['incarnation']}, pid {new['pid']}, state {record['state']}{gap}){died}")


__all__ = ["Swaps", "fit_problem", "describe"]
