"""``inline`` mode: every node in this process, stepped by plain calls in schedule order.

It is the reference the multi-process modes are checked against, and the fastest way to run.
Each node runs in the same :class:`~catbus.runtime.driver.NodeDriver` as in a node process, with
the same checks; only the ``publish`` callback differs, and a node cannot tell it is running
inline: a reader receives exactly what the wire would give it, ``decode(encode(value))`` (tuples
become lists, arrays read-only copies taken when published, numpy scalars keep their dtype, its
own dicts and lists). Readers of raw frames (the recorder) get the codec's frames; the others get
that value built directly, without the bytes in between (:func:`catbus.wire.localcopy.local_copy`),
which made inline ~1.35x faster on flat_evade. Because steps run in (tick, launch order), "the
newest message so far" is exactly what the schedule lets a node see.

``deadline``: a step or message handler running longer fails the run, naming the node and the
tick (:mod:`catbus.runtime.stepdeadline`; only when the run runs in the main thread).
"""

from __future__ import annotations

import os
import socket
import threading
import time
import traceback
from typing import Any, Callable, Generator

from catbus.errors import NodeFailed
from catbus.spec.launchfile import LaunchSpec
from catbus.supervise.progressbar import RunProgress
from catbus.spec.launchfile import length_reason
from catbus.api.result import RunResult, merge_reported
from catbus.spec.runinfo import build_run_info, schedule_for
from catbus.spec.swapplan import swap_tick
from catbus.runtime.nodestate import replace_node
from catbus.runtime.checkpoints import inline_checkpoints, pack
from catbus.runtime.driver import NodeDriver, Publish
from catbus.runtime.logs import install_terminal, uninstall_terminal
from catbus.runtime.inbox import ALL, InputBinding, LocalMessage, Shared
from catbus.runtime.latency import latency_of, plans_for, reader_keys
from catbus.runtime.simclock import sim_time_function
from catbus.runtime.stepdeadline import StepDeadline, StepOverrun
from catbus.wire import codec
from catbus.wire import localcopy
from catbus.wire.localcopy import NotLocal
from catbus.runtime.liveparams import LiveParams, scheduled_changes
from catbus.wire.protocol import SWAP_TOPIC


