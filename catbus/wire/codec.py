"""The catbus wire format: how one message becomes ZeroMQ frames and back.

A message on the bus is a multipart ZeroMQ message::

    [envelope, *buffers]
    envelope = topic NUL header_length header payload

one frame for everything but large arrays, one more frame per large array:

* ``topic``   -- the UTF-8 topic name, then one NUL byte (``b"robot/sensors\\0"``). It starts the
  frame, so ZeroMQ's prefix matching selects topics, and the terminator makes it exact: a
  subscription to ``robot/sensors`` never receives ``robot/sensors_raw``.
* ``header_length`` -- two bytes, big-endian: the length of ``header``.
* ``header``  -- msgpack array ``[version, publisher, incarnation, seq, tick, sim_time, wall_time,
  through]`` (see :class:`Header`).
* ``payload`` -- the rest of the frame: msgpack of the message value. Every numpy array inside it (at any depth of dicts
  and lists) is replaced by the msgpack extension type 1 whose data is the msgpack array
  ``[dtype_descr, shape, index]``; the array's bytes travel raw, in C order, as frame
  ``buffers[index]``. An array of at most :data:`INLINE_MAX_BYTES` bytes instead uses extension
  type 3, data ``[dtype_descr, shape, raw bytes]``, inside the payload: a frame costs more than
  copying a few hundred bytes (ZeroMQ copies frames that small anyway), and a sensor message of a
  dozen 2x1 vectors then travels as 1 frame instead of 13. numpy scalars use extension type 2,
  data ``[dtype_descr, raw bytes]``.
  ``dtype_descr`` is numpy's portable descriptor (``"<f8"``, ``"|b1"``, or a list of fields for a
  structured dtype).

Arrays larger than that are not copied on send when they are C-contiguous (the frame is a view of the array's
memory; others are made contiguous once), and not copied on receive (a decoded array is a read-only
``np.frombuffer`` view of the received frame). Because the array must stay unchanged until ZeroMQ
has sent it, a node must not modify an array in place after returning it from ``step``; a message
is a value.

Why one envelope frame rather than a frame each for topic, header and payload (the layout of
protocol version 2): every ZeroMQ frame costs its own trip through both sides' queues and I/O
threads. Measured on a 2-core machine, a small-message round trip of raw pyzmq took 25 us with
one frame and 35 us with three, and catbus's round trip was ~1.4x a plain one-frame exchange
with three frames against ~1.1x with one.

Everything here is pure (no sockets), so the inline runner and the recorder use the very same
bytes as the wire.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Sequence

import msgpack
import numpy as np

# What one received message may cost its receiver is catbus.wire.limits'; importable from here.
from catbus.wire.limits import MAX_ELEMENTS as MAX_ELEMENTS, \
    MAX_FRAME_BYTES as MAX_FRAME_BYTES, DecodeError as DecodeError, \
    unpack_bounded as unpack_bounded
from catbus.wire.protocol import (EXT_NDARRAY, EXT_NDARRAY_INLINE, EXT_NPSCALAR, HEADER_FIELDS,
                                  HEADER_VERSION, INLINE_MAX_BYTES, TOPIC_TERMINATOR)


#: The largest header an envelope can carry (its length is two bytes).
HEADER_MAX = 0xFFFF


@dataclass(slots=True)
class Header:
    """Per-message metadata, in the envelope after the topic: msgpack ``[HEADER_VERSION, publisher,
    incarnation, seq, tick, sim_time, wall_time, through]``.

    ``incarnation`` is the publishing process's identity beside its name (handed out by the
    registry: 1 for the first process of a name, more for a restart or a replacement). ``seq``
    is per (publisher process, topic) and starts at 0, so a gap means a lost message. ``tick``
    is the schedule tick the message belongs to (in ``parallel`` mode, the publisher's cycle
    index). ``sim_time`` is seconds of simulated time (``parallel``: seconds since the run
    started); ``wall_time`` is the publisher's ``time.time()``. ``through``, when not None, is
    progress carried by this message (stepped mode): after it, the publisher has sent everything
    it will send *on this topic* for ticks ``<= through``; a ``catbus/progress`` message is sent
    only when a neighbour would not learn all of a tick's progress this way.

    A header is a value: treat it as read-only. It is not a frozen dataclass only because one is
    built for every message sent and received, and a frozen one costs three times as much to
    build (``object.__setattr__`` per field): about 0.8 us per message, on each side. The
    dataclass's field order keeps ``incarnation`` last so that positional construction reads
    like the common case.
    """

    publisher: str
    seq: int
    tick: int
    sim_time: float
    wall_time: float
    through: int | None = None
    incarnation: int = 1

    def pack(self) -> bytes:
        return pack_header(self.publisher, self.incarnation, self.seq, self.tick, self.sim_time,
                           self.wall_time, self.through)

    @staticmethod
    def unpack(data: bytes | memoryview) -> "Header":
        """Read and check a header: every field is validated here, once, so that no receiver
        acts on a field of the wrong type. Raises DecodeError."""
        try:
            fields = _unpackb(data)
        except Exception as exc:
            raise DecodeError(f"header is not msgpack: {exc}") from None
        # The common case first, in one expression: a list of exactly HEADER_FIELDS fields of
        # the right types, times already floats (what every catbus publisher sends). Anything
        # else takes the slow path below, which accepts what this accepts and more (int
        # times, fields a later minor revision appends) and says what is wrong.
        if type(fields) is list and len(fields) == HEADER_FIELDS:
            version, publisher, incarnation, seq, tick, sim_time, wall_time, through = fields
            # Values too, not only types (docs/protocol.md, "Header values"): integers in
            # their ranges, times finite and within TIME_MAX (a NaN fails every comparison).
            # One chained comparison per field: ~0.15 us per header in all (0.6 -> 0.75 us
            # for the whole unpack, measured), ~0.3% of a small round trip.
            if (version == HEADER_VERSION and type(publisher) is str and publisher
                    and type(incarnation) is int and type(seq) is int and type(tick) is int
                    and type(sim_time) is float and type(wall_time) is float
                    and 0 <= seq < INT_MAX and -1 <= tick < INT_MAX
                    and 0 <= incarnation < INT_MAX
                    and -TIME_MAX < sim_time < TIME_MAX and -TIME_MAX < wall_time < TIME_MAX
                    and (through is None or (type(through) is int and -1 <= through < INT_MAX))):
                return Header(publisher, seq, tick, sim_time, wall_time, through, incarnation)
        return _unpack_header_slowly(fields)


def _unpack_header_slowly(fields: Any) -> Header:
    """:meth:`Header.unpack` for every header its fast path did not take. Raises DecodeError."""
    if type(fields) is not list or len(fields) < HEADER_FIELDS or \
            fields[0] != HEADER_VERSION:
        raise DecodeError(f"header has an unknown layout or version: {fields!r:.80} "
                          f"(this catbus reads version {HEADER_VERSION})")
    if len(fields) > HEADER_FIELDS:   # fields a later minor revision appends: ignored
        fields = fields[:HEADER_FIELDS]
    _, publisher, incarnation, seq, tick, sim_time, wall_time, through = fields
    # The times are checked too: float("soon") or float(None) raised ValueError/TypeError,
    # not DecodeError, out of decode_message.
    if not (type(publisher) is str and type(incarnation) is int and type(seq) is int
            and type(tick) is int and type(sim_time) in _NUMBER
            and type(wall_time) in _NUMBER and (through is None or type(through) is int)):
        raise DecodeError("header fields have the wrong types")
    problem = _header_value_problem(publisher, incarnation, seq, tick, sim_time, wall_time,
                                    through)
    if problem is not None:
        raise DecodeError(f"header of {publisher!r:.40}: {problem}")
    if type(sim_time) is not float:
        sim_time = float(sim_time)
    if type(wall_time) is not float:
        wall_time = float(wall_time)
    return Header(publisher, seq, tick, sim_time, wall_time, through, incarnation)


def _header_value_problem(publisher: str, incarnation: int, seq: int, tick: int,
                          sim_time: float, wall_time: float, through: int | None) -> str | None:
    """What is wrong with a header's values (types already checked), or None. The rules of
    docs/protocol.md, "Header values"; the fast path of :meth:`Header.unpack` applies the same."""
    if not publisher:
        return "publisher is empty"
    if not 0 <= seq < INT_MAX:
        return f"seq {seq} is out of range (0 <= seq < 2**53)"
    if not -1 <= tick < INT_MAX:
        return f"tick {tick} is out of range (-1 <= tick < 2**53)"
    if not 0 <= incarnation < INT_MAX:
        return f"incarnation {incarnation} is out of range (0 <= incarnation < 2**53)"
    if through is not None and not -1 <= through < INT_MAX:
        return f"through {through} is out of range (-1 <= through < 2**53)"
    for name, value in (("sim_time", sim_time), ("wall_time", wall_time)):
        try:
            ok = -TIME_MAX < value < TIME_MAX
        except OverflowError:   # an int too large for a float comparison
            ok = False
        if not ok:
            return f"{name} {value!r:.30} is not a finite time within +-2**34 s"
    return None


_NUMBER = (float, int)
#: Integer header fields (seq, tick, through, incarnation) are below this: exact as a float,
#: as in every language's JSON/msgpack double, and far beyond any run (docs/protocol.md).
INT_MAX = 2 ** 53
#: Times (sim_time, wall_time) are finite and within +-TIME_MAX seconds (~544 years): a
#: recorder stores sim_time as unsigned 64-bit nanoseconds (MCAP publish_time), which 1e11 s
#: overflowed, and inf/NaN raised OverflowError/ValueError there.
TIME_MAX = float(2 ** 34)


def topic_frame(topic: str) -> bytes:
    """``topic`` and its NUL: how every envelope of ``topic`` starts, and so the exact ZeroMQ
    subscription prefix for it."""
    return topic.encode() + TOPIC_TERMINATOR


def envelope(topic_prefix: bytes, header: bytes, payload: bytes) -> bytes:
    """The first frame of a message: ``topic_prefix`` (see :func:`topic_frame`), the header's
    length in two bytes, the header, the payload."""
    length = len(header)
    if length > HEADER_MAX:
        raise ValueError(f"a header of {length} bytes does not fit an envelope "
                         f"(at most {HEADER_MAX}); is the node name that long?")
    return b"".join((topic_prefix, length.to_bytes(2, "big"), header, payload))


def open_envelope(frame: bytes) -> tuple[str, bytes, memoryview]:
    """``(topic, header bytes, payload)`` of a received first frame; the payload is a view of
    the frame, not a copy. Raises DecodeError."""
    end = frame.find(TOPIC_TERMINATOR)
    if end < 0:
        raise DecodeError("the first frame has no NUL after its topic")
    topic = _TOPICS.get(frame[:end])
    if topic is None:
        topic = _topic_name(frame[:end])
    start = end + 3
    stop = start + ((frame[end + 1] << 8) | frame[end + 2]) if start <= len(frame) else -1
    if not start <= stop <= len(frame):
        raise DecodeError("the first frame is shorter than its header length says")
    return topic, frame[start:stop], memoryview(frame)[stop:]


def _topic_name(raw: bytes) -> str:
    """A topic's name from its bytes, remembered: a node receives the same few topics over and
    over, so each is checked and decoded once (for at most :data:`_TOPICS_MAX` topics)."""
    try:
        topic = raw.decode()
    except UnicodeDecodeError:
        raise DecodeError("the topic is not UTF-8") from None
    if len(_TOPICS) < _TOPICS_MAX:
        _TOPICS[raw] = topic
    return topic


_TOPICS: dict[bytes, str] = {}
_TOPICS_MAX = 4096


_DESCR_OF: dict[np.dtype, Any] = {}
_DTYPE_OF: dict[str, np.dtype] = {}


def dtype_descr(dtype: np.dtype) -> Any:
    """numpy's portable descriptor, cached: computing it costs more than packing the array."""
    descr = _DESCR_OF.get(dtype)
    if descr is None:
        descr = _DESCR_OF[dtype] = np.lib.format.dtype_to_descr(dtype)
    return descr


