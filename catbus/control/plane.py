"""The run's control plane: membership, start, end, swaps, restarts, lost links and liveness, as
one state machine with no socket and no clock (``docs/design.md``, "Control plane").

Events go in (:mod:`catbus.control.events`: a control message received, a heartbeat tick, a
closed link, a process started, refused or exited, a stop), instructions come out
(:mod:`catbus.control.instructions`: send this message, start or kill that process, tell the
user this). One handler per event type, one per control message type, dispatched by table. The
registry (:mod:`catbus.supervise.registry`) decodes messages and carries out ``Send``; the launcher
(:mod:`catbus.supervise.launcher`) starts and kills processes and acts on notices. Everything here
can be driven by a test, event by event, without a process.
"""

from __future__ import annotations

from typing import Any, Callable

from catbus.control.checkpoints import Checkpoints
from catbus.control.config import RunConfig
from catbus.control.events import (Event, LinkClosed, ProcessExited, ProcessRefused,
                                   ProcessStarted, Received, StopRun, Tick)
from catbus.control.instructions import Instruction, Outbox
from catbus.control.kinds import MemberState, NoticeKind, Phase, SwitchKind
from catbus.control.failures import Failures
from catbus.control.liveness import Liveness
from catbus.control.liveparams import LiveParams
from catbus.control.members import Member, Process
from catbus.control.membership import Membership
from catbus.control.restarts import Restarts
from catbus.control.state import RunState, graph_sends
from catbus.control.swaps import Swaps, describe
from catbus.wire import messages as msg


