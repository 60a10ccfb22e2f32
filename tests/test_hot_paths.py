"""The fast paths of the codec, receive path, recorder and schedule clock do exactly what the
plain versions did: reused packers leak nothing between messages, cached array heads and topic
names give the same bytes and values, the MCAP fast path writes the same file."""

from __future__ import annotations

import io
import random
import threading
import time
from fractions import Fraction

import msgpack
import numpy as np
import pytest
import zmq
from mcap.writer import CompressionType, Writer

from catbus.wire import codec
from catbus.wire.protocol import HEADER_VERSION
from catbus.runtime.dataplane import receive_frames, send_frames
from catbus.recording.fastmcap import (FastChunkBuilder, MessageAdder, message_adder,
                                      use_fast_chunks)
from catbus.runtime.schedule import Schedule
from catbus.runtime.simclock import sim_time_function


def _reference_payload(value):
    """The payload as the original codec built it: a fresh ``msgpack.packb`` per array."""
    buffers = []

    def default(obj):
        if isinstance(obj, np.ndarray):
            if obj.nbytes <= codec.INLINE_MAX_BYTES:
                meta = msgpack.packb([np.lib.format.dtype_to_descr(obj.dtype), obj.shape,
                                      obj.tobytes()])
                return msgpack.ExtType(codec.EXT_NDARRAY_INLINE, meta)
            buffers.append(np.ascontiguousarray(obj).tobytes())
            meta = msgpack.packb([np.lib.format.dtype_to_descr(obj.dtype), obj.shape,
                                  len(buffers) - 1])
            return msgpack.ExtType(codec.EXT_NDARRAY, meta)
        if isinstance(obj, np.generic):
            return msgpack.ExtType(codec.EXT_NPSCALAR, msgpack.packb(
                [np.lib.format.dtype_to_descr(obj.dtype), np.asarray(obj).tobytes()]))
        if isinstance(obj, tuple):
            return list(obj)
        raise TypeError(type(obj).__name__)

    return msgpack.packb(value, default=default, strict_types=True), buffers


def _messages():
    """Different messages in a row: shapes and dtypes of equal byte size, sizes either side of
    the inline limit, non-contiguous and zero-size arrays, scalars, tuples, structured dtypes."""
    structured = np.zeros(3, dtype=[("a", "<f4"), ("b", "<i2", (2,))])
    structured["a"] = [1.5, 2.5, 3.5]
    return [
        {"pos": np.arange(2.0).reshape(2, 1), "n": 1},
        {"pos": np.arange(2.0).reshape(1, 2), "label": "row"},
        {"v": np.arange(4, dtype=np.float32)},                     # 16 bytes, like the above
        {"big": np.arange(200.0), "small": np.ones((3, 3))},        # 1600 bytes: a buffer frame
        {"t": (1, (2.0, np.float32(3.0))), "flags": np.array([True, False])},
        {"nc": np.arange(20.0).reshape(4, 5).T, "ncbig": np.arange(600.0).reshape(20, 30).T},
        {"empty": np.zeros((0, 3)), "be": np.arange(3, dtype=">i4"), "c": np.arange(2) * 1j},
        {"s": structured, "u": np.array(["ab", "c"])},
        [np.int64(7), np.str_("x"), None, {"nested": [np.eye(2), np.arange(130.0)]}],
    ]


def _assert_same(decoded, original) -> None:
    if isinstance(original, np.ndarray):
        assert isinstance(decoded, np.ndarray)
        assert decoded.dtype == original.dtype and decoded.shape == original.shape
        assert decoded.tobytes() == np.ascontiguousarray(original).tobytes()
        assert not decoded.flags.writeable
    elif isinstance(original, dict):
        assert list(decoded) == list(original)
        for key in original:
            _assert_same(decoded[key], original[key])
    elif isinstance(original, (list, tuple)):
        assert isinstance(decoded, list) and len(decoded) == len(original)
        for item, expected in zip(decoded, original):
            _assert_same(item, expected)
    else:
        assert decoded == original and type(decoded) is type(original)


