"""check_payload refuses exactly what decode_payload refuses (the recorder's cheaper check)."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest

from catbus.wire import codec
from catbus.wire.payloadcheck import check_payload

pytestmark = pytest.mark.unit


def verdict(function, payload, buffers=()):
    try:
        function(payload, buffers)
    except codec.DecodeError:
        return False
    return True


def inline(descr, shape, raw):
    return msgpack.ExtType(3, msgpack.packb([descr, list(shape), raw]))


def payloads():
    good, buffers = codec.encode_payload({"a": np.arange(4.0).reshape(2, 2), "b": [1, "x"],
                                          "c": np.float32(2.5), "d": np.zeros(3, np.int8)})
    yield good, buffers
    yield good, buffers                                  # the second time from the cache
    big, big_buffers = codec.encode_payload({"big": np.zeros(100_000)})
    yield big, big_buffers                               # a buffer frame
    yield big, []                                        # its buffer frame missing
    yield msgpack.packb({"a": inline("<f8", (2, 2), bytes(32))}), []
    yield msgpack.packb({"a": inline("<f8", (2, 2), bytes(31))}), []        # too short
    yield msgpack.packb({"a": inline("<f8", (2, 2), bytes(40))}), []        # too long
    yield msgpack.packb({"a": inline("<f8", (2, 1), bytes(32))}), []        # same length, other head
    yield msgpack.packb({"a": inline("<zz", (2, 2), bytes(32))}), []        # bad descriptor
    yield msgpack.packb([inline("<f8", (2, 2), bytes(32))]) + b"\x00", []   # extra data
    yield b"\x81" + msgpack.packb(inline("<f8", (1,), bytes(8))) + b"\x01", []  # array as a key
    yield msgpack.ExtType(3, b"\x93\xa3<f8\x91\x01\xc4\x08").data + bytes(8), []  # not a payload
    yield b"\xdd\xff\xff\xff\xff", []                    # truncated array header
    yield msgpack.packb([[]] * (codec.MAX_ELEMENTS + 1)), []                # element budget


@pytest.mark.parametrize("number", range(14))
def test_check_payload_agrees_with_decode_payload(number):
    cases = list(payloads())
    for payload, buffers in cases[:number + 1]:          # earlier cases fill the cache first
        expected = verdict(codec.decode_payload, payload, buffers)
        assert verdict(check_payload, payload, buffers) == expected, number
