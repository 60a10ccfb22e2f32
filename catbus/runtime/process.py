"""Runs one node in its own process: join the run, connect to peers, step, leave.

The same code serves a node started by the launcher and one started by hand on another host with
``catbus node module:Class --name robot --bus tcp://...``: both register with the registry, get
their parameters and the run seed from it, connect peer to peer, and wait for ``start``.

``stepped``: lockstep by progress (DESIGN.md). A node steps tick ``t`` once every publisher it
reads has completed the tick the schedule says it must see, and once none of its subscribers is
more than :data:`WINDOW` ticks behind. There is no central clock: the registry is only told, by
heartbeats, how far everyone is.

``parallel``: the node steps at its period in wall time on the newest inputs; a cycle missed
because a step overran is skipped and counted.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

import zmq

from catbus.wire import codec
from catbus import params as params_mod
from catbus.wire.control import CLOSING_STATE, DEFAULT_REGISTRY_TIMEOUT, ControlLink
from catbus.runtime.dataplane import DataPlane, data_endpoint_for, receive_frames
from catbus.errors import CatbusError
from catbus.runtime.inbox import ALL, Inbox, InputBinding
from catbus.node import Node
from catbus.runtime.schedule import Schedule
from catbus.runtime.simclock import sim_time_function
from catbus.runtime.stats import NodeStats

#: How many ticks a publisher may run ahead of its slowest subscriber in stepped mode.
WINDOW = 8
#: Stepped mode: the longest a node blocks on its data socket before it looks at its control
#: link (stop, end, heartbeats) and at new subscriptions.
STEPPED_WAIT_MS = 50
#: Parallel mode: the longest a node goes without handling its control link (stop, end,
#: heartbeats) when it has no time to wait between steps because it overruns its period.
CONTROL_EVERY = 0.05
#: :meth:`NodeRuntime._drain_data` asks the socket whether a message waits for this many
#: messages, then receives until ``zmq.Again``.
_ASK_EVENTS = 4
_EVENTS, _POLLIN, _NOBLOCK = int(zmq.EVENTS), int(zmq.POLLIN), int(zmq.NOBLOCK)


class Stopped(Exception):
    """The registry said stop (Ctrl-C, another node failed, or the end of the run)."""


class Interrupted(BaseException):
    """SIGINT or SIGTERM reached this process (also: the launcher died, via PDEATHSIG).

    A BaseException, like KeyboardInterrupt: the signal handler raises it wherever the process
    happens to be, and as an Exception it was swallowed by every ``except Exception`` on the
    way -- codec.Header.unpack turned it into a DecodeError that the inbox counted as malformed,
    control.unpack into "not a control message", node code's own handlers into nothing -- after
    which the node ignored every further signal and outlived its launcher.

    ``signum`` is the signal; the process then exits with ``128 + signum`` (130 for SIGINT, 143
    for SIGTERM), the shell's convention. A launcher found dead counts as SIGTERM, the
    parent-death signal.
    """

    def __init__(self, signum: int = signal.SIGTERM) -> None:
        super().__init__(signum)
        self.signum = int(signum)

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class RegistryLost(CatbusError):
    """The registry stopped answering: the launcher is gone, so this node exits."""


@dataclass
class Peers:
    """Who this node reads from and who reads from it, with their data endpoints."""

    publisher_of: dict[str, str] = field(default_factory=dict)   # topic -> node name
    publishers: list[str] = field(default_factory=list)
    subscribers: list[str] = field(default_factory=list)
    endpoints: dict[str, str] = field(default_factory=dict)
    #: publisher -> the topics we read from it (stepped: whose carried progress we count)
    sources: dict[str, set[str]] = field(default_factory=dict)
    #: neighbour -> the topics of ours it reads (empty for a publisher that reads none)
    reads_from_me: dict[str, frozenset[str]] = field(default_factory=dict)

    @property
    def neighbours(self) -> set[str]:
        return set(self.publishers) | set(self.subscribers)


def compute_peers(name: str, inputs: list[InputBinding], graph: list[dict]) -> Peers:
    """From the registry's graph: publishers of our inputs and subscribers of our outputs."""
    peers = Peers()
    my_topics = {b.topic for b in inputs}
    wildcard = ALL in my_topics
    me = next((n for n in graph if n["name"] == name), {"outputs": []})
    my_outputs = {topic for _, topic in me["outputs"]}
    for other in graph:
        other_name = other["name"]
        if other_name == name:
            continue
        peers.endpoints[other_name] = other["endpoint"]
        outputs = {topic for _, topic in other["outputs"]}
        for topic in outputs:
            if topic in my_topics:
                peers.publisher_of[topic] = other_name
        read = outputs if wildcard else outputs & my_topics
        publishes = wildcard or bool(read)
        if publishes:
            peers.publishers.append(other_name)
            peers.sources[other_name] = read
        their_inputs = {topic for _, topic, _ in other["inputs"]}
        everything = ALL in their_inputs
        reads = frozenset(my_outputs if everything else their_inputs & my_outputs)
        if everything or reads:
            peers.subscribers.append(other_name)
        if publishes or everything or reads:
            peers.reads_from_me[other_name] = reads
    return peers