def test_reused_packers_encode_each_message_as_a_fresh_packer_would() -> None:
    for _ in range(3):   # the second and third rounds hit every cache
        for value in _messages():
            payload, buffers = codec.encode_payload(value)
            expected_payload, expected_buffers = _reference_payload(value)
            assert payload == expected_payload
            assert [bytes(b) for b in buffers] == expected_buffers
            _assert_same(codec.decode_payload(payload, buffers), value)


def test_a_failed_encode_leaves_nothing_behind_for_the_next_message() -> None:
    big = np.arange(300.0)   # becomes a buffer frame before the failure is reached
    for bad in ({"big": big, "oops": object()}, {"big": big, "obj": np.array([None, 1])},
                [big, np.array([{}], dtype=object)]):
        with pytest.raises(TypeError):
            codec.encode_payload(bad)
        value = {"ok": np.arange(3.0), "big": np.arange(150.0)}
        payload, buffers = codec.encode_payload(value)
        assert (payload, [bytes(b) for b in buffers]) == _reference_payload(value)
        assert len(buffers) == 1


def test_threads_encoding_at_once_do_not_mix_their_messages() -> None:
    errors: list[str] = []

    def work(seed: int) -> None:
        rng = np.random.default_rng(seed)
        for index in range(300):
            value = {"who": seed, "i": index, "a": rng.random((2, 1)), "b": rng.random(200)}
            payload, buffers = codec.encode_payload(value)
            back = codec.decode_payload(payload, [bytes(b) for b in buffers])
            if back["who"] != seed or not np.array_equal(back["b"], value["b"]) \
                    or not np.array_equal(back["a"], value["a"]):
                errors.append(f"thread {seed} message {index}")

    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


def test_an_inline_array_whose_bytes_do_not_match_its_shape_is_a_decode_error() -> None:
    for raw in (bytes(8), bytes(24)):     # shape (2,) of <f8 needs exactly 16 bytes
        data = msgpack.packb(["<f8", [2], raw])
        payload = msgpack.packb(msgpack.ExtType(codec.EXT_NDARRAY_INLINE, data))
        with pytest.raises(codec.DecodeError):
            codec.decode_payload(payload)


def test_topic_names_are_the_same_from_the_cache_and_errors_stay_errors() -> None:
    def topic_of(prefix: bytes) -> str:
        return codec.open_envelope(codec.envelope(prefix, b"\x90", b"\xc0"))[0]

    for _ in range(2):
        assert topic_of(b"robot/sensors\0") == "robot/sensors"
        assert topic_of("réseau/état\0".encode()) == "réseau/état"
        with pytest.raises(codec.DecodeError):
            codec.open_envelope(b"robot/sensors")
        with pytest.raises(codec.DecodeError):
            topic_of(b"\xff\xfe\0")


def test_an_envelope_splits_into_topic_header_and_payload_without_copying_the_payload() -> None:
    frame = codec.envelope(b"a/b\0", b"HEADER", b"payload bytes")
    topic, header, payload = codec.open_envelope(frame)
    assert (topic, header, bytes(payload)) == ("a/b", b"HEADER", b"payload bytes")
    assert isinstance(payload, memoryview) and payload.obj is frame
    assert codec.open_envelope(codec.envelope(b"a\0", b"", b""))[1:] == (b"", memoryview(b""))
    for short in (b"a\0", b"a\0\x00", b"a\0\x00\x05abcd"):
        with pytest.raises(codec.DecodeError):
            codec.open_envelope(short)
    with pytest.raises(ValueError):
        codec.envelope(b"a\0", bytes(codec.HEADER_MAX + 1), b"")


