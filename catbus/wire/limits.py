"""What one received message may cost the process that receives it: the largest frame a data
socket takes (``ZMQ_MAXMSGSIZE``) and the most msgpack elements a payload may decode to. Both are
documented, configurable limits (environment variables read once, at import), because what a
receiver decodes comes from another process -- a careless node in another language or a
stranger on an open bus (docs/design.md, "Floods and bad input").
"""

from __future__ import annotations

import os
from typing import Any

import msgpack


class DecodeError(ValueError):
    """A frame set that is not a valid catbus message (counted and dropped by receivers)."""


def limit_from_environment(name: str, default: int) -> int:
    """A limit from the environment variable ``name`` (a positive integer), else ``default``.
    Read once, at import: a node process inherits its launcher's environment, a node started by
    hand on another host reads its own."""
    text = os.environ.get(name, "").strip().replace("_", "")
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{name}={os.environ[name]!r}: expected a positive integer") from None
    if value <= 0:
        raise ValueError(f"{name}={value}: expected a positive integer")
    return value


#: The largest ZeroMQ frame a node receives on its data sockets (``ZMQ_MAXMSGSIZE``, set by
#: :mod:`catbus.runtime.dataplane`; ``CATBUS_MAX_FRAME_BYTES``). libzmq closes a connection
#: that sends a larger frame before allocating it -- so one peer cannot make a receiver
#: allocate what a frame's length claims -- and does not dial that publisher again: a node
#: that sends a larger frame loses its readers. An array travels as a frame of its own, so this
#: is also the largest array a run can send; raise it (on every host) for larger ones.
MAX_FRAME_BYTES: int = limit_from_environment("CATBUS_MAX_FRAME_BYTES", 1 << 30)
#: The most msgpack elements one payload may decode to (``CATBUS_MAX_ELEMENTS``): every value
#: counts one, a map entry two (key and value), an array one plus its items. What this bounds
#: is decoding work and memory that the bytes do not: a 10 MB payload of 5 million empty arrays
#: took 2.4 s and 350 MB to decode. A numpy array is one element whatever its size (its bytes
#: are a buffer, not elements); a payload longer than this many bytes is counted as it is
#: decoded (shorter ones cannot hold more elements than bytes, so they cost nothing extra).
MAX_ELEMENTS: int = limit_from_environment("CATBUS_MAX_ELEMENTS", 1 << 20)


class _ElementBudget:
    """Counts the elements a payload decodes to, as msgpack finishes each array and map, and
    stops the decoding once there are more than ``limit`` (see :data:`MAX_ELEMENTS`). Arrays and
    maps are each at most ``limit`` long (msgpack checks that from their headers, before
    building them), so the work done before the stop is bounded by the limit too."""

    __slots__ = ("left",)

    def __init__(self, limit: int) -> None:
        self.left = limit

    def array(self, items: list) -> list:
        self.left -= len(items) + 1
        if self.left < 0:
            raise DecodeError(f"payload has more than {MAX_ELEMENTS} elements "
                              f"(CATBUS_MAX_ELEMENTS)")
        return items

    def map(self, entries: dict) -> dict:
        self.left -= 2 * len(entries) + 1
        if self.left < 0:
            raise DecodeError(f"payload has more than {MAX_ELEMENTS} elements "
                              f"(CATBUS_MAX_ELEMENTS)")
        return entries


def unpack_bounded(data: bytes | memoryview, max_elements: int | None = None,
                   **options: Any) -> Any:
    """``msgpack.unpackb(data, **options)`` that refuses (DecodeError) data of more than
    ``max_elements`` elements (:data:`MAX_ELEMENTS` by default; see there). Data no longer
    than the limit in bytes is unpacked as is: it cannot hold more elements than bytes."""
    limit = MAX_ELEMENTS if max_elements is None else max_elements
    if len(data) <= limit:
        return msgpack.unpackb(data, **options)
    budget = _ElementBudget(limit)
    return msgpack.unpackb(data, max_array_len=limit, max_map_len=limit, list_hook=budget.array,
                    object_hook=budget.map, **options)
