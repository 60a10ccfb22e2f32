"""Who is alive, lost or stuck, and whether the run is stuck (``docs/design.md``, "Lost links").

A node silent with its link down is *lost* and may take ``rejoin_timeout`` seconds to come back;
one silent with its link up is stuck in a step (``deadline``). A stepped lockstep in which every
node is alive but none moves for ``deadline`` seconds waits on itself. A parallel run that is
over (its duration passed, or the episode ended) gives each node the end grace to say done.
Checked once per heartbeat interval; the verdicts go back to the plane, which applies restart
policies or fails the run.
"""

from __future__ import annotations

from dataclasses import dataclass

from catbus.control.instructions import Outbox
from catbus.control.kinds import MemberState, NoticeKind
from catbus.control.members import Member
from catbus.control.state import RunState
from catbus.runtime.lockstep import Position, stalled_on
from catbus.wire.protocol import AWAITING_CONTROLLER_STATE, CLOSING_STATE, HEARTBEAT_INTERVAL

#: Seconds a node whose connection closed must stay silent to be reported lost (a connection
#: that closes while the node goes on talking -- it reconnected at once -- is no loss).
LOST_AFTER = 2 * HEARTBEAT_INTERVAL


@dataclass(frozen=True)
class Verdict:
    """A node found failing: ``why``; ``kill``: its process may be alive (stuck, or lost) and
    is its host's to kill before a restart; ``final``: no restart can help (the run is over)."""

    node: str
    why: str
    kill: bool = True
    final: bool = False


