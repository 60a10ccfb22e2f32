"""Asking for a swap: whether a node can be swapped now (and if not, why, in words a user can
act on), a tool's request, the launch file's timed swaps, and the order that asks the host to
start the new process. What happens next is :mod:`catbus.control.swaps`."""

from __future__ import annotations

from typing import Any

from catbus.control.instructions import Outbox
from catbus.control.kinds import MemberState, NoticeKind, Phase, SwitchKind
from catbus.control.state import RunState
from catbus.control.switch import Switch
from catbus.wire import messages as msg
from catbus.wire.protocol import EVERY_TOPIC


class SwapOrders:
    """Swap requests and orders over a :class:`~catbus.control.state.RunState`."""

    def __init__(self, state: RunState) -> None:
        self.state = state

    def problem(self, name: str) -> str | None:
        """Why ``name`` cannot be swapped now, or None."""
        state = self.state
        member = state.members.get(name)
        if member is None:
            return f"no node named {name!r} in this run (nodes: {', '.join(state.members)})"
        if EVERY_TOPIC in member.reads():
            return (f"node {name!r} reads every topic (a recorder): it cannot be swapped, its "
                    "file would be cut in two")
        if not state.started:
            return "the run has not started yet; swap once it runs (catbus swap --wait)"
        if state.end_tick is not None:
            return "the episode has ended"
        if state.stopping is not None:
            return f"the run is stopping ({state.stopping})"
        switch = state.switches.get(name)
        if switch is not None:
            doing = "swapped" if switch.kind is SwitchKind.SWAP else "restarted"
            return f"node {name!r} is being {doing} already ({switch.describe()})"
        if member.state is not MemberState.RUNNING:
            return f"node {name!r} is {member.state.value}, not running"
        if member.link_down_since is not None:
            return (f"node {name!r} lost its link at tick {member.tick}: it cannot hand over; "
                    "swap once it is back")
        return None

    def request(self, requester: bytes, request: msg.SwapRequest, now: float,
                out: Outbox) -> None:
        """A tool asks for a swap: refused at once with the reason, or ordered (answered
        once it is done or failed)."""
        problem = self.problem(request.node)
        if problem is None and not self.state.config.can_spawn:
            problem = ("this bus has no launcher to start a replacement; start it yourself: "
                       f"catbus node CLASS --name {request.node} --bus ADDR --replace")
        if problem is not None:
            out.send(requester, msg.SwapReply(ok=False, message=problem))
            return
        self.order(request.node, request.cls, dict(request.params), now, out,
                   requester=requester)

    def order(self, name: str, cls: str, params: dict[str, Any], now: float, out: Outbox, *,
              requester: bytes | None = None) -> Switch:
        """Order a swap of ``name`` (its problem already checked): the host starts the new
        process. Without a class, the launch file's (not what the node registered: a node in
        another language registers free text)."""
        member = self.state.members[name]
        cls = cls or (member.config.class_path if member.config is not None else "") or \
            member.cls
        switch = Switch(name, SwitchKind.SWAP, Phase.ORDERED, cls=cls, params=params,
                        requester=requester, since=now)
        self.state.switches[name] = switch
        if requester is not None:
            self.state.requesters.add(requester)
        out.start(name, cls, params=params)
        return switch

    def order_timed(self, now: float, out: Outbox) -> None:
        """Parallel: order the launch file's swaps whose wall time has come."""
        state = self.state
        if not state.started:
            return
        elapsed = state.elapsed(now)
        for entry in [s for s in state.config.swaps if s.at is not None and s.at <= elapsed]:
            state.config.swaps.remove(entry)
            problem = self.problem(entry.node)
            if problem is not None:
                reason = f"the launch file's swap at {entry.at:g} s was skipped: {problem}"
                state.swap_failures.append({"node": entry.node, "message": reason})
                out.notify(NoticeKind.SWAP_FAILED, entry.node, reason)
                continue
            self.order(entry.node, entry.cls, dict(entry.params), now, out)


__all__ = ["SwapOrders"]
