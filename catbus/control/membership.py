"""Joining, starting and leaving a run: registration and its checks, the start barrier (every
expected node registered, set up and connected), the end of the episode relayed to everyone, a
node's last word (``done``), and a lost node coming back."""

from __future__ import annotations

from catbus.control.guests import guest_problem, is_guest, start_guests
from catbus.control.instructions import Outbox
from catbus.control.kinds import MemberState, NoticeKind
from catbus.control.members import Member, Process
from catbus.control.state import RunState, broadcast_graph
from catbus.wire import messages as msg
from catbus.wire.protocol import PROTOCOL_VERSION


class Membership:
    """Registration, start and end over a :class:`~catbus.control.state.RunState`."""

    def __init__(self, state: RunState) -> None:
        self.state = state

    def admit(self, identity: bytes, message: msg.Register, out: Outbox) -> Member | None:
        """The member a ``register`` is for, or None (refused with the reason): checked before
        anything changes -- a half-applied registration left a bogus member, and bad topic
        lists went out in the graph and crashed every node reading it."""
        state = self.state
        problem = msg.register_problem(message)
        if problem is not None and message.protocol == PROTOCOL_VERSION:
            state.refused += 1   # a register of our version built wrong: counted as malformed
        if problem is None and message.protocol != PROTOCOL_VERSION:
            problem = (f"node {message.name!r} speaks catbus protocol version "
                       f"{message.protocol}, this run speaks version {PROTOCOL_VERSION}: "
                       "install the same catbus version on both hosts")
        if problem is not None:
            out.send(identity, msg.Reject(reason=problem))
            return None
        member = state.members.get(message.name)
        if is_guest(message) and state.config.expected is not None:
            return self.admit_guest(identity, message, member, out)
        if member is None and state.config.expected is not None:
            out.send(identity, msg.Reject(
                reason=f"no node named {message.name!r} in this run (nodes: "
                       f"{', '.join(state.members)})"))
            return None
        if member is None:   # an open bus: any name may join
            member = state.members[message.name] = Member(message.name)
            state.order.append(message.name)
        return member

    def admit_guest(self, identity: bytes, message: msg.Register, member: Member | None,
                    out: Outbox) -> Member | None:
        """``catbus topic pub`` joining a launch-file run (:mod:`catbus.control.guests`)."""
        problem = guest_problem(self.state, message)
        if problem is not None:
            out.send(identity, msg.Reject(reason=problem))
            return None
        if member is None:
            member = self.state.members[message.name] = Member(message.name)
            self.state.order.append(message.name)
        return member

    def join(self, identity: bytes, message: msg.Register, member: Member, now: float,
             out: Outbox) -> None:
        """A plain ``register``: the node's first process (or a new one after it finished)."""
        state = self.state
        if not member.state.finished and member.state is not MemberState.EXPECTED:
            out.send(identity, msg.Reject(
                reason=f"a node named {member.name!r} is already running (pid {member.pid} on "
                       f"{member.host}); to take its place, start this one with --replace"))
            return
        if member.process is not None:
            state.processes.pop(member.process.identity, None)
        member.issued = max(member.issued, member.incarnation) + 1
        process = Process.from_register(identity, message, member.issued, now)
        state.processes[identity] = process
        member.process, member.state = process, MemberState.REGISTERED
        member.last_seen, member.link_down_since, member.lost = now, None, False
        config = member.config
        if config is not None:
            member.period, member.inputs, member.outputs = (config.period, config.inputs,
                                                            config.outputs)
            params = config.params
        else:
            member.period = message.period
            member.inputs, member.outputs = message.inputs, message.outputs
            params = message.params
        out.send(identity, state.welcome(member, process.incarnation, params))
        if state.config.expected is None or not state.missing():
            broadcast_graph(state)
        out.notify(NoticeKind.REGISTERED, member.name)

    def maybe_start(self, now: float, out: Outbox) -> bool:
        """Start the run once every expected node is ready (an open bus starts each node as
        soon as it is). True if the run started now."""
        state = self.state
        if state.config.expected is None:
            for member in state.members.values():
                if member.state is MemberState.READY:
                    member.state = MemberState.RUNNING
                    out.send(member.identity, msg.Start(delay=0.0))
            return False
        if state.started:
            start_guests(state, now, out)   # a guest that got ready in a run going on
            return False
        if state.not_ready():
            return False
        state.started, state.started_at = True, now
        for member in state.members.values():
            member.state = MemberState.RUNNING
            out.send(member.identity, msg.Start(delay=state.config.start_delay))
        out.notify(NoticeKind.STARTED)
        return True

    def done(self, member: Member, done: msg.Done, now: float, out: Outbox) -> bool:
        """The node's last word: its counters and scores, and perhaps the end of the episode
        (relayed to everyone else). True if it ended the episode."""
        state = self.state
        member.stats = dict(done.stats)
        member.scores = {str(key): value for key, value in done.scores.items()}
        member.code = done.code
        tick, steps = member.stats.get("tick", member.tick), member.stats.get("steps", member.steps)
        member.tick = tick if type(tick) is int else member.tick
        member.steps = steps if type(steps) is int else member.steps
        if member.state is not MemberState.FAILED:
            member.state = MemberState.DONE
        ended = False
        if done.end and done.end_tick is not None and state.end_tick is None and \
                done.end_tick < member.tick:
            # An end before ticks the node has already reported stepping: refused and counted
            # (a node in another language, confused or forged), never the run's end.
            state.refused += 1
        elif done.end and done.end_tick is not None and state.end_tick is None:
            # The end of the episode travels with progress to a node's peers; tell everyone else.
            state.end_tick, state.end_reason, state.ended_at = done.end_tick, done.end, now
            state.ended_by = member.name
            for other in state.live_members():
                out.send(other.identity, msg.End(tick=state.end_tick, reason=state.end_reason))
            out.notify(NoticeKind.END, member.name, state.end_reason)
            ended = True
        out.notify(NoticeKind.DONE, member.name)
        return ended

    def rejoined(self, member: Member, now: float, wall: float, out: Outbox) -> None:
        """A lost node is heard again: the run goes on, and the record says how long it was
        away (from its last message before)."""
        silent = now - member.last_seen
        record = {"node": member.name, "kind": "rejoin", "tick": member.tick,
                  "down_s": round(silent, 3), "at": wall}
        self.state.rejoins.append(record)
        out.send(member.identity, msg.Rejoined(away=round(silent, 3)))
        out.notify(NoticeKind.BACK, member.name,
                   f"node {member.name} is back after {silent:.1f} s without a link (tick "
                   f"{member.tick})")


__all__ = ["Membership"]