class Liveness:
    """Deadlines over a :class:`~catbus.control.state.RunState`."""

    def __init__(self, state: RunState) -> None:
        self.state = state
        #: Stepped: the nodes' (tick, steps) at the last check, and when they last changed.
        self.positions: tuple = ()
        self.moved_at = 0.0
        self.stall_reported = False
        self.end_reported = False

    def check(self, now: float, out: Outbox) -> list[Verdict]:
        """Every deadline: nodes lost (link down and silent), lost too long, stuck (silent
        with their link up), a stalled stepped lockstep, a parallel run's end overdue."""
        state = self.state
        config = state.config
        verdicts = []
        for member in state.live_members():
            if not member.state.alive:
                continue
            silent = now - member.last_seen
            last = f"; last report: {member.activity}" if member.activity else ""
            down = member.link_down_since is not None
            if down and silent > LOST_AFTER and not member.lost:
                # Its connection closed and it has said nothing since: lost, not a closed
                # connection whose descriptor a new one reused (heard again at once).
                member.lost = True
                out.notify(NoticeKind.LOST, member.name,
                           f"node {member.name} lost its link (tick {member.tick}); waiting up "
                           f"to {config.rejoin_s:g} s for it to come back (--rejoin-timeout)")
            if down:
                if silent > config.rejoin_s:
                    verdicts.append(Verdict(member.name, (
                        f"lost its link and did not come back within {config.rejoin_s:g} s "
                        f"(--rejoin-timeout; host down, cable out, or process stopped; "
                        f"completed tick {member.tick}{last})")))
            elif silent > config.deadline:
                # A node stuck inside step() cannot say so; its last report and the last tick it
                # completed are the best lead (its peers' ticks show where the run stands).
                mates = process_mates(state, member)
                shared = (f"; its process also runs {', '.join(mates)} (a node group): one of "
                          f"them is stuck" if mates else "")
                verdicts.append(Verdict(member.name, (
                    f"no heartbeat for {config.deadline:g} s although its link is up: stuck "
                    f"in a step (--deadline; completed tick {member.tick}{last}{shared})")))
        stall = self.stall(now)
        if stall is not None:
            verdicts.append(stall)
        verdicts.extend(self.end_overdue(now))
        return verdicts

    def restart_clock(self, now: float) -> None:
        """The run started: the stall clock starts now."""
        self.moved_at = now

    def stall(self, now: float) -> Verdict | None:
        """Stepped: a lockstep in which every node is alive (heartbeating) but none has
        completed a tick for ``deadline`` seconds is stuck waiting on itself -- a message that
        never came -- and would otherwise wait for ever. Reported once, naming the node
        furthest behind (the one the others wait for) and every node's state. A node silent in
        a long step is left to the heartbeat deadline, which names it."""
        state = self.state
        deadline = state.config.deadline
        if state.config.mode != "stepped" or not state.started or self.stall_reported:
            return None
        if state.busy():   # a node is being replaced: the others wait for it, rightly
            self.moved_at = now
            return None
        running = [m for m in state.members.values() if m.state is MemberState.RUNNING]
        positions = tuple((m.name, m.tick, m.steps) for m in running)
        if any(m.activity == AWAITING_CONTROLLER_STATE for m in running):
            # A node waits (heartbeating) for its controller, e.g. a catbus.gym trainer: the
            # graph is not stuck on itself; the stall clock restarts when the node moves on.
            self.positions, self.moved_at = positions, now
            return None
        if positions != self.positions:
            self.positions, self.moved_at = positions, now
            return None
        behind = stalled_on(
            [Position(m.name, m.tick, now - m.last_seen, tuple(state.publishers_of(m)))
             for m in running], unchanged_for=now - self.moved_at, deadline=deadline,
            heartbeat_interval=HEARTBEAT_INTERVAL)
        if behind is None:
            return None
        self.stall_reported = True
        states = "; ".join(f"{m.name}: tick {m.tick}, {m.activity or 'no report'}"
                           for m in running)
        return Verdict(behind, f"stepped run stalled: no node completed a tick for "
                               f"{deadline:g} s although every node is alive ({states})")

    def end_overdue(self, now: float) -> list[Verdict]:
        """Parallel: the nodes not done the end grace after the run is over, named (those
        silent in a step first: the others are usually waiting for them). A node whose link is
        down is left to the rejoin timeout: it may come back and finish; one whose link came
        back gets the end grace from then (frozen past the end, it has only just heard it)."""
        state = self.state
        end = state.run_end()
        grace = state.config.end_grace_s
        if end is None or self.end_reported or now < end[0] + grace:
            return []
        stuck = [m for m in state.running()
                 if m.activity not in (CLOSING_STATE, AWAITING_CONTROLLER_STATE)
                 and m.state in (MemberState.READY, MemberState.RUNNING)
                 and m.link_down_since is None and m.name not in state.switches
                 and (m.link_back_at is None or now >= m.link_back_at + grace)]
        if not stuck:
            return []
        self.end_reported = True
        silent = [m for m in stuck if now - m.last_seen > LOST_AFTER]
        names = {m.name for m in stuck}
        verdicts = []
        for member in silent + [m for m in stuck if m not in silent]:
            late = f"still running {now - end[0]:.1f} s after {end[1]}"
            last = f"(last report: {member.activity or 'none'})"
            if member in silent:
                why = (f"{late} and silent for {now - member.last_seen:.1f} s: stuck in a step "
                       f"or message handler {last}")
            else:
                waiting = [p for p in state.publishers_of(member) if p in names]
                why = f"{late}, alive but not finishing" + (
                    f": waiting for {', '.join(waiting)}" if waiting else "") + f" {last}"
            verdicts.append(Verdict(member.name, why, final=True))
        return verdicts


def process_mates(state: RunState, member: Member) -> list[str]:
    """The other nodes that run in ``member``'s process (a node group: one stuck step silences
    them all, and which one it is cannot be told from outside)."""
    process = member.process
    if process is None:
        return []
    return [other.name for other in state.members.values()
            if other is not member and other.process is not None
            and (other.process.pid, other.process.host) == (process.pid, process.host)]


__all__ = ["Liveness", "Verdict", "LOST_AFTER"]
