"""A node's state as bytes, for the process that takes its place (hot swap): its
``snapshot()`` through the message codec, and back through ``restore()``. A class carries its
state across processes only if it has both."""

from __future__ import annotations

from typing import Any, Mapping

from catbus.wire import codec


def can_snapshot(node_class: type) -> bool:
    """Does the class carry its state across processes (both ``snapshot`` and ``restore``)?"""
    return callable(getattr(node_class, "snapshot", None)) and \
        callable(getattr(node_class, "restore", None))


def snapshot_bytes(node: Any) -> bytes | None:
    """The node's ``snapshot()`` as the message codec's bytes, or None if its class has no
    ``snapshot``/``restore`` (the replacement then starts fresh). A snapshot that fails or
    cannot be encoded is logged and given as None: the swap goes on, fresh."""
    if node is None or not can_snapshot(type(node)):
        return None
    try:
        payload, buffers = codec.encode_payload(node.snapshot())
    except Exception as exc:   # the node's own code: never fatal to the swap
        node.log.warning("snapshot() failed, the replacement starts fresh: %s: %s",
                         type(exc).__name__, exc)
        return None
    return codec.record_bytes(payload, buffers)


def restore_bytes(node: Any, data: bytes | None) -> bool:
    """Give the node a predecessor's snapshot (see :func:`snapshot_bytes`); returns whether it
    took it (False: no snapshot, or a class without ``restore``: it starts fresh)."""
    if data is None or node is None or not can_snapshot(type(node)):
        return False
    payload, buffers = codec.split_record_bytes(data)
    node.restore(codec.decode_payload(payload, buffers))
    return True


def replace_node(driver: Any, node_class: type, params: Mapping[str, Any], seed: int,
                 run_info: Mapping[str, Any], log_level: str | None = None) -> bool:
    """A hot swap within one process (``inline``): close the driver's node, then set up a node
    of ``node_class`` in its place -- same name, same inbox (it sees exactly what the old one
    would have seen next) -- with the old one's state if both classes carry it. Returns whether
    the state went across (else the new node starts fresh). ``driver``: a
    :class:`~catbus.runtime.driver.NodeDriver`."""
    snapshot = driver.snapshot() if can_snapshot(node_class) else None
    driver.close()
    driver.node_class, driver.node = node_class, None
    driver.setup(params, seed, run_info, log_level)
    return driver.restore(snapshot)


__all__ = ["can_snapshot", "snapshot_bytes", "restore_bytes", "replace_node"]