class InlineRun:
    """One inline run of a launch spec."""

    def __init__(self, spec: LaunchSpec, *, progress: bool | None = None,
                 deadline: float | None = None, stop: threading.Event | None = None,
                 log_level: str | None = None, pause_before: str | None = None) -> None:
        self.spec = spec
        self.stop = stop
        #: :meth:`steps` stops before each step of this node (None: never).
        self.pause_before = pause_before
        self.interrupted = False
        self.schedule = schedule_for(spec)
        self.run_info = build_run_info(spec, self.schedule, log_level)
        #: node -> the bytes of its latest checkpoint (``checkpoint: N``)
        self.checkpoints: dict[str, bytes] = {}
        self.log_level = self.run_info["log_level"]
        order = {n.name: i for i, n in enumerate(spec.nodes)}
        self.sent = {n.name: 0 for n in spec.nodes}
        #: Scheduled swaps (``swap:``): each node's current incarnation (its publisher stamps
        #: it on the messages raw readers get, as a process would).
        self.incarnations: dict[str, int] = {}
        self.publishers = {n.name: self._publisher(n.name) for n in spec.nodes}
        self.drivers: dict[str, NodeDriver] = {
            n.name: NodeDriver(
                n.node_class, n.name,
                inputs=[InputBinding(b.declared, b.topic, b.policy) for b in n.inputs],
                outputs=[(b.declared, b.topic) for b in n.outputs], period=n.period,
                order=order, publish=self.publishers[n.name])
            for n in spec.nodes}
        #: Each node's current class, and the swaps done (``RunResult.swaps``).
        self.class_paths = {n.name: n.class_path for n in spec.nodes}
        self.swaps: list[dict[str, Any]] = []
        #: Which node ended the episode, at which tick (None: none did).
        self.ended_by: dict[str, Any] | None = None
        readers: dict[str, list[NodeDriver]] = {}
        for driver in self.drivers.values():
            for binding in driver.inbox.inputs:
                if binding.topic != ALL:
                    readers.setdefault(binding.topic, []).append(driver)
        self.wildcard = [d for d in self.drivers.values() if d.inbox.wildcard]
        #: topic -> who gets it: its readers, then the wildcard readers
        self.readers = {topic: found + self.wildcard for topic, found in readers.items()}
        self.progress = RunProgress(self.schedule, None, enabled=progress)
        self.watch = StepDeadline(deadline)
        #: Latency: node -> {topic: offset} for the readers of a publisher with latency, which
        #: take their inputs by tick as in stepped (see :func:`latency_limits`).
        self.limits = latency_limits(spec, self.schedule, self.run_info, self.drivers)

    def run(self) -> RunResult:
        """Run to the end (a run without :attr:`pause_before`: nothing to resume)."""
        return run_to_end(self.steps())

    def steps(self) -> Generator[tuple[int, dict[str, Any]], None, RunResult]:
        """The run as a generator that stops before each step of the node :attr:`pause_before`
        names, yielding ``(tick, inputs)``, and returns the :class:`RunResult` (catbus.gym
        drives an episode this way, in the trainer's thread). Closing it closes every node."""
        began = time.monotonic()
        end_reason = None
        set_up: list[NodeDriver] = []
        terminal = install_terminal(self.log_level)
        try:
            for node in self.spec.nodes:
                driver = self.drivers[node.name]
                _guard(driver, "setup", driver.setup, node.params, self.spec.seed, self.run_info,
                       self.log_level)
                set_up.append(driver)
                # Parameter changes scheduled at ticks (a replay of live ones): applied before
                # those steps, as a node process does (catbus.runtime.liveparams).
                LiveParams(driver, self.publishers[node.name], None,
                           scheduled_changes(self.run_info, node.name))
            try:
                with self.watch:
                    end_reason = yield from self._loop()
            except StepOverrun as overrun:
                raise NodeFailed(_overrun_message(self.drivers[overrun.node], overrun)) from None
        finally:
            try:
                for driver in reversed(set_up):
                    _guard(driver, "close", driver.close)
                self.progress.close()
            finally:
                uninstall_terminal(terminal)
        nodes = {name: dict(driver.summary(self.sent[name]), state="done")
                 for name, driver in self.drivers.items()}
        if end_reason is None:   # every run says why it ended
            end_reason = "stopped (stop requested)" if self.interrupted else \
                length_reason(self.spec)
        scores = merge_reported({name: d.scores for name, d in self.drivers.items()})
        return RunResult(self.spec, nodes, time.monotonic() - began, end_reason,
                         interrupted=self.interrupted, scores=scores, swaps=self.swaps,
                         ended_by=self.ended_by)

    def _loop(self) -> Generator[tuple[int, dict[str, Any]], None, str | None]:
        # Schedule.iter_steps written out (same order: every tick, the periodic nodes due then
        # in launch order), with the calls made per step inlined (_guard, the watch's
        # begin/resume, the generator): each was ~0.5-1% of a flat_evade tick.
        schedule = self.schedule
        watch = self.watch
        watching = watch.active
        end_tick: int | None = None
        end_reason = None
        registry_view = _ProgressView()
        sim_time = sim_time_function(schedule)
        stopping = self.stop.is_set if self.stop is not None else None
        periodic = [(self.drivers[name], name, k, self.limits.get(name))
                    for name in schedule.order if (k := schedule.ticks_per_period[name])]
        swaps = {(entry.node, swap_tick(schedule, entry.node, entry.at)): entry
                 for entry in self.spec.swaps}
        next_swap = min((tick for _, tick in swaps), default=None)
        # checkpoint: N -- taken at the ticks a stepped run takes them (catbus.runtime.
        # checkpoints), kept in memory: nothing dies here, but the node is called the same way.
        keep = inline_checkpoints(schedule, self.run_info)
        pace = self.spec.pace
        paused = self.drivers.get(self.pause_before) if self.pause_before else None
        began = time.monotonic()
        for tick in range(schedule.last_tick + 1):
            if end_tick is not None and tick > end_tick:
                break
            t = sim_time(tick)
            if pace is not None and (delay := began + t / pace - time.monotonic()) > 0:
                time.sleep(delay)
            for driver, name, k, limits in periodic:
                if k != 1 and tick % k:
                    continue
                if stopping is not None and stopping():
                    self.interrupted = True   # as Ctrl-C: between two steps, every node closed
                    return end_reason
                announce = None
                if keep and tick and name in keep and not tick % keep[name]:
                    self.checkpoints[name] = _guard(driver, "snapshot", pack, driver.node,
                                                    driver.scores, {})
                if next_swap is not None and tick >= next_swap and (name, tick) in swaps:
                    announce = self._swap(driver, swaps.pop((name, tick)), tick, t)
                    next_swap = min((tick for _, tick in swaps), default=None)
                inputs = driver.inbox.take_latest() if limits is None else \
                    driver.inbox.take_by_tick({topic: tick + offset
                                               for topic, offset in limits.items()})
                if driver is paused:
                    yield tick, inputs   # (the caller's time: no deadline runs meanwhile)
                if watching:
                    previous = watch.current
                    watch.current = (name, tick, "step")
                try:
                    outcome = driver.step(tick, t, inputs)
                except (KeyboardInterrupt, NodeFailed):
                    raise
                except Exception as exc:
                    raise _failed(driver, "step", exc) from exc
                if watching:
                    watch.current = previous
                if announce is not None:
                    self.publishers[name](SWAP_TOPIC, announce, tick, t, None)
                if outcome.ended is not None and end_tick is None:
                    # The rest of this tick still runs (every node stops after the end tick,
                    # as in stepped); the first node to end names the reason.
                    end_tick, end_reason = tick, outcome.ended
                    self.ended_by = {"node": name, "tick": tick}
            if tick % 256 == 0:
                registry_view.tick = tick
                self.progress.update(registry_view)
        return end_reason

    def _swap(self, driver: NodeDriver, entry: Any, tick: int, t: float) -> dict[str, Any]:
        """A scheduled swap, between two steps: the node's next step is the new class's first,
        as in a stepped run. Returns the ``catbus/swap`` event, published after that step (as
        the replacement process does)."""
        name = entry.node
        old = {"incarnation": self.incarnations.get(name, 1), "pid": os.getpid(),
               "host": socket.gethostname(), "class": self.class_paths[name]}
        restored = _guard(driver, "setup", replace_node, driver, entry.node_class, entry.params,
                          self.spec.seed, self.run_info, self.log_level)
        self.incarnations[name] = old["incarnation"] + 1
        self.class_paths[name] = entry.class_path or self.class_paths[name]
        new = dict(old, incarnation=self.incarnations[name])
        new["class"] = self.class_paths[name]
        state = "restored" if restored else "fresh"
        self.swaps.append({"node": name, "kind": "swap", "tick": tick, "old": old, "new": new,
                           "state": state, "gap": None, "at": time.time()})
        return {"node": name, "kind": "swap", "tick": tick, "sim_time": t, "old": old,
                "new": new, "params": entry.params, "state": state, "gap": None}

    def _publisher(self, name: str) -> Publish:
        """The ``publish`` callback of node ``name``: deliver to every reader's inbox (and
        straight on to the handlers of reactive readers) what the wire would deliver.

        Readers that want raw frames (the recorder) get the codec's frames, with the buffers
        copied as the wire copies them. Every other reader gets the value ``decode(encode(
        value))`` would give, built directly by :func:`localcopy.local_copy` (no bytes in between:
        the codec round trip of ~40 small arrays per step was most of inline's overhead), once
        per message, each reader its own containers; values it does not handle go through the
        codec as before. A message no one reads is still checked (:func:`localcopy.check_local`),
        so an unsendable value fails the run as in every mode."""
        sent = self.sent
        routes: dict[str, _Route] = {}
        handle = self._handle
        wall_time = time.time
        local_copy = localcopy.local_copy
        Header = codec.Header
        incarnations = self.incarnations   # a scheduled swap makes the node's next process

        def publish(topic: str, value: Any, tick: int, t: float, through: int | None) -> None:
            route = routes.get(topic)
            if route is None:
                route = routes[topic] = self._route(name, topic)
            number = route.seq
            now = wall_time()
            frames = shared = None
            if route.raw:
                frames = _frames(topic, Header(name, number, tick, t, now, None,
                                               incarnations.get(name, 1)), value)
            if route.local:
                try:
                    shared = Shared(local_copy(value), route.local)
                except NotLocal:
                    if frames is None:
                        frames = _frames(topic, Header(name, number, tick, t, now, None,
                                               incarnations.get(name, 1)), value)
            elif frames is None:
                localcopy.check_local(value)
            route.seq = number + 1
            sent[name] += 1
            # In the readers' order (as before: the order reactive handlers run in, and so the
            # order the recorder writes their outputs in).
            for reader, inbox, in_order, raw in route.readers:
                if raw or shared is None:
                    inbox.add_frames(frames)
                else:
                    inbox.add_local(LocalMessage(topic, name, number, tick, t, now, shared))
                if in_order:
                    handle(reader, tick)

        return publish

    def _route(self, name: str, topic: str) -> "_Route":
        """Who gets ``name``'s messages on ``topic``, in delivery order."""
        return _Route([(r, r.inbox, r.inbox.in_order, r.node_class.wants_raw)
                       for r in self.readers.get(topic, self.wildcard) if r.name != name])

    def _handle(self, reader: NodeDriver, tick: int) -> None:
        """A reactive reader handles what it has received, now."""
        messages = reader.inbox.take_raw_all()
        if not messages:
            return
        where = "on_raw" if reader.node.wants_raw else "on_message"
        previous = self.watch.begin(reader.name, tick, where)
        _guard(reader, where, reader.deliver, messages)
        self.watch.resume(previous)


