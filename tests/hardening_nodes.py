"""Nodes for tests/test_hardening.py and tests/test_provenance.py: members of the run that send
what a node in another language -- confused, or hostile with a valid key -- would.

``Rogue`` is an ordinary periodic node (it reads ``env/state``, so ``env`` connects to it for its
progress, and publishes a counter on ``rogue/out``, which only the recorder reads). At tick
``at`` of a run on a bus it also sends, through its own publishing socket, the frame its
``attack`` parameter names (see :data:`ATTACKS`): whoever subscribed to that topic on its
socket receives it -- ``env`` its progress (env reads nothing else of the rogue's), the
recorder everything. In an inline run (no bus) it only counts, so the inline recording is the
reference the attacked stepped run must equal on every other node's topics.

``ForgingRobot`` is flat_evade's robot (the same agent) whose publishing socket, like a plain
XPUB that ignores ``XPUB_MANUAL``, accepts every subscription, and which from tick ``at`` also
sends what its ``forge`` parameter names (see :meth:`ForgingRobot.forge_frames`): the human's
actions under the human's name, an end of the episode in its past, a copy of its own action
with a sequence number a million ahead.
"""

from __future__ import annotations

import gc
import time
from typing import Any, Callable, Optional

import msgpack

from catbus.node import Node
from catbus.params import Param
from catbus.runtime.dataplane import send_frames
from catbus.wire import codec
from catbus.wire.protocol import PROGRESS_TOPIC
from nodes.flat_evade.agent import ModelBasedAgent


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
    # catbus/progress of the rogue itself (env reads its progress: it reads env's data)
    "progress_string_through": lambda r, p, t: _progress("rogue", t, str(t + 3)),
    "progress_inf_through": lambda r, p, t: _progress("rogue", t, float("inf")),
    "progress_bool_final_int": lambda r, p, t: _progress("rogue", t, t, None, 1),
    "progress_bad_counts": lambda r, p, t: _progress("rogue", t, t, None, False, {"x": -1}),
    "progress_bad_heard": lambda r, p, t: _progress("rogue", t, t, None, False, {}, None,
                                                    {"env": "far"}),
    "progress_end_float": lambda r, p, t: _progress("rogue", t, t, float(t)),
    # progress speaking for robot, from the rogue's socket: its header names robot (forged)
    "progress_for_robot": lambda r, p, t: _progress("robot", t, t + 3),
    # an integer end_tick for robot, in a message whose header says the rogue sent it
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
    # a header with tick 2**62 on the rogue's topic: at the head of the recorder's queue (in
    # tick order) it held back everything after it
    "huge_tick": lambda r, p, t: _data("rogue/out", _header("rogue", 10 ** 9, 2 ** 62),
                                       msgpack.packb(1)),
    # robot's topic, from the rogue under its own name: not the topic's publisher
    "wrong_publisher": lambda r, p, t: _data("robot/action", _header("rogue", 0, t, t * 0.01,
                                                                     incarnation=p.incarnation),
                                             msgpack.packb({"a": 1})),
    # robot's topic under robot's name, from the rogue's socket: forged
    "forged_publisher": lambda r, p, t: _data("robot/action", _header("robot", 10 ** 6, t,
                                                                      t * 0.01, incarnation=9),
                                              msgpack.packb({"a": 1})),
    # in the header's range, but past the run's last tick
    "future_tick": lambda r, p, t: _data("rogue/out", _header("rogue", 10 ** 9, 10 ** 9,
                                                              incarnation=p.incarnation),
                                         msgpack.packb(1)),
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
        # subscription; a catbus publisher accepts only its own topics (XPUB_MANUAL).
        accept_every_subscription()

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


def accept_every_subscription() -> None:
    """Make this process's publishing socket apply every subscription, as a plain XPUB does
    (a node in another language that ignores ``XPUB_MANUAL``)."""
    from catbus.runtime.dataplane import DataPlane

    plane = next((o for o in gc.get_objects() if type(o) is DataPlane), None)
    if plane is not None:
        plane.gate.allow = lambda topics: None   # (the runtime calls it after setup)
        plane.gate.allowed = None


def _plane() -> Any:
    from catbus.runtime.dataplane import DataPlane

    return next((o for o in gc.get_objects() if type(o) is DataPlane), None)


class ForgingRobot(ModelBasedAgent):
    """flat_evade's agent that, on a bus, from tick ``at`` sends what ``forge`` names as well
    (see :meth:`forge_frames`); inline, it is the agent and nothing else."""

    params = {**ModelBasedAgent.params,
              "forge": Param(str, "", "what to send: human_action, past_end, past_end_through, "
                                      "seq_copy"),
              "at": Param(int, 40, "the first tick it is sent at")}

    def setup(self, params: dict[str, Any]) -> None:
        super().setup({key: value for key, value in params.items()
                       if key not in ("forge", "at")})
        self.forge = params["forge"]
        self.at = params["at"]
        self.forged = 0
        accept_every_subscription()

    def step(self, t: float, inputs: dict[str, Any]) -> Optional[dict[str, Any]]:
        plane = _plane()
        if plane is not None and self.forge and self.tick >= self.at:
            for frames in self.forge_frames(plane, self.tick):
                send_frames(plane.pub, frames)
                self.forged += 1
        return super().step(t, inputs)

    def forge_frames(self, plane: Any, tick: int) -> list[list[bytes]]:
        """What is sent at ``tick`` (before this tick's own action):

        * ``human_action``: every tick, ``human/action`` under the human's name, a later
          incarnation and sequence numbers a million ahead -- what would take the human's place
          in a receiver that trusted headers;
        * ``past_end``: once, ``catbus/progress`` of its own announcing the end of the episode
          at tick 5 (``through`` the tick it is at);
        * ``past_end_through``: the same with ``through`` 5 too (the end is below what its data
          already carried);
        * ``seq_copy``: once, its newest ``robot/action`` again, with sequence number 10**6.
        """
        if self.forge == "human_action":
            seq = 10 ** 6 + tick
            return [_data("human/action", _header("human", seq, tick, tick * 0.01,
                                                  incarnation=plane.incarnation + 5),
                          msgpack.packb({"control": [[9.0], [9.0]], "forged": True}))]
        if tick != self.at:
            return []
        if self.forge in ("past_end", "past_end_through"):
            through = tick - 1 if self.forge == "past_end" else 5
            payload = msgpack.packb(["robot", tick - 1, through, 5, False, dict(plane.seq)])
            header = _header("robot", 0, tick - 1, incarnation=plane.incarnation)
            return [[codec.envelope(codec.topic_frame(PROGRESS_TOPIC), header, payload)]]
        if self.forge == "seq_copy":
            _tick, envelope, buffers = plane.retained["robot/action"][-1]
            topic, header, payload = codec.open_envelope(envelope)
            header = codec.Header.unpack(header)
            header.seq = 10 ** 6
            return [[codec.envelope(codec.topic_frame(topic), header.pack(), bytes(payload)),
                     *buffers]]
        raise ValueError(f"unknown forge {self.forge!r}")
