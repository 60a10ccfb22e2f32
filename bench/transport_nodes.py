"""catbus nodes of ``bench/transport.py`` and the messages both sides of the benchmark send.

Latency run (``parallel`` mode, three processes): ``Kick`` (periodic) publishes one message at its
first step and then idles; ``Ping`` (reactive) answers the kick with the first ping, times each
reply from ``Pong`` (reactive, echoes every ping in ``on_message``) and sends the next ping from
``on_message``. Ping writes its round-trip times to a JSON file; the benchmark then ends the run
the way a person does, with Ctrl-C (SIGINT to the launcher), because a cycle of reactive nodes has
no end of its own in ``parallel`` mode when the launch gives no duration.

Throughput run (``parallel`` mode, two processes): ``Source`` has a tiny period, so the parallel
runtime steps it back to back (each missed cycle is skipped and counted, as designed) and it
publishes one message per step, ``n`` in all, then ends the episode. ``Sink`` (reactive) checks
the sequence numbers, timestamps receipts and writes a JSON file at ``close``. Both also verify
that a large array travels without a copy (see :class:`sender_zero_copy_probe` and
:func:`zmq_frame_of`).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import zmq

from catbus.node import Input, Node
from catbus.params import Param

BIG_BYTES = 1 << 20  # "1 MB": one MiB of float64


# -- the messages (the same functions build the baseline's messages) -------------------------------
def small_message(seq: int) -> dict[str, Any]:
    """A dict with a 4-float array and a few scalars, like a pose or a sensor reading."""
    return {"seq": seq, "stamp": time.perf_counter(),
            "pose": np.array([0.5 * seq, 1.0, -0.25, 2.0]), "valid": True, "frame": "map"}


def big_array(nbytes: int = BIG_BYTES) -> np.ndarray:
    """One C-contiguous float64 array of ``nbytes``; read-only, since a message is a value."""
    array = np.arange(nbytes // 8, dtype=np.float64)
    array.flags.writeable = False
    return array


def big_message(seq: int, array: np.ndarray) -> dict[str, Any]:
    return {"seq": seq, "data": array}


def write_json(path: str, data: dict[str, Any]) -> None:
    """Atomically: the benchmark polls for the file and must never see half of it."""
    target = Path(path)
    tmp = target.with_suffix(target.suffix + ".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, target)


# -- zero-copy checks ------------------------------------------------------------------------------
def zmq_frame_of(array: np.ndarray) -> Any:
    """The zmq.Frame an array is a view of, following ``.base`` / memoryview ``.obj``; or None."""
    obj: Any = array
    for _ in range(8):
        if isinstance(obj, zmq.Frame):
            return obj
        if isinstance(obj, np.ndarray):
            obj = obj.base
        elif isinstance(obj, memoryview):
            obj = obj.obj
        else:
            return None
    return None


def receive_checks(array: np.ndarray) -> dict[str, bool]:
    """Is a received array a view over its zmq frame (no copy), and is it read-only?"""
    frame = zmq_frame_of(array)
    view = frame is not None and bool(np.shares_memory(array, np.frombuffer(frame.buffer,
                                                                            np.uint8)))
    return {"recv_view_of_zmq_frame": view, "recv_read_only": not array.flags.writeable}


class sender_zero_copy_probe:
    """Watches ``zmq.Socket.send`` (process-wide; ``send_multipart`` goes through it too) while
    installed and records, for the first frame that carries ``array``'s memory, whether it was
    sent with ``copy=False`` and is at least the socket's ``copy_threshold`` (pyzmq copies smaller
    frames even with ``copy=False``). Installed around one message only: timing runs unpatched.
    Hooking pyzmq rather than catbus keeps the check valid however the runtime sends."""

    def __init__(self, array: np.ndarray) -> None:
        self.array = array
        self.result: dict[str, bool] | None = None
        self._original: Callable | None = None

    def install(self) -> None:
        original = zmq.Socket.send
        probe = self
        target = np.frombuffer(self.array, np.uint8) if self.array.flags.c_contiguous else None

        def send(sock: Any, data: Any, flags: int = 0, copy: bool = True, track: bool = False,
                 **kwargs: Any) -> Any:
            if probe.result is None and target is not None and not isinstance(data, zmq.Frame):
                try:
                    view = np.frombuffer(data, np.uint8)
                except (TypeError, ValueError):
                    view = None
                if view is not None and np.shares_memory(view, target):
                    threshold = getattr(sock, "copy_threshold", zmq.COPY_THRESHOLD)
                    probe.result = {"send_frame_shares_array_memory": True,
                                    "send_copy_false": copy is False,
                                    "send_frame_over_copy_threshold": view.nbytes >= threshold}
            return original(sock, data, flags, copy=copy, track=track, **kwargs)

        self._original = original
        zmq.Socket.send = send  # type: ignore[method-assign]

    def remove(self) -> None:
        """Restore pyzmq; if no send carried the array, the check fails."""
        if self.result is None:
            self.result = {"send_frame_shares_array_memory": False, "send_copy_false": False,
                           "send_frame_over_copy_threshold": False}
        if self._original is not None:
            zmq.Socket.send = self._original  # type: ignore[method-assign]
            self._original = None


# -- latency run -----------------------------------------------------------------------------------
class Kick(Node):
    """Publishes one message at its first step, so the reactive Ping can start; then idles."""

    outputs = ["~/go"]
    period = 1.0

    def setup(self, params: dict[str, Any]) -> None:
        self.done = False

    def step(self, t: float, inputs: dict[str, Any]) -> dict[str, Any] | None:
        if self.done:
            return None
        self.done = True
        return {"~/go": {"go": True}}


class Ping(Node):
    """Sends a ping from ``on_message``, times the echo, sends the next: small messages first,
    then 1 MiB arrays. Round trip = from returning the ping from ``on_message`` (the runtime then
    encodes and sends it) to entering ``on_message`` with the decoded echo."""

    inputs = ["kick/go", "pong/out"]
    outputs = ["~/out"]
    period = None
    params = {
        "n_small": Param(int, 1000, "timed small round trips"),
        "n_big": Param(int, 200, "timed 1 MiB round trips"),
        "warmup": Param(int, 100, "untimed small round trips first"),
        "warmup_big": Param(int, 20, "untimed 1 MiB round trips first"),
        "big_bytes": Param(int, BIG_BYTES, "size of the large array"),
        "out": Param(str, "", "JSON file for the results"),
    }

    def setup(self, params: dict[str, Any]) -> None:
        self.out = params["out"]
        self.phases = [("small", params["warmup"], params["n_small"]),
                       ("big", params["warmup_big"], params["n_big"])]
        self.big = big_array(params["big_bytes"])
        self.rtts: dict[str, list[float]] = {"small": [], "big": []}
        self.phase = 0
        self.count = 0
        self.seq = 0
        self.t_sent = 0.0
        self.started = False
        self.finished = False
        self.errors: list[str] = []

    def on_message(self, topic: str, message: Any) -> dict[str, Any] | None:
        now = time.perf_counter()
        if topic == "kick/go":
            if self.started:
                return None
            self.started = True
            return self._send()
        if self.finished:
            return None
        if message.get("seq") != self.seq:
            self.errors.append(f"expected echo {self.seq}, got {message.get('seq')}")
        name, warmup, _ = self.phases[self.phase]
        if self.count >= warmup:
            self.rtts[name].append(now - self.t_sent)
        self.count += 1
        self.seq += 1
        return self._send()

    def _send(self) -> dict[str, Any] | None:
        name, warmup, n = self.phases[self.phase]
        if self.count >= warmup + n:
            self.phase += 1
            self.count = 0
            if self.phase == len(self.phases):
                self.finished = True
                write_json(self.out, {"rtt": self.rtts, "errors": self.errors})
                return None
            name = self.phases[self.phase][0]
        message = small_message(self.seq) if name == "small" else big_message(self.seq, self.big)
        self.t_sent = time.perf_counter()
        return {"~/out": message}


class Pong(Node):
    """Echoes every ping back, as received (a 1 MiB array goes back as the received view)."""

    inputs = ["ping/out"]
    outputs = ["~/out"]
    period = None

    def on_message(self, topic: str, message: Any) -> dict[str, Any]:
        return {"~/out": message}


# -- throughput run --------------------------------------------------------------------------------
class Source(Node):
    """Publishes ``n`` messages as fast as the parallel runtime steps it, then ends the episode."""

    outputs = ["~/out"]
    period = 1e-6
    params = {
        "n": Param(int, 20000, "messages to send"),
        "big_bytes": Param(int, 0, "0: small messages; otherwise arrays of this many bytes"),
        "out": Param(str, "", "JSON file for the sender's zero-copy check"),
    }

    def setup(self, params: dict[str, Any]) -> None:
        self.n = params["n"]
        self.out = params["out"]
        self.big = big_array(params["big_bytes"]) if params["big_bytes"] else None
        self.probe = sender_zero_copy_probe(self.big) if self.big is not None else None
        self.i = 0
        self.t_first = self.t_last = 0.0

    def step(self, t: float, inputs: dict[str, Any]) -> dict[str, Any] | None:
        i = self.i
        if i >= self.n:
            return None
        if self.probe is not None:
            if i == 0:
                self.probe.install()       # watches the runtime's send of message 0 only
            elif i == 1:
                self.probe.remove()
        if i == 0:
            self.t_first = time.perf_counter()
        self.i += 1
        if self.i == self.n:
            self.t_last = time.perf_counter()
            self.end_episode("sent everything")
        if self.big is None:
            return {"~/out": small_message(i)}
        return {"~/out": big_message(i, self.big)}

    def close(self) -> None:
        if self.probe is not None:
            self.probe.remove()
        if self.out:
            # Sender-side rate: steps 0 .. n-1 (tells whether the sender or the receiver limits).
            rate = (self.n - 1) / (self.t_last - self.t_first) if self.t_last > self.t_first \
                else None
            write_json(self.out, {"sent": self.i, "send_rate": rate,
                                  "checks": self.probe.result if self.probe else None})


class Sink(Node):
    """Counts messages, checks their sequence, timestamps receipts (``skip`` first ones excluded
    from the rate) and checks the first large array for zero-copy receipt."""

    inputs = [Input("src/out", "all")]
    period = None
    params = {
        "n": Param(int, 20000, "messages expected"),
        "skip": Param(int, 1000, "messages before the timed window"),
        "out": Param(str, "", "JSON file for the results"),
    }

    def setup(self, params: dict[str, Any]) -> None:
        self.n, self.skip, self.out = params["n"], params["skip"], params["out"]
        self.expected = 0
        self.count = 0
        self.gaps = 0
        self.t_first = self.t_last = None
        self.checks: dict[str, bool] | None = None

    def on_message(self, topic: str, message: Any) -> None:
        now = time.perf_counter()
        seq = message["seq"]
        if seq != self.expected:
            self.gaps += 1
        self.expected = seq + 1
        self.count += 1
        if seq == self.skip:
            self.t_first = now
        if seq == self.n - 1:
            self.t_last = now
        if self.checks is None and "data" in message:
            self.checks = receive_checks(message["data"])

    def close(self) -> None:
        if self.out:
            write_json(self.out, {"count": self.count, "gaps": self.gaps, "t_first": self.t_first,
                                  "t_last": self.t_last, "checks": self.checks})
