"""The baselines of ``bench/transport.py``: raw pyzmq PUB/SUB on ipc, no runtime around it.

Two processes (multiprocessing, ``spawn``), each with one publishing socket it binds and one SUB
it connects to the other -- the same shape as two catbus nodes. A receive is a plain blocking
call. Three ways to move a message:

* **plain** (``plain_*``; THE baseline of the small-message rows): what anyone would write with
  pyzmq and msgpack. One frame, ``msgpack.packb([topic, 2, publisher, incarnation, seq, tick,
  sim_time, wall_time, through, value])`` -- the same information catbus's header carries, with
  the message value inside -- an ordinary copying ``send`` and a blocking ``recv`` of bytes,
  ``msgpack.unpackb``. numpy arrays go as one msgpack extension of ``[dtype, shape, raw bytes]``
  (``default`` / ``ext_hook``), so the receiver gets an array back as catbus's does. Nothing is
  validated: that is catbus's job, and part of what the ratio charges it for.
* **catbus frame layout** (``ping``/``pong``/``sender``/``receiver``, ``tuned=False``): the very
  :func:`catbus.wire.codec.encode_message` frames (the envelope, then buffers),
  ``send_multipart(frames, copy=False)`` and ``recv_multipart(copy=False)``,
  :func:`catbus.wire.codec.decode_message`. pyzmq's ``copy=False`` path costs several
  microseconds per small frame, so this is slower than plain for small messages: informational
  only (what that layout and ``copy=False`` cost), and the baseline of the 1 MiB rows, where
  zero-copy is the fast way.
* **tuned** (``tuned=True``, informational): the same frames, one ``send`` per frame with
  ``copy=False`` only for frames of 64 KiB or more, and ``recv`` returning bytes for the
  envelope: the catbus layout written with care.

The publishing socket is an XPUB only so that each side can wait until it has seen the other's
subscription before anything is timed (ZeroMQ's slow-joiner problem); on the data path XPUB is PUB.
Every process first calls :func:`bench.common.warm_allocator` (see there: the codec's speed
depends on the allocator's state, and catbus node processes are "warm").
"""

from __future__ import annotations

import time
from typing import Any

import msgpack
import numpy as np
import zmq

from catbus.wire import codec
from bench.common import warm_allocator
from bench.transport_nodes import BIG_BYTES, big_array, big_message, receive_checks, small_message

HWM = 100_000  # as catbus.runtime.dataplane.HWM
TIMEOUT_MS = 20_000
ZERO_COPY_MIN = 64 * 1024
_SNDMORE, _RCVMORE = int(zmq.SNDMORE), int(zmq.RCVMORE)


def _publisher(ctx: zmq.Context, endpoint: str) -> zmq.Socket:
    pub = ctx.socket(zmq.XPUB)
    pub.setsockopt(zmq.XPUB_VERBOSE, 1)
    pub.setsockopt(zmq.SNDHWM, HWM)
    pub.setsockopt(zmq.LINGER, -1)
    pub.bind(endpoint)
    return pub


def _subscriber(ctx: zmq.Context, endpoint: str, topic: str | None) -> zmq.Socket:
    """A SUB of ``topic`` (catbus topic frame), or of everything with ``topic=None`` (plain: the
    peer publishes one topic only, so a plain program subscribes to all of it)."""
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.RCVHWM, HWM)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.RECONNECT_IVL, 10)
    sub.setsockopt(zmq.RCVTIMEO, TIMEOUT_MS)   # a plain blocking receive, with a safety net
    sub.setsockopt(zmq.SUBSCRIBE, b"" if topic is None else codec.topic_frame(topic))
    sub.connect(endpoint)
    return sub


def _wait_subscription(pub: zmq.Socket, topic: str | None) -> None:
    """Block until a subscriber of ``topic`` (None: of everything) is connected (its
    subscription reached us)."""
    wanted = b"\x01" + (b"" if topic is None else codec.topic_frame(topic))
    if not pub.poll(TIMEOUT_MS):
        raise TimeoutError(f"nobody subscribed to {topic}")
    while pub.recv() != wanted:
        if not pub.poll(TIMEOUT_MS):
            raise TimeoutError(f"nobody subscribed to {topic}")


def send(pub: zmq.Socket, frames: list, tuned: bool) -> None:
    if not tuned:
        pub.send_multipart(frames, copy=False)
        return
    last = len(frames) - 1
    for index, frame in enumerate(frames):
        flags = _SNDMORE if index < last else 0
        if len(frame) >= ZERO_COPY_MIN:
            pub.send(frame, flags, copy=False)
        else:
            pub.send(frame, flags)


def recv(sub: zmq.Socket, tuned: bool) -> list:
    try:
        if not tuned:
            return sub.recv_multipart(copy=False)
        frames: list = [sub.recv()]
        while sub.getsockopt(_RCVMORE):
            frames.append(sub.recv(copy=False))
        return frames
    except zmq.Again:
        raise TimeoutError("no message within the timeout") from None