def waits_for_me(name: str, graph: list[dict]) -> set[str]:
    """Nodes that, through reactive nodes, wait for ``name`` to finish (parallel mode).

    A reactive node (no period) finishes when the publishers it reads have finished; a periodic
    one by its own clock. So X waits for Y when X is reactive and Y publishes something X reads
    (anything, if X reads ``*``). The result is every node with a path of such waits to ``name``:
    those of ``name``'s publishers in it are in a cycle with ``name`` and never finish before it.
    """
    publishes = {n["name"]: {topic for _, topic in n["outputs"]} for n in graph}
    reads = {n["name"]: {topic for _, topic, _ in n["inputs"]} for n in graph
             if n.get("period") is None}

    def waits(x: str, y: str) -> bool:
        topics = reads[x]
        return x != y and (ALL in topics or bool(topics & publishes.get(y, set())))

    reach = {name}
    grew = True
    while grew:
        grew = False
        for x in reads:
            if x not in reach and any(waits(x, y) for y in reach):
                reach.add(x)
                grew = True
    reach.discard(name)
    return reach


def set_parent_death_signal(parent_pid: int | None) -> None:
    """Ask Linux to send SIGTERM when the launcher dies (prctl PR_SET_PDEATHSIG), then close the
    race where it died before we asked."""
    if parent_pid is None:
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent_pid:
        raise Interrupted()


#: Seconds a node whose launcher died gets to finish gracefully before it SIGKILLs itself.
ORPHAN_GRACE = 5.0


def start_orphan_watchdog(parent_pid: int | None, grace: float = ORPHAN_GRACE) -> None:
    """The last resort behind PDEATHSIG and the heartbeat timeout: both act only where the node
    runs catbus code, so a node stuck in a step that ignores SIGTERM outlived its launcher for
    ever. A daemon thread notices the launcher is gone and, ``grace`` seconds later (time for the
    graceful exit: close() runs, a recording is finished), ends the process with SIGKILL."""
    if parent_pid is None:
        return

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(0.5)
        time.sleep(grace)
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="catbus-orphan-watchdog", daemon=True).start()