def descr_dtype(descr: Any) -> np.dtype:
    """The dtype of a descriptor :func:`dtype_descr` made, cached the same way."""
    if isinstance(descr, str):
        dtype = _DTYPE_OF.get(descr)
        if dtype is None:
            dtype = _DTYPE_OF[descr] = np.lib.format.descr_to_dtype(descr)
        return dtype
    if isinstance(descr, list):  # structured: msgpack turned the tuples into lists
        descr = [tuple(_descr_tuple(field)) for field in descr]
    return np.lib.format.descr_to_dtype(descr)


def _descr_tuple(field: list) -> tuple:
    name, sub = field[0], field[1]
    sub = [tuple(_descr_tuple(f)) for f in sub] if isinstance(sub, list) else sub
    return (name, sub, tuple(field[2])) if len(field) > 2 else (name, sub)


class _Packers(threading.local):
    """The msgpack packers of one thread, reused for every message.

    Why reuse: ``msgpack.packb`` builds a new Packer with a 256 KiB buffer on every call. Once
    glibc's dynamic mmap threshold has been raised (by any earlier large free), that buffer comes
    from the heap top and its free trims the heap again: one ``brk`` system call per ``packb``.
    Encoding one flat_evade tick (5 messages, ~40 arrays, each packed by its own inner ``packb``)
    then cost twice as long as on a fresh process. A Packer keeps its buffer between calls.

    Why per thread: a Packer is not reentrant, and its ``default`` hook runs Python code, so
    another thread could start encoding in the middle of a message. Within one thread nothing
    re-enters: ``default`` only packs array metadata, with the separate ``meta`` packer.
    """

    def __init__(self) -> None:
        self.buffers: list[memoryview] = []
        # autoreset (the default): pack() returns the bytes and empties the buffer, also when
        # packing raised, so a failed message leaves nothing behind for the next one.
        self.payload = msgpack.Packer(default=self._default, strict_types=True)
        self.meta = msgpack.Packer()

    def encode(self, value: Any) -> tuple[bytes, list[memoryview]]:
        # A fresh list per message: the caller keeps it, and an interrupted encode (an exception
        # or a signal inside ``default``) must not leak its buffers into the next message.
        self.buffers = buffers = []
        return self.payload.pack(value), buffers

    def _default(self, obj: Any) -> Any:
        """Called by the payload packer for every value msgpack cannot pack itself."""
        if isinstance(obj, np.ndarray):
            return self._array(obj)
        if isinstance(obj, np.generic):
            if obj.dtype.hasobject:
                raise TypeError("numpy object scalars cannot be sent")
            data = np.asarray(obj).tobytes()
            return _ext(EXT_NPSCALAR, self.meta.pack([dtype_descr(obj.dtype), data]))
        if isinstance(obj, tuple):
            return list(obj)
        raise TypeError(f"cannot send a value of type {type(obj).__name__}")

    def _array(self, obj: np.ndarray) -> msgpack.ExtType:
        if obj.nbytes <= INLINE_MAX_BYTES:
            # Copied into the payload on purpose (C order); see INLINE_MAX_BYTES.
            head = _INLINE_HEADS.get((obj.dtype, obj.shape))
            if head is None:
                head = self._inline_head(obj)
            return _ext(EXT_NDARRAY_INLINE, head + obj.tobytes())
        if obj.dtype.hasobject:
            raise TypeError("numpy arrays of dtype object cannot be sent; convert them first")
        contiguous = obj if obj.flags.c_contiguous else np.ascontiguousarray(obj)
        buffers = self.buffers
        buffers.append(memoryview(contiguous.reshape(-1).view(np.uint8)))
        meta = self.meta.pack([dtype_descr(obj.dtype), obj.shape, len(buffers) - 1])
        return _ext(EXT_NDARRAY, meta)

    def _inline_head(self, obj: np.ndarray) -> bytes:
        """Everything of an inline array's extension data before its raw bytes:
        ``msgpack([descr, shape, raw])`` minus ``raw`` itself, i.e. the array header, the
        descriptor, the shape and the ``bin`` header, which depend only on (dtype, shape).

        Packing that per array cost more than the rest of the array's encoding, and a robot
        sends the same few shapes all the time, so it is computed once and remembered (for
        at most :data:`_INLINE_HEADS_MAX` different (dtype, shape) pairs).
        """
        dtype, shape = obj.dtype, obj.shape
        if dtype.hasobject:
            raise TypeError("numpy arrays of dtype object cannot be sent; convert them first")
        nbytes = obj.nbytes
        packed = self.meta.pack([dtype_descr(dtype), shape, bytes(nbytes)])
        head = packed[:len(packed) - nbytes]
        if len(_INLINE_HEADS) < _INLINE_HEADS_MAX:
            _INLINE_HEADS[(dtype, shape)] = head
        return head


