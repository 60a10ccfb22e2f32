"""``inline`` mode: every node in this process, stepped by plain calls in schedule order.

It is the reference the multi-process modes are checked against, and the fastest way to run.
Each node runs in the same :class:`~catbus.runtime.driver.NodeDriver` as in a node process, with
the same checks; only the ``publish`` callback differs: messages still go through the codec
(encode to frames, buffers copied as the wire would, decode into read-only arrays) and into the
other drivers' inboxes, so a node cannot tell it is running inline. Because steps run in (tick,
launch order), "the newest message so far" is exactly what the schedule lets a node see.

``deadline``: a step or message handler running longer fails the run, naming the node and the
tick (:mod:`catbus.runtime.stepdeadline`; only when the run runs in the main thread).
"""

from __future__ import annotations

import threading
import time
import traceback
from typing import Any, Callable

from catbus.errors import NodeFailed
from catbus.launch.launchfile import LaunchSpec
from catbus.launch.progressbar import RunProgress
from catbus.launch.launchfile import max_steps_reason
from catbus.launch.result import RunResult, merge_reported
from catbus.launch.runinfo import build_run_info, schedule_for
from catbus.runtime.driver import NodeDriver, Publish
from catbus.runtime.inbox import ALL, InputBinding
from catbus.runtime.simclock import sim_time_function
from catbus.runtime.stepdeadline import StepDeadline, StepOverrun
from catbus.wire import codec


class InlineRun:
    """One inline run of a launch spec."""

    def __init__(self, spec: LaunchSpec, *, progress: bool | None = None,
                 deadline: float | None = None, stop: threading.Event | None = None) -> None:
        self.spec = spec
        self.stop = stop
        self.interrupted = False
        self.schedule = schedule_for(spec)
        self.run_info = build_run_info(spec, self.schedule)
        order = {n.name: i for i, n in enumerate(spec.nodes)}
        self.seq: dict[tuple[str, str], int] = {}
        self.drivers: dict[str, NodeDriver] = {
            n.name: NodeDriver(
                n.node_class, n.name,
                inputs=[InputBinding(b.declared, b.topic, b.policy) for b in n.inputs],
                outputs=[(b.declared, b.topic) for b in n.outputs], period=n.period,
                order=order, publish=self._publisher(n.name))
            for n in spec.nodes}
        self.sent = dict.fromkeys(self.drivers, 0)
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

    def run(self) -> RunResult:
        began = time.monotonic()
        end_reason = None
        set_up: list[NodeDriver] = []
        try:
            for node in self.spec.nodes:
                driver = self.drivers[node.name]
                _guard(driver, "setup", driver.setup, node.params, self.spec.seed, self.run_info)
                set_up.append(driver)
            try:
                with self.watch:
                    end_reason = self._loop()
            except StepOverrun as overrun:
                raise NodeFailed(self._overrun_message(overrun)) from None
        finally:
            for driver in reversed(set_up):
                _guard(driver, "close", driver.close)
            self.progress.close()
        nodes = {name: dict(driver.summary(self.sent[name]), state="done")
                 for name, driver in self.drivers.items()}
        if end_reason is None and not self.interrupted and self.spec.bounded_by_max_steps:
            end_reason = max_steps_reason(self.spec.max_steps)
        scores = merge_reported({name: d.scores for name, d in self.drivers.items()})
        return RunResult(self.spec, nodes, time.monotonic() - began, end_reason,
                         interrupted=self.interrupted, scores=scores)

    def _loop(self) -> str | None:
        schedule = self.schedule
        drivers = self.drivers
        watch = self.watch
        end_tick: int | None = None
        end_reason = None
        registry_view = _ProgressView()
        sim_time = sim_time_function(schedule)
        stopping = self.stop.is_set if self.stop is not None else None
        for tick, name in schedule.iter_steps():
            if end_tick is not None and tick > end_tick:
                break
            if stopping is not None and stopping():
                self.interrupted = True   # as Ctrl-C: between two steps, every node closed
                break
            driver = drivers[name]
            previous = watch.begin(name, tick)
            _guard(driver, "step", driver.step, tick, sim_time(tick), driver.inbox.take_latest())
            watch.resume(previous)
            driver.completed = tick
            if end_tick is None and driver.end_requested is not None:
                end_tick, end_reason = tick, driver.end_requested
            if tick % 256 == 0:
                registry_view.tick = tick
                self.progress.update(registry_view)
        return end_reason

    def _publisher(self, name: str) -> Publish:
        """The ``publish`` callback of node ``name``: encode as the wire does, deliver to every
        reader's inbox (and straight on to the handlers of reactive readers)."""
        seq = self.seq

        def publish(topic: str, value: Any, tick: int, t: float, through: int | None) -> None:
            key = (name, topic)
            number = seq.get(key, 0)
            seq[key] = number + 1
            header = codec.Header(name, number, tick, t, time.time())
            frames = codec.encode_message(topic, header, value)
            # What the wire does: the receiver gets its own copy of every buffer.
            frames = [frames[0], *(bytes(buffer) for buffer in frames[1:])]
            self.sent[name] += 1
            for reader in self.readers.get(topic, self.wildcard):
                if reader.name != name:
                    self._deliver(reader, frames, tick)

        return publish

    def _deliver(self, reader: NodeDriver, frames: list, tick: int) -> None:
        inbox = reader.inbox
        inbox.add_frames(frames)
        if not inbox.in_order:
            return
        messages = inbox.take_raw_all()
        if not messages:
            return
        where = "on_raw" if reader.node.wants_raw else "on_message"
        previous = self.watch.begin(reader.name, tick, where)
        _guard(reader, where, reader.deliver, messages)
        self.watch.resume(previous)

    def _overrun_message(self, overrun: StepOverrun) -> str:
        driver = self.drivers[overrun.node]
        done = driver.stats.tick
        last = f"last completed: tick {done}" if done >= 0 else "none completed before"
        return (f"node {overrun.node} failed: stuck in {overrun.what} at tick {overrun.tick} for "
                f"more than the {overrun.deadline:g} s deadline ({last})")


def _guard(driver: NodeDriver, where: str, function: Callable[..., Any], *args: Any) -> Any:
    """Call node code; an exception becomes NodeFailed naming the node and the call."""
    try:
        return function(*args)
    except (KeyboardInterrupt, NodeFailed):
        raise
    except Exception as exc:
        raise NodeFailed(f"node {driver.name} failed in {where}: {type(exc).__name__}: "
                         f"{exc}\n{traceback.format_exc()}") from exc


class _ProgressView:
    """The bit of the registry interface :class:`RunProgress` reads, for the inline loop."""

    started = True
    tick = 0

    def min_tick(self) -> int:
        return self.tick


def run_inline(spec: LaunchSpec, *, progress: bool | None = None,
               deadline: float | None = None, stop: threading.Event | None = None) -> RunResult:
    """Run ``spec`` inline. ``deadline`` (seconds, None: none) bounds every step and message
    handler, like ``--deadline`` bounds a node process's silence (only when called in the main
    thread: see :mod:`catbus.runtime.stepdeadline`). ``stop``: once set, the run ends between
    two steps as Ctrl-C ends it (the result says ``interrupted``)."""
    return InlineRun(spec, progress=progress, deadline=deadline, stop=stop).run()
