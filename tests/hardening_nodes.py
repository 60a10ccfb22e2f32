"""Nodes for tests/test_hardening.py: a member of the run that sends one bad frame.

``Rogue`` is an ordinary periodic node (it reads ``env/state``, so ``env`` connects to it for its
progress, and publishes a counter on ``rogue/out``, which only the recorder reads). At tick
``at`` of a run on a bus it also sends, through its own publishing socket, the frame its
``attack`` parameter names (see :data:`ATTACKS`): whoever subscribed to that topic on its
socket -- ``env`` for ``robot/action`` and ``catbus/progress``, the recorder for everything --
receives it. In an inline run (no bus) it only counts, so the inline recording is the reference
the attacked stepped run must equal on every other node's topics.
"""

from __future__ import annotations

import gc
import time
from typing import Any, Callable

import msgpack

from catbus.node import Node
from catbus.params import Param
from catbus.wire import codec
from catbus.wire.protocol import PROGRESS_TOPIC


def _header(publisher: str, seq: int, tick: int, sim_time: float = 0.0,
            wall_time: float | None = None, through: Any = None, incarnation: int = 1) -> bytes:
    """A header packed by hand, so values the codec's own Header would not build go out too."""
    return msgpack.packb([3, publisher, incarnation, seq, tick, sim_time,
                          time.time() if wall_time is None else wall_time, through])


def _progress(name: str, tick: int, through: Any, end: Any = None, final: Any = False,
              counts: Any = None, publisher: str | None = None, *extra: Any) -> list[bytes]:
    payload = msgpack.packb([name, tick, through, end, final, counts or {}, *extra])
    header = _header(publisher or name, 0, tick)
    return [codec.envelope(codec.topic_frame(PROGRESS_TOPIC), header, payload)]


def _data(topic: str, header: bytes, payload: bytes) -> list[bytes]:
    return [codec.envelope(codec.topic_frame(topic), header, payload)]


#: attack name -> frames(rogue, plane, tick): the one bad frame (as a list of ZeroMQ frames).
ATTACKS: dict[str, Callable[[Any, Any, int], list[bytes]]] = {
    # catbus/progress, speaking for robot (env waits for robot's progress every tick)
    "progress_string_through": lambda r, p, t: _progress("robot", t, str(t + 3)),
    "progress_inf_through": lambda r, p, t: _progress("robot", t, float("inf")),
    "progress_bool_final_int": lambda r, p, t: _progress("robot", t, t, None, 1),
    "progress_bad_counts": lambda r, p, t: _progress("robot", t, t, None, False, {"x": -1}),
    "progress_bad_heard": lambda r, p, t: _progress("robot", t, t, None, False, {}, None,
                                                    {"env": "far"}),
    "progress_end_float": lambda r, p, t: _progress("robot", t, t, float(t)),
    # an integer end_tick, in a message whose header says another node sent it
    "progress_int_end": lambda r, p, t: _progress("robot", t, t, t, False, {}, "rogue"),
    # headers (on the rogue's own topic, which the recorder reads)
    "sim_time_inf": lambda r, p, t: _data("rogue/out", _header("rogue", p.seq["rogue/out"], t,
                                                               float("inf")), msgpack.packb(1)),
    "sim_time_nan": lambda r, p, t: _data("rogue/out", _header("rogue", p.seq["rogue/out"], t,
                                                               float("nan")), msgpack.packb(1)),
    "sim_time_1e11": lambda r, p, t: _data("rogue/out", _header("rogue", p.seq["rogue/out"], t,
                                                                1e11), msgpack.packb(1)),
    "negative_tick": lambda r, p, t: _data("rogue/out", _header("rogue", p.seq["rogue/out"], -7),
                                           msgpack.packb(1)),
    # a header with tick 2**62 on robot's action topic: env's robot/action input
    "huge_tick": lambda r, p, t: _data("robot/action", _header("robot", 10 ** 9, 2 ** 62),
                                       msgpack.packb({"a": 1})),
    # robot's topic, from the rogue under its own name: not the topic's publisher
    "wrong_publisher": lambda r, p, t: _data("robot/action", _header("rogue", 0, t, t * 0.01,
                                                                     incarnation=p.incarnation),
                                             msgpack.packb({"a": 1})),
    # in the header's range, but past the run's last tick
    "future_tick": lambda r, p, t: _data("robot/action", _header("robot", 10 ** 9, 10 ** 9),
                                         msgpack.packb({"a": 1})),
}


class Rogue(Node):
    """Publishes ``{"n": steps}`` on ``~/out`` each period; at tick ``at`` also sends the bad
    frame of ``attack`` (see the module docstring)."""

    inputs = ["env/state"]
    outputs = ["~/out"]
    period = 0.01
    params = {
        "attack": Param(str, "", "the bad frame to send (a key of ATTACKS, or seq_jump, "
                                 "bad_payload)"),
        "at": Param(int, 50, "the tick to send it at"),
    }

    def setup(self, params: dict[str, Any]) -> None:
        self.attack = params["attack"]
        self.at = params["at"]
        self.n = 0
        self.sent = False
        # A hand-written member would publish on a socket of its own that accepts every
        # subscription; a catbus publisher accepts only its own topics (XPUB_MANUAL), so let
        # env's subscription to robot/action through, as such a socket would.
        from catbus.runtime.dataplane import DataPlane

        plane = next((o for o in gc.get_objects() if type(o) is DataPlane), None)
        if plane is not None and isinstance(getattr(plane, "allowed", None), set):
            plane.allowed.add(codec.topic_frame("robot/action"))

    def step(self, t: float, inputs: dict[str, Any]) -> dict[str, Any]:
        if not self.sent and self.tick >= self.at and self.attack:
            self.sent = True
            self._send_attack(self.tick)
        self.n += 1
        return {"~/out": {"n": self.n}}

    def _send_attack(self, tick: int) -> None:
        from catbus.runtime.dataplane import DataPlane, send_frames

        plane = next((o for o in gc.get_objects() if type(o) is DataPlane), None)
        if plane is None:   # inline: no bus, nothing to attack
            return
        topic = "rogue/out"
        if self.attack == "control_bad_hb":
            from catbus.runtime.controllink import ControlLink

            link = next(o for o in gc.get_objects() if type(o) is ControlLink)
            link.socket.send(msgpack.packb({"op": "hb", "tick": 2 ** 62, "steps": 0,
                                            "state": "lying"}))
            return
        if self.attack == "seq_jump":
            frames = _data(topic, _header("rogue", 10 ** 6, tick, tick * 0.01,
                                          incarnation=plane.incarnation), msgpack.packb(1))
        elif self.attack == "bad_payload":
            # a valid header with the next sequence number, a payload that does not decode
            seq = plane.seq[topic]
            plane.seq[topic] = seq + 1
            frames = _data(topic, _header("rogue", seq, tick, incarnation=plane.incarnation),
                           b"\xc1\xc1")
        else:
            frames = ATTACKS[self.attack](self, plane, tick)
        send_frames(plane.pub, frames)
