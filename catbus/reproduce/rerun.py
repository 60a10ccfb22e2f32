"""``catbus reproduce``: a recorded parallel run stepped again in one process (docs/reproduce.md).

Every node of the recording's launch document is built again, as ``inline`` builds it (the
same :class:`~catbus.runtime.driver.NodeDriver`, the same seed), and each of its recorded steps
is run again at its recorded cycle and time, given exactly the input messages the step log says
it consumed, taken from the other nodes' outputs computed again (or from the recording, for
nodes that are not run again: those without a step log). Steps go in an order consistent with
what they consumed (:func:`catbus.reproduce.plan.order_steps`), so each node sees what it saw.

Without changes, every message computed again is compared, byte for byte, with the recorded
one of the same publisher, incarnation and sequence number: that is ``catbus verify RUN.mcap``.
With changes (``--set``, ``--swap``: a what-if), the timing is kept and the inputs are taken by
position (:meth:`catbus.reproduce.streams.Streams.choose`); nothing is compared.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Mapping, Sequence

from catbus.errors import CatbusError, ConfigError, NodeFailed
from catbus.reproduce.plan import Consumed, Producers, Step, order_steps, time_ns
from catbus.reproduce.compare import Checker, Difference, Outcome
from catbus.reproduce.source import Key, RecordedRun
from catbus.reproduce.streams import Stored, Streams
from catbus.runtime.driver import NodeDriver, Publish
from catbus.runtime.inbox import InputBinding
from catbus.runtime.nodestate import replace_node
from catbus.runtime.steplog import DEFAULT_BATCH
from catbus.spec.launchfile import build_launch
from catbus.spec.nodeclass import import_node_class
from catbus.spec.nodelist import RECORDER_CLASS
from catbus.spec.runinfo import build_run_info, schedule_for
from catbus.wire import codec
from catbus.wire.protocol import RESERVED_PREFIX, STEPS_TOPIC, SWAP_TOPIC


def build_spec(run: RecordedRun, overrides: Sequence[str], swaps: Mapping[str, str],
               record: str | Path | None) -> Any:
    """The launch spec of the reproduction: the recorded document without its recorder (one
    is attached for ``record``), with the what-if's changes."""
    document = copy.deepcopy(run.launch)
    nodes = document.get("nodes") if isinstance(document, dict) else None
    if not isinstance(nodes, dict):
        raise CatbusError(f"{run.path}: its launch document has no nodes")
    for name in [n for n, e in nodes.items()
                 if isinstance(e, dict) and e.get("class") == RECORDER_CLASS]:
        del nodes[name]
    document["record"] = None
    for name, class_path in swaps.items():
        if name not in nodes:
            raise ConfigError("--swap", name, f"no node {name!r} in the recording (it has: "
                              f"{', '.join(nodes)})")
        nodes[name]["class"] = class_path
    return build_launch(document, where=str(run.path), base_dir=run.path.parent,
                        mode="parallel", record=record, overrides=list(overrides))