# -- round trip ------------------------------------------------------------------------------------
def ping(pub_endpoint: str, pong_endpoint: str, n_small: int, n_big: int, warmup: int,
         warmup_big: int, big_bytes: int, tuned: bool, conn: Any) -> None:
    """Round trip = from before encoding the ping to after decoding the echo."""
    warm_allocator()
    ctx = zmq.Context()
    pub = _publisher(ctx, pub_endpoint)
    sub = _subscriber(ctx, pong_endpoint, "pong/out")
    _wait_subscription(pub, "ping/out")
    big = big_array(big_bytes)
    rtts: dict[str, list[float]] = {"small": [], "big": []}
    errors: list[str] = []
    seq = 0
    for name, warm, n in (("small", warmup, n_small), ("big", warmup_big, n_big)):
        for i in range(warm + n):
            message = small_message(seq) if name == "small" else big_message(seq, big)
            t0 = time.perf_counter()
            header = codec.Header("ping", seq, seq, 0.0, time.time())
            send(pub, codec.encode_message("ping/out", header, message), tuned)
            _, _, echo = codec.decode_message(recv(sub, tuned))
            t1 = time.perf_counter()
            if echo.get("seq") != seq:
                errors.append(f"expected echo {seq}, got {echo.get('seq')}")
            if i >= warm:
                rtts[name].append(t1 - t0)
            seq += 1
    header = codec.Header("ping", seq, seq, 0.0, time.time())
    send(pub, codec.encode_message("ping/out", header, {"stop": True}), tuned)
    conn.send({"rtt": rtts, "errors": errors})
    pub.close()
    sub.close()
    ctx.term()


def pong(pub_endpoint: str, ping_endpoint: str, tuned: bool, conn: Any) -> None:
    """Echo every ping back as received (a large array goes back as the received view)."""
    warm_allocator()
    ctx = zmq.Context()
    pub = _publisher(ctx, pub_endpoint)
    sub = _subscriber(ctx, ping_endpoint, "ping/out")
    _wait_subscription(pub, "pong/out")
    seq = 0
    while True:
        _, _, value = codec.decode_message(recv(sub, tuned))
        if isinstance(value, dict) and value.get("stop"):
            break
        header = codec.Header("pong", seq, seq, 0.0, time.time())
        send(pub, codec.encode_message("pong/out", header, value), tuned)
        seq += 1
    conn.send({"echoed": seq})
    pub.close()
    sub.close()
    ctx.term()


# -- plain: one msgpack frame, copying send, blocking recv of bytes ---------------------------------
def _plain_default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return msgpack.ExtType(1, msgpack.packb([obj.dtype.str, obj.shape, obj.tobytes()]))
    raise TypeError(f"cannot pack {type(obj).__name__}")


def _plain_ext(code: int, data: bytes) -> Any:
    dtype, shape, raw = msgpack.unpackb(data)
    return np.frombuffer(raw, dtype).reshape(shape)


def plain_encode(topic: str, publisher: str, seq: int, value: Any) -> bytes:
    """One frame with what catbus's topic and header frames carry, and the value."""
    return msgpack.packb([topic, 2, publisher, 1, seq, seq, 0.0, time.time(), None, value],
                         default=_plain_default)


def plain_decode(data: bytes) -> Any:
    """The value of a :func:`plain_encode` frame."""
    return msgpack.unpackb(data, ext_hook=_plain_ext)[9]


def _plain_recv(sub: zmq.Socket) -> bytes:
    try:
        return sub.recv()
    except zmq.Again:
        raise TimeoutError("no message within the timeout") from None


def plain_ping(pub_endpoint: str, pong_endpoint: str, n_small: int, warmup: int,
               conn: Any) -> None:
    """Round trip = from before encoding the ping to after decoding the echo."""
    warm_allocator()
    ctx = zmq.Context()
    pub = _publisher(ctx, pub_endpoint)
    sub = _subscriber(ctx, pong_endpoint, None)
    _wait_subscription(pub, None)
    rtts: list[float] = []
    errors: list[str] = []
    cpu0 = time.thread_time()
    for seq in range(warmup + n_small):
        message = small_message(seq)
        t0 = time.perf_counter()
        pub.send(plain_encode("ping/out", "ping", seq, message))
        echo = plain_decode(_plain_recv(sub))
        t1 = time.perf_counter()
        if echo.get("seq") != seq:
            errors.append(f"expected echo {seq}, got {echo.get('seq')}")
        if seq >= warmup:
            rtts.append(t1 - t0)
    cpu = time.thread_time() - cpu0
    pub.send(plain_encode("ping/out", "ping", warmup + n_small, {"stop": True}))
    conn.send({"rtt": {"small": rtts, "big": []}, "errors": errors, "cpu": cpu,
               "messages": warmup + n_small})
    pub.close()
    sub.close()
    ctx.term()


