"""The registry's deadlines: which nodes are alive, lost or stuck, and whether a stepped run
has stalled (``docs/design.md``, "Lost links").

A node silent with its link down is *lost* and may take ``rejoin_timeout`` seconds to come back;
one silent with its link up is stuck in a step (``deadline``); a stepped lockstep in which every
node is alive but none moves for ``deadline`` seconds waits on itself. Checked once per
heartbeat interval by :meth:`catbus.launch.registry.Registry.poll`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from catbus.runtime.lockstep import Position, stalled_on
from catbus.wire.protocol import AWAITING_CONTROLLER_STATE, HEARTBEAT_INTERVAL

if TYPE_CHECKING:
    from catbus.launch.registry import Event, Registry

#: Seconds a node whose connection closed must stay silent to be reported lost (a connection
#: that closes while the node goes on talking -- it reconnected at once -- is no loss).
LOST_AFTER = 2 * HEARTBEAT_INTERVAL


class Liveness:
    """The registry's view of who is alive, and its stall clock."""

    def __init__(self, registry: "Registry") -> None:
        self.registry = registry
        #: Nodes reported lost and not back yet.
        self.lost: set[str] = set()
        #: Stepped mode: the nodes' (tick, steps) at the last check, and when they last changed.
        self.positions: tuple = ()
        self.moved_at = 0.0
        self.stall_reported = False

    def check(self, now: float) -> list["Event"]:
        """Every deadline, once per heartbeat interval: replacements silent too long, nodes
        lost (their link down and silent), lost too long (``rejoin_timeout``), stuck
        (silent with their link up: ``deadline``), and a stalled stepped lockstep."""
        from catbus.launch.registry import Event

        registry = self.registry
        events = []
        events.extend(registry.swaps.check_deadlines(now, registry.deadline))
        for member in registry.members.values():
            if member.state not in ("registered", "ready", "running"):
                continue
            silent = now - member.last_seen
            last = f"; last report: {member.activity}" if member.activity else ""
            down = registry.links.is_down(member.name)
            if down and silent > LOST_AFTER and member.name not in self.lost:
                # Its connection closed and it has said nothing since: lost, not a closed
                # connection whose descriptor a new one reused (heard again at once).
                self.lost.add(member.name)
                events.append(Event("lost", member.name,
                                    f"node {member.name} lost its link (tick {member.tick}); "
                                    f"waiting up to {registry.rejoin_timeout:g} s for it to come "
                                    f"back (--rejoin-timeout)"))
            if down:
                if silent > registry.rejoin_timeout:
                    member.state = "failed"
                    events.append(Event("timeout", member.name,
                                        f"lost its link and did not come back within "
                                        f"{registry.rejoin_timeout:g} s (--rejoin-timeout; host "
                                        f"down, cable out, or process stopped; completed tick "
                                        f"{member.tick}{last})"))
            elif silent > registry.deadline:
                member.state = "failed"
                # A node stuck inside step() cannot say so; its last report and the last tick it
                # completed are the best lead (its peers' ticks show where the run stands).
                events.append(Event("timeout", member.name,
                                    f"no heartbeat for {registry.deadline:g} s although its link "
                                    f"is up: stuck in a step (--deadline; completed tick "
                                    f"{member.tick}{last})"))
        stall = self.stall(now)
        if stall is not None:
            events.append(stall)
        return events

    def stall(self, now: float) -> "Event | None":
        """Stepped mode: a lockstep in which every node is alive (heartbeating) but none has
        completed a tick for ``deadline`` seconds is stuck waiting on itself -- a message that
        never came -- and would otherwise wait for ever, heartbeats and all. Reported once,
        naming the node furthest behind (the one the others wait for) and every node's state.
        A node silent in a long step is left to the heartbeat deadline, which names it."""
        from catbus.launch.registry import Event

        registry = self.registry
        if registry.mode != "stepped" or not registry.started or self.stall_reported:
            return None
        if registry.swaps.busy():   # a node is being replaced: the others wait for it, rightly
            self.moved_at = now
            return None
        running = [m for m in registry.members.values() if m.state == "running"]
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
            [Position(m.name, m.tick, now - m.last_seen, tuple(registry.publishers_of(m)))
             for m in running], unchanged_for=now - self.moved_at, deadline=registry.deadline,
            heartbeat_interval=HEARTBEAT_INTERVAL)
        if behind is None:
            return None
        self.stall_reported = True
        states = "; ".join(f"{m.name}: tick {m.tick}, {m.activity or 'no report'}"
                           for m in running)
        return Event("timeout", behind,
                     f"stepped run stalled: no node completed a tick for {registry.deadline:g} s "
                     f"although every node is alive ({states})")


__all__ = ["Liveness", "LOST_AFTER"]
