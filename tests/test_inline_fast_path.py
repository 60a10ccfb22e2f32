"""Inline delivers values without the bytes in between (``localcopy.local_copy``), yet a node still
receives exactly what ``decode(encode(value))`` gives, as over the wire: tuples become lists,
arrays are read-only copies (taken when published) with the received dtype, numpy scalars keep
their dtype, and what one reader does to a received dict or list never reaches another reader."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

import catbus
from catbus.errors import NodeFailed
from catbus.node import Node
from catbus.wire import codec
from catbus.wire import localcopy


def round_trip(value: Any) -> Any:
    """What the wire delivers: encode, copy the bytes (as a socket does), decode."""
    payload, buffers = codec.encode_payload(value)
    return codec.decode_payload(bytes(payload), [bytes(b) for b in buffers])


def assert_identical(got: Any, expected: Any, path: str = "value") -> None:
    """Same types all the way down, same keys in the same order, arrays of the same dtype
    (and dtype type), shape and bytes, read-only and impossible to make writeable."""
    assert type(got) is type(expected), f"{path}: {type(got)} != {type(expected)}"
    if type(expected) is dict:
        assert list(got) == list(expected), path
        assert all(type(a) is type(b) for a, b in zip(got, expected)), path
        for key in expected:
            assert_identical(got[key], expected[key], f"{path}[{key!r}]")
    elif type(expected) is list:
        assert len(got) == len(expected), path
        for index, (a, b) in enumerate(zip(got, expected)):
            assert_identical(a, b, f"{path}[{index}]")
    elif type(expected) is np.ndarray:
        assert got.dtype == expected.dtype and got.dtype.type is expected.dtype.type, path
        assert got.dtype.str == expected.dtype.str, path
        assert got.shape == expected.shape and got.tobytes() == expected.tobytes(), path
        assert got.flags.c_contiguous and not got.flags.writeable, path
        with pytest.raises(ValueError):
            got.flags.writeable = True
    elif isinstance(expected, np.generic):
        assert got.dtype == expected.dtype and got.tobytes() == expected.tobytes(), path
    elif type(expected) is float:
        assert math.isnan(got) and math.isnan(expected) or got == expected, path
        assert math.copysign(1, got) == math.copysign(1, expected), path
    else:
        assert got == expected, path


def values() -> list[Any]:
    a = np.arange(4.0).reshape(4, 1)
    return [
        {"cartesian_sensor": {"pos": a[:2], "vel": a[2:]}, "state_sensor": {"state": a},
         "communication_sensor": {}},
        {"t": (1, (2.0, np.float32(3.0))), "flags": np.array([True, False]), "none": None},
        {"nc": np.arange(20.0).reshape(4, 5).T, "ncbig": np.arange(600.0).reshape(20, 30).T,
         "fortran": np.asfortranarray(np.arange(6.0).reshape(2, 3))},
        {"empty": np.zeros((0, 3)), "be": np.arange(3, dtype=">i4"), "c": np.arange(2) * 1j,
         "zero_d": np.array(2.5), "big": np.arange(300.0), "f16": np.ones(3, np.float16)},
        {"longlong": np.array([1, 2], dtype=np.longlong), "u8": np.uint8(200),
         "b": np.bool_(True), "f": np.float64(0.5)},
        {"ints": [0, -1, 2 ** 63 - 1, -(2 ** 63), 2 ** 64 - 1], "bool": [True, False],
         "floats": [float("nan"), -0.0, float("inf"), 1e-310], "s": "héllo ☃", "by": b"\x00\xff",
         1: "int key", -5: {"deep": [[[[1]]]]}, "ключ": ()},
        [np.int64(7), None, {"nested": [np.eye(2), np.arange(130.0)]}, (np.zeros(2),)],
        np.arange(3.0),
        (1, 2),
        "just a string",
        3,
    ]


def exotic() -> list[Any]:
    """Values local_copy leaves to the codec (valid ones, which the codec then encodes)."""
    structured = np.zeros(3, dtype=[("a", "<f4"), ("b", "<i2", (2,))])
    return [{"s": structured}, {"u": np.array(["ab", "c"])}, [np.str_("x")],
            {"bytearray": bytearray(b"ab")}, {2.5: "float key"},
            {"deep": _nest(100)}, np.datetime64("2020-01-01"), {None: "none key"},
            {"ll": np.longlong(3)}, [np.ulonglong(4)]]


def _nest(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize("value", values(), ids=range(len(values())))
def test_local_copy_is_the_codec_round_trip(value: Any) -> None:
    expected = round_trip(value)
    got = localcopy.local_copy(value)
    assert_identical(got, expected)
    assert_identical(localcopy.local_fresh(got), expected)
    localcopy.check_local(value)


@pytest.mark.parametrize("value", exotic(), ids=range(len(exotic())))
def test_values_local_copy_does_not_handle_are_left_to_the_codec(value: Any) -> None:
    with pytest.raises(localcopy.NotLocal):
        localcopy.local_copy(value)
    localcopy.check_local(value)   # valid for the codec: no error


@pytest.mark.parametrize("bad", [
    {"o": object()}, {"a": np.array([None, 1])}, [1, {2: 2 ** 64}], {"s": "\ud800"},
    {"i": -(2 ** 63) - 1}, {"sub": type("D", (dict,), {})()}])
def test_check_local_raises_what_encoding_raises(bad: Any) -> None:
    with pytest.raises(Exception) as encoded:
        codec.encode_payload(bad)
    with pytest.raises(type(encoded.value)):
        localcopy.check_local(bad)


def test_arrays_are_taken_when_published() -> None:
    array = np.zeros(3)
    copy = localcopy.local_copy({"a": array})
    array[:] = 7
    assert copy["a"].tolist() == [0.0, 0.0, 0.0]


# -- inline runs ---------------------------------------------------------------------------------
#: What the nodes below saw, by node name: filled by inline runs in this very process.
SEEN: dict[str, list[Any]] = {}
SENT: list[Any] = []


class Source(Node):
    """Publishes every value of :func:`values` and :func:`exotic` in turn, then changes what
    it published in place (which must change nothing that was sent)."""

    outputs = ["~/out", "~/unread"]
    period = 0.1

    def setup(self, params: dict[str, Any]) -> None:
        self.values = values() + exotic()
        self.last: Any = None

    def step(self, t: float, inputs: dict[str, Any]) -> dict[str, Any]:
        if isinstance(self.last, dict):
            for key, item in self.last.items():
                if type(item) is np.ndarray and item.size and item.dtype.kind == "f":
                    item[...] = -1.0
            self.last["added"] = 1
        value = self.values[self.tick % len(self.values)]
        SENT.append(round_trip(value))
        self.last = value
        return {"~/out": value, "~/unread": value}


class Mutator(Node):
    """Reads ``source/out`` and changes every container it received."""

    inputs = ["source/out"]
    period = 0.1

    def step(self, t: float, inputs: dict[str, Any]) -> None:
        value = inputs["source/out"]
        SEEN.setdefault(self.name, []).append(round_trip(value) if value is not None else None)
        _scribble(value)


class Observer(Node):
    """Reads ``source/out`` and keeps what it received, then changes it."""

    inputs = ["source/out"]
    period = 0.1

    def step(self, t: float, inputs: dict[str, Any]) -> None:
        value = inputs["source/out"]
        SEEN.setdefault(self.name, []).append(value)
        _scribble(value)


class ReactiveObserver(Node):
    """Reads ``source/out`` as it arrives (before the periodic readers step)."""

    inputs = ["source/out"]

    def on_message(self, name: str, value: Any) -> None:
        SEEN.setdefault(self.name, []).append(round_trip(value))
        _scribble(value)


def _scribble(value: Any) -> None:
    if type(value) is dict:
        for key in list(value):
            _scribble(value[key])
        value["scribbled"] = True
        value.pop(next(iter(value)))
    elif type(value) is list:
        for item in value:
            _scribble(item)
        value.append("scribbled")


def _launch(first: str, second: str) -> dict:
    here = "tests.test_inline_fast_path"
    classes = {"mutator": "Mutator", "observer": "Observer"}
    return {"name": "fast_path", "steps": len(values()) + len(exotic()) - 1, "seed": 0,
            "nodes": {"source": {"class": f"{here}:Source"},
                      first: {"class": f"{here}:{classes[first]}"},
                      second: {"class": f"{here}:{classes[second]}"},
                      "reactive": {"class": f"{here}:ReactiveObserver"}}}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("order", [("mutator", "observer"), ("observer", "mutator")])
@pytest.mark.parametrize("record", [False, True])
def test_every_inline_reader_gets_its_own_round_trip(order: tuple[str, str], record: bool,
                                                     tmp_path: Any) -> None:
    SEEN.clear()
    SENT.clear()
    catbus.run(_launch(*order), mode="inline", record=tmp_path / "r.mcap" if record else False,
               progress=False, evaluate=False)
    count = len(values()) + len(exotic())
    assert len(SENT) == count
    for name in ("mutator", "observer", "reactive"):
        assert len(SEEN[name]) == count, name
    for name in ("mutator", "reactive"):   # what they received, before scribbling on it
        for got, expected in zip(SEEN[name], SENT):
            assert_identical(got, expected, name)
    # The observer keeps what it received and scribbled on: exactly the round trip, scribbled
    # once (by itself), whichever reader ran first and scribbled on its own copy.
    for got, expected in zip(SEEN["observer"], SENT):
        scribbled = round_trip(expected)
        _scribble(scribbled)
        assert_identical(got, scribbled, "observer")


class BadPublisher(Node):
    outputs = ["~/nobody_reads_this"]
    period = 0.1

    def step(self, t: float, inputs: dict[str, Any]) -> dict[str, Any]:
        return {"~/nobody_reads_this": {"fine": np.zeros(2), "bad": object()}}


def test_an_unsendable_value_no_one_reads_still_fails_an_inline_run() -> None:
    launch = {"name": "bad", "steps": 2, "seed": 0, "nodes": {
        "bad": {"class": "tests.test_inline_fast_path:BadPublisher"}}}
    with pytest.raises(NodeFailed, match="nobody_reads_this"):
        catbus.run(launch, mode="inline", record=False, progress=False, evaluate=False)