#: (dtype, shape) -> the bytes an inline array's extension data starts with; see _inline_head.
_INLINE_HEADS: dict[tuple[np.dtype, tuple[int, ...]], bytes] = {}
_INLINE_HEADS_MAX = 4096


def _ext(code: int, data: bytes) -> msgpack.ExtType:
    """``msgpack.ExtType(code, data)`` without its argument checks (a third of the cost of
    encoding a small array): code and data are known to be right here."""
    return _tuple_new(msgpack.ExtType, (code, data))


_tuple_new = tuple.__new__


_packers = _Packers()


def packb(value: Any) -> bytes:
    """``msgpack.packb(value)`` with this thread's reused packer (see :class:`_Packers`)."""
    return _packers.meta.pack(value)


def pack_header(publisher: str, incarnation: int, seq: int, tick: int, sim_time: float,
                wall_time: float, through: int | None) -> bytes:
    """The header frame of :class:`Header` ``(publisher, seq, tick, sim_time, wall_time,
    through, incarnation)`` without building the Header: a publisher sends one per message.

    One list packed by the reused packer. Measured alternatives that were not faster: packing
    only the five changing fields behind precomputed bytes of ``[2, publisher, incarnation``
    (the slice and the concatenation cost more than packing three more small fields).
    """
    return _packers.meta.pack([HEADER_VERSION, publisher, incarnation, seq, tick, sim_time,
                               wall_time, through])


