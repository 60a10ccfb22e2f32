"""The run's registry: one ROUTER socket that every node registers with.

It is the control plane only -- no data passes through it. It hands each node its parameters, the
run seed and the schedule, tells every node who publishes what and where (the graph), holds the
start barrier (every expected node registered, set up, and connected to all its peers), relays the
end of an episode, watches heartbeats, and says stop.

The registry never blocks: :meth:`Registry.poll` handles what is pending and returns events for
its host (the launcher, or ``catbus bus``) to act on.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import zmq

from catbus import security
from catbus.launch.linkwatch import LinkWatch
from catbus.launch.liveness import Liveness
from catbus.wire.sockets import keep_links_alive
from catbus.launch.swaps import Swaps
from catbus.wire import messages as msg
from catbus.wire.protocol import CLOSING_STATE, EVERY_TOPIC, HEARTBEAT_INTERVAL, \
    PROTOCOL_VERSION


#: The most control messages :meth:`Registry.poll` handles per call (a few nodes send a few per
#: second; a run of hundreds of nodes starting at once needs a few calls).
MAX_BATCH = 1000


@dataclass
class Member:
    """A node as the registry knows it."""

    name: str
    identity: bytes | None = None
    #: How many processes of this name have registered (the current one's identity beside the
    #: name, handed to it in ``welcome``); 0 until the first.
    incarnation: int = 0
    pid: int = 0
    host: str = ""
    cls: str = ""
    endpoint: str = ""
    period: float | None = None
    inputs: list = field(default_factory=list)     # [[declared, topic, policy], ...]
    outputs: list = field(default_factory=list)    # [[declared, topic], ...]
    state: str = "expected"    # expected | registered | ready | running | done | failed
    last_seen: float = 0.0
    tick: int = -1
    steps: int = 0
    activity: str = ""
    stats: dict = field(default_factory=dict)
    code: int | None = None
    #: The scores the node reported (``done.scores``).
    scores: dict = field(default_factory=dict)
    #: The highest incarnation handed out for this name (a replacement gets the next one).
    issued: int = 0
    #: Wall time its failed process was found gone (a restart's parallel-mode gap starts then).
    lost_at: float = 0.0

    def graph_entry(self, standby: str = "") -> dict[str, Any]:
        """The node in the ``graph`` message; ``standby``: the endpoint of its other process
        while it is being swapped (peers stay connected to both)."""
        return {"name": self.name, "incarnation": self.incarnation, "endpoint": self.endpoint,
                "inputs": self.inputs, "outputs": self.outputs, "period": self.period,
                "pid": self.pid, "host": self.host, "cls": self.cls, "state": self.state,
                "tick": self.tick, "steps": self.steps, "standby": standby}


@dataclass(frozen=True)
class Event:
    """Something the host must know: ``kind`` in registered, started, failed, done, timeout,
    end; and for replacements (:mod:`catbus.launch.swaps`) swap (start a replacement: ``node``,
    its class in ``message``), swapped, swap-failed."""

    kind: str
    node: str = ""
    message: str = ""
    detail: str = ""


class Registry:
    """Control plane of one run. ``expected`` maps node name to its launch configuration
    (``params``, ``period``, ``inputs``, ``outputs``); ``None`` means an open bus that admits any
    node and starts each as soon as it is connected (``catbus bus``)."""

    def __init__(self, ctx: zmq.Context, bind: str, *, expected: dict[str, dict] | None,
                 mode: str = "parallel", seed: int = 0, run_info: dict | None = None,
                 schedule: dict | None = None, duration: float | None = None,
                 order: list[str] | None = None, deadline: float = 30.0,
                 start_delay: float = 0.05, keys: Any = None,
                 rejoin_timeout: float | None = None) -> None:
        self.socket = ctx.socket(zmq.ROUTER)
        #: CURVE and the allow-list (catbus.security) when ``keys`` are given on a TCP bus.
        self.guard = security.serve_registry(ctx, self.socket, keys, bind)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.setsockopt(zmq.ROUTER_HANDOVER, 1)  # a restarted node may reuse its identity
        keep_links_alive(self.socket)
        self.socket.bind(bind)
        self.endpoint = self.socket.getsockopt(zmq.LAST_ENDPOINT).decode()
        self.expected = expected
        self.members: dict[str, Member] = {name: Member(name) for name in (expected or {})}
        self.by_identity: dict[bytes, str] = {}
        self.mode, self.seed = mode, seed
        self.run_info = run_info or {}
        self.schedule, self.duration = schedule, duration
        self.order = order or list(self.members)
        self.deadline = deadline
        self.start_delay = start_delay
        self.started = False
        self.started_at = 0.0
        self.end_tick: int | None = None
        self.end_reason: str | None = None
        self.last_beat = 0.0
        self.malformed = 0
        self.swaps = Swaps(self)
        #: Whose link is down (a node silent with its link down is lost and may come back for
        #: ``rejoin_timeout`` seconds; silent with its link up, it is stuck: ``deadline``).
        guard = self.guard
        self.links = LinkWatch(self.socket, None if guard is None else
                               lambda event: guard.auth.handshake_failed(guard.endpoint, event))
        self.rejoin_timeout = rejoin_timeout if rejoin_timeout is not None else deadline
        #: Nodes that came back after losing their link: ``{node, kind: "rejoin", tick,
        #: down_s, at}``.
        self.rejoins: list[dict[str, Any]] = []
        #: Deadlines, lost links and stalls (catbus.launch.liveness).
        self.liveness = Liveness(self)

    # -- public ---------------------------------------------------------------------------------
    def poll(self, timeout_ms: float) -> list[Event]:
        events: list[Event] = []
        if self.socket.poll(timeout_ms):
            self.links.update(self._current_identity)
            # At most MAX_BATCH messages per call: whatever arrives (a flood of garbage from a
            # stranger included), the host gets back to heartbeats, deadlines and signals.
            for _ in range(MAX_BATCH):
                try:
                    frames = self.socket.recv_multipart(zmq.NOBLOCK, copy=False)
                    identity, data = self.guard.sender(frames) if self.guard else \
                        [frame.bytes for frame in frames]
                except zmq.Again:
                    break
                except ValueError:
                    self.malformed += 1
                    continue
                self._heard_on(identity, frames[-1], events)
                try:
                    message = msg.decode(data)
                except msg.MalformedMessage as exc:
                    self.malformed += 1
                    if exc.op == msg.Register.OP:
                        self._reply(identity, msg.Reject(reason=f"malformed register: {exc}"))
                    continue
                events.extend(self._handle(identity, message))
        now = time.monotonic()
        if now - self.last_beat >= HEARTBEAT_INTERVAL:
            self.last_beat = now
            self.links.update(self._current_identity)
            beat = msg.Heartbeat(refused=self.refused)
            for member in self.members.values():
                if member.identity is not None and member.state not in ("done", "failed"):
                    self._send(member, beat)
            for identity in self.swaps.others:   # replacements and old processes of a swap
                self._reply(identity, msg.Heartbeat())
            events.extend(self.liveness.check(now))
        return events

    @property
    def refused(self) -> int:
        """Every control message and connection refused: malformed messages, and on a keyed
        bus what its security refused (handshakes, keys, names)."""
        guard = self.guard
        security_refused = 0 if guard is None else guard.refused + guard.auth.refused
        return self.malformed + security_refused

    def _current_identity(self, name: str) -> bytes | None:
        """The routing id of ``name``'s process while its link matters (not once it is
        leaving: a node closes its link on its way out)."""
        member = self.members.get(name)
        if member is None or member.state in ("done", "failed") or \
                member.activity == CLOSING_STATE:
            return None
        return member.identity

    def _heard_on(self, identity: bytes, frame: Any, events: list[Event]) -> None:
        """A member's message came in: its link is up (see :mod:`catbus.launch.linkwatch`);
        one whose link was down is back, and the run goes on."""
        name = self.by_identity.get(identity)
        if name is None or self.members[name].identity != identity:
            return
        self.links.heard(name, identity, frame)
        if name in self.liveness.lost:
            self.liveness.lost.discard(name)
            member = self.members[name]
            silent = time.monotonic() - member.last_seen   # from its last message before
            record = {"node": name, "kind": "rejoin", "tick": member.tick,
                      "down_s": round(silent, 3), "at": time.time()}
            self.rejoins.append(record)
            self._send(member, msg.Rejoined(away=round(silent, 3)))
            events.append(Event("back", name, f"node {name} is back after {silent:.1f} s "
                                              f"without a link (tick {record['tick']})"))

    def stop(self, reason: str) -> None:
        """Tell every node still running to stop (gracefully: ``close`` runs)."""
        for member in self.members.values():
            if member.identity is not None and member.state not in ("done", "failed"):
                self._send(member, msg.Stop(reason=reason))
        for identity in list(self.swaps.others):
            self._reply(identity, msg.Stop(reason=reason))

    def adopt(self, member: Member, process: Any) -> None:
        """Make ``process`` (a :class:`catbus.launch.swaps.Process`) the member's own."""
        if member.identity is not None and self.by_identity.get(member.identity) == member.name:
            del self.by_identity[member.identity]
        member.identity, member.incarnation = process.identity, process.incarnation
        member.pid, member.host, member.cls = process.pid, process.host, process.cls
        member.endpoint, member.last_seen = process.endpoint, time.monotonic()
        self.by_identity[process.identity] = member.name

    def expect_restart(self, name: str) -> None:
        """The launcher restarts ``name``'s failed process (``restart: on-failure``): the run
        waits for the new one, which registers with ``replace``."""
        member = self.members[name]
        if member.identity is not None:
            self.by_identity.pop(member.identity, None)
        member.identity, member.state = None, "restarting"
        member.lost_at = time.time()
        self.links.forget(name)   # a restart, not a link that comes back
        self.liveness.lost.discard(name)
        self.swaps.restarting[name] = time.monotonic()
        self.swaps.switches.pop(name, None)

    def elapsed(self) -> float:
        """Seconds since the run started (its start delay included), 0 before."""
        if not self.started:
            return 0.0
        return max(0.0, time.monotonic() - self.started_at - self.start_delay)

    def missing(self) -> list[str]:
        """Expected nodes that have not registered yet."""
        return [m.name for m in self.members.values() if m.state == "expected"]

    def not_ready(self) -> list[str]:
        return [m.name for m in self.members.values() if m.state in ("expected", "registered")]

    def running(self) -> list[Member]:
        return [m for m in self.members.values() if m.state not in ("done", "failed", "expected")]

    def min_tick(self) -> int:
        ticks = [m.tick for m in self.members.values() if m.state != "failed" and m.period]
        return min(ticks) if ticks else -1

    def publishers_of(self, member: Member) -> list[str]:
        """The members that publish a topic ``member`` reads (any, if it reads ``*``)."""
        reads = {topic for _, topic, _ in member.inputs}
        return [other.name for other in self.members.values() if other is not member and
                (EVERY_TOPIC in reads or reads & {topic for _, topic in other.outputs})]

    def close(self) -> None:
        self.links.close()
        self.socket.close(0)
        if self.guard is not None:
            self.guard.close()

    # -- protocol -------------------------------------------------------------------------------
    def _send(self, member: Member, message: msg.Message) -> None:
        self._reply(member.identity, message)

    def _reply(self, identity: bytes | None, message: msg.Message) -> None:
        if identity is None:   # a node with no process right now (being restarted)
            return
        try:
            self.socket.send_multipart([identity, msg.encode(message)], zmq.NOBLOCK)
        except zmq.ZMQError:
            pass

    def _handle(self, identity: bytes, message: msg.Message) -> list[Event]:
        if isinstance(message, msg.Register):
            return self._register(identity, message)
        if isinstance(message, msg.GraphQuery):
            self._reply(identity, msg.Graph(
                nodes=self._graph_nodes(everyone=True), mode=self.mode,
                started=self.started, run=self.run_info.get("name", "")))
            return []
        if isinstance(message, msg.SwapRequest):
            refused = self.guard.swap_problem(message.node) if self.guard else None
            if refused:
                self._reply(identity, msg.SwapReply(ok=False, message=refused))
                return []
            return self.swaps.request(identity, message)
        if identity in self.swaps.others:
            return self.swaps.handle_other(identity, message)
        name = self.by_identity.get(identity)
        member = self.members.get(name) if name else None
        if member is None or member.identity != identity:
            return []
        member.last_seen = time.monotonic()
        if isinstance(message, msg.Heartbeat):
            member.tick, member.steps = message.tick, message.steps
            member.activity = message.state
        elif isinstance(message, msg.Ready):
            if member.name in self.swaps.switches:   # a restarted process
                return self.swaps._maybe_take_over(member.name)
            member.state = "ready"
            return self._maybe_start()
        elif isinstance(message, msg.Handover):
            return self.swaps.handover(member, message)
        elif isinstance(message, msg.Swapped):
            return self.swaps.swapped(member, message)
        elif isinstance(message, msg.Done):
            return self._done(member, message)
        elif isinstance(message, msg.Error):
            rolled_back = self.swaps.member_failed(member, message.message)
            if rolled_back is not None:
                return rolled_back
            member.state = "failed"
            return [Event("failed", member.name, message.message, message.traceback)]
        return []

    def _register(self, identity: bytes, message: msg.Register) -> list[Event]:
        problem = msg.register_problem(message)
        if problem is None and message.protocol != PROTOCOL_VERSION:
            problem = (f"node {message.name!r} speaks catbus protocol version "
                       f"{message.protocol}, this run speaks version {PROTOCOL_VERSION}: "
                       "install the same catbus version on both hosts")
        if problem:
            # Checked before anything changes: a half-applied registration left a bogus member,
            # and bad topic lists went out in the graph and crashed every node reading it.
            self.malformed += message.protocol == PROTOCOL_VERSION
            self._reply(identity, msg.Reject(reason=problem))
            return []
        refused = self.guard.register_problem(message) if self.guard else None
        if refused:
            self._reply(identity, msg.Reject(reason=refused))
            return []
        name = message.name
        member = self.members.get(name)
        if member is not None and member.state in ("registered", "ready", "running") and \
                name in self.liveness.lost and self.started:
            # A new process of a node that was lost: the old one was killed (or its host
            # rebooted) and the user started it again. It takes the node's place (a restart).
            self.expect_restart(name)
            return self.swaps.register(identity, message, member)
        if message.replace and member is not None and member.state != "expected":
            return self.swaps.register(identity, message, member)
        if member is None and self.expected is not None:
            self._reply(identity, msg.Reject(
                reason=f"no node named {name!r} in this run (nodes: {', '.join(self.members)})"))
            return []
        if member is not None and member.state not in ("expected", "done", "failed"):
            self._reply(identity, msg.Reject(
                reason=f"a node named {name!r} is already running "
                       f"(pid {member.pid} on {member.host}); to take its place, start this "
                       f"one with --replace"))
            return []
        if member is None:
            member = self.members[name] = Member(name)
            self.order.append(name)
        config = (self.expected or {}).get(name)
        member.identity = identity
        member.incarnation = member.issued = max(member.issued, member.incarnation) + 1
        member.pid, member.host = message.pid, message.host
        member.cls, member.endpoint = message.cls, message.endpoint
        member.state, member.last_seen = "registered", time.monotonic()
        if config is not None:
            member.period, member.inputs, member.outputs = (
                config["period"], config["inputs"], config["outputs"])
            params = config["params"]
        else:
            member.period = message.period
            member.inputs, member.outputs = message.inputs, message.outputs
            params = message.params
        self.by_identity[identity] = name
        self._send(member, msg.Welcome(
            mode=self.mode, seed=self.seed, incarnation=member.incarnation, params=params,
            period=member.period, inputs=member.inputs, outputs=member.outputs,
            schedule=self.schedule, duration=self.duration, order=self.order,
            run_info=self.run_info, retire_at=self.swaps._next_retire(name, -1)))
        if self.expected is None or not self.missing():
            self._send_graph()
        return [Event("registered", name)]

    def _graph_nodes(self, everyone: bool = False) -> list[dict[str, Any]]:
        entries = [m.graph_entry(self.swaps.standby_endpoint(m.name))
                   for m in self.members.values() if everyone or m.identity is not None]
        return self.guard.graph(entries) if self.guard else entries

    def _send_graph(self) -> None:
        nodes = self._graph_nodes()
        graph = msg.Graph(nodes=nodes, complete=True, mode=self.mode, started=self.started,
                          run=self.run_info.get("name", ""))
        for member in self.members.values():
            if member.identity is not None and member.state not in ("done", "failed"):
                self._send(member, graph)
        for identity in self.swaps.others:   # a replacement connects by it too
            self._reply(identity, graph)

    def _maybe_start(self) -> list[Event]:
        if self.expected is None:
            for member in self.members.values():
                if member.state == "ready":
                    member.state = "running"
                    self._send(member, msg.Start(delay=0.0))
            return []
        if self.started or self.not_ready():
            return []
        self.started = True
        self.started_at = self.liveness.moved_at = time.monotonic()
        for member in self.members.values():
            member.state = "running"
            self._send(member, msg.Start(delay=self.start_delay))
        return [Event("started")]

    def _done(self, member: Member, message: msg.Done) -> list[Event]:
        member.stats = dict(message.stats)
        member.scores = {str(key): value for key, value in message.scores.items()}
        member.code = message.code
        tick, steps = member.stats.get("tick", member.tick), member.stats.get("steps", member.steps)
        member.tick = tick if type(tick) is int else member.tick
        member.steps = steps if type(steps) is int else member.steps
        events = []
        if member.state != "failed":
            member.state = "done"
        if message.end and message.end_tick is not None and self.end_tick is None:
            # The end of the episode travels with progress to a node's peers; tell everyone else.
            self.end_tick, self.end_reason = message.end_tick, message.end
            for other in self.members.values():
                if other.identity is not None and other.state not in ("done", "failed"):
                    self._send(other, msg.End(tick=self.end_tick, reason=self.end_reason))
            events.append(Event("end", member.name, self.end_reason))
        events.append(Event("done", member.name))
        return events