def test_receive_frames_reads_whole_messages_and_none_when_empty() -> None:
    # PAIR, not PUB/SUB: no subscription to wait for, so nothing here needs a sleep; the
    # function only sees a socket.
    ctx = zmq.Context()
    sender, receiver = ctx.socket(zmq.PAIR), ctx.socket(zmq.PAIR)
    try:
        sender.bind("inproc://hot-paths")
        receiver.connect("inproc://hot-paths")
        receiver.setsockopt(zmq.RCVTIMEO, 5000)
        header = codec.Header("me", 0, 0, 0.0, 0.0)
        small = codec.encode_message("a/b", header, {"x": 1})
        large = codec.encode_message("a/c", header, {"x": np.arange(100_000.0)})
        assert receive_frames(receiver) is None   # nothing sent yet: no wait without wait=True
        send_frames(sender, small)
        send_frames(sender, large)
        received = [receive_frames(receiver, wait=True), receive_frames(receiver, wait=True)]
        assert received[0] == small and all(type(f) is bytes for f in received[0])
        assert received[1][0] == large[0] and isinstance(received[1][1], zmq.Frame)
        assert codec.decode_message(received[1])[2]["x"].sum() == np.arange(100_000.0).sum()
        assert receive_frames(receiver) is None
        receiver.setsockopt(zmq.RCVTIMEO, 10)
        assert receive_frames(receiver, wait=True) is None   # the wait ends at RCVTIMEO
    finally:
        sender.close(0)
        receiver.close(0)
        ctx.term()


def test_the_fast_header_paths_give_what_the_plain_ones_gave() -> None:
    # pack_header (what DataPlane.publish sends) is Header.pack, byte for byte.
    for fields in (("me", 1, 0, 0, 0.0, 1.5, None), ("é", 7, 2**40, -1, 2.25, 1e9, 12),
                   ("x" * 300, 2**31, 5, 5, -1.0, 0.0, 0)):
        publisher, incarnation, seq, tick, sim_time, wall_time, through = fields
        header = codec.Header(publisher, seq, tick, sim_time, wall_time, through, incarnation)
        packed = codec.pack_header(*fields)
        assert packed == header.pack() == msgpack.packb(
            [HEADER_VERSION, publisher, incarnation, seq, tick, sim_time, wall_time, through])
        assert codec.Header.unpack(packed) == header
    # What the fast path of unpack does not take, the slow path still reads or refuses.
    v = HEADER_VERSION
    assert codec.Header.unpack(msgpack.packb([v, "p", 1, 3, 4, 5, 6, None])) == \
        codec.Header("p", 3, 4, 5.0, 6.0, None, 1)                   # int times: floats
    assert codec.Header.unpack(msgpack.packb([v, "p", 1, 3, 4, 5.0, 6.0, 7, "later"])) == \
        codec.Header("p", 3, 4, 5.0, 6.0, 7, 1)                      # appended fields ignored
    for bad in ([v - 1, "p", 1, 3, 4, 5.0, 6.0, None], [v, "p", 1, 3, 4, 5.0, 6.0],
                [v, b"p", 1, 3, 4, 5.0, 6.0, None], [v, "p", 1.0, 3, 4, 5.0, 6.0, None],
                [v, "p", 1, True, 4, 5.0, 6.0, None], [v, "p", 1, 3, 4, "5", 6.0, None],
                [v, "p", 1, 3, 4, 5.0, None, None], [v, "p", 1, 3, 4, 5.0, 6.0, 7.0],
                {"v": v}, str(v)):
        with pytest.raises(codec.DecodeError):
            codec.Header.unpack(msgpack.packb(bad))