def encode_payload(value: Any) -> tuple[bytes, list[memoryview]]:
    """Serialise ``value`` into the payload frame and the raw buffer frames of its arrays."""
    return _packers.encode(value)


def _inline_array(data: bytes) -> np.ndarray:
    """An extension-type-3 array: a read-only view of the raw bytes inside its data (the bytes
    object the unpacker made for it, so it shares memory with nothing else)."""
    descr, shape, raw = _unpackb(data)
    dtype = _DTYPE_OF.get(descr) if type(descr) is str else None
    if dtype is None:
        dtype = descr_dtype(descr)
    # np.ndarray over the buffer is half the cost of np.frombuffer(...).reshape(...); unlike
    # those it accepts a buffer longer than the array, so the length is checked here.
    array = np.ndarray(shape, dtype, raw)
    if array.nbytes != len(raw):
        raise DecodeError(f"inline array of shape {shape} and dtype {descr} has {len(raw)} bytes")
    return array


_unpackb = msgpack.unpackb


def decode_payload(payload: bytes | memoryview, buffers: Sequence[Any] = (), *,
                   max_elements: int | None = None) -> Any:
    """Inverse of :func:`encode_payload`; arrays come back as read-only views of ``buffers``.

    Refuses (DecodeError) a payload of more than ``max_elements`` msgpack elements
    (:data:`MAX_ELEMENTS` by default): what a receiver decodes comes from another process."""
    # A message without buffer frames (small arrays travel inline) needs no closure over them:
    # building one per message cost more than the rest of decoding a small message's header.
    ext_hook = _ext_hook_of(buffers) if buffers else _ext_hook_no_buffers
    try:
        if len(payload) <= (MAX_ELEMENTS if max_elements is None else max_elements):
            return _unpackb(payload, ext_hook=ext_hook, strict_map_key=False)
        return unpack_bounded(payload, max_elements, ext_hook=ext_hook, strict_map_key=False)
    except DecodeError:
        raise
    except Exception as exc:
        raise DecodeError(f"payload cannot be decoded: {exc}") from None


