"""A node's DEALER connection to the run's registry: typed control messages in and out, and how
long each side has been silent (``docs/protocol.md``, "Heartbeats and timeouts")."""

from __future__ import annotations

import os
import time
from typing import Callable, TypeVar

import zmq

from catbus import security
from catbus.errors import CatbusError
from catbus.wire import messages as msg
from catbus.wire.protocol import HEARTBEAT_INTERVAL
from catbus.wire.sockets import keep_links_alive


M = TypeVar("M", bound=msg.Message)


class RegistryLost(CatbusError):
    """The registry stopped answering: the launcher is gone, so this node exits."""


class ControlLink:
    """Sends and receives :mod:`catbus.wire.messages`; a message that is not one is counted in
    ``malformed`` and dropped, as the registry drops a node's."""

    def __init__(self, ctx: zmq.Context, bus: str, keys: "security.Keys | None" = None) -> None:
        self.socket = ctx.socket(zmq.DEALER)
        self.socket.setsockopt(zmq.LINGER, 1000)
        # Its own routing id, kept when the connection breaks and comes back: the registry
        # then knows the same process (ROUTER_HANDOVER) instead of a stranger.
        self.socket.setsockopt(zmq.ROUTING_ID, b"catbus-" + os.urandom(8).hex().encode())
        keep_links_alive(self.socket)
        self.handshake = security.dial(self.socket, bus, keys)   # CURVE client when keyed
        self.bus = bus
        self.last_heard = self.last_looked = time.monotonic()
        self.last_sent = 0.0
        self.malformed = 0
        self.backlog: list[msg.Message] = []   # received but not yet handled

    def send(self, message: msg.Message) -> None:
        self.socket.send(msg.encode(message))
        self.last_sent = time.monotonic()

    def send_first(self, message: msg.Message, timeout: float) -> None:
        """Send the first message (``register``) without blocking for ever: a DEALER whose
        connection is gone blocks in ``send``, and one whose CURVE handshake the registry
        refused has none (measured: 3 in 40 refused nodes hung there, silent). Waits up to
        ``timeout`` seconds for room, and says why it failed."""
        data = msg.encode(message)
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.socket.send(data, zmq.NOBLOCK)
                self.last_sent = time.monotonic()
                return
            except zmq.Again:
                pass
            self._give_up_if(deadline, timeout, "no connection to")
            self.socket.poll(100, zmq.POLLOUT)

    def receive_nowait(self) -> list[msg.Message]:
        """The backlog, then every message waiting on the socket."""
        self._pull()
        messages, self.backlog = self.backlog, []
        return messages

    def _pull(self) -> None:
        """Move every message waiting on the socket to the backlog (malformed ones counted and
        dropped); any message, even a malformed one, is hearing from the registry."""
        backlog = self.backlog
        while True:
            try:
                data = self.socket.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            self.last_heard = time.monotonic()
            try:
                backlog.append(msg.decode(data))
            except msg.MalformedMessage:
                self.malformed += 1

    def heartbeat_due(self) -> bool:
        return time.monotonic() - self.last_sent >= HEARTBEAT_INTERVAL

    def silent_for(self) -> float:
        """Seconds since the registry was last heard, counting what is already queued on the
        socket: a process frozen (SIGSTOP, a debugger, a swapped-out laptop) longer than the
        registry timeout finds the registry's heartbeats of that time waiting when it thaws, and
        must not conclude from the clock alone that the registry is gone. Looked at only past a
        heartbeat interval of silence, so the common case costs no system call."""
        now = time.monotonic()
        silent = now - self.last_heard
        if silent > HEARTBEAT_INTERVAL:
            self._pull()
            if now - self.last_looked > 2 * HEARTBEAT_INTERVAL and \
                    now - self.last_heard > 2 * HEARTBEAT_INTERVAL and \
                    self.socket.poll(int(2000 * HEARTBEAT_INTERVAL)):
                # This process was not looking (frozen, or in a long step): what the registry
                # sent meanwhile may still be in the kernel's buffer, which ZeroMQ's I/O thread
                # (frozen too) reads only now. Wait for it once, up to two heartbeats.
                self._pull()
            silent = time.monotonic() - self.last_heard
        self.last_looked = now
        return silent

    def wait_for(self, kind: type[M], *, timeout: float, handle: Callable[[msg.Message], None],
                 poll: Callable[[float], object]) -> M:
        """Wait up to ``timeout`` seconds for one control message of ``kind``, giving the
        others to ``handle`` and calling ``poll`` (milliseconds) between reads, so that the
        node's other sockets are served meanwhile; the registry must answer."""
        deadline = time.monotonic() + timeout
        while True:
            received = self.receive_nowait()
            for index, message in enumerate(received):
                if isinstance(message, kind):
                    # Whatever came in the same batch (the graph, often) is handled next.
                    self.backlog.extend(received[index + 1:])
                    return message
                handle(message)
            self._give_up_if(deadline, timeout, "no answer from")
            poll(100)

    def _give_up_if(self, deadline: float, timeout: float, what: str) -> None:
        """Raise RegistryLost if the registry refused our CURVE key (saying why, at once) or
        ``deadline`` has passed (``what`` the registry at the bus within ``timeout``)."""
        refused = self.handshake.problem()
        if refused:
            raise RegistryLost(refused)
        if time.monotonic() > deadline:
            raise RegistryLost(f"{what} the registry at {self.bus} within {timeout:g} s; is a "
                               "run started there (catbus launch ... or catbus bus)?")

    def close(self) -> None:
        self.handshake.close()
        self.socket.close()
