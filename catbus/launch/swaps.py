"""The registry's side of replacing a running node: hot swaps and restarts
(``docs/protocol.md``, "Replacing a running node").

A node's identity is its name; a new process of that name takes over from the old one.

* **Swap** (``catbus swap``, ``catbus node --replace``, a launch file's ``swap:`` schedule): the
  replacement registers with ``replace``, connects to every neighbour while the old process goes
  on (``standby``: peers are connected to both), and says ``ready`` once every neighbour has
  answered its hello. The old process is told to ``retire``: between two steps it sends its
  ``handover`` (the next tick, its ``snapshot()``, its sequence numbers) and waits. The
  replacement gets them in ``takeover``, steps that very tick, and says ``swapped``; only then is
  the old process stopped. A replacement that fails before that leaves the old process running
  (``resume``).
* **Restart** (``restart: on-failure``): the failed process is gone; the launcher starts another,
  which registers with ``replace`` and starts where its readers say they stopped hearing from
  the old one.

:class:`Swaps` keeps this bookkeeping for the :class:`~catbus.launch.registry.Registry`, which
routes to it the messages of processes that are not (or no longer) a member's current one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from catbus.wire import messages as msg
from catbus.wire.protocol import EVERY_TOPIC

if TYPE_CHECKING:
    from catbus.launch.registry import Event, Member, Registry


@dataclass
class Process:
    """One process of a node's name that is not (yet, or any more) the member's own."""

    identity: bytes
    incarnation: int
    pid: int
    host: str
    cls: str
    endpoint: str
    last_seen: float = field(default_factory=time.monotonic)
    state: str = "registered"      # registered | ready

    def describe(self) -> dict[str, Any]:
        return {"incarnation": self.incarnation, "pid": self.pid, "host": self.host,
                "class": self.cls}


@dataclass
class Order:
    """A swap asked for: by a tool (``requester`` answered with ``swap-reply``), by the launch
    file's schedule, or by a replacement that came by itself (``catbus node --replace``)."""

    node: str
    cls: str
    params: dict
    requester: bytes | None = None
    asked_at: float = field(default_factory=time.monotonic)


@dataclass
class Switch:
    """One node's replacement in progress."""

    kind: str                              # "swap" | "restart"
    order: Order | None = None
    candidate: Process | None = None       # the new process, before its takeover
    old: Process | None = None             # the old process, after its handover (swap)
    handover: msg.Handover | None = None   # the old process's handover, once it came
    taken_over: bool = False