def test_publish_sends_the_frames_encode_message_builds() -> None:
    from catbus.runtime.dataplane import DataPlane

    ctx = zmq.Context()
    plane = DataPlane(ctx, "me", "inproc://hot-paths-publish")
    receiver = ctx.socket(zmq.SUB)
    try:
        plane.incarnation = 3
        receiver.setsockopt(zmq.SUBSCRIBE, b"")
        receiver.setsockopt(zmq.RCVTIMEO, 5000)
        receiver.connect("inproc://hot-paths-publish")
        assert plane.pub.poll(5000)   # the subscription reached the publisher: apply it
        plane.gate.drain()     # (XPUB_MANUAL: the data plane applies what it accepts)
        values = [{"x": 1, "a": np.arange(3.0)}, {"big": np.arange(100_000.0)},
                  {"blob": b"z" * 100_000}, [1, 2]]
        for index, value in enumerate(values):
            plane.publish("a/b", value, 10 + index, 0.5, 9 if index == 1 else None)
        for index, value in enumerate(values):
            frames = receive_frames(receiver, wait=True)
            topic, header, decoded = codec.decode_message(frames)
            expected = codec.encode_message("a/b", codec.Header(
                "me", index, 10 + index, 0.5, header.wall_time, 9 if index == 1 else None, 3),
                value)
            assert topic == "a/b" and header.incarnation == 3 and header.seq == index
            assert [bytes(f) for f in frames] == [bytes(f) for f in expected]
            _assert_same(decoded, value)
        assert plane.sent == len(values)
    finally:
        receiver.close(0)
        plane.close()
        ctx.term()


def test_an_array_without_its_buffer_frame_is_a_decode_error() -> None:
    payload, buffers = codec.encode_payload({"big": np.arange(1000.0)})
    assert len(buffers) == 1
    with pytest.raises(codec.DecodeError):
        codec.decode_payload(payload)          # no buffers at all
    with pytest.raises(codec.DecodeError):
        codec.decode_payload(payload, [])


@pytest.mark.parametrize("base", [Fraction(1, 100), Fraction(1, 3), Fraction(7, 1000),
                                  Fraction(3, 7), Fraction(1, 1024), Fraction(2, 1)])
def test_sim_time_function_is_bit_identical_to_the_schedule(base: Fraction) -> None:
    schedule = Schedule(("a",), {"a": 1}, base, 10)
    sim_time = sim_time_function(schedule)
    rng = random.Random(0)
    ticks = list(range(5000)) + [rng.randrange(10**15) for _ in range(2000)]
    assert all(sim_time(tick) == schedule.sim_time(tick) for tick in ticks)


@pytest.mark.parametrize("compression", [CompressionType.NONE, CompressionType.ZSTD])
def test_fast_mcap_chunks_write_the_same_file_as_mcap(compression: CompressionType) -> None:
    def write(fast: bool) -> bytes:
        out = io.BytesIO()
        writer = Writer(out, chunk_size=4096, compression=compression)
        if fast:
            use_fast_chunks(writer)
            assert type(writer._Writer__chunk_builder) is FastChunkBuilder
        writer.start(profile="p", library="l")
        writer.add_metadata("m", {"k": "v"})
        channels = [writer.register_channel(topic=f"t{i}", message_encoding="e", schema_id=0)
                    for i in range(3)]
        rng = random.Random(1)
        for index in range(1500):
            writer.add_message(channel_id=rng.choice(channels), log_time=rng.randrange(10**12),
                               data=bytes(rng.randrange(300)), publish_time=index * 10**7,
                               sequence=index)
        writer.finish()
        return out.getvalue()

    assert write(True) == write(False)


@pytest.mark.parametrize("compression", [CompressionType.NONE, CompressionType.ZSTD])
def test_message_adder_writes_the_same_file_as_mcap(compression: CompressionType) -> None:
    """fastmcap.message_adder (the recorder's add_message without a Message object) keeps the
    writer's statistics, chunk times, indexes and chunk boundaries as mcap's own does."""
    def write(fast: bool) -> bytes:
        out = io.BytesIO()
        writer = Writer(out, chunk_size=4096, compression=compression)
        use_fast_chunks(writer)
        add = message_adder(writer) if fast else writer.add_message
        if fast:
            assert type(add) is MessageAdder
        writer.start(profile="p", library="l")
        channels = [writer.register_channel(topic=f"t{i}", message_encoding="e", schema_id=0)
                    for i in range(3)]
        rng = random.Random(2)
        for index in range(1500):
            add(rng.choice(channels), rng.randrange(10**12), bytes(rng.randrange(300)),
                index * 10**7, index)
            if index % 500 == 499:
                writer.flush()
        writer.finish()
        return out.getvalue()

    assert write(True) == write(False)
