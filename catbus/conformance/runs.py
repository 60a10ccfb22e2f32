"""The runs the kit makes around the node under test, each a real catbus run.

The node joins as a ``remote`` node of a launch file the kit writes from what it registered
(:class:`Plan`): a :class:`~catbus.conformance.nodes.Feeder` per declared input, before it in
the launch file; a :class:`~catbus.conformance.nodes.Reader` of its first output after it; the
recorder last. Its period in the launch file is a multiple ``k`` of the kit nodes' (3 base
ticks, or 2 if it registered 3), so that the node must take its period from the welcome and
announce ``through = t + k - 1``; a stepped run's last tick is not on its grid, so that the cap
at ``last_tick`` matters too. Its topics are remapped, so that it must take them from the
welcome as well.

What happens during each run (:data:`SCENES`) is the kit's only part in it: release a gate,
ask a hello, stop the run. Everything is waited for as an event, with a bound.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import zmq

from catbus.api.handle import RunHandle
from catbus.api.result import RunResult
from catbus.conformance.checks import Run
from catbus.conformance.foreign import Foreign
from catbus.conformance.nodes import stand_in
from catbus.conformance.observer import Observation, Observer
from catbus.errors import CatbusError
from catbus.runtime.schedule import Schedule
from catbus.spec.nodeclass import import_node_class
from catbus.spec.runinfo import schedule_for
from catbus.wire import messages as msg

#: The kit nodes' period: the run's base tick.
BASE = 0.05
#: The most the kit nodes sleep in a step (random, from the system's randomness).
JITTER = 0.02
#: Stepped runs end at this tick (k = 3) or the next odd one (k = 2): off the node's grid.
LAST_TICK = {3: 19, 2: 21}
#: The tick the stop run's gate holds (the node has started and stepped by then).
STOP_GATE_TICK = 2
#: Parallel: the cycle at which a kit node ends the episode.
END_AT = 20
#: Seconds the kit waits for a hello answer, and then for a heartbeat with the node's tick.
HELLO_WAIT = 3.0
REPORT_WAIT = 2.0
#: Seconds the kit waits for the node to leave on ``stop`` before it opens the gate anyway.
STOP_WAIT = 3.0
#: Seconds a node gets to exit after its run has ended.
EXIT_WAIT = 15.0
KIT_FEED = "catbus.conformance.nodes:Feeder"
KIT_READER = "catbus.conformance.nodes:Reader"


@dataclass(frozen=True)
class Plan:
    """How the kit wires its runs around a node that registered ``declaration``."""

    name: str
    declaration: msg.Register
    feed: str = KIT_FEED
    timeout: float = 20.0
    deadline: float = 10.0

    @property
    def k(self) -> int | None:
        """The node's period in base ticks in the kit's launch files; None: reactive."""
        period = self.declaration.period
        if period is None:
            return None
        return 2 if abs(period - 3 * BASE) < 1e-9 else 3

    @property
    def feeders(self) -> list[tuple[str, str]]:
        """``(declared input, feeder node)`` for every input the node declared."""
        return [(row[0], "feeder" if i == 0 else f"feeder{i + 1}")
                for i, row in enumerate(self.declaration.inputs)]

    @property
    def outputs(self) -> list[tuple[str, str]]:
        """``(declared output, topic)``: the launch file remaps every output."""
        return [(row[0], f"kit/out{i}") for i, row in enumerate(self.declaration.outputs)]

    def feed_topic(self, feeder: str) -> str:
        """The topic a feeder node publishes (its class's first output)."""
        _, node_class = import_node_class(self.feed, "--feed", "")
        first = next(iter(node_class.outputs), None)
        if first is None:
            raise CatbusError(f"--feed {self.feed}: the class declares no output to feed with")
        return first.replace("~", feeder, 1)

    def helper(self) -> str | None:
        """The kit node that gates and ends runs: the first feeder if the kit's own class
        feeds, else the reader (None: the node has neither inputs nor outputs)."""
        if self.feeders and self.feed == KIT_FEED:
            return self.feeders[0][1]
        return "reader" if self.outputs else None

    def launch(self, run: Run, gate: str = "", gate_tick: int = 0) -> dict[str, Any]:
        """The launch document of ``run`` (a dict, the node's stand-in class in it)."""
        helper = self.helper()

        def kit_params(node: str) -> dict[str, Any]:
            params: dict[str, Any] = {"jitter": JITTER if run is not Run.PARALLEL else 0.0}
            if node == helper and gate:
                params.update(gate=gate, gate_tick=gate_tick,
                              gate_timeout=min(6.0, self.deadline / 2))
            if node == helper and run is Run.PARALLEL:
                params["end_at"] = END_AT
            return params

        nodes: dict[str, Any] = {}
        for _, feeder in self.feeders:
            entry: dict[str, Any] = {"class": self.feed, "period": BASE}
            if self.feed == KIT_FEED:
                entry["params"] = kit_params(feeder)
            nodes[feeder] = entry
        me = self.declaration
        node: dict[str, Any] = {
            "class": stand_in(self.name, me.inputs, me.outputs, me.period), "remote": True,
            "remap": {**{declared: self.feed_topic(feeder) for declared, feeder in self.feeders},
                      **dict(self.outputs)}}
        if self.k is not None:
            node["period"] = round(self.k * BASE, 9)
        nodes[self.name] = node
        if self.outputs:
            nodes["reader"] = {"class": KIT_READER, "period": BASE,
                               "params": kit_params("reader"),
                               "remap": {"in": self.outputs[0][1]}}
        return {"name": f"conformance-{run.value}", "seed": 7, "nodes": nodes}

    def duration(self, run: Run) -> float:
        if run in (Run.STEPPED, Run.AGAIN):
            return LAST_TICK[self.k or 3] * BASE
        return 10.0


@dataclass
class RunRecord:
    """One run as the kit saw it: the run's result or failure, the node's row of the summary,
    its exit code (None: it had to be killed), what the observer saw, and the recording."""

    run: Run
    schedule: Schedule | None = None
    result: RunResult | None = None
    error: str | None = None
    summary: dict = field(default_factory=dict)
    exit_code: int | None = None
    stderr: str = ""
    observation: Observation = field(default_factory=Observation)
    recording: Path | None = None

    @property
    def failed(self) -> bool:
        return self.error is not None


class Pusher:
    """The kit's side of a gate (:class:`~catbus.conformance.nodes.Gate`): a PUSH socket the
    gated kit node connects to; :meth:`release` lets it go on."""

    def __init__(self, folder: Path) -> None:
        self.context = zmq.Context()
        self.socket = self.context.socket(zmq.PUSH)
        self.socket.linger = 0
        self.endpoint = f"ipc://{folder / 'gate.sock'}"
        self.socket.bind(self.endpoint)
        self.released = False

    def release(self) -> None:
        if not self.released:
            self.released = True
            try:
                self.socket.send(b"go", zmq.NOBLOCK)
            except zmq.Again:   # the gated node is gone, or not connected: nothing holds
                pass

    def close(self) -> None:
        self.socket.close()
        self.context.term()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def until(event: Any, seconds: float, handle: RunHandle, foreign: Foreign) -> bool:
    """Wait for ``event`` (a threading.Event) at most ``seconds``, giving up early once the run
    is over or the node has exited; whether it came."""
    limit = time.monotonic() + seconds
    while time.monotonic() < limit:
        if event.wait(0.05):
            return True
        if handle.done or foreign.poll() is not None:
            return event.is_set()
    return event.is_set()


def sync_observer(handle: RunHandle, observer: Observer, gate: Pusher | None,
                  foreign: Foreign) -> None:
    """Stepped: the node waits for the gated feeder's tick 0 until the observer is connected,
    so that the observer sees every message of the node."""
    until(observer.connected, 6.0, handle, foreign)
    if gate is not None:
        gate.release()


def stop_while_waiting(handle: RunHandle, observer: Observer, gate: Pusher | None,
                       foreign: Foreign) -> None:
    """The node has started and waits for the gated tick: ask a hello, wait for its answer
    and for a heartbeat with its tick, then stop the run; the gate opens once the node has
    left (its final progress), so that ``stop`` reaches it while it waits."""
    if until(observer.heard, HELLO_WAIT + 6.0, handle, foreign):
        observer.ask_hello()
        until(observer.answered, HELLO_WAIT, handle, foreign)
        until(observer.reported, REPORT_WAIT, handle, foreign)
    handle.stop()
    until(observer.finished, STOP_WAIT, handle, foreign)
    if gate is not None:
        gate.release()


def let_run(handle: RunHandle, observer: Observer, gate: Pusher | None,
            foreign: Foreign) -> None:
    """Nothing to do: the run ends by itself."""


#: The kit's part in each run, and whether it has a gate at which tick.
SCENES: dict[Run, tuple[Callable[..., None], int | None]] = {
    Run.STEPPED: (sync_observer, 0), Run.AGAIN: (let_run, None),
    Run.STOP: (stop_while_waiting, STOP_GATE_TICK), Run.PARALLEL: (let_run, None)}


def execute(plan: Plan, run: Run, command: Sequence[str], folder: Path) -> RunRecord:
    """Make ``run`` with the node ``command`` in it; never raises for what the node does."""
    from catbus.api.run import load

    scene, gate_tick = SCENES[run]
    record = RunRecord(run)
    gate = Pusher(folder) if gate_tick is not None and plan.helper() else None
    mode = "parallel" if run is Run.PARALLEL else "stepped"
    bus = f"tcp://127.0.0.1:{free_port()}" if run is Run.PARALLEL else None
    recording = folder / f"{run.value}.mcap" if run in (Run.STEPPED, Run.AGAIN) else None
    observer = foreign = None
    # A launch the kit cannot build is the kit's own failure, not the node's: it raises.
    spec = load(plan.launch(run, gate.endpoint if gate else "", gate_tick or 0),
                mode=mode, duration=plan.duration(run), record=recording, bus=bus)
    record.schedule = schedule_for(spec)
    handle = None
    try:
        handle = RunHandle(spec, progress=False, deadline=plan.deadline,
                           remote_timeout=plan.timeout, evaluate=False, log_level="WARNING",
                           announce_remote=False)
        observer = Observer(handle.bus, plan.name)
        observer.start()
        foreign = Foreign.start(command, handle.bus, plan.name, folder, run.value)
        scene(handle, observer, gate, foreign)
        _wait(handle, record, plan)
    except CatbusError as exc:
        record.error = str(exc).splitlines()[0]
    finally:
        if handle is not None and not handle.done:
            handle.stop()
            handle.wait()
        if gate is not None:
            gate.close()
        if observer is not None:
            record.observation = observer.finish()
        if foreign is not None:
            record.exit_code = foreign.wait(EXIT_WAIT)
            foreign.kill()
            record.stderr = foreign.stderr_tail()
    record.recording = recording if recording is not None and recording.exists() else None
    return record


def _wait(handle: RunHandle, record: RunRecord, plan: Plan) -> None:
    """The run's end: its result, or why it failed (the launcher's words)."""
    bound = plan.timeout + plan.deadline + 60.0
    try:
        record.result = handle.wait(bound)
    except TimeoutError:
        handle.stop()
        record.error = f"the run did not end within {bound:g} s; the kit stopped it"
        try:
            record.result = handle.wait(30.0)
        except (CatbusError, TimeoutError):
            pass
    except CatbusError as exc:
        record.error = str(exc).splitlines()[0]
        record.result = getattr(exc, "result", None)
    if record.result is not None:
        record.summary = dict(record.result.nodes.get(plan.name, {}))


__all__ = ["Plan", "RunRecord", "execute", "Pusher", "BASE", "END_AT", "LAST_TICK",
           "STOP_GATE_TICK", "SCENES"]