class ControlPlane:
    """One run's control plane. ``handle(event)`` returns the instructions it leads to."""

    def __init__(self, config: RunConfig) -> None:
        self.config = config
        self.state = RunState.for_run(config)
        self.membership = Membership(self.state)
        self.swaps = Swaps(self.state)
        #: The nodes' latest checkpoints (``checkpoint: N``), for their restarted processes.
        self.checkpoints = Checkpoints()
        self.restarts = Restarts(self.state, self.checkpoints)
        self.liveness = Liveness(self.state)
        self.failures = Failures(self.state, self.swaps, self.restarts)
        self.params = LiveParams(self.state)
        self._events: dict[type, Callable[[Any, Outbox], None]] = {
            Received: self._received, Tick: self._tick, LinkClosed: self._link_closed,
            ProcessStarted: self._process_started, ProcessRefused: self._process_refused,
            ProcessExited: self.failures.process_exited, StopRun: self._stop}
        #: Messages of a member's current process.
        self._messages: dict[type, Callable[[Member, Any, Received, Outbox], None]] = {
            msg.Heartbeat: self._heartbeat, msg.Ready: self._ready, msg.Done: self._done,
            msg.Error: self._error, msg.Handover: self._handover, msg.Swapped: self._swapped,
            msg.Checkpoint: self._checkpoint, msg.ParamsApplied: self._params_applied}

    def handle(self, event: Event) -> list[Instruction]:
        """The instructions ``event`` leads to. A changed graph is not among them: call
        :meth:`flush` after a batch of events (every event, if there is no batch)."""
        out = Outbox()
        self._events[type(event)](event, out)
        return out.items

    def flush(self) -> list[Instruction]:
        """The graph to every process that connects by it, if it changed since last sent."""
        out = Outbox()
        if self.state.graph_dirty:
            graph_sends(self.state, out)
        return out.items

    # -- messages ------------------------------------------------------------------------------
    def _received(self, event: Received, out: Outbox) -> None:
        message, identity = event.message, event.identity
        if isinstance(message, msg.Register):
            self._register(event, message, out)
        elif isinstance(message, msg.GraphQuery):
            out.send(identity, self.state.graph_message(everyone=True))
        elif isinstance(message, msg.SwapRequest):
            self.swaps.orders.request(identity, message, event.now, out)
        elif isinstance(message, msg.ParamsQuery):
            self.params.query(identity, message, out)
        elif isinstance(message, msg.ParamsRequest):
            self.params.request(identity, message, out)
        else:
            process = self.state.processes.get(identity)
            if process is None:
                return
            process.last_seen = event.now
            member = self.state.member_of(identity)
            if member is None:
                self._other(process, message, event, out)
                return
            self._heard(member, event, out)
            handler = self._messages.get(type(message))
            if handler is not None:
                handler(member, message, event, out)

    def _register(self, event: Received, message: msg.Register, out: Outbox) -> None:
        state, now = self.state, event.now
        member = self.membership.admit(event.identity, message, out)
        if member is None:
            return
        switch = state.switches.get(member.name)
        restart = message.restart or (member.lost and state.started and not message.replace)
        if switch is not None and switch.kind is SwitchKind.RESTART:
            self.restarts.register(event.identity, message, member, switch, now, out)
        elif restart and member.state.alive:
            # The node's own host started it again (its process died: restart), or the user
            # did by hand after losing it: the old process is gone, the new one takes its place.
            why = ("its host started a new process of it" if message.restart else
                   "a new process of it registered while it was lost")
            if not self.restarts.begin(member, why, exited=True, now=now, wall=event.wall,
                                       out=out, joined=True):
                self.failures.force_restart(member, why, now, event.wall, out)
            self.restarts.register(event.identity, message, member, state.switches[member.name],
                                   now, out)
        elif (message.replace or message.restart) and member.state is not MemberState.EXPECTED:
            # A replacement needs a running node to replace (the swap's checks say why not).
            self.swaps.register(event.identity, message, member, now, out)
        else:
            self.membership.join(event.identity, message, member, now, out)

    def _heard(self, member: Member, event: Received, out: Outbox) -> None:
        """A message of a member's current process: its link is up; one whose link was down
        is back, and the run goes on."""
        if member.link_down_since is not None:
            member.link_down_since, member.link_back_at = None, event.now
            if member.lost:
                member.lost = False
                self.membership.rejoined(member, event.now, event.wall, out)
                self.swaps.on_back(member, out)
        member.last_seen = event.now

    def _heartbeat(self, member: Member, beat: msg.Heartbeat, event: Received,
                   out: Outbox) -> None:
        member.tick, member.steps, member.activity = beat.tick, beat.steps, beat.state
        member.process.activity = beat.state

    def _ready(self, member: Member, ready: msg.Ready, event: Received, out: Outbox) -> None:
        member.process.ready = True
        switch = self.state.switches.get(member.name)
        if switch is not None and switch.kind is SwitchKind.RESTART:
            self.restarts.on_ready(member, switch, event.now, out)
        elif member.state is MemberState.REGISTERED:
            member.state = MemberState.READY
            if self.membership.maybe_start(event.now, out):
                self.liveness.restart_clock(event.now)

    def _handover(self, member: Member, handover: msg.Handover, event: Received,
                  out: Outbox) -> None:
        self.swaps.on_handover(member, handover, event.now, out)

    def _checkpoint(self, member: Member, point: msg.Checkpoint, event: Received,
                    out: Outbox) -> None:
        self.checkpoints.keep(member.name, point)

    def _params_applied(self, member: Member, answer: msg.ParamsApplied, event: Received,
                        out: Outbox) -> None:
        self.params.applied(member, answer, out)

    def _swapped(self, member: Member, swapped: msg.Swapped, event: Received,
                 out: Outbox) -> None:
        switch = self.state.switches.get(member.name)
        if switch is None or switch.candidate is not member.process:
            return
        if switch.kind is SwitchKind.SWAP:
            record = self.swaps.on_swapped(member, switch, swapped, event.wall, out)
        else:
            record = self.restarts.on_swapped(member, switch, swapped, event.wall, out)
            if record is not None:
                out.notify(NoticeKind.SWAPPED, member.name, describe(record))
        if record is not None and (record.get("together") or record["state"] == "fresh" and
                                   (record["kind"] == "restart" or record.get("old_died"))):
            self._spliced(member, record, out)

    def _spliced(self, member: Member, record: dict[str, Any], out: Outbox) -> None:
        """A node went on mid-episode without its state, or restarted together with a
        neighbour (neither knew where the other's readers stopped): every score of the run
        says so."""
        entry = {"node": member.name, "tick": record["tick"], "kind": record["kind"],
                 "state": record["state"]}
        if record.get("together"):
            entry["together"] = record["together"]
        self.state.spliced.append(entry)
        out.notify(NoticeKind.SPLICED, member.name, splice_line(entry))

    def _done(self, member: Member, done: msg.Done, event: Received, out: Outbox) -> None:
        switch = self.state.switches.get(member.name)
        if switch is not None and switch.kind is SwitchKind.SWAP:
            self.swaps.fail(switch, "the node finished before the swap was done", out)
        elif switch is not None:   # a restarted process that ends before its first step
            del self.state.switches[member.name]
        if self.membership.done(member, done, event.now, out):   # it ended the episode
            self.swaps.fail_all(f"the episode ended ({self.state.end_reason})", out)

    def _error(self, member: Member, error: msg.Error, event: Received, out: Outbox) -> None:
        switch = self.state.switches.get(member.name)
        why = error.message
        if switch is not None and switch.kind is SwitchKind.SWAP and \
                switch.candidate is member.process:
            why = f"{why} (in {error.where or 'startup'})"   # a replacement after its takeover
        self.failures.process_failed(member, why, event.now, event.wall, out, exited=False,
                             kill=False, detail=error.traceback)

    def _other(self, process: Process, message: msg.Message, event: Received,
               out: Outbox) -> None:
        """A message of a process that owns no name: a swap's new process before its
        takeover, or its old one after it."""
        switch = self.state.switches.get(process.name)
        if isinstance(message, msg.Heartbeat):
            process.activity = message.state
        if switch is None or switch.candidate is not process:
            if isinstance(message, msg.Done):   # an old process leaving
                self.state.processes.pop(process.identity, None)
            return
        if isinstance(message, msg.Ready):
            self.swaps.on_ready(switch, event.now, out)
        elif isinstance(message, msg.Error):
            self.swaps.candidate_failed(
                switch, f"{message.message} (in {message.where or 'startup'})", out)
        elif isinstance(message, msg.Done):
            self.swaps.candidate_failed(switch, "it left", out)

    # -- processes, links, time ------------------------------------------------------------------
    def _process_started(self, event: ProcessStarted, out: Outbox) -> None:
        self.state.local_pids.setdefault(event.pid, []).append(event.node)
        switch = self.state.switches.get(event.node)
        if switch is not None and switch.phase in (Phase.ORDERED, Phase.STARTING) \
                and switch.spawned_pid is None:
            switch.spawned_pid, switch.since = event.pid, event.now   # its bound starts now

    def _process_refused(self, event: ProcessRefused, out: Outbox) -> None:
        switch = self.state.switches.get(event.node)
        if switch is None:
            return
        if switch.kind is SwitchKind.SWAP:
            self.swaps.fail(switch, event.reason, out)
        else:
            self.failures.restart_failed(switch, f"its new process cannot start: {event.reason}", out)

    def _link_closed(self, event: LinkClosed, out: Outbox) -> None:
        member = self.state.member_of(event.identity)
        if member is not None and member.state.alive and \
                member.activity != "closing" and member.link_down_since is None:
            member.link_down_since = event.now

    def _tick(self, event: Tick, out: Outbox) -> None:
        state, now = self.state, event.now
        beat = msg.Heartbeat(refused=event.refused + state.refused)
        for member in state.live_members():
            out.send(member.identity, beat)
        for process in state.others():   # the processes of swaps in progress
            out.send(process.identity, msg.Heartbeat())
        for requester in state.requesters:   # tools waiting for a swap: the run is alive
            out.send(requester, msg.Heartbeat())
        self.failures.check_switches(now, event.wall, out)
        for verdict in self.liveness.check(now, out):
            self.failures.verdict(verdict, now, event.wall, out)
        self.restarts.start_due(now, out)
        self.swaps.orders.order_timed(now, out)
        self.params.check(out)

    def _stop(self, event: StopRun, out: Outbox) -> None:
        state = self.state
        if state.stopping is None:
            state.stopping = event.reason
            self.swaps.fail_all(f"the run is stopping ({event.reason})", out)
        for member in state.live_members():
            out.send(member.identity, msg.Stop(reason=event.reason))
        for process in state.others():
            out.send(process.identity, msg.Stop(reason=event.reason))

    # -- failures -------------------------------------------------------------------------------

def splice_line(entry: dict[str, Any]) -> str:
    """``env restarted fresh at tick 2140``: how a spliced episode is named everywhere."""
    how = "restarted" if entry["kind"] == "restart" else "swapped after its process died"
    together = f" together with {', '.join(entry['together'])}" if entry.get("together") else ""
    return f"{entry['node']} {how}{together} {entry['state']} at tick {entry['tick']}"


__all__ = ["ControlPlane", "splice_line"]
