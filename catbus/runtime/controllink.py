"""A node's DEALER connection to the run's registry: typed control messages in and out, and how
long each side has been silent (``docs/protocol.md``, "Heartbeats and timeouts")."""

from __future__ import annotations

import time

import zmq

from catbus.wire import messages as msg
from catbus.wire.protocol import HEARTBEAT_INTERVAL


class ControlLink:
    """Sends and receives :mod:`catbus.wire.messages`; a message that is not one is counted in
    ``malformed`` and dropped, as the registry drops a node's."""

    def __init__(self, ctx: zmq.Context, bus: str) -> None:
        self.socket = ctx.socket(zmq.DEALER)
        self.socket.setsockopt(zmq.LINGER, 1000)
        self.socket.connect(bus)
        self.bus = bus
        self.last_heard = time.monotonic()
        self.last_sent = 0.0
        self.malformed = 0
        self.backlog: list[msg.Message] = []   # received but not yet handled

    def send(self, message: msg.Message) -> None:
        self.socket.send(msg.encode(message))
        self.last_sent = time.monotonic()

    def receive_nowait(self) -> list[msg.Message]:
        """The backlog, then every message waiting on the socket."""
        messages, self.backlog = self.backlog, []
        while True:
            try:
                data = self.socket.recv(zmq.NOBLOCK)
            except zmq.Again:
                return messages
            self.last_heard = time.monotonic()
            try:
                messages.append(msg.decode(data))
            except msg.MalformedMessage:
                self.malformed += 1

    def heartbeat_due(self) -> bool:
        return time.monotonic() - self.last_sent >= HEARTBEAT_INTERVAL

    def silent_for(self) -> float:
        return time.monotonic() - self.last_heard

    def close(self) -> None:
        self.socket.close()