def _ext_hook_of(buffers: Sequence[Any]) -> Any:
    def ext_hook(code: int, data: bytes) -> Any:
        if code == EXT_NDARRAY_INLINE:
            return _inline_array(data)
        if code == EXT_NDARRAY:
            descr, shape, index = _unpackb(data)
            if not 0 <= index < len(buffers):
                raise DecodeError(f"array refers to buffer frame {index}, which is missing")
            dtype = descr_dtype(descr)
            array = np.frombuffer(buffers[index], dtype=dtype)
            # A zmq.Frame's buffer (and the sender's own memoryview, when decoding locally) is
            # writable, and np.frombuffer inherits that: without this a node could modify a
            # received message in place -- or, inline, the publisher's array. Still no copy.
            array.flags.writeable = False
            return array.reshape(shape)
        return _other_ext(code, data)

    return ext_hook


def _ext_hook_no_buffers(code: int, data: bytes) -> Any:
    if code == EXT_NDARRAY_INLINE:
        return _inline_array(data)
    if code == EXT_NDARRAY:
        raise DecodeError(f"array refers to buffer frame {_unpackb(data)[2]!r}, which is missing")
    return _other_ext(code, data)


def _other_ext(code: int, data: bytes) -> Any:
    if code == EXT_NPSCALAR:
        descr, raw = _unpackb(data)
        dtype = descr_dtype(descr)
        if dtype.itemsize == 0:
            # np.str_("") / np.bytes_(b"") (e.g. an empty label taken from a string array)
            # have dtype <U0 / |S0, which np.frombuffer refuses: the message was undecodable.
            return dtype.type(b"" if dtype.kind in "SV" else "")
        return np.frombuffer(raw, dtype=dtype)[0]
    return msgpack.ExtType(code, data)


