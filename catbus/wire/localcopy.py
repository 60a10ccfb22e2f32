"""In-process delivery (the inline runner): ``decode(encode(value))`` without the bytes in between.

A reader in the same process must receive exactly what the wire would give it: tuples become
lists, arrays become read-only copies (taken when the value is published), numpy scalars keep
their dtype, and each reader owns its dicts and lists. Building that value directly is ~3x
cheaper than encoding to bytes and decoding them again, and it made the inline runner ~1.35x
faster on flat_evade. Anything this module does not know exactly (a dict subclass, a structured
or string dtype, an int out of msgpack's range, very deep nesting) raises :class:`NotLocal`, and
the caller takes the codec's own round trip (:mod:`catbus.wire.codec`), so the two can never
disagree; ``tests/test_inline_fast_path.py`` checks them against each other.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from catbus.wire.codec import descr_dtype, dtype_descr, encode_payload

class NotLocal(Exception):
    """:func:`local_copy` / :func:`check_local` do not handle this value; take the codec's own
    round trip instead (which also raises the codec's error for a value that has no encoding)."""


#: The deepest nesting the local copy handles (msgpack's own limit is 511; deeper values take
#: the codec, which raises what it raises).
_LOCAL_DEPTH = 64
_INT_MIN = -(1 << 63)
_INT_MAX = (1 << 64) - 1
#: dtype -> the dtype a received array of it has (``descr_to_dtype(dtype_to_descr(dtype))``),
#: for plain numeric dtypes only (bool, ints, floats, complex; no fields, no subarrays).
_LOCAL_DTYPE: dict[np.dtype, np.dtype] = {}
_ndarray = np.ndarray


def _local_dtype(dtype: np.dtype) -> np.dtype:
    if dtype.kind not in "biufc" or dtype.fields is not None or dtype.subdtype is not None \
            or dtype.itemsize == 0:
        raise NotLocal
    out = descr_dtype(dtype_descr(dtype))
    if len(_LOCAL_DTYPE) < 256:
        _LOCAL_DTYPE[dtype] = out
    return out


def _scalar_types() -> frozenset:
    """numpy scalar types whose received value is a scalar of the very same type and dtype (so
    the sent object, immutable, can be handed over as it is)."""
    found = set()
    for code in "?bBhHiIlLqQefdFD":
        dtype = np.dtype(code)
        if np.lib.format.descr_to_dtype(np.lib.format.dtype_to_descr(dtype)).type is dtype.type:
            found.add(dtype.type)
    return frozenset(found)


_LOCAL_SCALARS = _scalar_types()


def _local_str(text: str) -> None:
    if not text.isascii():
        try:
            text.encode()
        except UnicodeError:
            raise NotLocal from None


def local_copy(value: Any) -> Any:
    """What ``decode_payload(*encode_payload(value))`` returns, built without the bytes: dicts
    and lists new (tuples become lists), arrays read-only copies over their own ``bytes`` (C
    order, the received dtype), immutable leaves (str, bytes, int, float, bool, None, numpy
    scalars whose type survives the trip) the same objects. Raises :class:`NotLocal` for
    anything else (dict subclasses, non-str/int keys, structured dtypes, ints out of msgpack's
    range, deep nesting, ...): the caller then uses the codec.

    The arrays' bytes are taken now, as encoding takes them: a publisher that changes its array
    in place after publishing changes nothing that was sent."""
    kind = type(value)
    if kind is dict:
        return _local_dict(value, 0)
    if kind is _ndarray:
        return _local_array(value)
    if kind is list or kind is tuple:
        return _local_list(value, 0)
    return _local_leaf(value)


def _local_leaf(value: Any) -> Any:
    kind = type(value)
    if kind is float or kind is bool or value is None or kind is bytes \
            or kind in _LOCAL_SCALARS:
        return value
    if kind is int:
        if _INT_MIN <= value <= _INT_MAX:
            return value
        raise NotLocal
    if kind is str:
        _local_str(value)
        return value
    raise NotLocal


def _local_array(array: np.ndarray) -> np.ndarray:
    dtype = _LOCAL_DTYPE.get(array.dtype)
    if dtype is None:
        dtype = _local_dtype(array.dtype)
    return _ndarray(array.shape, dtype, array.tobytes())


def _local_dict(value: dict, depth: int, *, _ndarray: type = np.ndarray,
                _dtypes: dict = _LOCAL_DTYPE, _str: type = str, _float: type = float,
                _dict: type = dict, _list: type = list, _tuple: type = tuple) -> dict:
    if depth > _LOCAL_DEPTH:
        raise NotLocal
    out = {}
    for key, item in value.items():
        if type(key) is not _str or not key.isascii():
            _local_key(key)
        kind = type(item)
        # The common kinds written out here (and the globals bound as defaults): a call per
        # item costs as much as copying it.
        if kind is _ndarray:
            dtype = _dtypes.get(item.dtype)
            if dtype is None:
                dtype = _local_dtype(item.dtype)
            out[key] = _ndarray(item.shape, dtype, item.tobytes())
        elif kind is _float:
            out[key] = item
        elif kind is _dict:
            out[key] = _local_dict(item, depth + 1) if item else {}
        elif kind is _list or kind is _tuple:
            out[key] = _local_list(item, depth + 1)
        else:
            out[key] = _local_leaf(item)
    return out


def _local_key(key: Any) -> None:
    """A dict key other than an ASCII str: a str that encodes, or an int in msgpack's range."""
    kind = type(key)
    if kind is str:
        _local_str(key)
    elif kind is not int or not _INT_MIN <= key <= _INT_MAX:
        raise NotLocal


def _local_list(value: list | tuple, depth: int, *, _ndarray: type = np.ndarray,
                _dtypes: dict = _LOCAL_DTYPE, _float: type = float, _dict: type = dict,
                _list: type = list, _tuple: type = tuple) -> list:
    if depth > _LOCAL_DEPTH:
        raise NotLocal
    out = []
    append = out.append
    for item in value:
        kind = type(item)
        if kind is _ndarray:
            dtype = _dtypes.get(item.dtype)
            if dtype is None:
                dtype = _local_dtype(item.dtype)
            append(_ndarray(item.shape, dtype, item.tobytes()))
        elif kind is _float:
            append(item)
        elif kind is _dict:
            append(_local_dict(item, depth + 1))
        elif kind is _list or kind is _tuple:
            append(_local_list(item, depth + 1))
        else:
            append(_local_leaf(item))
    return out


def local_fresh(copy: Any) -> Any:
    """Another, independent instance of a :func:`local_copy` result (for a second reader): new
    dicts, lists and array objects (over the same read-only bytes), the same immutable leaves."""
    kind = type(copy)
    if kind is dict:
        return {key: local_fresh(item) for key, item in copy.items()}
    if kind is list:
        return [local_fresh(item) for item in copy]
    if kind is np.ndarray:
        return _ndarray(copy.shape, copy.dtype, copy.base)
    return copy


def check_local(value: Any) -> None:
    """Raise what encoding ``value`` raises, if anything, without building anything (a message
    no one receives must still fail the run when it cannot be sent). Values outside what
    :func:`local_copy` handles are encoded for real."""
    try:
        _check(value, 0)
    except NotLocal:
        encode_payload(value)


def _check(value: Any, depth: int, *, _ndarray: type = np.ndarray, _dtypes: dict = _LOCAL_DTYPE,
           _str: type = str, _float: type = float, _dict: type = dict, _list: type = list,
           _tuple: type = tuple) -> None:
    kind = type(value)
    if kind is _dict:
        if depth > _LOCAL_DEPTH:
            raise NotLocal
        for key, item in value.items():
            if type(key) is not _str or not key.isascii():
                _local_key(key)
            kind = type(item)
            if kind is _ndarray:
                if item.dtype not in _dtypes:
                    _local_dtype(item.dtype)
            elif kind is not _float:
                _check(item, depth + 1)
    elif kind is _list or kind is _tuple:
        if depth > _LOCAL_DEPTH:
            raise NotLocal
        for item in value:
            kind = type(item)
            if kind is _ndarray:
                if item.dtype not in _dtypes:
                    _local_dtype(item.dtype)
            elif kind is not _float:
                _check(item, depth + 1)
    elif kind is _ndarray:
        if value.dtype not in _dtypes:
            _local_dtype(value.dtype)
    else:
        _local_leaf(value)
