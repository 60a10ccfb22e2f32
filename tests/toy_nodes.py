"""Tiny nodes for tests: fast, deterministic, and small enough to reason about in an assertion.

``Talker`` publishes a counter on ``~/out``; ``Listener`` reads ``talker/out`` (the default name
of a Talker instance); ``Relay`` forwards ``~/in`` to ``~/out`` as messages arrive; ``Tap`` reads
every topic, like the recorder. Other test modules reuse them, so keep their behaviour stable.
For the process tests: ``Collector`` writes what it heard to a file, ``Failing`` raises in
``step``, ``Stubborn`` ignores SIGINT/SIGTERM and never returns from ``step``, ``Swallower``
sits in ``step`` inside a loop that catches every Exception.
"""

from __future__ import annotations

from typing import Any

from catbus.node import Input, Node
from catbus.params import Param


class Talker(Node):
    """Publishes ``{"n": count, "x": gain * count, "t": t}`` every period; may end the episode."""

    outputs = ["~/out"]
    params = {
        "gain": Param(float, 1.0, "scale of x"),
        "nested": {"k": Param(int, 3, "a nested parameter, for override tests")},
        "stop_after": Param(int, 0, "end the episode after this many steps (0: never)"),
    }
    period = 0.1

    def setup(self, params: dict[str, Any]) -> None:
        self.gain = params["gain"]
        self.stop_after = params["stop_after"]
        self.n = 0

    def step(self, t: float, inputs: dict[str, Any]) -> dict[str, Any]:
        message = {"n": self.n, "x": self.gain * self.n, "t": t}
        self.n += 1
        if self.stop_after and self.n >= self.stop_after:
            self.end_episode(f"{self.name} said {self.n} things")
        return {"~/out": message}


class Listener(Node):
    """Keeps what it hears on ``talker/out`` (``self.heard``) and publishes how much on ``~/count``."""

    inputs = ["talker/out"]
    outputs = ["~/count"]
    period = 0.1

    def setup(self, params: dict[str, Any]) -> None:
        self.heard: list[Any] = []

    def step(self, t: float, inputs: dict[str, Any]) -> dict[str, Any]:
        message = inputs["talker/out"]
        if message is not None:
            self.heard.append(message)
        return {"~/count": len(self.heard)}


class Relay(Node):
    """Reactive (no period): forwards every message on ``~/in`` to ``~/out``, scaled."""

    inputs = [Input("~/in", "all")]
    outputs = ["~/out"]
    params = {"scale": Param(float, 1.0)}
    period = None

    def setup(self, params: dict[str, Any]) -> None:
        self.scale = params["scale"]

    def on_message(self, topic: str, message: Any) -> dict[str, Any]:
        if isinstance(message, dict) and "x" in message:
            message = {**message, "x": message["x"] * self.scale}
        return {"~/out": message}


class Tap(Node):
    """Reactive, reads every topic (``*``, policy ``all``) and counts messages per topic."""

    inputs = [Input("*", "all")]
    period = None

    def setup(self, params: dict[str, Any]) -> None:
        self.counts: dict[str, int] = {}

    def on_message(self, topic: str, message: Any) -> None:
        self.counts[topic] = self.counts.get(topic, 0) + 1


class NotANode:
    """A class that is not a Node, for the loader's error path."""


class BadPeriod(Talker):
    """Declares an impossible period, for the loader's error path."""

    period = -1.0  # type: ignore[assignment]


class BadOutput(Talker):
    """Declares an invalid topic name, for the loader's error path."""

    outputs = ["~/has space"]


# -- nodes for the process-level bus tests (tests/test_bus.py) -----------------------------------
class Collector(Node):
    """Reactive, keeps every message on ``~/in`` (policy ``all``) in arrival order and writes them
    as JSON to ``path`` in ``close`` -- so a test in another process can check order and loss."""

    inputs = [Input("~/in", "all")]
    params = {"path": Param(str, "", "JSON file written at close (empty: none)")}
    period = None

    def setup(self, params: dict[str, Any]) -> None:
        self.path = params["path"]
        self.heard: list[Any] = []

    def on_message(self, topic: str, message: Any) -> None:
        self.heard.append(message)

    def close(self) -> None:
        if self.path:
            import json
            import os

            tmp = f"{self.path}.tmp"
            with open(tmp, "w") as out:
                json.dump(self.heard, out)
            os.replace(tmp, self.path)