class NodeRuntime:
    """One node's life: register, set up, connect, run, report, close."""

    def __init__(self, node_class: type[Node], name: str, bus: str, *, class_path: str,
                 params: dict | None = None, inputs: list[InputBinding] | None = None,
                 outputs: list[tuple[str, str]] | None = None, period: float | None = None,
                 advertise: str | None = None,
                 registry_timeout: float = DEFAULT_REGISTRY_TIMEOUT) -> None:
        self.node_class = node_class
        self.name = name
        self.bus = bus
        self.class_path = class_path
        self.given_params = params or {}
        self.inputs = inputs if inputs is not None else [
            InputBinding(i.topic, i.topic, i.policy) for i in node_class.declared_inputs()]
        self.outputs = outputs if outputs is not None else [(o, o) for o in node_class.outputs]
        self.period = period if period is not None else node_class.period
        self.advertise = advertise
        self.registry_timeout = registry_timeout
        self.stats = NodeStats()
        self.node: Node | None = None
        self.peers = Peers()
        self.schedule: Schedule | None = None
        self.mode = "parallel"
        self.stop_reason: str | None = None
        self.end_tick: int | None = None
        self.started: float | None = None
        self.graph_complete = False
        self._graph_nodes: list[dict] = []   # the registry's latest graph message
        self._finishing = False
        #: The launcher's pid for a node it started: if it changes, the launcher is gone.
        self.parent_pid: int | None = None

    # -- entry point ----------------------------------------------------------------------------
    def run(self) -> int:
        """Returns the process exit code: 0 on a clean end (the run's end, or the registry's
        stop), 1 if the node failed, 128 + the signal if one interrupted it (130: SIGINT, 143:
        SIGTERM)."""
        self.ctx = zmq.Context()
        self.control = ControlLink(self.ctx, self.bus)
        self.data = DataPlane(self.ctx, self.name, data_endpoint_for(self.bus, self.name,
                                                                     self.advertise))
        self.poller = zmq.Poller()
        for sock in (self.data.sub, self.data.pub, self.control.socket):
            self.poller.register(sock, zmq.POLLIN)
        code = 0
        where = "startup"
        try:
            self._join()
            where = "setup"
            self._setup()
            where = "connect"
            self._connect_and_wait_start()
            where = "step"
            if self.mode == "parallel":
                self._run_parallel()
            else:
                self._run_stepped()
        except Stopped:
            pass
        except Interrupted as exc:
            code = exc.exit_code
        except KeyboardInterrupt:
            code = 128 + signal.SIGINT
        except RegistryLost as exc:
            print(f"catbus: node {self.name}: {exc}", flush=True)
            code = 1
            try:   # if the registry is in fact alive, the run fails naming this node
                self.control.send("error", where=where, message=str(exc), traceback="")
            except zmq.ZMQError:
                pass
        except Exception as exc:
            code = 1
            self._report_error(where, exc)
        finally:
            code = self._finish(code)
        return code

    def _report_error(self, where: str, exc: BaseException) -> None:
        text = traceback.format_exc()
        try:
            self.control.send("error", where=where, message=f"{type(exc).__name__}: {exc}",
                              traceback=text)
        except zmq.ZMQError:
            pass
        if isinstance(exc, CatbusError):
            print(f"catbus: node {self.name}: {exc}", flush=True)

    def _finish(self, code: int) -> int:
        self._finishing = True   # from here on signals wait: close() must be allowed to finish
        self._say_closing()
        if self.node is not None:
            try:
                self.node.close()
            except Exception as exc:
                self._report_error("close", exc)
                code = 1
        try:
            self._publish_final()
            self.control.send("done", code=code, end=self.stop_reason, end_tick=self.end_tick,
                              stats=self.stats.to_dict(self.data, getattr(self, "inbox", None)))
        except zmq.ZMQError:
            pass
        self.data.close()
        self.control.close()
        self.ctx.term()
        return code

    # -- joining the run ------------------------------------------------------------------------
    def _join(self) -> None:
        self.control.send(
            "register", name=self.name, pid=os.getpid(), host=socket.gethostname(),
            cls=self.class_path, endpoint=self.data.endpoint, period=self.period,
            inputs=[[b.declared, b.topic, b.policy] for b in self.inputs],
            outputs=[list(o) for o in self.outputs], params=self.given_params)
        welcome = self._wait_for("welcome")
        self.mode = welcome["mode"]
        self.seed = int(welcome["seed"])
        self.run_info = welcome.get("run_info") or {}
        self.params = welcome.get("params", self.given_params)
        self.period = welcome.get("period", self.period)
        if welcome.get("inputs") is not None:
            self.inputs = [InputBinding(*b) for b in welcome["inputs"]]
            self.outputs = [tuple(o) for o in welcome["outputs"]]
        if welcome.get("schedule"):
            self.schedule = Schedule.from_dict(welcome["schedule"])
        self.duration = welcome.get("duration")
        self.output_topics = dict(self.outputs)
        order = {name: i for i, name in enumerate(welcome.get("order", []))}
        self.order = order
        self.inbox = Inbox(self.inputs, order, reactive=self.period is None)

    def _setup(self) -> None:
        declared = self.node_class.params
        params = params_mod.resolve(declared, self.params, where=f"node {self.name}",
                                    prefix="params")
        node = self.node_class()
        node.bind(self.name, self.seed, self.period, self.run_info)
        self.node = node
        node.setup(params)

    def _wait_for(self, op: str) -> dict[str, Any]:
        """Wait for one control message, handling the others; the registry must answer."""
        deadline = time.monotonic() + self.registry_timeout
        while True:
            messages = self.control.receive_nowait()
            for index, message in enumerate(messages):
                if message["op"] == op:
                    # Whatever came in the same batch (the graph, often) is handled next.
                    self.control.backlog.extend(messages[index + 1:])
                    return message
                self._on_control(message)
            if time.monotonic() > deadline:
                raise RegistryLost(f"no answer from the registry at {self.bus} within "
                                   f"{self.registry_timeout:g} s; is a run started there "
                                   "(catbus launch ... or catbus bus)?")
            self._poll(100)

    def _connect_and_wait_start(self) -> None:
        self.ready_sent = False
        self.data.subscribe([b.topic for b in self.inputs if b.topic != ALL],
                            everything=self.inbox.wildcard)
        while self.started is None:
            self._service(100)
            if (self.graph_complete and not self.ready_sent
                    and self.peers.neighbours <= self.data.hellos):
                self.control.send("ready")
                self.ready_sent = True

    def _on_control(self, message: dict[str, Any]) -> None:
        op = message["op"]
        if op == "graph":
            self._graph_nodes = message["nodes"]
            self.peers = compute_peers(self.name, self.inputs, message["nodes"])
            self.data.connect(self.peers.endpoints[n] for n in self.peers.neighbours)
            self.graph_complete = bool(message.get("complete", True))
        elif op == "start":
            self.started = time.monotonic() + float(message.get("delay", 0.0))
        elif op == "end":
            tick = int(message["tick"])
            self.end_tick = tick if self.end_tick is None else min(self.end_tick, tick)
        elif op == "stop":
            self.stop_reason = message.get("reason")
            raise Stopped()
        elif op == "reject":
            raise CatbusError(f"the registry refused node {self.name}: {message.get('reason')}")

    # -- I/O ------------------------------------------------------------------------------------
    def _poll(self, timeout_ms: float) -> None:
        self.poller.poll(timeout_ms)

    def _service(self, timeout_ms: float) -> None:
        """Wait up to ``timeout_ms`` for I/O, then handle everything pending."""
        events = dict(self.poller.poll(timeout_ms))
        if self.data.sub in events:
            self._drain_data()
        if self.data.pub in events:
            self.data.drain_subscriptions()
        if self.control.socket in events or self.control.backlog:
            for message in self.control.receive_nowait():
                self._on_control(message)
        self._keep_alive()

    def _drain_data(self) -> None:
        """Hand every waiting data message to the inbox.

        "Nothing (more) waiting" is asked of the socket (``EVENTS``, ~1 us) for the first few
        messages rather than learnt from the ``zmq.Again`` of an empty receive: raising and
        catching that costs ~5 us in pyzmq, more than receiving a small message, and a node
        usually finds zero to two messages waiting. A longer burst ends with one ``Again``.
        """
        sub = self.data.sub
        add = self.inbox.add_frames
        getsockopt = sub.getsockopt
        for _ in range(_ASK_EVENTS):
            if not getsockopt(_EVENTS) & _POLLIN:
                return
            frames = receive_frames(sub)
            if frames is None:
                return
            add(frames)
        while (frames := receive_frames(sub)) is not None:
            add(frames)

    def _keep_alive(self) -> None:
        if self.control.heartbeat_due():
            # PDEATHSIG can be lost (a handler swallowing the exception, a platform without
            # prctl); a launcher that died is also seen here, within one heartbeat interval.
            if self.parent_pid is not None and os.getppid() != self.parent_pid:
                raise Interrupted()
            self.control.send("hb", tick=self.stats.tick, steps=self.stats.steps,
                              state=self.stats.state)
        if self.control.silent_for() > self.registry_timeout:
            raise RegistryLost(f"the registry at {self.bus} has been silent for "
                               f"{self.registry_timeout:g} s; the run is gone, stopping")

    def _say_closing(self) -> None:
        """Tell the registry this node has left its run loop and is in close(): the launcher
        then does not take a long close() (a recorder finishing its file) for a stuck node once
        the run is over; the heartbeat deadline still bounds it."""
        self.stats.state = CLOSING_STATE
        try:
            self.control.send("hb", tick=self.stats.tick, steps=self.stats.steps,
                              state=CLOSING_STATE)
        except zmq.ZMQError:
            pass

    def _interrupt(self, signum: int, frame: Any) -> None:
        # Every signal raises until the node is finishing (not only the first one: if node code
        # swallowed that one, the next signal of the launcher's SIGINT/SIGTERM ladder must still
        # work). While finishing, close() runs undisturbed; SIGKILL remains the last resort.
        if not self._finishing:
            raise Interrupted(signum)

    # -- stepping -------------------------------------------------------------------------------
    #: Stepped: for each neighbour, the topics of ours it reads (``Peers.reads_from_me``);
    #: None outside stepped mode, where data never carries progress.
    _carry_needs: list[frozenset[str]] | None = None

    def _call_step(self, t: float, tick: int, inputs: dict[str, Any],
                   through: int | None = None) -> bool:
        """Step and publish. With ``through``, every message carries that progress for its
        topic; returns whether that told every neighbour everything (else the caller sends
        ``catbus/progress``)."""
        self.stats.state = f"stepping tick {tick}"
        began = time.perf_counter()
        outputs = self.node.step(t, inputs)
        self.stats.record_step(time.perf_counter() - began)
        self.stats.tick = tick
        if self.node._end_requested is not None:
            # The end travels in its own progress message, together with the end tick: a peer
            # that learnt "complete through this tick" from a data header without the end could
            # already step the next tick (stepped: _run_stepped sends that message).
            through = None
        return self._publish(outputs, tick, t, through)

    def _publish(self, outputs: dict[str, Any] | None, tick: int, t: float,
                 through: int | None = None) -> bool:
        """Publish a step's outputs. With ``through`` each message carries it: "everything on
        this topic for ticks <= through is sent" (a periodic node publishes a topic at most once
        per step). Returns True when those messages reach every neighbour on every topic it
        reads from us, i.e. no ``catbus/progress`` is needed for this tick."""
        if not outputs:
            return False
        topics = self.output_topics
        publish = self.data.publish
        for declared, value in outputs.items():
            topic = topics.get(declared)
            if topic is None:
                raise ValueError(f"node {self.name} returned {declared!r}, which is not one of its "
                                 f"declared outputs {list(topics)}")
            publish(topic, value, tick, t, through)
        if through is None or self._carry_needs is None:
            return False
        key = tuple(outputs)
        covered = self._covered.get(key)
        if covered is None:
            published = {topics[declared] for declared in key}
            covered = self._covered[key] = all(
                needs and needs <= published for needs in self._carry_needs)
        return covered

    def _plan_carrying(self) -> None:
        """Stepped mode, from the graph: the inbox counts progress carried by the data of each
        publisher on the topics we read from it, and we know when our data carried all our
        progress to every neighbour."""
        self.inbox.set_sources(self.peers.sources)
        self._carry_needs = list(self.peers.reads_from_me.values())
        self._covered: dict[tuple, bool] = {}

    def _deliver_in_order(self, messages: list) -> None:
        node = self.node
        declared_of = self.inbox.declared_of
        for message in messages:
            if node.wants_raw:
                node.on_raw(message.topic, message.header, message.payload, message.buffers)
            else:
                declared = declared_of.get(message.topic, message.topic)
                try:
                    value = message.value
                except codec.DecodeError:
                    # A bad payload (decoded only now) is counted and skipped, never fatal.
                    self.inbox.malformed += 1
                    continue
                outputs = node.on_message(declared, value)
                self._publish(outputs, message.header.tick, message.header.sim_time)

    def _run_stepped(self) -> None:
        schedule = self.schedule
        assert schedule is not None
        k = schedule.period_ticks(self.name)
        last = schedule.last_tick
        self._plan_carrying()
        # _receive_stepped blocks on the data socket for at most this long; control and
        # subscriptions are looked at when it times out, and every CONTROL_EVERY otherwise.
        self.data.sub.setsockopt(zmq.RCVTIMEO, STEPPED_WAIT_MS)
        self._control_due = 0.0
        while self.started > time.monotonic():
            self._service(1)
        if k is None:
            self._run_stepped_reactive(last)
            return
        node = self.node
        tick = 0
        publisher_of = self.peers.publisher_of
        limits_of = {
            topic: (0 if schedule.precedes(publisher, self.name) else -1)
            for topic, publisher in publisher_of.items()}
        requirements = self._requirements(schedule)
        sim_time = sim_time_function(schedule)
        while True:
            end = self._known_end(last)
            if tick > end:
                break
            waited = time.perf_counter()
            self.stats.state = f"waiting for tick {tick}"
            # No extra receive once ready: being ready means every publisher's progress for the
            # ticks this step may see is in, and each connection is in order, so their data is.
            while not self._ready(tick, requirements):
                self._receive_stepped()
                end = self._known_end(last)
                if tick > end:
                    return
            self.stats.wait_time += time.perf_counter() - waited
            inputs = self.inbox.take_by_tick({t: tick + off for t, off in limits_of.items()})
            through = schedule.completes_through(self.name, tick)
            carried = self._call_step(sim_time(tick), tick, inputs, through)
            if node._end_requested is not None:
                self.stop_reason = node._end_requested
                self.end_tick = tick
                self.data.publish_progress(tick, tick, tick, False)
                return
            if not carried:
                self.data.publish_progress(tick, through, None, False)
            tick += k
            self._keep_alive()

    def _receive_stepped(self) -> None:
        """Stepped: wait for the next data message and hand it to the inbox -- one blocking
        receive, no poll -- and look at the control link and the publishing socket when the
        wait timed out or at least every :data:`CONTROL_EVERY` seconds. One message at a time:
        the caller checks after each whether it may step, and anything else stays queued in
        order for the next call."""
        frames = receive_frames(self.data.sub, wait=True)
        if frames is not None:
            self.inbox.add_frames(frames)
            now = time.monotonic()
            if now < self._control_due:
                return
        else:
            now = time.monotonic()
        self._control_due = now + CONTROL_EVERY
        self._service(0)

    def _known_end(self, last: int) -> int:
        end = last
        if self.end_tick is not None and self.end_tick < end:
            end = self.end_tick
        inbox_end = self.inbox.end
        if inbox_end is not None and inbox_end < end:
            end = inbox_end
        return end

    def _requirements(self, schedule: Schedule) -> list[tuple[str, int]]:
        """``(peer, offset)``: before stepping tick ``t`` the peer must have completed tick
        ``t + offset``. Publishers: the schedule's required tick (``t`` or ``t - 1``);
        subscribers: at most :data:`WINDOW` ticks behind (flow control). Computed once, since
        :meth:`_ready` runs several times per tick."""
        offsets: dict[str, int] = {}
        for publisher in self.peers.publishers:
            offsets[publisher] = schedule.required_tick(self.name, publisher, 0)
        for subscriber in self.peers.subscribers:   # a peer may be both: the stricter counts
            offsets[subscriber] = max(offsets.get(subscriber, -WINDOW), -WINDOW)
        return list(offsets.items())

    def _ready(self, tick: int, requirements: list[tuple[str, int]]) -> bool:
        progress = self.inbox.progress
        for peer, offset in requirements:
            done = progress.get(peer)
            if (-1 if done is None else done.through) < tick + offset:
                return False
        return True

    def _run_stepped_reactive(self, last: int) -> None:
        """A node without a period (the recorder): handle messages in schedule order as soon as
        every publisher has completed their tick."""
        publishers = self.peers.publishers
        # Only flow control reads the progress of a node nobody reads data from (the recorder),
        # so it reports every few ticks instead of every tick: less traffic for everyone.
        report_every = 1 if self.peers.subscribers and self.outputs else max(1, WINDOW // 2)
        reported = -1
        done = -1
        inbox = self.inbox
        through = inbox.through
        seen = -1   # inbox.advances when the frontier was last computed
        self.stats.state = "waiting for tick 0"
        while done < self._known_end(last):
            self._receive_stepped()
            if inbox.advances == seen and self.end_tick is None:
                continue   # no peer progressed: the frontier cannot have moved
            seen = inbox.advances
            end = self._known_end(last)
            frontier = min([through(p) for p in publishers] + [end])
            if frontier > done:
                began = time.perf_counter()
                self._deliver_in_order(self.inbox.take_raw_through(frontier))
                self.stats.record_step(time.perf_counter() - began)
                done = frontier
                self.stats.tick = done
                if done - reported >= report_every:
                    self.data.publish_progress(done, done, None, False)
                    reported = done
                self.stats.state = f"waiting for tick {done + 1}"

    def _run_parallel(self) -> None:
        period = self.period
        while self.started > time.monotonic():
            self._service(max(0.0, (self.started - time.monotonic()) * 1000))
        start = self.started
        end_time = self.duration
        if period is None:
            self._run_parallel_reactive(start, end_time)
            return
        cycle = 0
        node = self.node
        # A node without data inputs still gets progress (the end of the episode) on its data
        # socket, but looking at it every CONTROL_EVERY (in _service) is soon enough.
        reads = bool(self.inbox.by_topic) or self.inbox.wildcard
        serviced = time.monotonic()
        while True:
            due = start + cycle * period
            now = time.monotonic()
            if now < due:
                self._service((due - now) * 1000)
                serviced = now
                continue
            if now - serviced >= CONTROL_EVERY:
                # A node that is always late never waits above, so it must look at its control
                # link here, or it never hears the registry: no stop, no end, and RegistryLost
                # once the registry has been "silent" for the timeout. Looked at no more often
                # than CONTROL_EVERY, so the step-after-step loop pays no system call per step.
                self._service(0)
                serviced = now
            late = int((now - due) / period)
            if late:
                self.stats.overruns += late
                cycle += late
            if end_time is not None and cycle * period > end_time + 1e-9:
                return
            if self.end_tick is not None or self.inbox.end_tick() is not None:
                return
            if reads:
                self._drain_data()
            inputs = self.inbox.take_latest()
            self._call_step(now - start, cycle, inputs)
            if node._end_requested is not None:
                self.stop_reason = node._end_requested
                self.end_tick = cycle
                self.data.publish_progress(cycle, cycle, cycle, False)
                return
            cycle += 1
            # No _keep_alive here: both ways around the loop call _service, which does it.

    def _run_parallel_reactive(self, start: float, end_time: float | None) -> None:
        """Handle messages as they arrive until the run ends.

        A reactive node has no clock of its own to end by, so it normally ends when every
        publisher it reads has finished (their final progress comes after their last data: the
        recorder keeps everything). Once the run is over -- its duration has passed, or the end
        of the episode is known -- it stops waiting for publishers that wait, through reactive
        nodes, for this very node: in a cycle of reactive nodes (ping answering pong answering
        ping) none of them would ever finish first.
        """
        publishers = self.peers.publishers
        node = self.node
        inbox = self.inbox
        stats = self.stats
        sub = self.data.sub
        add = inbox.add_frames
        perf_counter, monotonic = time.perf_counter, time.monotonic
        awaited: list[str] | None = None   # publishers still waited for once the run is over
        stats.state = "waiting for messages"
        # Wait in a blocking receive on the data socket, as a plain pyzmq receiver does: one
        # call per message instead of poll + receive + the zmq.Again of an empty receive. The
        # control link, subscriptions and the end of the run are looked at after a timeout, when
        # something else than a data message came (progress: perhaps the end), and at least
        # every CONTROL_EVERY while messages keep coming.
        sub.setsockopt(zmq.RCVTIMEO, max(1, int(CONTROL_EVERY * 1000)))
        serviced = monotonic()
        while True:
            frames = receive_frames(sub, wait=True)
            check = frames is None or add(frames) is None
            now = monotonic()
            if check or now - serviced >= CONTROL_EVERY:
                self._service(0)
                serviced = now
                check = True
            if inbox.raw:
                messages = inbox.take_raw_all()
                began = perf_counter()
                self._deliver_in_order(messages)
                stats.record_step(perf_counter() - began)
                stats.tick = messages[-1].header.tick
                if node._end_requested is not None:
                    # Ends now, like a periodic node: our peers see the end in our final
                    # progress, the registry relays it to everyone (done{end, end_tick}).
                    self.stop_reason = node._end_requested
                    if self.end_tick is None:
                        self.end_tick = stats.tick
                    return
            if not check:
                continue
            if awaited is None and (
                    self.end_tick is not None or inbox.end_tick() is not None
                    or (end_time is not None and now - start > end_time)):
                cyclic = waits_for_me(self.name, self._graph_nodes)
                awaited = [p for p in publishers if p not in cyclic]
            if inbox.all_final(publishers if awaited is None else awaited) and \
                    (publishers or awaited is not None):
                self._drain_data()
                self._deliver_in_order(inbox.take_raw_all())
                return

    def _publish_final(self) -> None:
        """Tell peers we are done: everything up to the end is complete."""
        last = self.schedule.last_tick if self.schedule else 2**62
        end = self.end_tick
        self.data.publish_progress(self.stats.tick, last if end is None else end, end, True)


def install_signal_handlers(runtime: NodeRuntime) -> None:
    """SIGINT and SIGTERM end the node gracefully: ``close()`` runs, the recording is finished."""
    signal.signal(signal.SIGINT, runtime._interrupt)
    signal.signal(signal.SIGTERM, runtime._interrupt)