def plain_pong(pub_endpoint: str, ping_endpoint: str, conn: Any) -> None:
    """Echo every ping back (decoded, then encoded again, as a catbus node does)."""
    warm_allocator()
    ctx = zmq.Context()
    pub = _publisher(ctx, pub_endpoint)
    sub = _subscriber(ctx, ping_endpoint, None)
    _wait_subscription(pub, None)
    seq = 0
    cpu0 = None
    while True:
        value = plain_decode(_plain_recv(sub))
        if cpu0 is None:
            cpu0 = time.thread_time()   # from the first ping: the wait for it is not work
        if value.get("stop"):
            break
        pub.send(plain_encode("pong/out", "pong", seq, value))
        seq += 1
    conn.send({"echoed": seq, "cpu": time.thread_time() - cpu0 if cpu0 is not None else 0.0})
    pub.close()
    sub.close()
    ctx.term()


def plain_sender(pub_endpoint: str, n: int, conn: Any) -> None:
    """Send ``n`` small messages back to back."""
    warm_allocator()
    ctx = zmq.Context()
    pub = _publisher(ctx, pub_endpoint)
    _wait_subscription(pub, None)
    t_first = t_last = time.perf_counter()
    for seq in range(n):
        if seq == n - 1:
            t_last = time.perf_counter()
        pub.send(plain_encode("src/out", "src", seq, small_message(seq)))
    rate = (n - 1) / (t_last - t_first) if n > 1 and t_last > t_first else None
    conn.send({"sent": n, "send_rate": rate, "checks": None})
    pub.close()          # LINGER -1: term() returns once everything queued has gone out
    ctx.term()


def plain_receiver(sub_endpoint: str, n: int, skip: int, conn: Any) -> None:
    """Receive until ``n`` messages (or a timeout), checking sequence numbers."""
    warm_allocator()
    ctx = zmq.Context()
    sub = _subscriber(ctx, sub_endpoint, None)
    expected = count = gaps = 0
    t_first = t_last = None
    try:
        while count < n:
            value = plain_decode(_plain_recv(sub))
            now = time.perf_counter()
            seq = value["seq"]
            if seq != expected:
                gaps += 1
            expected = seq + 1
            count += 1
            if seq == skip:
                t_first = now
            if seq == n - 1:
                t_last = now
    except TimeoutError:
        pass
    conn.send({"count": count, "gaps": gaps, "t_first": t_first, "t_last": t_last,
               "checks": None})
    sub.close()
    ctx.term()


# -- throughput ------------------------------------------------------------------------------------
def sender(pub_endpoint: str, n: int, big_bytes: int, tuned: bool, conn: Any) -> None:
    """Send ``n`` messages back to back; with a large array, check the frame is the array."""
    warm_allocator()
    ctx = zmq.Context()
    pub = _publisher(ctx, pub_endpoint)
    _wait_subscription(pub, "src/out")
    big = big_array(big_bytes) if big_bytes else None
    checks = None
    t_first = time.perf_counter()
    for seq in range(n):
        if seq == n - 1:
            t_last = time.perf_counter()
        message = small_message(seq) if big is None else big_message(seq, big)
        frames = codec.encode_message("src/out", codec.Header("src", seq, seq, 0.0, time.time()),
                                      message)
        if seq == 0 and big is not None:
            view = np.frombuffer(frames[1], np.uint8)
            checks = {"send_frame_shares_array_memory": bool(np.shares_memory(view, big)),
                      "send_copy_false": True,
                      "send_frame_over_copy_threshold": view.nbytes >= zmq.COPY_THRESHOLD}
        send(pub, frames, tuned)
    rate = (n - 1) / (t_last - t_first) if n > 1 and t_last > t_first else None
    conn.send({"sent": n, "send_rate": rate, "checks": checks})
    pub.close()          # LINGER -1: term() returns once everything queued has gone out
    ctx.term()


def receiver(sub_endpoint: str, n: int, skip: int, tuned: bool, conn: Any) -> None:
    """Receive until ``n`` messages (or a timeout), checking sequence numbers."""
    warm_allocator()
    ctx = zmq.Context()
    sub = _subscriber(ctx, sub_endpoint, "src/out")
    expected = count = gaps = 0
    t_first = t_last = None
    checks = None
    try:
        while count < n:
            _, _, value = codec.decode_message(recv(sub, tuned))
            now = time.perf_counter()
            seq = value["seq"]
            if seq != expected:
                gaps += 1
            expected = seq + 1
            count += 1
            if seq == skip:
                t_first = now
            if seq == n - 1:
                t_last = now
            if checks is None and "data" in value:
                checks = receive_checks(value["data"])
    except TimeoutError:
        pass
    conn.send({"count": count, "gaps": gaps, "t_first": t_first, "t_last": t_last,
               "checks": checks})
    sub.close()
    ctx.term()


__all__ = ["ping", "pong", "sender", "receiver", "plain_ping", "plain_pong", "plain_sender",
           "plain_receiver", "BIG_BYTES"]