class Rerun:
    """One reproduction of a :class:`RecordedRun` (see the module docstring)."""

    def __init__(self, run: RecordedRun, *, overrides: Sequence[str] = (),
                 swaps: Mapping[str, str] | None = None, record: str | Path | None = None,
                 log_level: str | None = None) -> None:
        swaps = dict(swaps or {})
        if record is not None and Path(record).resolve() == run.path.resolve():
            raise ConfigError("--record", str(record), "is the recording being reproduced; "
                              "give another path")
        self.run = run
        self.what_if = bool(overrides or swaps)
        self.changed = set(swaps) | {o.split(".", 1)[0] for o in overrides}
        self.spec = spec = build_spec(run, overrides, swaps, record)
        self.run_info = build_run_info(spec, schedule_for(spec), log_level)
        self.run_info["reproduced_from"] = str(run.path)
        order = {n.name: i for i, n in enumerate(spec.nodes)}
        self.order = order
        self.outcome = Outcome(losses=list(run.losses), record=Path(record) if record else None)
        self.streams = Streams()
        self.checker = Checker(run, self.outcome, self.what_if)
        self.seq: dict[str, dict[str, int]] = {}
        self.incarnation: dict[str, int] = {}
        self.stepping: dict[str, int] = {}     # node -> index of the step it is in
        self.drivers: dict[str, NodeDriver] = {}
        self.recorder: NodeDriver | None = None
        logged = set(run.steps)
        for node in spec.nodes:
            driver = NodeDriver(node.node_class, node.name,
                                inputs=[InputBinding(b.declared, b.topic, b.policy)
                                        for b in node.inputs],
                                outputs=[(b.declared, b.topic) for b in node.outputs],
                                period=node.period, order=order, publish=self._publisher(node.name))
            if node.class_path == RECORDER_CLASS:
                self.recorder = driver
            elif node.name in logged and node.period is not None:
                self.drivers[node.name] = driver
        self.outcome.nodes = list(self.drivers)
        #: node -> {topic: the key of the newest message it was given}
        self.fed: dict[str, dict[str, tuple[int, int]]] = {name: {} for name in self.drivers}
        self.pending_log: dict[str, list[Any]] = {name: [] for name in self.drivers}
        self.producers = Producers(run.steps, {k: v[0] for k, v in run.messages.items()})
        self._preload()

    # -- preparing ------------------------------------------------------------------------------
    def _preload(self) -> None:
        """Messages of publishers that are not run again come from the recording (and go into
        ``--record``'s file by their recorded times, among the steps: :meth:`_pass_on`)."""
        self.replayed: list[tuple[int, Stored]] = []
        for key in self.run.order:
            if key[1] not in self.drivers:
                stored = self._from_recording(key)
                if stored is not None:
                    self.replayed.append((self.run.messages[key][0], stored))
        self.replayed.sort(key=lambda entry: entry[0])
        self.replayed.reverse()   # popped from the end, earliest first

    def _pass_on(self, until_ns: int | None) -> None:
        """Recorded messages of nodes not run again, up to that time (None: all), to the
        recorder of ``--record``."""
        replayed = self.replayed
        while replayed and (until_ns is None or replayed[-1][0] <= until_ns):
            stored = replayed.pop()[1]
            if self.recorder is not None:
                self.recorder.deliver([stored.received()])

    def _from_recording(self, key: Key) -> Stored | None:
        found = self.run.messages.get(key)
        if found is None:
            return None
        when, data = found
        topic, publisher, incarnation, seq = key
        payload, buffers = codec.split_record_bytes(data)
        base = self.run.metadata.get("base_tick_ns")
        tick = when // base if isinstance(base, int) and base > 0 else 0
        header = codec.Header(publisher, seq, tick, when / 1e9, 0.0, None, incarnation)
        stored = Stored((incarnation, seq), [codec.envelope(codec.topic_frame(topic),
                                                            header.pack(), payload), *buffers],
                        -1, tick)
        self.streams.add(topic, stored)
        self.outcome.from_recording += 1
        return stored

    def _needs(self, step: Step) -> list[tuple[str, int]]:
        needs = []
        for consumed in step.consumed:
            if consumed is not None and consumed.publisher in self.drivers:
                index = self.producers.step_of(consumed)
                if index is not None:
                    needs.append((consumed.publisher, index))
        return needs

    # -- running --------------------------------------------------------------------------------
    def execute(self) -> Outcome:
        """Set every node up, run every step, close every node; the outcome."""
        steps = {name: self.run.steps[name] for name in self.drivers}
        ordered = order_steps(steps, self._needs, self.order)
        set_up: list[NodeDriver] = []
        try:
            for node in self.spec.nodes:
                driver = self.drivers.get(node.name) or (
                    self.recorder if node.class_path == RECORDER_CLASS else None)
                if driver is not None:
                    driver.setup(node.params, self.spec.seed, self.run_info)
                    set_up.append(driver)
                    self.incarnation[node.name] = 1
            end_t = None
            for step in ordered:
                if end_t is not None and step.t > end_t:
                    continue
                ended = self._step(step)
                if ended is not None and end_t is None:
                    self.outcome.ended = f"{step.node}: {ended}"
                    if self.what_if:
                        end_t = step.t
            self._pass_on(None)
            for name in self.drivers:
                self._flush_log(name)
        finally:
            for driver in reversed(set_up):
                driver.close()
        self.checker.missing(self.drivers, self.producers.by_time)
        return self.outcome

    def _step(self, step: Step) -> str | None:
        name = step.node
        driver = self.drivers[name]
        announce = None
        if step.incarnation != self.incarnation[name]:
            announce = self._take_over(driver, step)
        self._pass_on(time_ns(step.t))
        given = self._feed(driver, step)
        self.stepping[name] = step.index
        try:
            outcome = driver.step(step.cycle, step.t, driver.inbox.take_latest())
        except Exception as exc:
            raise NodeFailed(f"node {name} failed in step at cycle {step.cycle} (t="
                             f"{step.t:.6f} s): {type(exc).__name__}: {exc}") from exc
        self.outcome.steps += 1
        if announce is not None:
            self._publisher(name)(SWAP_TOPIC, announce, step.cycle, step.t, None)
        if self.recorder is not None:
            log = self.pending_log[name]
            log.append([step.cycle, step.t, step.duration, given])
            if len(log) >= DEFAULT_BATCH:
                self._flush_log(name)
        return outcome.ended

    def _feed(self, driver: NodeDriver, step: Step) -> list[Any]:
        """Queue for ``step`` what the step log says it consumed; what it was given, as a
        step log entry."""
        queues = driver.inbox.buffers.queues
        fed = self.fed[step.node]
        given: list[Any] = []
        for consumed in step.consumed:
            if consumed is None:
                given.append(None)
                continue
            chosen = self._choose(consumed)
            if chosen is None:
                given.append(None)
                self.outcome.unchecked.append(
                    f"{step.node} cycle {step.cycle}: {consumed.topic} seq {consumed.seq} "
                    f"(incarnation {consumed.incarnation}) was not there to give")
                continue
            topic = consumed.topic
            previous = fed.get(topic)
            queue = queues.get(topic)
            if queue is not None and chosen.key != previous:
                for stored in self.streams.between(topic, previous, chosen.key, consumed.taken):
                    queue.append((stored.tick, stored.received()))
                fed[topic] = chosen.key
            given.append([consumed.publisher, chosen.key[0], chosen.key[1], consumed.taken])
        return given

    def _choose(self, consumed: Consumed) -> Stored | None:
        if consumed.publisher not in self.drivers:
            return self.streams.choose(consumed, None)
        index = self.producers.step_of(consumed)
        if index is None:   # a step its publisher's log lacks (killed before sending it)
            return self.streams.get(consumed.topic, consumed.key) or self._from_recording(
                (consumed.topic, consumed.publisher, consumed.incarnation, consumed.seq))
        return self.streams.choose(consumed, index)

    def _take_over(self, driver: NodeDriver, step: Step) -> dict[str, Any] | None:
        """The node's next process (a swap's replacement, a restart) takes its place before
        ``step``: with the old one's state and sequence numbers for a swap whose old process
        handed over, from nothing otherwise -- as its process did."""
        name = step.node
        event = self.run.takeovers.get((name, step.incarnation))
        spec_node = self.spec.node(name)
        handed = event is not None and event.get("kind") == "swap" and not event.get("old_died")
        if event is not None and name not in self.changed:
            where = f"{self.run.path}: catbus/swap of {name}"
            _, node_class = import_node_class(event["new"].get("class"), where, "",
                                              import_path=self.spec.import_path)
            params = event.get("params") or spec_node.params
        else:
            node_class, params = spec_node.node_class, spec_node.params
        if handed:
            replace_node(driver, node_class, params, self.spec.seed, self.run_info)
        else:
            driver.close()
            driver.node_class, driver.node = node_class, None
            driver.setup(params, self.spec.seed, self.run_info)
            self.seq[name] = {}
        buffers = driver.inbox.buffers   # a new process: a new inbox
        for topic in buffers.queues:
            buffers.queues[topic].clear()
            buffers.current[topic] = None
            buffers.pending_all[topic].clear()
        buffers.last_good.clear()
        self.fed[name] = {}
        self.incarnation[name] = step.incarnation
        return event

    # -- publishing -----------------------------------------------------------------------------
    def _publisher(self, name: str) -> Publish:
        def publish(topic: str, value: Any, tick: int, t: float, through: int | None) -> None:
            incarnation = self.incarnation.get(name, 1)
            seqs = self.seq.setdefault(name, {})
            seq = seqs.get(topic, 0)
            seqs[topic] = seq + 1
            frames = codec.encode_message(
                topic, codec.Header(name, seq, tick, t, 0.0, None, incarnation), value)
            frames = [bytes(frame) for frame in frames]
            stored = Stored((incarnation, seq), frames, self.stepping.get(name, -1), tick)
            if not topic.startswith(RESERVED_PREFIX):
                self.streams.add(topic, stored)
                self.checker.check(name, topic, incarnation, seq, t, frames)
            if self.recorder is not None:
                self.recorder.deliver([stored.received()])
        return publish

    def _flush_log(self, name: str) -> None:
        log = self.pending_log.get(name)
        if log:
            self.pending_log[name] = []
            self._publisher(name)(STEPS_TOPIC, {"node": name, "topics": list(
                self.drivers[name].inbox.buffers.queues), "steps": log}, log[-1][0], log[-1][1],
                None)


__all__ = ["Difference", "Outcome", "Rerun", "build_spec"]
