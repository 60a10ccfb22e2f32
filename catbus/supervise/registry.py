"""The run's registry: the control plane's socket. One ROUTER that every node registers with.

No data passes through it. It reads control messages (refusing and counting what does not
decode, and on a keyed bus what its security refuses), feeds them with the heartbeat tick and the
socket's closed connections to the :class:`~catbus.control.plane.ControlPlane`, which decides
everything, and sends the messages the plane returns. What the plane asks of the host -- start
or kill a process, tell the user -- comes back from :meth:`Registry.poll` and
:meth:`Registry.handle` for the launcher (or ``catbus bus``) to carry out.

The registry never blocks: :meth:`Registry.poll` handles what is pending and returns.
"""

from __future__ import annotations

import time
from typing import Any

import zmq

from catbus import security
from catbus.control import ControlPlane, RunConfig
from catbus.control.events import Event, LinkClosed, Received, StopRun, Tick
from catbus.control.instructions import Instruction, Send
from catbus.control.members import Member
from catbus.supervise.linkwatch import LinkWatch
from catbus.wire import messages as msg
from catbus.wire.protocol import HEARTBEAT_INTERVAL
from catbus.wire import sockets
from catbus.wire.sockets import keep_links_alive

#: The most control messages :meth:`Registry.poll` handles per call (a few nodes send a few per
#: second; a run of hundreds of nodes starting at once needs a few calls).
MAX_BATCH = 1000


class Registry:
    """The control plane of one run on its socket. ``config.expected`` None: an open bus that
    admits any node and starts each as soon as it is connected (``catbus bus``)."""

    def __init__(self, ctx: zmq.Context, bind: str, config: RunConfig | None = None, *,
                 keys: Any = None) -> None:
        config = config if config is not None else RunConfig()   # an open bus
        self.socket = ctx.socket(zmq.ROUTER)
        #: CURVE and the allow-list (catbus.security) when ``keys`` are given on a TCP bus.
        self.guard = security.registry_guard(ctx, self.socket, keys, bind)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.setsockopt(zmq.ROUTER_HANDOVER, 1)  # a restarted node may reuse its identity
        keep_links_alive(self.socket)
        sockets.bind(self.socket, bind)   # IPv6 on exactly when the address needs it
        self.endpoint = self.socket.getsockopt(zmq.LAST_ENDPOINT).decode()
        guard = self.guard
        config.graph_filter = guard.graph   # a keyed run: each node's public key for its readers
        self.plane = ControlPlane(config)
        #: The plane's state: members, records, where the run is (read-only for the host).
        self.state = self.plane.state
        #: Which connection carried each process's messages (see catbus.supervise.linkwatch).
        self.links = LinkWatch(self.socket, guard.handshake_failed if guard.secured else None)
        self.last_beat = 0.0
        #: Control messages that did not decode (counted here: the plane never sees them).
        self.malformed = 0

    # -- the host's side -------------------------------------------------------------------------
    def poll(self, timeout_ms: float) -> list[Instruction]:
        """Handle what arrived within ``timeout_ms`` (and the heartbeat tick when it is due);
        returns what the host must do (everything but sending, which is done)."""
        todo: list[Instruction] = []
        if self.socket.poll(timeout_ms):
            self._closed_links(todo)
            # At most MAX_BATCH messages per call: whatever arrives (a flood of garbage from a
            # stranger included), the host gets back to heartbeats, deadlines and signals.
            for _ in range(MAX_BATCH):
                try:
                    frames = self.socket.recv_multipart(zmq.NOBLOCK, copy=False)
                    identity, data = self.guard.sender(frames)
                except zmq.Again:
                    break
                except ValueError:
                    self.malformed += 1
                    continue
                self.links.heard(identity, frames[-1])
                try:
                    message = msg.decode(data)
                except msg.MalformedMessage as exc:
                    self.malformed += 1
                    if exc.op == msg.Register.OP:
                        self._send(identity, msg.Reject(reason=f"malformed register: {exc}"))
                    continue
                refused = self._refused_by_keys(message)
                if refused:
                    reply = msg.SwapReply(ok=False, message=refused) if \
                        isinstance(message, msg.SwapRequest) else \
                        msg.ParamsReply(ok=False, message=refused) if \
                        isinstance(message, msg.ParamsRequest) else msg.Reject(reason=refused)
                    self._send(identity, reply)
                    continue
                todo += self._feed(Received(identity, message, time.monotonic(), time.time()))
        now = time.monotonic()
        if now - self.last_beat >= HEARTBEAT_INTERVAL:
            self.last_beat = now
            self._closed_links(todo)
            todo += self._feed(Tick(now, time.time(), self.refused))
        return todo + self._carry_out(self.plane.flush())   # one graph for the whole batch

    def handle(self, event: Event) -> list[Instruction]:
        """Feed the plane one event (from the host: a process started or exited, a stop);
        send what it says to send, return the rest."""
        return self._feed(event) + self._carry_out(self.plane.flush())

    def _feed(self, event: Event) -> list[Instruction]:
        return self._carry_out(self.plane.handle(event))

    def _carry_out(self, instructions: list[Instruction]) -> list[Instruction]:
        """Send the messages; return what is the host's to do."""
        rest = []
        for instruction in instructions:
            if isinstance(instruction, Send):
                self._send(instruction.identity, instruction.message)
            else:
                rest.append(instruction)
        return rest

    def stop(self, reason: str) -> list[Instruction]:
        """Tell every process still running to stop (gracefully: ``close`` runs); swaps in
        progress fail."""
        return self.handle(StopRun(reason, time.monotonic()))

    def close(self) -> None:
        self.links.close()
        self.socket.close(0)
        self.guard.close()

    # -- what the host reads ---------------------------------------------------------------------
    @property
    def refused(self) -> int:
        """Every control message and connection refused: malformed messages, registrations
        refused for what they said, and on a keyed bus what its security refused."""
        security_refused = self.guard.refusals
        return self.malformed + self.state.refused + security_refused

    @property
    def started(self) -> bool:
        return self.state.started

    @property
    def started_at(self) -> float:
        return self.state.started_at

    @property
    def start_delay(self) -> float:
        return self.plane.config.start_delay

    @property
    def members(self) -> dict[str, Member]:
        return self.state.members

    def min_tick(self) -> int:
        return self.state.min_tick()

    def elapsed(self) -> float:
        return self.state.elapsed(time.monotonic())

    # -- socket ----------------------------------------------------------------------------------
    def _closed_links(self, todo: list[Instruction]) -> None:
        """Connection events first, so that a descriptor closed and reused by a new connection
        is never taken for the new one's (see catbus.supervise.linkwatch)."""
        for identity in self.links.closed():
            todo += self._feed(LinkClosed(identity, time.monotonic()))

    def _refused_by_keys(self, message: msg.Message) -> str | None:
        """On a keyed bus, what the sender's key may not do: register another node's name, or
        ask to swap it."""
        guard = self.guard
        if isinstance(message, msg.Register):
            return guard.register_problem(message)
        if isinstance(message, (msg.SwapRequest, msg.ParamsRequest)):   # both drive the node
            return guard.swap_problem(message.node)
        return None

    def _send(self, identity: bytes, message: msg.Message) -> None:
        try:
            self.socket.send_multipart([identity, msg.encode(message)], zmq.NOBLOCK)
        except zmq.ZMQError:
            pass


__all__ = ["Registry", "MAX_BATCH"]