def run_to_end(steps: Generator[Any, None, RunResult]) -> RunResult:
    """Resume :meth:`InlineRun.steps` until the run is over; its result."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value


def _overrun_message(driver: NodeDriver, overrun: StepOverrun) -> str:
    """The failure of a run whose node ``driver`` ran past the deadline."""
    done = driver.stats.tick
    last = f"last completed: tick {done}" if done >= 0 else "none completed before"
    return (f"node {overrun.node} failed: stuck in {overrun.what} at tick {overrun.tick} for "
            f"more than the {overrun.deadline:g} s deadline ({last})")


def latency_limits(spec: LaunchSpec, schedule: Any, run_info: dict[str, Any],
                   drivers: dict[str, NodeDriver]) -> dict[str, dict[str, int]]:
    """Readers of a publisher with latency (:mod:`catbus.runtime.latency`) file its messages
    by when they become visible, and take their inputs by tick, with the limits a stepped node
    uses (:func:`catbus.runtime.lockstep.input_limits`): what was published so far is no longer
    all they may see. Every other reader takes the newest so far, as before. Returns ``{reader:
    {topic: offset}}`` for the former."""
    plans = plans_for(latency_of(run_info), spec.seed, schedule)
    if not plans:
        return {}
    publisher_of = spec.publishers()
    everything = schedule.last_tick + 1   # a topic no node of the run publishes
    limits = {}
    for name, driver in drivers.items():
        inbox = driver.inbox
        if inbox.in_order:
            continue
        topics = {topic: publisher_of.get(topic) for topic in inbox.by_topic}
        keys = reader_keys(name, {t: p for t, p in topics.items() if p is not None}, plans,
                           schedule)
        if keys:
            inbox.set_latency(keys)
            limits[name] = {topic: everything if p is None else
                            0 if schedule.precedes(p, name) else -1
                            for topic, p in topics.items()}
    return limits


def _guard(driver: NodeDriver, where: str, function: Callable[..., Any], *args: Any) -> Any:
    """Call node code; an exception becomes NodeFailed naming the node and the call."""
    try:
        return function(*args)
    except (KeyboardInterrupt, NodeFailed):
        raise
    except Exception as exc:
        raise _failed(driver, where, exc) from exc


def _failed(driver: NodeDriver, where: str, exc: Exception) -> NodeFailed:
    """The NodeFailed for an exception out of node code (called inside its ``except``)."""
    return NodeFailed(f"node {driver.name} failed in {where}: {type(exc).__name__}: "
                      f"{exc}\n{traceback.format_exc()}")


class _Route:
    """One publisher's topic: its readers, each as ``(driver, inbox, handles messages as they
    arrive, wants raw frames)``; how many want raw frames and how many values; the next
    sequence number."""

    __slots__ = ("readers", "raw", "local", "seq")

    def __init__(self, readers: list[tuple[NodeDriver, Any, bool, bool]]) -> None:
        self.readers = readers
        self.raw = sum(1 for *_, raw in readers if raw)
        self.local = len(readers) - self.raw
        self.seq = 0


def _frames(topic: str, header: codec.Header, value: Any) -> list:
    """The frames of a message as a receiver gets them: the wire gives the receiver its own
    copy of every buffer."""
    frames = codec.encode_message(topic, header, value)
    return [frames[0], *(bytes(buffer) for buffer in frames[1:])]


class _ProgressView:
    """The bit of the registry interface :class:`RunProgress` reads, for the inline loop."""

    started = True
    tick = 0

    def min_tick(self) -> int:
        return self.tick


def run_inline(spec: LaunchSpec, *, progress: bool | None = None,
               deadline: float | None = None, stop: threading.Event | None = None,
               log_level: str | None = None) -> RunResult:
    """Run ``spec`` inline. ``deadline`` (seconds, None: none) bounds every step and message
    handler, like ``--deadline`` bounds a node process's silence (only when called in the main
    thread: see :mod:`catbus.runtime.stepdeadline`). ``stop``: once set, the run ends between
    two steps as Ctrl-C ends it (the result says ``interrupted``). ``log_level``: the nodes'
    logs at that level and above go to stderr and the recording (default WARNING)."""
    return InlineRun(spec, progress=progress, deadline=deadline, stop=stop,
                     log_level=log_level).run()