class Failing(Talker):
    """A Talker that raises ``RuntimeError`` in ``step`` once it has said ``fail_at`` things."""

    params = {**Talker.params, "fail_at": Param(int, 3, "steps before the failure")}

    def setup(self, params: dict[str, Any]) -> None:
        super().setup(params)
        self.fail_at = params["fail_at"]

    def step(self, t: float, inputs: dict[str, Any]) -> dict[str, Any]:
        if self.n >= self.fail_at:
            raise RuntimeError(f"{self.name} broke down after {self.n} steps")
        return super().step(t, inputs)


class Stubborn(Node):
    """Ignores SIGINT and SIGTERM and never returns from its first ``step``: only SIGKILL ends it.
    Writes its pid to ``pid_file`` when it gets stuck, so a test knows which process to watch."""

    params = {"pid_file": Param(str, "", "file to write the pid into when stuck (empty: none)")}
    period = 0.05

    def setup(self, params: dict[str, Any]) -> None:
        import signal

        self.pid_file = params["pid_file"]
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)

    def step(self, t: float, inputs: dict[str, Any]) -> None:
        import os
        import threading

        if self.pid_file:
            with open(f"{self.pid_file}.tmp", "w") as out:
                out.write(str(os.getpid()))
            os.replace(f"{self.pid_file}.tmp", self.pid_file)
        threading.Event().wait()  # forever; the ignored signals cannot interrupt it


class Swallower(Node):
    """Stays in its first ``step`` for ``hold`` seconds in a loop that swallows every Exception
    (like node code with a broad retry loop), then returns. ``step`` writes ``entered_file`` when
    it starts, ``close`` writes ``closed_file``."""

    params = {"hold": Param(float, 30.0, "seconds spent in the first step"),
              "everything": Param(bool, False, "swallow BaseException too (a bare except:)"),
              "entered_file": Param(str, "", "file written when step starts (empty: none)"),
              "closed_file": Param(str, "", "file written by close() (empty: none)")}
    period = 0.05

    def setup(self, params: dict[str, Any]) -> None:
        self.hold, self.closed_file = params["hold"], params["closed_file"]
        self.entered_file = params["entered_file"]
        self.swallowed = BaseException if params["everything"] else Exception

    def step(self, t: float, inputs: dict[str, Any]) -> None:
        import time

        if self.entered_file:
            with open(self.entered_file, "w") as out:
                out.write("stepping")
        until = time.monotonic() + self.hold
        self.hold = 0.0   # the first step only
        while time.monotonic() < until:
            try:
                time.sleep(0.01)
            except self.swallowed:  # noqa: BLE001 -- the point of this node
                pass

    def close(self) -> None:
        if self.closed_file:
            with open(self.closed_file, "w") as out:
                out.write("closed")


# -- nodes for the parallel-lifecycle tests (tests/test_parallel_lifecycle.py) --------------------
def _write_atomically(path: str, text: str) -> None:
    import os

    with open(f"{path}.tmp", "w") as out:
        out.write(text)
    os.replace(f"{path}.tmp", path)


class Overrunner(Node):
    """Periodic, but every ``step`` takes ``busy`` seconds, longer than its period: it always
    overruns (parallel mode skips the missed cycles). Writes ``closed_file`` in ``close``."""

    outputs = ["~/out"]
    params = {"busy": Param(float, 0.03, "seconds each step takes"),
              "closed_file": Param(str, "", "file written by close() (empty: none)")}
    period = 0.01

    def setup(self, params: dict[str, Any]) -> None:
        self.busy, self.closed_file = params["busy"], params["closed_file"]
        self.n = 0

    def step(self, t: float, inputs: dict[str, Any]) -> dict[str, Any]:
        import time

        time.sleep(self.busy)
        self.n += 1
        return {"~/out": {"n": self.n}}

    def close(self) -> None:
        if self.closed_file:
            _write_atomically(self.closed_file, str(self.n))