class Swaps:
    """Swaps and restarts in progress, and the record of those done (:attr:`done`)."""

    def __init__(self, registry: "Registry") -> None:
        self.registry = registry
        self.switches: dict[str, Switch] = {}
        #: Every swap and restart done: ``{node, kind, tick, old, new, state, gap, at}``.
        self.done: list[dict[str, Any]] = []
        #: Failed swaps: ``{node, message}``.
        self.failed: list[dict[str, Any]] = []
        #: Processes of a name that are not its member's: identity -> (name, process).
        self.others: dict[bytes, tuple[str, Process]] = {}
        #: Names whose failed process the launcher restarts (``restart: on-failure``).
        self.restarting: dict[str, float] = {}
        #: Stepped: name -> [(tick, class, params)] of the launch file's swap schedule.
        self.scheduled: dict[str, list[tuple[int, str, dict]]] = {}
        #: Whether a launcher hosts the registry and starts replacements (else a tool's swap
        #: request is refused: the user starts the replacement with ``catbus node --replace``).
        self.can_spawn = False

    # -- asking -----------------------------------------------------------------------------------
    def busy(self) -> bool:
        """A switch or restart is in progress (the stepped stall check waits)."""
        return bool(self.switches or self.restarting)

    def request(self, requester: bytes, request: msg.SwapRequest) -> list["Event"]:
        """A tool asks for a swap: refused at once with a reason, or ordered (the launcher
        starts the replacement on the ``swap`` event)."""
        problem = self._request_problem(request.node)
        if problem is None and not self.can_spawn:
            problem = ("this bus has no launcher to start a replacement; start it yourself: "
                       f"catbus node CLASS --name {request.node} --bus ADDR --replace")
        if problem is not None:
            self._answer(requester, msg.SwapReply(ok=False, message=problem))
            return []
        return self.order(Order(request.node, request.cls, dict(request.params), requester))

    def order(self, order: Order) -> list["Event"]:
        from catbus.launch.registry import Event

        member = self.registry.members[order.node]
        self.switches[order.node] = Switch("swap", order=order)
        return [Event("swap", order.node, order.cls or member.cls)]

    def _request_problem(self, name: str) -> str | None:
        registry = self.registry
        member = registry.members.get(name)
        if member is None:
            return f"no node named {name!r} in this run (nodes: {', '.join(registry.members)})"
        if any(topic == EVERY_TOPIC for _, topic, _ in member.inputs):
            return (f"node {name!r} reads every topic (a recorder): it cannot be swapped, its "
                    "file would be cut in two")
        if not registry.started:
            return "the run has not started yet; swap once it runs"
        if registry.end_tick is not None:
            return "the episode has ended"
        if member.state != "running":
            return f"node {name!r} is {member.state}, not running"
        if name in self.switches or name in self.restarting:
            return f"node {name!r} is being replaced already"
        return None

    # -- a replacement registers ------------------------------------------------------------------
    def register(self, identity: bytes, message: msg.Register, member: "Member"
                 ) -> list["Event"]:
        """``register`` with ``replace``: a swap's replacement, or a restart."""
        registry = self.registry
        name = member.name
        restart = name in self.restarting
        problem = None if restart else self._request_problem(name)
        switch = self.switches.get(name)
        if problem is not None and switch is not None and switch.candidate is None \
                and f"{name!r} is being replaced already" in problem:
            problem = None   # the replacement the launcher (or a schedule) started for a swap
        if problem is None:
            problem = self._fit_problem(message, member)
        if problem is None and switch is not None and switch.candidate is not None:
            problem = f"a replacement of {name!r} is joining already"
        if problem is not None:
            registry._reply(identity, msg.Reject(reason=problem))
            return self._fail(name, problem) if switch is not None and not restart else []
        member.issued = max(member.issued, member.incarnation) + 1
        process = Process(identity, member.issued, message.pid, message.host, message.cls,
                          message.endpoint)
        order = switch.order if switch is not None else None
        # A swap's parameters: the order's, or those the replacement brought (--replace
        # --param); a restart runs with the launch file's.
        overrides = order.params if order is not None else \
            dict(message.params) if message.replace and not restart else {}
        config = (registry.expected or {}).get(name, {})
        same_class = message.cls == member.cls
        base = config.get("params") if same_class else config.get("given", {})
        welcome = dict(mode=registry.mode, seed=registry.seed, incarnation=process.incarnation,
                       params=dict(base or {}), period=member.period, inputs=member.inputs,
                       outputs=member.outputs, schedule=registry.schedule,
                       duration=registry.duration, order=registry.order,
                       run_info=registry.run_info, overrides=overrides,
                       filter_params=not same_class)
        if restart:
            del self.restarting[name]
            self.switches[name] = Switch("restart", candidate=process)
            registry.adopt(member, process)
            member.state = "registered"
            registry._send(member, msg.Welcome(joining="restart", **welcome,
                                               retire_at=self._next_retire(name, member.tick)))
        else:
            if switch is None:
                switch = self.switches[name] = Switch(
                    "swap", order=Order(name, message.cls, overrides))
            switch.candidate = process
            self.others[identity] = (name, process)
            registry.by_identity[identity] = name
            after = switch.handover.tick if switch.handover is not None else member.tick
            registry._reply(identity, msg.Welcome(joining="swap", **welcome,
                                                  retire_at=self._next_retire(name, after)))
        registry._send_graph()
        return []

    def _fit_problem(self, message: msg.Register, member: "Member") -> str | None:
        """The replacement's class must declare the same inputs and outputs (the launch file's
        remaps then give the same topics)."""
        from catbus.launch.swapplan import topic_differences

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

    def _next_retire(self, name: str, after: int) -> int | None:
        ticks = [tick for tick, _, _ in self.scheduled.get(name, ()) if tick > after]
        return min(ticks) if ticks else None

    # -- messages of processes other than a member's own -----------------------------------------
    def handle_other(self, identity: bytes, message: msg.Message) -> list["Event"]:
        name, process = self.others[identity]
        process.last_seen = time.monotonic()
        switch = self.switches.get(name)
        is_candidate = switch is not None and switch.candidate is process
        if isinstance(message, msg.Ready) and is_candidate:
            process.state = "ready"
            return self._maybe_take_over(name)
        if isinstance(message, msg.Error) and is_candidate:
            return self._fail(name, f"the replacement failed in {message.where or 'startup'}: "
                                    f"{message.message}")
        if isinstance(message, msg.Done):
            if is_candidate:
                return self._fail(name, "the replacement left before taking over")
            self.others.pop(identity, None)
            self.registry.by_identity.pop(identity, None)
        return []

    def handover(self, member: "Member", message: msg.Handover) -> list["Event"]:
        """The member's process stopped and handed over (asked to retire, or at a tick the
        launch file scheduled a swap for)."""
        switch = self.switches.get(member.name)
        if switch is None:
            scheduled = [s for s in self.scheduled.get(member.name, ()) if s[0] == message.tick]
            if not scheduled:   # a handover nobody asked for: let the node go on
                self.registry._send(member, msg.Resume(reason="no swap is in progress"))
                return []
            _, cls, params = scheduled[0]
            events = self.order(Order(member.name, cls, dict(params)))
            self.switches[member.name].handover = message
            return events
        switch.handover = message
        return self._maybe_take_over(member.name)

    def _maybe_take_over(self, name: str) -> list["Event"]:
        registry = self.registry
        switch = self.switches[name]
        member = registry.members[name]
        candidate = switch.candidate
        if switch.kind == "restart":
            member.state = "running"
            registry._send(member, msg.Start(delay=0.0, elapsed=registry.elapsed(),
                                             tick=max(0, member.tick + 1)))
            return []
        if candidate is None or candidate.state != "ready":
            return []
        if switch.handover is None:
            registry._send(member, msg.Retire(reason=f"replaced by pid {candidate.pid}"))
            return []
        handover = switch.handover
        old = Process(member.identity, member.incarnation, member.pid, member.host, member.cls,
                      member.endpoint)
        self.others.pop(candidate.identity, None)
        self.others[old.identity] = (name, old)
        registry.adopt(member, candidate)
        switch.old, switch.candidate, switch.taken_over = old, None, True
        registry._send(member, msg.Takeover(
            tick=handover.tick, snapshot=handover.snapshot, seq=dict(handover.seq),
            last_publish=handover.last_publish, old=old.describe(), kind="swap",
            elapsed=registry.elapsed()))
        registry._send_graph()
        return []

    def swapped(self, member: "Member", message: msg.Swapped) -> list["Event"]:
        """The new process did its first step: the switch is done."""
        from catbus.launch.registry import Event

        switch = self.switches.pop(member.name, None)
        if switch is None:
            return []
        registry = self.registry
        gap = None
        if registry.mode == "parallel":
            if switch.handover is not None and switch.handover.last_publish:
                gap = max(0.0, message.first_publish - switch.handover.last_publish)
            elif switch.kind == "restart" and member.lost_at:
                gap = max(0.0, message.first_publish - member.lost_at)
        state = "restored" if message.restored else "fresh"
        record = {"node": member.name, "kind": switch.kind, "tick": message.tick,
                  "old": switch.old.describe() if switch.old else {},
                  "new": {"incarnation": member.incarnation, "pid": member.pid,
                          "host": member.host, "class": member.cls},
                  "state": state, "gap": gap, "at": time.time()}
        self.done.append(record)
        if switch.old is not None:
            registry._reply(switch.old.identity, msg.Stop(
                reason=f"replaced by incarnation {member.incarnation} (pid {member.pid})"))
        registry._send_graph()
        if switch.order is not None and switch.order.requester is not None:
            self._answer(switch.order.requester, msg.SwapReply(
                ok=True, message=describe(record), tick=message.tick, state=state, gap=gap))
        return [Event("swapped", member.name, describe(record))]

    # -- failures --------------------------------------------------------------------------------
    def member_failed(self, member: "Member", why: str) -> list["Event"] | None:
        """The member's current process failed. Before its first step as a replacement, the
        swap fails and the old process goes on (returns the events); else None (a failure of
        the node, for the launcher to handle)."""
        switch = self.switches.get(member.name)
        if switch is None or switch.kind != "swap" or not switch.taken_over:
            return None
        return self._fail(member.name, f"the replacement failed before its first step: {why}")

    def process_exited(self, pid: int, how: str) -> list["Event"]:
        """The launcher saw a process it started for a swap exit."""
        for name, switch in list(self.switches.items()):
            if switch.candidate is not None and switch.candidate.pid == pid:
                return self._fail(name, f"the replacement {how} before taking over")
            member = self.registry.members[name]
            if switch.taken_over and member.pid == pid:
                return self.member_failed(member, f"its process {how}") or []
        return []

    def check_deadlines(self, now: float, deadline: float) -> list["Event"]:
        events: list["Event"] = []
        for name, switch in list(self.switches.items()):
            candidate = switch.candidate
            if candidate is not None and now - candidate.last_seen > deadline:
                events += self._fail(name, f"the replacement was silent for {deadline:g} s")
        return events

    def _fail(self, name: str, reason: str) -> list["Event"]:
        """The swap of ``name`` failed: the old process goes on (told to ``resume`` if it had
        handed over), the graph forgets the replacement, the requester is told why."""
        from catbus.launch.registry import Event

        registry = self.registry
        switch = self.switches.pop(name, None)
        if switch is None:
            return []
        member = registry.members[name]
        if switch.candidate is not None:
            self.others.pop(switch.candidate.identity, None)
            registry.by_identity.pop(switch.candidate.identity, None)
            registry._reply(switch.candidate.identity, msg.Stop(reason=f"swap failed: {reason}"))
        if switch.taken_over and switch.old is not None:
            failed_identity = member.identity
            registry.by_identity.pop(failed_identity, None)
            self.others.pop(switch.old.identity, None)
            registry.adopt(member, switch.old)
            member.state = "running"
        if switch.handover is not None:
            registry._send(member, msg.Resume(reason=reason))
        registry._send_graph()
        self.failed.append({"node": name, "message": reason})
        if switch.order is not None and switch.order.requester is not None:
            self._answer(switch.order.requester, msg.SwapReply(
                ok=False, message=f"swap of {name} failed, the old process goes on: {reason}"))
        return [Event("swap-failed", name, reason)]

    def standby_endpoint(self, name: str) -> str:
        """The other process peers stay connected to while ``name`` is being swapped."""
        switch = self.switches.get(name)
        if switch is None or switch.kind != "swap":
            return ""
        if switch.candidate is not None:
            return switch.candidate.endpoint
        return switch.old.endpoint if switch.old is not None else ""

    def _answer(self, requester: bytes, reply: msg.SwapReply) -> None:
        self.registry._reply(requester, reply)


def describe(record: dict[str, Any]) -> str:
    """One line for a swap, restart or rejoin record."""
    if record["kind"] == "rejoin":
        return (f"{record['node']} lost its link at tick {record['tick']} and came back after "
                f"{record['down_s']:.1f} s")
    old, new = record.get("old") or {}, record["new"]
    what = ("restarted" if record["kind"] == "restart" else
            f"swapped {old.get('class', '?')} -> {new['class']}")
    gap = f", gap {record['gap'] * 1000:.0f} ms" if record.get("gap") is not None else ""
    return (f"{record['node']} {what} at tick {record['tick']} (incarnation "
            f"{new['incarnation']}, pid {new['pid']}, state {record['state']}{gap})")


__all__ = ["Swaps", "Order", "Process", "describe"]
