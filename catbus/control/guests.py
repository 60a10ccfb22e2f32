"""Guests: a publisher from outside the launch file joining a parallel run that is going on
(``catbus topic pub``), as ROS 2's ``ros2 topic pub`` joins a graph.

A launch-file run admits only its own nodes; a guest is the one exception, and a narrow one:
it registers with the framework's publisher class (:data:`GUEST_CLASS`), reads nothing, and
publishes only topics that no launch-file node and no other live guest publishes, so one
publisher per topic stays the rule. Only ``parallel`` runs take guests: a ``stepped`` run's
lockstep and an ``inline`` run's schedule are fixed before the start, and a message from
outside would make their recordings depend on when someone typed a command. A guest joining
a run that has started is started at once on the run's clock (``start.elapsed``, as a
restarted node): its ticks and times are the run's, and it ends with the run instead of being
failed by the end grace. A guest that fails (killed, lost) leaves the run; it never fails it.
"""

from __future__ import annotations

from catbus.control.instructions import Outbox
from catbus.control.kinds import MemberState, NoticeKind
from catbus.control.members import Member
from catbus.control.state import RunState
from catbus.wire import messages as msg

#: The class a guest registers with (``catbus topic pub``'s node).
GUEST_CLASS = "catbus.client.publish:TopicPublisher"


def is_guest(message: msg.Register) -> bool:
    """Whether ``message`` asks to join as a guest publisher."""
    return message.cls == GUEST_CLASS and not message.replace and not message.restart


def guest_member(state: RunState, member: Member) -> bool:
    """Whether ``member`` is a guest of a launch-file run (no launch-file entry)."""
    return state.config.expected is not None and member.config is None


def guest_problem(state: RunState, message: msg.Register) -> str | None:
    """Why the guest ``message`` cannot join this run, or None."""
    mode = state.config.mode
    if mode != "parallel":
        return (f"this run is {mode}: only a parallel run takes a publisher from outside its "
                f"launch file (a {mode} run's schedule is fixed before it starts; put a node "
                f"that publishes it in the launch file, or replay a recording with catbus play)")
    if message.inputs:
        return "a publisher from outside the launch file reads no topic"
    if state.stopping is not None or state.end_tick is not None:
        return "the run is ending"
    member = state.members.get(message.name)
    if member is not None and member.config is not None:
        return f"{message.name!r} is a node of the launch file"
    for row in message.outputs:
        topic = row[1] if len(row) > 1 else ""
        if topic.startswith("catbus/"):
            return f"{topic} is the framework's own topic"
        for other in state.members.values():
            if other.name == message.name or topic not in other.publishes():
                continue
            if other.config is not None or not other.state.finished:
                return (f"{topic} is published by {other.name}; a topic has one publisher "
                        f"(publish on a topic no node publishes)")
    return None


def guest_left(member: Member, why: str, out: Outbox) -> None:
    """A guest failed (killed, lost, stuck): it leaves the run, which goes on without it -- a
    tool that publishes into a run is not part of the experiment, so it cannot fail it."""
    member.state = MemberState.FAILED
    out.notify(NoticeKind.LOST, member.name, f"{member.name} (catbus topic pub) left the run: "
                                             f"{why}; the run goes on without it")


def start_guests(state: RunState, now: float, out: Outbox) -> None:
    """Start the guests that got ready in a run that has started (the others start with it),
    on the run's clock: told how much of the run has gone, a guest's cycles, times and end are
    the run's, as a restarted node's are."""
    for member in state.members.values():
        if member.state is MemberState.READY and guest_member(state, member):
            member.state = MemberState.RUNNING
            out.send(member.identity, msg.Start(delay=0.0, elapsed=state.elapsed(now)))


__all__ = ["GUEST_CLASS", "is_guest", "guest_member", "guest_problem", "guest_left",
           "start_guests"]
