"""Live parameters on the control plane (``catbus param get|set``; ``docs/protocol.md``, "Live
parameters"): answering a tool's query, refusing a change the run cannot take now (with the
reason), passing an accepted one to the node's process and its answer back to the tool.

Why the node validates and decides the tick, not the plane: the node process has its class and
its parameter declarations (the plane, on an open bus, may never have seen either), and it alone
knows which tick it steps next; it applies the change before that step and announces it on
``catbus/params`` in its data stream, so in a stepped run every reader (the recorder) sees the
change at the tick it applied to, in schedule order. The plane only remembers the node's
parameters after each change, so that a later query, restart or same-class swap has them.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass
from typing import Any

from catbus import params as params_mod
from catbus.control.instructions import Outbox
from catbus.control.kinds import MemberState
from catbus.control.members import Member
from catbus.control.state import RunState
from catbus.wire import messages as msg


@dataclass
class PendingChange:
    """A change passed to a node's process, waiting for its answer."""

    requester: bytes
    node: str
    process: bytes        # the process it was sent to: another one can no longer answer it
    changes: dict


class LiveParams:
    """Parameter queries and live changes over a :class:`~catbus.control.state.RunState`."""

    def __init__(self, state: RunState) -> None:
        self.state = state
        self.pending: dict[int, PendingChange] = {}
        self._ids = itertools.count(1)
        #: Nodes without a launch-file entry (an open bus): their parameters after a change.
        self.guests: dict[str, dict[str, Any]] = {}

    def current(self, member: Member) -> dict[str, Any]:
        """The node's parameters as the run knows them: the launch file's (defaults merged),
        with every live change applied since (an open bus's node: only after one)."""
        if member.config is None:
            return dict(self.guests.get(member.name, {}))
        return dict(member.config.params)

    def query(self, requester: bytes, query: msg.ParamsQuery, out: Outbox) -> None:
        member = self.state.members.get(query.node)
        if member is None:
            out.send(requester, msg.ParamsReply(ok=False, node=query.node,
                                                message=self._no_node(query.node)))
            return
        out.send(requester, msg.ParamsReply(ok=True, node=member.name,
                                            params=self.current(member)))

    def problem(self, name: str) -> str | None:
        """Why node ``name`` cannot take a live change now, or None."""
        state = self.state
        member = state.members.get(name)
        if member is None:
            return self._no_node(name)
        if state.stopping is not None:
            return f"the run is stopping ({state.stopping})"
        if state.end_tick is not None:
            return "the episode has ended"
        if member.state not in (MemberState.REGISTERED, MemberState.READY, MemberState.RUNNING):
            return f"node {name!r} is {member.state.value}, not running"
        switch = state.switches.get(name)
        if switch is not None:
            return (f"node {name!r} is being replaced ({switch.describe()}); change its "
                    f"parameters once that is done")
        if member.link_down_since is not None:
            return f"node {name!r} has lost its link; change its parameters once it is back"
        if any(change.node == name for change in self.pending.values()):
            return f"a change of node {name!r}'s parameters is still being applied; try again"
        return None

    def request(self, requester: bytes, request: msg.ParamsRequest, out: Outbox) -> None:
        """A tool asks for a live change: refused at once with the reason, or passed to the
        node's process (answered once it applied or refused it)."""
        problem = self.problem(request.node)
        if problem is None and not request.changes:
            problem = "no parameter to change: give KEY VALUE"
        if problem is not None:
            out.send(requester, msg.ParamsReply(ok=False, node=request.node, message=problem))
            return
        member = self.state.members[request.node]
        change_id = next(self._ids)
        self.pending[change_id] = PendingChange(requester, member.name, member.identity,
                                                dict(request.changes))
        self.state.requesters.add(requester)   # heartbeats tell it the run is alive
        out.send(member.identity, msg.ParamsChange(id=change_id, changes=dict(request.changes)))

    def applied(self, member: Member, answer: msg.ParamsApplied, out: Outbox) -> None:
        """The node's answer: remember its parameters, tell the tool."""
        change = self.pending.get(answer.id)
        if change is None or change.node != member.name:
            return
        del self.pending[answer.id]
        self._release(change.requester)
        if answer.ok and member.config is None:
            self.guests[member.name] = dict(answer.params)
        elif answer.ok:
            config = member.config
            member.config = dataclasses.replace(
                config, params=dict(answer.params) or config.params,
                given=params_mod.deep_merge(config.given, change.changes))
        out.send(change.requester, msg.ParamsReply(
            ok=answer.ok, node=member.name, message=answer.message, tick=answer.tick,
            params=dict(answer.params) if answer.ok else self.current(member),
            changed=dict(answer.changed)))

    def check(self, out: Outbox) -> None:
        """Changes whose process can no longer answer (it left, failed, or was replaced):
        refused, saying so. Called at every heartbeat tick."""
        for change_id, change in list(self.pending.items()):
            member = self.state.members.get(change.node)
            gone = member is None or member.identity != change.process or \
                member.state.finished or self.state.stopping is not None
            if gone:
                del self.pending[change_id]
                self._release(change.requester)
                why = self.problem(change.node) or f"node {change.node!r}'s process changed"
                out.send(change.requester, msg.ParamsReply(
                    ok=False, node=change.node, message=f"not applied: {why}"))

    def _release(self, requester: bytes) -> None:
        if not any(change.requester == requester for change in self.pending.values()):
            self.state.requesters.discard(requester)

    def _no_node(self, name: str) -> str:
        return f"no node named {name!r} in this run (nodes: {', '.join(self.state.members)})"


__all__ = ["LiveParams", "PendingChange"]
