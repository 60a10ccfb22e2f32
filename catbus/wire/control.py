"""The control plane: msgpack maps between nodes (DEALER) and the run's registry (ROUTER).

Every message is one msgpack map with an ``op`` key. Node to registry: ``register``, ``ready``,
``hb`` (heartbeat with the node's tick and state), ``done`` (stats, end reason), ``error``
(traceback). Registry to node: ``welcome`` (parameters, seed, schedule), ``reject``, ``graph``
(who publishes what, where), ``start``, ``end`` (episode ends at a tick), ``stop``, ``hb``.
Introspection tools send ``graph?`` and get ``graph`` back.
"""

from __future__ import annotations

import time
from typing import Any

import msgpack
import zmq

from catbus.wire.protocol import (CLOSING_STATE, DEFAULT_REGISTRY_TIMEOUT, HEARTBEAT_INTERVAL,
                                  PROTOCOL_VERSION, Op)


def pack(op: str, **fields: Any) -> bytes:
    if op == Op.REGISTER:
        fields.setdefault("protocol", PROTOCOL_VERSION)
    return msgpack.packb({"op": op, **fields})


def unpack(data: bytes) -> dict[str, Any] | None:
    """The message as a dict, or None if it is not a control message (counted by callers)."""
    try:
        message = msgpack.unpackb(data, strict_map_key=False)
    except Exception:
        return None
    return message if isinstance(message, dict) and isinstance(message.get("op"), str) else None


class ControlLink:
    """A node's DEALER connection to the registry, with liveness tracking."""

    def __init__(self, ctx: zmq.Context, bus: str) -> None:
        self.socket = ctx.socket(zmq.DEALER)
        self.socket.setsockopt(zmq.LINGER, 1000)
        self.socket.connect(bus)
        self.bus = bus
        self.last_heard = time.monotonic()
        self.last_sent = 0.0
        self.backlog: list[dict[str, Any]] = []   # received but not yet handled

    def send(self, op: str, **fields: Any) -> None:
        self.socket.send(pack(op, **fields))
        self.last_sent = time.monotonic()

    def receive_nowait(self) -> list[dict[str, Any]]:
        messages, self.backlog = self.backlog, []
        while True:
            try:
                data = self.socket.recv(zmq.NOBLOCK)
            except zmq.Again:
                return messages
            self.last_heard = time.monotonic()
            message = unpack(data)
            if message is not None:
                messages.append(message)

    def heartbeat_due(self) -> bool:
        return time.monotonic() - self.last_sent >= HEARTBEAT_INTERVAL

    def silent_for(self) -> float:
        return time.monotonic() - self.last_heard

    def close(self) -> None:
        self.socket.close()
