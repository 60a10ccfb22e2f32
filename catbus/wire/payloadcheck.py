"""The recorder's check that a payload decodes, at a fraction of the cost of decoding it.

The recorder writes only what a reader of the file can decode (a payload that does not decode
made ``Recording.messages()`` raise for the whole file), so it must refuse exactly what
:func:`catbus.wire.codec.decode_payload` refuses. Decoding every payload to find out cost most
of the recorder's processor time per message in a stepped run: flat_evade's five messages per
tick hold ~40 small arrays, each travelling inline (extension type 3) and each rebuilt as a numpy
array -- a copy of its bytes, a descriptor look-up, an ``np.ndarray`` -- only to be thrown away.

What :func:`check_payload` does instead: the same msgpack pass with the same limits, hooks and
options (so every structural fault, the element budget, unhashable map keys, a missing buffer
frame, a bad scalar are refused exactly as by the decoder), except that an inline array whose
*head* is already known to be valid is not rebuilt. An inline array's extension data is
``msgpack([descr, shape, raw])``: its head -- everything before ``raw``, i.e. the array marker,
the descriptor, the shape and the ``bin`` header with ``raw``'s length -- alone decides whether it
decodes (``raw``'s contents never matter, its length is in the head). So once one array with a
given head has been decoded, any data of the same total length that starts with that head
decodes too; a robot sends the same few shapes all the time, so after the first tick every
array is a ``len`` and a ``startswith``. Measured on flat_evade's recorded payloads (one tick:
5 messages, 40 arrays), in one process: 22 us for the check against 45 us for the full decode
(docs/design.md, "Performance notes").
"""

from __future__ import annotations

from typing import Any, Sequence

import msgpack

from catbus.wire import codec
from catbus.wire.codec import DecodeError
from catbus.wire.limits import unpack_bounded
from catbus.wire.protocol import EXT_NDARRAY_INLINE

#: Total extension-data length -> heads of inline arrays of that length known to decode.
_VALID_HEADS: dict[int, tuple[bytes, ...]] = {}
#: At most this many lengths and heads per length are remembered (a stranger sending ever new
#: shapes costs a full decode per array, never memory).
_LENGTHS_MAX = 4096
_HEADS_PER_LENGTH = 4


class _Array(list):
    """What the check returns for an array: unhashable, like the ``np.ndarray`` the decoder
    returns, so an array used as a map key is refused here exactly as there."""

    __slots__ = ()


_ARRAY = _Array()


def _check_inline(data: bytes) -> Any:
    """An inline array's data: accepted at once if its head is known valid, else decoded in
    full (which raises what the decoder raises) and its head remembered."""
    heads = _VALID_HEADS.get(len(data))
    if heads is not None:
        for head in heads:
            if data.startswith(head):
                return _ARRAY
    array = codec.inline_array(data)   # raises DecodeError (or msgpack's errors) as decoding
    head = data[:len(data) - array.nbytes]
    if heads is None:
        if len(_VALID_HEADS) < _LENGTHS_MAX:
            _VALID_HEADS[len(data)] = (head,)
    elif len(heads) < _HEADS_PER_LENGTH:
        _VALID_HEADS[len(data)] = heads + (head,)
    return _ARRAY


def _hook_no_buffers(code: int, data: bytes, _heads: dict = _VALID_HEADS) -> Any:
    if code == EXT_NDARRAY_INLINE:
        # _check_inline's first lines written out (a call per array is a fifth of the check)
        heads = _heads.get(len(data))
        if heads is not None:
            for head in heads:
                if data.startswith(head):
                    return _ARRAY
        return _check_inline(data)
    return codec.ext_hook_no_buffers(code, data)


def _hook_of(buffers: Sequence[Any]) -> Any:
    decode = codec.ext_hook_of(buffers)

    def hook(code: int, data: bytes) -> Any:
        if code == EXT_NDARRAY_INLINE:
            return _check_inline(data)
        return decode(code, data)

    return hook


_unpackb = msgpack.unpackb


def check_payload(payload: bytes | memoryview, buffers: Sequence[Any] = ()) -> None:
    """Raise :class:`DecodeError` if and only if ``decode_payload(payload, buffers)`` would.

    Mirrors :func:`catbus.wire.codec.decode_payload` line for line (same limit, same options,
    same error mapping); only the inline-array hook differs (see the module's docstring)."""
    hook = _hook_of(buffers) if buffers else _hook_no_buffers
    try:
        if len(payload) <= codec.MAX_ELEMENTS:   # read at call time, as the decoder does
            _unpackb(payload, ext_hook=hook, strict_map_key=False)
        else:
            unpack_bounded(payload, None, ext_hook=hook, strict_map_key=False)
    except DecodeError:
        raise
    except Exception as exc:
        raise DecodeError(f"payload cannot be decoded: {exc}") from None


__all__ = ["check_payload"]
