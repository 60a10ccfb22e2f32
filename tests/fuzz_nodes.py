"""A member of the run that sends a malformed example of every field of every message kind
(``tests/test_fuzz.py``).

``Fuzzer`` is an ordinary periodic node (it reads ``env/state``, so env connects to it for its
progress; it publishes ``~/out``, which the recorder records). At tick ``at`` of a run on a bus
it sends, once:

* on its publishing socket (env and the recorder receive them): one data message per header
  field with that field wrong, one ``catbus/progress`` per progress element with that element
  wrong, and a valid header with a payload that does not decode;
* to the registry, from a socket of its own: one control message per field of every op in
  :mod:`catbus.wire.messages`, with that field of a wrong type, plus messages that are no
  control message at all.

Every one of them is malformed, so the receivers' counters must grow by exactly their number,
and nothing else may change. In an inline run (no bus) it only counts.
"""

from __future__ import annotations

import dataclasses
import gc
import time
import typing
from typing import Any

import msgpack
import zmq

from catbus.node import Node
from catbus.params import Param
from catbus.wire import codec, messages
from catbus.wire.protocol import HEADER_VERSION, PROGRESS_TOPIC

#: A value of the wrong type for a field annotated ``annotation``.
def wrong_value(annotation: Any) -> Any:
    names = str(annotation)
    return 12345 if "str" in names and "int" not in names else "not-the-right-type"


def header_variants(tick: int, seq: int) -> list[bytes]:
    """Headers of ``rogue/out`` with one field wrong each (the other fields valid)."""
    now = time.time()
    good = [HEADER_VERSION, "fuzzer", 1, seq, tick, tick * 0.01, now, None]
    wrong = {0: [99, "3"], 1: ["", 7], 2: [-1, "x"], 3: [-1, "x", 2 ** 63],
             4: [-5, "x", 2 ** 62], 5: [float("nan"), float("inf"), "x", 1e11],
             6: [float("nan"), "x"], 7: ["x", float("inf"), -2]}
    headers = []
    for index, values in wrong.items():
        for value in values:
            fields = list(good)
            fields[index] = value
            headers.append(msgpack.packb(fields))
    headers.append(msgpack.packb(good[:5]))          # too few fields
    headers.append(msgpack.packb({"not": "a list"}))
    return headers


def progress_variants(tick: int) -> list[bytes]:
    """``catbus/progress`` payloads of the fuzzer with one element wrong each."""
    good = ["fuzzer", tick, tick, None, False, {}, {}]
    wrong = {0: ["", 5], 1: ["x", 2 ** 63], 2: ["x", float("inf"), -7], 3: ["x", 1.5],
             4: [1, "yes"], 5: [{"t": -1}, "x"], 6: [{"env": "far"}, "x"]}
    payloads = []
    for index, values in wrong.items():
        for value in values:
            fields = list(good)
            fields[index] = value
            payloads.append(msgpack.packb(fields))
    payloads.append(msgpack.packb(good[:4]))         # too few elements
    return payloads


def control_variants() -> list[bytes]:
    """Every field of every control op, one at a time of a wrong type; plus non-messages."""
    variants = []
    for kind in messages.MESSAGE_TYPES:
        hints = typing.get_type_hints(kind)
        fields = dataclasses.fields(kind)
        for target in fields:
            raw: dict[str, Any] = {"op": kind.OP}
            for field in fields:   # the required ones, valid, so that only ``target`` is wrong
                if field.default is dataclasses.MISSING and \
                        field.default_factory is dataclasses.MISSING:
                    raw[field.name] = _valid(hints[field.name])
            raw[target.name] = wrong_value(hints[target.name])
            variants.append(msgpack.packb(raw))
    variants += [b"\xc1", msgpack.packb([1, 2]), msgpack.packb({"op": "no-such-op"}),
                 msgpack.packb({"no": "op"})]
    return variants


def _valid(annotation: Any) -> Any:
    names = str(annotation)
    if "bool" in names:
        return True
    if "int" in names:
        return 1
    if "float" in names:
        return 1.0
    if "list" in names:
        return []
    if "dict" in names:
        return {}
    return "x"


class Fuzzer(Node):
    """See the module docstring."""

    inputs = ["env/state"]
    outputs = ["~/out"]
    period = 0.01
    params = {"at": Param(int, 40, "the tick at which everything is sent, once")}

    def setup(self, params: dict[str, Any]) -> None:
        self.at = params["at"]
        self.n = 0

    def step(self, t: float, inputs: dict[str, Any]) -> dict[str, Any]:
        self.n += 1
        if self.tick == self.at:
            self._send_everything()
        return {"~/out": {"n": self.n}}

    def _send_everything(self) -> None:
        from catbus.runtime.link import ProcessLink

        link = next((o for o in gc.get_objects() if type(o) is ProcessLink), None)
        if link is None:   # inline: no bus
            return
        plane = link.data
        topic = codec.topic_frame("fuzzer/out")
        for header in header_variants(self.tick, plane.seq["fuzzer/out"]):
            plane.pub.send(codec.envelope(topic, header, msgpack.packb(1)))
        progress = codec.topic_frame(PROGRESS_TOPIC)
        good_header = codec.Header("fuzzer", 0, self.tick, 0.0, time.time(), None,
                                   plane.incarnation).pack()
        for payload in progress_variants(self.tick):
            plane.pub.send(codec.envelope(progress, good_header, payload))
        seq = plane.seq["fuzzer/out"]
        plane.seq["fuzzer/out"] = seq + 1   # a valid header, a payload that does not decode
        plane.pub.send(codec.envelope(topic, codec.Header(
            "fuzzer", seq, self.tick, self.tick * 0.01, time.time(), None,
            plane.incarnation).pack(), b"\xc1\xc1"))
        dealer = zmq.Context.instance().socket(zmq.DEALER)
        dealer.setsockopt(zmq.LINGER, 2000)
        dealer.connect(link.bus)
        for data in control_variants():
            dealer.send(data)
        dealer.close()   # LINGER: what was sent still goes out


__all__ = ["Fuzzer", "header_variants", "progress_variants", "control_variants"]
