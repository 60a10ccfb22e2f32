"""``inline`` mode: every node in this process, stepped by plain calls in schedule order.

It is the reference the multi-process modes are checked against, and the fastest way to run.
Messages still go through the codec (encode to frames, buffers copied as the wire would, decode
into read-only arrays), through the same :class:`~catbus.runtime.inbox.Inbox` the other runners use, so a
node cannot tell it is running inline. Because steps run in (tick, launch order), "the newest
message so far" is exactly what the schedule lets a node see.
"""

from __future__ import annotations

import time
from typing import Any

from catbus.wire import codec
from catbus.errors import NodeFailed
from catbus.runtime.inbox import ALL, Inbox, InputBinding
from catbus.launch.launchfile import LaunchSpec
from catbus.node import Node
from catbus.launch.progressbar import RunProgress
from catbus.launch.result import RunResult
from catbus.launch.runinfo import build_run_info, schedule_for
from catbus.runtime.simclock import sim_time_function
from catbus.runtime.stats import NodeStats


class _Member:
    """A node instance with its inbox, statistics and output topic map."""

    def __init__(self, spec: Any, order: dict[str, int]) -> None:
        self.spec = spec
        self.name = spec.name
        self.node: Node = spec.node_class()
        bindings = [InputBinding(b.declared, b.topic, b.policy) for b in spec.inputs]
        self.inbox = Inbox(bindings, order, reactive=spec.period is None)
        self.outputs = {b.declared: b.topic for b in spec.outputs}
        self.stats = NodeStats()
        self.sent = 0


class InlineRun:
    """One inline run of a launch spec."""

    def __init__(self, spec: LaunchSpec, *, progress: bool | None = None) -> None:
        self.spec = spec
        self.schedule = schedule_for(spec)
        self.run_info = build_run_info(spec, self.schedule)
        order = {n.name: i for i, n in enumerate(spec.nodes)}
        self.members = {n.name: _Member(n, order) for n in spec.nodes}
        self.seq: dict[tuple[str, str], int] = {}
        self.readers: dict[str, list[_Member]] = {}
        for member in self.members.values():
            for binding in member.inbox.inputs:
                if binding.topic != ALL:
                    self.readers.setdefault(binding.topic, []).append(member)
        self.wildcard = [m for m in self.members.values() if m.inbox.wildcard]
        self.progress = RunProgress(self.schedule, None, enabled=progress)

    def run(self) -> RunResult:
        began = time.monotonic()
        end_reason = None
        set_up: list[_Member] = []
        try:
            for member in self.members.values():
                member.node.bind(member.name, self.spec.seed, member.spec.period, self.run_info)
                self._guard(member, "setup", member.node.setup, member.spec.params)
                set_up.append(member)
            end_reason = self._loop()
        finally:
            for member in reversed(set_up):
                self._guard(member, "close", member.node.close)
            self.progress.close()
        nodes = {m.name: dict(m.stats.to_dict(None, m.inbox), sent=m.sent, state="done")
                 for m in self.members.values()}
        return RunResult(self.spec, nodes, time.monotonic() - began, end_reason)

    def _loop(self) -> str | None:
        schedule = self.schedule
        end_tick: int | None = None
        end_reason = None
        registry_view = _ProgressView()
        sim_time = sim_time_function(schedule)
        for tick, name in schedule.steps():
            if end_tick is not None and tick > end_tick:
                break
            member = self.members[name]
            node = member.node
            inputs = member.inbox.take_latest()
            member.stats.state = f"stepping tick {tick}"
            t = sim_time(tick)
            started = time.perf_counter()
            outputs = self._guard(member, "step", node.step, t, inputs)
            member.stats.record_step(time.perf_counter() - started)
            member.stats.tick = tick
            self._publish(member, outputs, tick, t)
            if node._end_requested is not None and end_tick is None:
                end_tick, end_reason = tick, node._end_requested
            if tick % 256 == 0:
                registry_view.tick = tick
                self.progress.update(registry_view)
        return end_reason

    def _publish(self, member: _Member, outputs: dict[str, Any] | None, tick: int,
                 t: float) -> None:
        if not outputs:
            return
        for declared, value in outputs.items():
            topic = member.outputs.get(declared)
            if topic is None:
                raise NodeFailed(f"node {member.name} failed: it returned {declared!r}, which is "
                                 f"not one of its declared outputs {list(member.outputs)}")
            key = (member.name, topic)
            seq = self.seq.get(key, 0)
            self.seq[key] = seq + 1
            header = codec.Header(member.name, seq, tick, t, time.time())
            frames = codec.encode_message(topic, header, value)
            # What the wire does: the receiver gets its own copy of every buffer.
            frames = [*frames[:3], *(bytes(buffer) for buffer in frames[3:])]
            member.sent += 1
            for reader in self.readers.get(topic, []) + self.wildcard:
                if reader is not member:
                    self._deliver(reader, frames)

    def _deliver(self, reader: _Member, frames: list) -> None:
        reader.inbox.add_frames(frames)
        if not reader.inbox.in_order:
            return
        node = reader.node
        for message in reader.inbox.take_raw_all():
            started = time.perf_counter()
            if node.wants_raw:
                self._guard(reader, "on_raw", node.on_raw, message.topic, message.header,
                            message.payload, message.buffers)
            else:
                declared = reader.inbox.declared_of.get(message.topic, message.topic)
                outputs = self._guard(reader, "on_message", node.on_message, declared,
                                      message.value)
                self._publish(reader, outputs, message.header.tick, message.header.sim_time)
            reader.stats.record_step(time.perf_counter() - started)

    @staticmethod
    def _guard(member: _Member, where: str, function: Any, *args: Any) -> Any:
        """Call node code; an exception becomes NodeFailed naming the node and the call."""
        try:
            return function(*args)
        except (KeyboardInterrupt, NodeFailed):
            raise
        except Exception as exc:
            import traceback

            raise NodeFailed(f"node {member.name} failed in {where}: {type(exc).__name__}: "
                             f"{exc}\n{traceback.format_exc()}") from exc


class _ProgressView:
    """The bit of the registry interface :class:`RunProgress` reads, for the inline loop."""

    started = True
    tick = 0

    def min_tick(self) -> int:
        return self.tick


def run_inline(spec: LaunchSpec, *, progress: bool | None = None) -> RunResult:
    return InlineRun(spec, progress=progress).run()