def encode_message(topic: str, header: Header, value: Any) -> list[Any]:
    """All frames of one message, ready for ``socket.send_multipart``: the envelope, then one
    buffer per large array."""
    payload, buffers = encode_payload(value)
    return [envelope(topic_frame(topic), header.pack(), payload), *buffers]


def decode_message(frames: Sequence[Any]) -> tuple[str, Header, Any]:
    """Parse received frames (bytes, memoryviews or zmq.Frame buffers). Raises DecodeError."""
    if not frames:
        raise DecodeError("a message has at least one frame, got none")
    first = frames[0]
    topic, header, payload = open_envelope(first if type(first) is bytes else bytes(first))
    return topic, Header.unpack(header), decode_payload(payload, frames[1:])


def record_bytes(payload: bytes | memoryview, buffers: Sequence[Any]) -> bytes:
    """The bytes a recording stores for one message: ``msgpack([payload, *buffers])``.

    Built from the frames as received; nothing is decoded and re-encoded, so a recording holds
    exactly what travelled.
    """
    return packb([bytes(payload), *(bytes(b) for b in buffers)])


def split_record_bytes(data: bytes) -> tuple[bytes, list[bytes]]:
    """Inverse of :func:`record_bytes`."""
    parts = msgpack.unpackb(data)
    return parts[0], parts[1:]


#: Public for :mod:`catbus.wire.payloadcheck`, which must refuse exactly what
#: :func:`decode_payload` refuses and so calls the very hooks it calls.
inline_array, ext_hook_no_buffers, ext_hook_of = _inline_array, _ext_hook_no_buffers, _ext_hook_of
