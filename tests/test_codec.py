"""The wire format (catbus.wire.codec): exact round trips, zero copy, read-only results, and malformed
frames that are refused with DecodeError (and counted, never fatal, by a node's inbox).

Round trips run pure (encode, decode) and through real ZeroMQ sockets: a PAIR over ``inproc`` and
an XPUB/SUB pair over ``ipc``, the socket types nodes use, sending with ``copy=False`` and
receiving zero-copy ``zmq.Frame`` objects as the node runtime does.
"""

from __future__ import annotations

import math
import shutil
import struct
import tempfile
from typing import Any

import msgpack
import numpy as np
import pytest
import zmq
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from catbus.wire import codec
from catbus.wire.protocol import HEADER_VERSION
from catbus.runtime.inbox import Inbox, InputBinding

pytestmark = pytest.mark.timeout(60)

#: Arrays up to this many bytes may travel inside the payload instead of in a frame of their own.
INLINE_MAX = getattr(codec, "INLINE_MAX_BYTES", -1)
HEADER = codec.Header("pub", 7, 3, 0.25, 1234.5, None, 2)
SETTINGS = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# ------------------------------------------------------------------------------------------------
# transports
# ------------------------------------------------------------------------------------------------
class Wire:
    """Sends frames one way and returns what arrived, as the runtime receives it."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.folder = None
        if kind == "pure":
            return
        self.ctx = zmq.Context()
        if kind == "inproc":
            self.tx, self.rx = self.ctx.socket(zmq.PAIR), self.ctx.socket(zmq.PAIR)
            self.tx.bind("inproc://codec-test")
            self.rx.connect("inproc://codec-test")
        else:
            self.folder = tempfile.mkdtemp(prefix="cbc", dir="/tmp")
            self.tx, self.rx = self.ctx.socket(zmq.XPUB), self.ctx.socket(zmq.SUB)
            self.tx.bind(f"ipc://{self.folder}/pub.sock")
            self.rx.setsockopt(zmq.SUBSCRIBE, b"")
            self.rx.connect(f"ipc://{self.folder}/pub.sock")
            # The XPUB hands us the subscription once the SUB is connected: after it, nothing
            # we publish is lost (an event, not a sleep).
            assert self.tx.poll(5000), "the SUB socket never subscribed"
            assert self.tx.recv() == b"\x01"
        for sock in (self.tx, self.rx):
            sock.setsockopt(zmq.LINGER, 0)

    def carry(self, frames: list[Any]) -> list[Any]:
        """Send ``frames`` (copy=False: buffers are not copied on send) and receive them as
        zero-copy frames; returns the buffers the runtime hands to the decoder."""
        if self.kind == "pure":
            return frames
        self.tx.send_multipart(frames, copy=False)
        assert self.rx.poll(5000), "message not delivered"
        received = self.rx.recv_multipart(copy=False)
        return [frame.buffer for frame in received]

    def close(self) -> None:
        if self.kind != "pure":
            self.tx.close()
            self.rx.close()
            self.ctx.term()
        if self.folder:
            shutil.rmtree(self.folder, ignore_errors=True)


@pytest.fixture(scope="module", params=["pure", "inproc", "ipc"])
def wire(request: pytest.FixtureRequest) -> Wire:
    w = Wire(request.param)
    yield w
    w.close()


def round_trip(wire: Wire, value: Any, topic: str = "robot/sensors") -> tuple[Any, list[Any]]:
    frames = codec.encode_message(topic, HEADER, value)
    received = wire.carry(frames)
    got_topic, header, decoded = codec.decode_message(received)
    assert got_topic == topic
    assert header == HEADER
    return decoded, received


# ------------------------------------------------------------------------------------------------
# strategies
# ------------------------------------------------------------------------------------------------
def numeric_dtypes() -> st.SearchStrategy[np.dtype]:
    """Every fixed-size numeric kind, both byte orders."""
    return st.one_of(
        hnp.integer_dtypes(endianness="?"), hnp.unsigned_integer_dtypes(endianness="?"),
        hnp.floating_dtypes(endianness="?"), hnp.complex_number_dtypes(endianness="?"),
        hnp.datetime64_dtypes(endianness="?"), hnp.timedelta64_dtypes(endianness="?"))


def scalar_dtypes() -> st.SearchStrategy[np.dtype]:
    return st.one_of(numeric_dtypes(), hnp.boolean_dtypes(),
                     hnp.byte_string_dtypes(endianness="=", max_len=5),
                     hnp.unicode_string_dtypes(endianness="?", max_len=5))


@st.composite
def structured_dtypes(draw: st.DrawFn, depth: int = 1) -> np.dtype:
    """Structured dtypes: named fields of any kind, sub-array fields, one level of nesting, and
    sometimes C-aligned (with padding)."""
    fields = []
    for index in range(draw(st.integers(1, 3))):
        sub = draw(structured_dtypes(depth - 1)) if depth and draw(st.booleans()) else \
            draw(scalar_dtypes())
        shape = draw(st.sampled_from([(), (), (2,), (2, 3)]))
        fields.append((f"f{index}", sub, shape) if shape else (f"f{index}", sub))
    return np.dtype(fields, align=draw(st.booleans()))


def any_dtypes() -> st.SearchStrategy[np.dtype]:
    """Numeric kinds, bool, strings, and structured dtypes (nested, with sub-arrays)."""
    return st.one_of(scalar_dtypes(), structured_dtypes())


SHAPES = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4)


@st.composite
def bit_arrays(draw: st.DrawFn, big: bool = False) -> np.ndarray:
    """Numeric arrays with arbitrary bit patterns: NaNs with payloads, signalling NaNs, -0.0,
    infinities, subnormals, NaT. ``big`` gives arrays larger than the inline limit."""
    dtype = draw(numeric_dtypes())
    if big:
        count = max(1, INLINE_MAX // dtype.itemsize + 1) + draw(st.integers(0, 64))
        shape = draw(st.sampled_from([(count,), (count, 1), (1, count), (2, count)]))
    else:
        shape = draw(SHAPES)
    size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    raw = draw(st.binary(min_size=size, max_size=size))
    return np.frombuffer(bytearray(raw), dtype=dtype).reshape(shape)


def valued_arrays() -> st.SearchStrategy[np.ndarray]:
    """Arrays of every dtype kind with values hypothesis finds interesting."""
    return any_dtypes().flatmap(lambda dtype: hnp.arrays(dtype, SHAPES))


@st.composite
def non_contiguous(draw: st.DrawFn, base: np.ndarray) -> np.ndarray:
    """A non-C-contiguous view of (a 2-d version of) ``base``: a slice, a transpose, reversed, or
    a Fortran-ordered copy."""
    grid = base.reshape(-1)[: (base.size // 2) * 2].reshape(-1, 2) if base.size >= 2 else \
        base.reshape(1, -1)
    kind = draw(st.sampled_from(["step", "transpose", "reverse", "fortran", "column"]))
    if kind == "step":
        return grid[::2]
    if kind == "transpose":
        return grid.T
    if kind == "reverse":
        return grid[::-1]
    if kind == "fortran":
        return np.asfortranarray(np.stack([grid, grid], axis=-1))
    return grid[:, :1]


def leaves() -> st.SearchStrategy[Any]:
    scalars = any_dtypes().flatmap(lambda d: hnp.arrays(d, ())).map(lambda a: a[()])
    return st.one_of(
        st.none(), st.booleans(), st.integers(-2**63, 2**64 - 1), st.floats(), st.text(max_size=8),
        st.binary(max_size=8), valued_arrays(), bit_arrays(), bit_arrays(big=True), scalars)


def messages() -> st.SearchStrategy[Any]:
    keys = st.one_of(st.text(max_size=6), st.integers(-5, 5))
    return st.recursive(leaves(), lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(keys, children, max_size=4)),
        max_leaves=10)


# ------------------------------------------------------------------------------------------------
# exactness
# ------------------------------------------------------------------------------------------------
def assert_exact(got: Any, want: Any, where: str = "value") -> None:
    """Same types, dtypes, shapes and bytes (NaN payloads and -0.0 included)."""
    if isinstance(want, np.ndarray):
        assert isinstance(got, np.ndarray), f"{where}: {type(got)} is not an array"
        assert got.dtype == want.dtype, f"{where}: dtype {got.dtype} != {want.dtype}"
        assert got.shape == want.shape, f"{where}: shape {got.shape} != {want.shape}"
        assert not got.flags.writeable, f"{where}: a received array must be read-only"
        if want.dtype.names:   # field by field: padding bytes of an aligned struct are undefined
            for name in want.dtype.names:
                assert_exact(got[name], want[name], f"{where}.{name}")
        else:
            assert got.tobytes() == want.tobytes(), f"{where}: bytes differ"
    elif isinstance(want, np.generic):
        assert type(got) is type(want), f"{where}: {type(got)} is not {type(want)}"
        assert got.dtype == want.dtype, f"{where}: dtype {got.dtype} != {want.dtype}"
        assert np.asarray(got).tobytes() == np.asarray(want).tobytes(), f"{where}: bytes differ"
    elif isinstance(want, dict):
        assert isinstance(got, dict) and list(got) == list(want), f"{where}: keys differ"
        for key in want:
            assert_exact(got[key], want[key], f"{where}[{key!r}]")
    elif isinstance(want, (list, tuple)):
        assert isinstance(got, list) and len(got) == len(want), f"{where}: list differs"
        for index, (g, w) in enumerate(zip(got, want)):
            assert_exact(g, w, f"{where}[{index}]")
    elif isinstance(want, float):
        assert type(got) is float and struct.pack("<d", got) == struct.pack("<d", want), \
            f"{where}: {got!r} != {want!r}"
    else:
        assert type(got) is type(want) and got == want, f"{where}: {got!r} != {want!r}"


def walk_arrays(value: Any) -> list[np.ndarray]:
    if isinstance(value, np.ndarray):
        return [value]
    if isinstance(value, dict):
        return [a for v in value.values() for a in walk_arrays(v)]
    if isinstance(value, list):
        return [a for v in value for a in walk_arrays(v)]
    return []


NAN_PAYLOADS = np.array([0x7FF0000000000001, 0xFFF8000000000123, 0x7FF8DEADBEEF0000,
                         0x8000000000000000, 0x7FF0000000000000, 0xFFF0000000000000],
                        dtype="<u8").view("<f8")


# ------------------------------------------------------------------------------------------------
# round trips
# ------------------------------------------------------------------------------------------------
@SETTINGS
@given(array=st.one_of(valued_arrays(), bit_arrays(), bit_arrays(big=True)))
@example(array=NAN_PAYLOADS)
@example(array=NAN_PAYLOADS.astype(">f8"))
@example(array=np.array([np.nan, -0.0, np.inf, -np.inf, 5e-324], dtype="<f4"))
@example(array=np.zeros((0,), dtype="<f8"))
@example(array=np.zeros((3, 0, 2), dtype="<i2"))
@example(array=np.array(2.5))
@example(array=np.array(["2021-01-01", "NaT"], dtype="datetime64[ns]"))
@example(array=np.zeros(4, dtype=np.dtype([("a", "u1"), ("b", "<f8")], align=True)))
def test_arrays_round_trip_exactly(wire: Wire, array: np.ndarray) -> None:
    decoded, _ = round_trip(wire, array)
    assert_exact(decoded, array)


@SETTINGS
@given(data=st.data(), base=st.one_of(valued_arrays(), bit_arrays(), bit_arrays(big=True)))
def test_non_contiguous_arrays_round_trip(wire: Wire, data: st.DataObject,
                                          base: np.ndarray) -> None:
    view = data.draw(non_contiguous(base))
    decoded, _ = round_trip(wire, {"v": view, "list": [view, base]})
    assert_exact(decoded, {"v": np.ascontiguousarray(view),
                           "list": [np.ascontiguousarray(view), base]})
    assert decoded["v"].flags.c_contiguous


@SETTINGS
@given(value=messages())
def test_nested_messages_round_trip(wire: Wire, value: Any) -> None:
    decoded, _ = round_trip(wire, value)
    assert_exact(decoded, value)


@SETTINGS
@given(scalar=any_dtypes().flatmap(lambda d: hnp.arrays(d, ())).map(lambda a: a[()]))
@example(scalar=np.float64(-0.0))
@example(scalar=NAN_PAYLOADS[1])
@example(scalar=np.bool_(True))
@example(scalar=np.datetime64("NaT", "ms"))
@example(scalar=np.complex64(complex(np.nan, -0.0)))
@example(scalar=np.array(["", "ab"])[0])       # np.str_(""), dtype <U0
@example(scalar=np.bytes_(b""))
def test_numpy_scalars_keep_their_type(wire: Wire, scalar: np.generic) -> None:
    decoded, _ = round_trip(wire, {"s": scalar, "l": [scalar]})
    assert_exact(decoded, {"s": scalar, "l": [scalar]})


def test_tuples_become_lists_and_object_arrays_are_refused() -> None:
    _, _, value = codec.decode_message(codec.encode_message("a", HEADER, {"t": (1, (2.0, "x"))}))
    assert value == {"t": [1, [2.0, "x"]]}
    with pytest.raises(TypeError, match="object"):
        codec.encode_message("a", HEADER, np.array([1, "x"], dtype=object))
    with pytest.raises(TypeError):
        codec.encode_message("a", HEADER, {"s": {1, 2}})


# ------------------------------------------------------------------------------------------------
# zero copy
# ------------------------------------------------------------------------------------------------
def big(dtype: str = "<f8", shape: tuple = (64, 33)) -> np.ndarray:
    array = np.arange(int(np.prod(shape)), dtype=dtype).reshape(shape)
    assert array.nbytes > INLINE_MAX
    return array


def test_contiguous_array_frame_shares_memory_on_send() -> None:
    array = big()
    frames = codec.encode_message("t", HEADER, {"a": array, "b": [array[1:10]]})
    buffers = frames[1:]
    assert len(buffers) == 2
    assert np.shares_memory(np.frombuffer(buffers[0], np.uint8), array)
    assert np.shares_memory(np.frombuffer(buffers[1], np.uint8), array)   # a contiguous slice


def test_non_contiguous_array_is_copied_once() -> None:
    array = big()
    view = array.T
    frames = codec.encode_message("t", HEADER, view)
    (buffer,) = frames[1:]
    assert not np.shares_memory(np.frombuffer(buffer, np.uint8), array)
    assert bytes(buffer) == np.ascontiguousarray(view).tobytes()


@pytest.mark.parametrize("kind", ["inproc", "ipc"])
def test_decoded_array_is_a_read_only_view_of_the_received_frame(kind: str) -> None:
    wire = Wire(kind)
    try:
        array = big("<i4", (300, 7))
        decoded, received = round_trip(wire, {"a": array, "small": np.arange(3)})
        frame = np.frombuffer(received[1], np.uint8)
        assert np.shares_memory(decoded["a"], frame), "the array was copied on receive"
        assert not decoded["a"].flags.writeable
        assert not decoded["small"].flags.writeable
        with pytest.raises(ValueError):
            decoded["a"][0, 0] = 1
        assert_exact(decoded["a"], array)
    finally:
        wire.close()


# ------------------------------------------------------------------------------------------------
# malformed frames
# ------------------------------------------------------------------------------------------------
def good_payload() -> bytes:
    return codec.encode_payload({"n": 1})[0]


def header_of(*fields: Any) -> bytes:
    return msgpack.packb(list(fields))


def array_ref(index: int, descr: str = "<f8", shape: tuple = (2,)) -> bytes:
    meta = msgpack.packb([descr, list(shape), index])
    return msgpack.packb({"a": msgpack.ExtType(codec.EXT_NDARRAY, meta)})


GOOD_HEADER = HEADER.pack()
T = codec.topic_frame("t/x")
V = HEADER_VERSION


def env(topic_prefix: bytes, header: bytes, payload: bytes, *buffers: bytes) -> list[bytes]:
    """The frames of a message built by hand: the envelope, then the buffer frames."""
    return [codec.envelope(topic_prefix, header, payload), *buffers]
# Malformed messages that still reach a subscriber of "t/x" (ZeroMQ's prefix match lets through
# anything starting with b"t/x\0"): (label, frames, caught when the frames arrive?).
MALFORMED = [
    ("no frames", [], True),
    ("topic only", [T], True),
    ("no NUL after the topic", [b"t/x"], True),
    ("header length cut short", [T + b"\x00"], True),
    ("header length past the end", [T + b"\x00\x40" + GOOD_HEADER], True),
    ("topic not utf-8", env(b"t/\xff\xfe\0", GOOD_HEADER, good_payload()), True),
    ("header not msgpack", env(T, b"\xc1", good_payload()), True),
    ("header truncated", env(T, GOOD_HEADER[:-3], good_payload()), True),
    ("header not a list", env(T, msgpack.packb({"v": 1}), good_payload()), True),
    ("header too short", env(T, header_of(V, "pub", 1, 0), good_payload()), True),
    ("wrong version", env(T, header_of(99, "pub", 1, 0, 0, 0.0, 0.0, None), good_payload()), True),
    ("version 1", env(T, header_of(1, "pub", 0, 0, 0.0, 0.0, None), good_payload()), True),
    ("version 2", env(T, header_of(2, "pub", 1, 0, 0, 0.0, 0.0, None), good_payload()), True),
    ("header field types", env(T, header_of(V, 5, 1, "x", 0, 0.0, 0.0, None), good_payload()),
     True),
    ("incarnation not an int", env(T, header_of(V, "pub", "1", 0, 0, 0.0, 0.0, None),
                                   good_payload()), True),
    ("seq a bool", env(T, header_of(V, "pub", 1, True, 0, 0.0, 0.0, None), good_payload()), True),
    ("through a string", env(T, header_of(V, "pub", 1, 0, 0, 0.0, 0.0, "9"), good_payload()),
     True),
    ("header time not a number", env(T, header_of(V, "pub", 1, 0, 0, "soon", 0.0, None),
                                     good_payload()), True),
    ("header time nil", env(T, header_of(V, "pub", 1, 0, 0, None, 0.0, None), good_payload()),
     True),
    ("garbage payload", env(T, GOOD_HEADER, b"\xc1\xc1"), False),
    ("truncated payload", env(T, GOOD_HEADER, good_payload()[:-1]), False),
    ("buffer index out of range", env(T, GOOD_HEADER, array_ref(3), b"\0" * 16), False),
    ("negative buffer index", env(T, GOOD_HEADER, array_ref(-1), b"\0" * 16), False),
    ("buffer of the wrong size", env(T, GOOD_HEADER, array_ref(0, shape=(5,)), b"\0" * 12), False),
    ("bad dtype", env(T, GOOD_HEADER, array_ref(0, descr="<nope"), b"\0" * 16), False),
    ("array meta not a list", env(T, GOOD_HEADER, msgpack.packb(msgpack.ExtType(
        codec.EXT_NDARRAY, msgpack.packb(7))), b""), False),
    ("scalar with short data", env(T, GOOD_HEADER, msgpack.packb(msgpack.ExtType(
        codec.EXT_NPSCALAR, msgpack.packb(["<f8", b"\0\0"])))), False),
]


@pytest.mark.parametrize("label, frames, early", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_frames_raise_decode_error(label: str, frames: list, early: bool) -> None:
    with pytest.raises(codec.DecodeError):
        codec.decode_message(frames)


def _decode_or_decode_error(frames: list[bytes]) -> None:
    """Decoding raises nothing but DecodeError, and an inbox given the frames neither raises on
    arrival nor when a step takes its inputs."""
    try:
        codec.decode_message(frames)
    except codec.DecodeError:
        pass
    inbox = Inbox([InputBinding("x", "t/x", "all")], {})
    inbox.add_frames(frames)
    inbox.take_latest()


@SETTINGS
@given(frames=st.lists(st.binary(max_size=40), max_size=6))
def test_random_frames_decode_or_raise_decode_error(frames: list[bytes]) -> None:
    _decode_or_decode_error(frames)


@SETTINGS
@given(value=messages(), data=st.data())
def test_corrupted_messages_decode_or_raise_decode_error(value: Any, data: st.DataObject) -> None:
    """Flip bytes of a real message's envelope (after the topic) or buffers: never anything but
    DecodeError."""
    frames = [bytes(f) for f in codec.encode_message("t/x", HEADER, value)]
    index = data.draw(st.integers(0, len(frames) - 1), label="frame")
    frame = bytearray(frames[index])
    if frame:
        for _ in range(data.draw(st.integers(1, 3), label="flips")):
            position = data.draw(st.integers(len(T) if index == 0 else 0, len(frame) - 1),
                                 label="position")
            frame[position] = data.draw(st.integers(0, 255), label="byte")
    else:
        frame = bytearray(b"\xc1")
    frames[index] = bytes(frame)
    _decode_or_decode_error(frames)


def test_header_round_trip_and_unknown_trailing_fields_are_tolerated() -> None:
    assert codec.Header.unpack(HEADER.pack()) == HEADER
    longer = msgpack.packb([*msgpack.unpackb(HEADER.pack()), None, "future", 1])
    header = codec.Header.unpack(longer)
    assert (header.publisher, header.seq, header.tick, header.incarnation) == ("pub", 7, 3, 2)
    assert math.isclose(header.sim_time, 0.25)
