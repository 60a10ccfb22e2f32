"""A node process's connection to its run: the control link to the registry, the data plane to
its peers, and what the registry has told it so far (``docs/design.md``, "Control plane").

The run loops (:mod:`catbus.runtime.loops`) wait and receive through a :class:`ProcessLink`; the
node itself is the :class:`~catbus.runtime.driver.NodeDriver`'s business, never this one's.
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable, Collection

import zmq

from catbus.runtime.controllink import ControlLink, RegistryLost
from catbus.runtime.dataplane import DataPlane, data_endpoint_for
from catbus.runtime.inbox import Inbox
from catbus.runtime.joining import join
from catbus.runtime.orders import Stopped, obey
from catbus.runtime.lockstep import Peers
from catbus.runtime.signals import Interrupted, PendingSignal
from catbus.runtime.stats import NodeStats
from catbus.wire import messages as msg
from catbus.wire.protocol import CLOSING_STATE


#: Stepped mode: the longest a node blocks on its data socket before it looks at its control
#: link (stop, end, heartbeats) and at new subscriptions.
STEPPED_WAIT_MS = 50
#: The longest a node goes without handling its control link (stop, end, heartbeats) while it
#: is busy: messages keep coming, it is always ready to step, or it overruns its period.
CONTROL_EVERY = 0.05
_POLLIN = int(zmq.POLLIN)
_zmq_poll = zmq.zmq_poll


class ProcessLink:
    """Sockets of one node process, and the run as the registry described it."""

    def __init__(self, ctx: zmq.Context, name: str, bus: str, *, advertise: str | None,
                 registry_timeout: float, parent_pid: int | None, keys: Any = None,
                 data_ports: tuple[int, int] | None = None,
                 pending_signal: PendingSignal | None = None) -> None:
        self.name = name
        #: The node's stop signal, raised again here if code swallowed the handler's exception.
        self.pending_signal = pending_signal or PendingSignal()
        self.bus = bus
        self.registry_timeout = registry_timeout
        #: The launcher's pid for a node it started: if it changes, the launcher is gone.
        self.parent_pid = parent_pid
        self.control = ControlLink(ctx, bus, keys)
        self.data = DataPlane(ctx, name, data_endpoint_for(bus, name, advertise), keys,
                              data_ports)
        #: What :meth:`service` polls: every neighbour's data socket, the publishing socket
        #: (subscriptions) and the control link; rebuilt when the neighbours' sockets change.
        self._poll_items: list[tuple[zmq.Socket, int]] = []
        self._polled_version = -1
        self.inbox: Inbox | None = None
        self.stats = NodeStats()   # replaced by the driver's own in attach()
        self.peers = Peers()
        self.graph_nodes: list[dict] = []   # the registry's latest graph message
        self.graph_complete = False
        self.started: float | None = None   # monotonic time the run starts at
        #: The episode's end tick: from the registry (``end``) or this node's own end_episode.
        self.end_tick: int | None = None
        #: Why this node stopped: the registry's stop reason, or its own end of episode.
        self.stop_reason: str | None = None
        self.control_due = 0.0
        #: Hot swap (see :meth:`hand_over`): the registry asked this process to retire (the
        #: loops look at this between steps), and whether it has handed over and waits.
        self.retire_requested = False
        self.retired = False
        #: A replacement's :class:`~catbus.wire.messages.Takeover`, once the registry sent it.
        self.takeover: msg.Takeover | None = None
        #: How this process joins (the welcome's ``joining``): "", "swap" or "restart".
        self.joining = ""
        #: The first tick a restarted process steps, from the registry's ``start``.
        self.start_tick = 0
        #: Seconds of the run already gone when this process was started (``start.elapsed``: a
        #: process joining a run going on; parallel: its cycles go on from there).
        self.start_elapsed = 0.0
        #: Called with the tick after this process's first step (a replacement reports it).
        self.after_first_step = None
        #: Stepped: hand over before stepping this tick (a swap scheduled in the launch file).
        self.retire_at: int | None = None
        #: ``checkpoint: N``: the node's :class:`catbus.runtime.checkpoints.NodeCheckpoints`
        #: (None: it takes none), and the tick a restarted process restored one of (stepped:
        #: its first tick).
        self.checkpoints: Any = None
        self.live_params: Any = None   # catbus.runtime.liveparams.LiveParams, once set up
        self.resume_tick: int | None = None
        #: What the registry has refused so far, from its heartbeats.
        self.registry_refused = 0
        #: Called with the seconds this process's link was down, once the registry says it is
        #: back (``rejoined``).
        self.on_rejoin: Callable[[float], None] | None = None
        #: Called with the reason when a swap of this node failed and this process goes on
        #: (``resume`` with a reason).
        self.on_swap_failed: Callable[[str], None] | None = None

    def attach(self, inbox: Inbox, stats: NodeStats) -> None:
        """Received data goes to ``inbox``; heartbeats report ``stats``."""
        self.inbox = inbox
        self.stats = stats

    # -- control --------------------------------------------------------------------------------
    def send(self, message: msg.Message) -> None:
        """One typed control message to the registry."""
        self.control.send(message)

    def receive_control(self) -> list[msg.Message]:
        """Every control message waiting (malformed ones are counted by the control link)."""
        return self.control.receive_nowait()

    def on_control(self, message: msg.Message) -> None:
        """Act on one control message of the registry (:mod:`catbus.runtime.orders`)."""
        obey(self, message)

    def connect_and_wait_start(self) -> None:
        """Subscribe, connect to every neighbour the graph names, say ``ready`` once each has
        seen our hello, and wait for ``start`` (:func:`catbus.runtime.joining.join`)."""
        join(self)

    def wait_until_started(self) -> None:
        """Handle I/O until the start time the registry gave (its start delay)."""
        while self.started > time.monotonic():
            self.service(max(0.0, (self.started - time.monotonic()) * 1000))

    # -- I/O ------------------------------------------------------------------------------------
    def poll(self, timeout_ms: float) -> list[zmq.Socket]:
        """The sockets of :attr:`_poll_items` with something to read, waiting up to
        ``timeout_ms`` for one."""
        self.pending_signal.raise_if_pending()
        return [sock for sock, _ in _zmq_poll(self.poll_items(), int(timeout_ms))]

    def poll_items(self) -> list[tuple[zmq.Socket, int]]:
        """What :meth:`poll` waits on: every neighbour's data socket, the publishing socket
        (subscriptions), the control link (and the flood guard's monitor)."""
        subscribers = self.data.sub
        if subscribers.version != self._polled_version:
            self._polled_version = subscribers.version
            monitor = self.data.gate.guard.monitor   # connections accepted: see SubscriptionGate.drain
            self._poll_items = [(sock, _POLLIN) for sock in
                                (*subscribers.sockets.values(), self.data.pub,
                                 self.control.socket, *([monitor] if monitor else []))]
        return self._poll_items

    def service(self, timeout_ms: float) -> None:
        """Wait up to ``timeout_ms`` for I/O, then handle everything pending."""
        self.handle(self.poll(timeout_ms))

    def handle(self, ready: Collection[zmq.Socket]) -> None:
        """Handle everything pending, ``ready`` being the sockets of :meth:`poll_items` a poll
        found readable (a group process polls the sockets of all its nodes at once)."""
        data = self.data
        if self.inbox is not None and (data.sub.names.keys() & ready or data.sub.pending):
            data.sub.drain(self.inbox.add_frames, ready)
        if data.pub in ready or data.gate.guard.monitor in ready:
            data.gate.drain()
            if data.gate.hellos_seen:
                self._answer_hellos()
        if self.control.socket in ready or self.control.backlog:
            for message in self.receive_control():
                self.on_control(message)
        self.keep_alive()

    def _answer_hellos(self) -> None:
        """Once the run is going, a hello is a neighbour that (re)subscribed: a replacement, a
        restarted process, or a connection that came back. What ZeroMQ dropped for it is sent
        again (receivers drop what they have), with our progress and how far we have heard
        from each such neighbour."""
        names = self.data.gate.take_hellos()
        if self.started is None or self.inbox is None or self.retired:
            return
        self.data.send_retained()
        self.data.announce({name: self.inbox.through(name) for name in set(names)})

    @property
    def restarting(self) -> bool:
        """This process starts as a restarted one does: with no handed-over state, after the
        last tick every reader heard from its predecessor. True for a restart, and for a swap's
        replacement whose old process died before it handed over (a takeover of kind
        ``restart``: the user asked for a swap, but there is nothing to take over)."""
        takeover = self.takeover
        if takeover is not None:
            return takeover.kind == "restart"
        return self.joining == "restart"

    def episode_ended(self, tick: int, reason: str) -> None:
        """This node ended the episode at ``tick`` (its ``end_episode``; the tick is completed
        and its data sent). The one way every process loop ends an episode: remember why (the
        ``done`` reports it) and where (the earliest end known wins, as for the registry's
        ``end``), and tell the peers in a ``catbus/progress`` of its own with the end tick --
        never only by data headers: a peer that learnt "complete through this tick" without the
        end could step past it (``docs/design.md``, "Lockstep by progress")."""
        self.stop_reason = reason
        if self.end_tick is None or tick < self.end_tick:
            self.end_tick = tick
        self.data.publish_progress(tick, tick, self.end_tick, False)

    def hand_over(self, next_tick: int, snapshot: bytes | None) -> None:
        """Hot swap, in the old process, between two steps: tell the registry where this node
        stopped and in what state, then wait -- publishing nothing -- until the registry says
        ``stop`` (the replacement has taken over: :class:`Stopped` is raised) or ``resume``
        (it failed before its first step: return, and the caller goes on stepping)."""
        self.start_hand_over(next_tick, snapshot)
        while self.retired:
            self.service(100)
        self.stats.state = f"resumed at tick {next_tick}"

    def start_hand_over(self, next_tick: int, snapshot: bytes | None) -> None:
        """The first half of :meth:`hand_over`: tell the registry, and be :attr:`retired` until
        it answers (a caller that cannot block -- a group process -- waits its own way)."""
        self.retire_requested = False
        self.retired = True
        self.stats.state = "handed over"
        self.send(msg.Handover(tick=next_tick, snapshot=snapshot, seq=dict(self.data.seq),
                               last_publish=self.data.last_publish))

    def tend(self) -> None:
        """Between steps: handle the control link at most every :data:`CONTROL_EVERY` seconds.

        A node that is always ready to step (its peers far enough ahead) never waits in
        :meth:`receive_one`, so without this it never heard the registry's ``stop`` or ``end``.
        One clock read per step; the poll only every CONTROL_EVERY."""
        now = time.monotonic()
        if now >= self.control_due:
            self.control_due = now + CONTROL_EVERY
            self.service(0)

    def receive_one(self) -> None:
        """Stepped: wait for the next data message and hand it to the inbox -- from a single
        neighbour one blocking receive, from several one poll of their sockets
        (:meth:`catbus.runtime.subscribers.Subscribers.receive`) -- and look at the control
        link and the publishing socket when the wait timed out or at least every
        :data:`CONTROL_EVERY` seconds. One message at a time: the caller checks after each
        whether it may step, and anything else stays queued in order for the next call. Waits
        at most what :meth:`block_on_data` set."""
        frames = self.data.sub.receive(True)
        if frames is not None:
            self.inbox.add_frames(frames, frames.source)
            now = time.monotonic()
            if now < self.control_due:
                return
        else:
            now = time.monotonic()
        self.control_due = now + CONTROL_EVERY
        self.service(0)

    def block_on_data(self, timeout_ms: int) -> None:
        """Waiting receives on the data sockets (:meth:`receive_one`, ``receive_frames(sub,
        wait=True)``) wait at most this long."""
        self.data.sub.set_timeout(max(1, int(timeout_ms)))

    def drain_data(self) -> None:
        """Hand every waiting data message to the inbox, each neighbour's in order
        (:meth:`catbus.runtime.subscribers.Subscribers.drain`)."""
        self.data.sub.drain(self.inbox.add_frames)

    def keep_alive(self) -> None:
        control = self.control
        if control.heartbeat_due():
            # PDEATHSIG can be lost (a handler swallowing the exception, a platform without
            # prctl); a launcher that died is also seen here, within one heartbeat interval.
            if self.parent_pid is not None and os.getppid() != self.parent_pid:
                raise Interrupted()
            stats = self.stats
            self.send(msg.Heartbeat(tick=stats.tick, steps=stats.steps, state=stats.state))
        if control.silent_for() > self.registry_timeout:
            raise RegistryLost(f"the registry at {self.bus} has been silent for "
                               f"{self.registry_timeout:g} s; the run is gone, stopping")

    def say_closing(self) -> None:
        """Tell the registry this node has left its run loop and is in close(): the launcher
        then does not take a long close() (a recorder finishing its file) for a stuck node once
        the run is over; the heartbeat deadline still bounds it."""
        stats = self.stats
        stats.state = CLOSING_STATE
        try:
            self.send(msg.Heartbeat(tick=stats.tick, steps=stats.steps, state=CLOSING_STATE))
        except zmq.ZMQError:
            pass

    def close(self) -> None:
        self.data.close()
        self.control.close()


__all__ = ["ProcessLink", "RegistryLost", "Stopped", "STEPPED_WAIT_MS", "CONTROL_EVERY"]