class Bouncer(Node):
    """Reactive ping-pong player: answers every message on ``~/in`` with ``{"n": n + 1}`` on
    ``~/out``; with ``serve`` it opens the rally with ``{"n": 0}`` when ``~/kick`` first says
    something. Two Bouncers remapped onto each other's outputs form a cycle of reactive nodes
    that keeps itself busy. Writes the number of messages it answered to ``closed_file`` in
    ``close``."""

    inputs = [Input("~/kick", "all"), Input("~/in", "all")]
    outputs = ["~/out"]
    params = {"serve": Param(bool, False, "open the rally on the first kick"),
              "closed_file": Param(str, "", "file written by close() (empty: none)")}
    period = None

    def setup(self, params: dict[str, Any]) -> None:
        self.serve, self.closed_file = params["serve"], params["closed_file"]
        self.served = False
        self.answered = 0

    def on_message(self, topic: str, message: Any) -> dict[str, Any] | None:
        if topic == "~/kick":
            if self.serve and not self.served:
                self.served = True
                return {"~/out": {"n": 0}}
            return None
        self.answered += 1
        return {"~/out": {"n": message["n"] + 1}}

    def close(self) -> None:
        if self.closed_file:
            _write_atomically(self.closed_file, str(self.answered))


class Waiter(Node):
    """Reactive, reads ``~/in``; writes ``entered_file`` when its first message arrives. Used as a
    node that waits on a publisher which never finishes."""

    inputs = [Input("~/in", "all")]
    params = {"entered_file": Param(str, "", "file written at the first message (empty: none)")}
    period = None

    def setup(self, params: dict[str, Any]) -> None:
        self.entered_file = params["entered_file"]

    def on_message(self, topic: str, message: Any) -> None:
        if self.entered_file:
            _write_atomically(self.entered_file, "heard")
            self.entered_file = ""


# -- nodes for the TCP and two-host tests (tests/test_tcp.py) --------------------------------------
class Prober(Node):
    """Periodic; reads ``~/in`` (latest) and publishes ``{"n", "heard", "x", "r"}`` on ``~/out``:
    its step count, the ``n`` of the newest input (None before the first), ``gain`` times that
    input's ``x``, and a draw from ``self.rng`` (so what it publishes depends on the run seed).
    ``close`` writes ``report`` (JSON): its name, seed, parameters and every input ``n`` it saw --
    what a test checks of a node that ran on another host (the report says what the registry
    gave it)."""

    inputs = ["~/in"]
    outputs = ["~/out"]
    params = {"gain": Param(float, 1.0, "scale of the forwarded x"),
              "report": Param(str, "", "JSON file written at close (empty: none)")}
    period = 0.02

    def setup(self, params: dict[str, Any]) -> None:
        self.params_seen = params
        self.gain, self.report = params["gain"], params["report"]
        self.n = 0
        self.heard: list[Any] = []

    def step(self, t: float, inputs: dict[str, Any]) -> dict[str, Any]:
        message = inputs["~/in"]
        heard = message["n"] if message is not None else None
        x = self.gain * message["x"] if message is not None else None
        if heard is not None:
            self.heard.append(heard)
        out = {"n": self.n, "heard": heard, "x": x, "r": float(self.rng.random())}
        self.n += 1
        return {"~/out": out}

    def close(self) -> None:
        if self.report:
            import json

            _write_atomically(self.report, json.dumps(
                {"name": self.name, "seed": self.seed, "params": self.params_seen,
                 "steps": self.n, "heard": self.heard}))


class StuckTalker(Stubborn):
    """A :class:`Stubborn` that declares ``~/out``: its readers wait for it, for ever."""

    outputs = ["~/out"]


class SlowCloser(Talker):
    """A Talker whose ``close`` takes ``hold`` seconds (like a recorder finishing a big file), then
    writes ``closed_file``."""

    params = {**Talker.params, "hold": Param(float, 2.0, "seconds close() takes"),
              "closed_file": Param(str, "", "file written at the end of close() (empty: none)")}

    def setup(self, params: dict[str, Any]) -> None:
        super().setup(params)
        self.hold, self.closed_file = params["hold"], params["closed_file"]

    def close(self) -> None:
        import time

        time.sleep(self.hold)
        if self.closed_file:
            _write_atomically(self.closed_file, "closed")
