"""Several nodes of a stepped run in one process: a node group (``group:`` in a launch file,
``docs/design.md``, "Node groups").

On two cores a lockstep of four processes cannot beat a third of inline, whatever the code
does: every tick wakes every process. A group runs its nodes in one thread of one process, so
a message between two of them passes as ``inline`` passes it -- no socket, no wake-up -- while
every node keeps what makes it a node of a multi-process run: its own control link (the
registry sees each one register, heartbeat and say done), its own publishing socket for
readers outside the group, its own inbox and the same lockstep rules. What changes:

* :class:`LocalDelivery` hands each message a member sends to the members that read it, as
  the frames a socket would have given them (the same admission, progress and ordering; the
  recorder writes the same bytes), and the members do not subscribe to each other;
* one loop (:meth:`GroupRuntime.run`) resumes each member's stepped loop -- a generator that
  yields when its node must wait (:func:`catbus.runtime.loops.stepped_steps`) -- in launch
  order, and waits on the sockets of all of them when none can go on.

A member's failure or ``stop`` ends that member (its ``close()``, its ``done``); the others go
on until the registry ends the run. A swapped member hands over without blocking the others,
and its replacement runs in a process of its own, which they then reach over sockets. A grouped
node cannot have ``restart:`` (the launch file's checks refuse it): the group's process dying
would restart its nodes all at once.
"""

from __future__ import annotations

from typing import Any, Iterator, Sequence

import zmq

from catbus.errors import CatbusError
from catbus.runtime.inbox import Frames
from catbus.runtime.joining import say_ready_if_due, subscribe_inputs, waiting_for
from catbus.runtime.loops import stepped_steps
from catbus.runtime.process import NodeRuntime
from catbus.runtime.signals import Interrupted, PendingSignal, signal_exit_code
from catbus.wire.protocol import PROGRESS_TOPIC

#: The longest the group waits on its sockets before it looks at every control link again.
WAIT_MS = 50


class LocalDelivery:
    """The ``local`` callback of one member's data plane: what it sends, to the other members
    that read it, as the frames a socket would have delivered (each reader its own copy of
    array buffers, as the wire gives it)."""

    def __init__(self, name: str, members: Sequence[NodeRuntime]) -> None:
        self.name = name
        self.others = [member for member in members if member.name != name]
        #: topic -> the inboxes' add_frames of the members reading it
        self.routes: dict[str, list[Any]] = {}

    def __call__(self, topic: str, envelope: bytes, buffers: list) -> None:
        readers = self.routes.get(topic) if topic != PROGRESS_TOPIC else self._neighbours()
        if readers is None:
            readers = self.routes[topic] = self._readers(topic)
        if readers:
            frames = Frames([envelope, *(bytes(buffer) for buffer in buffers)], self.name)
            for add in readers:
                add(frames)

    def forget(self, name: str) -> None:
        """Member ``name`` has ended (the run's end for it, a failure, or a replacement in a
        process of its own took it over): nothing more is handed to it."""
        self.others = [member for member in self.others if member.name != name]
        self.routes.clear()

    def _readers(self, topic: str) -> list[Any]:
        """The members that subscribe to ``topic`` (all of it, for a reader of everything)."""
        return [member.driver.inbox.add_frames for member in self.others
                if member.link.data.everything or topic in member.link.data.inputs]

    def _neighbours(self) -> list[Any]:
        """Progress goes to every member it is a neighbour of (a reader, or a publisher it
        reads), as each neighbour's socket subscribes to it; the graph can change, so it is
        looked up each time."""
        name = self.name
        return [member.driver.inbox.add_frames for member in self.others
                if name in member.link.peers.neighbours]


class GroupRuntime:
    """The nodes of one group, in one process: join together, step in one thread, leave."""

    def __init__(self, members: Sequence[NodeRuntime]) -> None:
        if not members:
            raise CatbusError("a group needs at least one node")
        self.members = list(members)
        names = frozenset(member.name for member in self.members)
        #: One signal for all: the handler notes it, every member's link raises it again.
        self.pending_signal = PendingSignal()
        endpoints: set[str] = set()   # filled by each member as it opens its sockets
        for member in self.members:
            member.pending_signal = self.pending_signal
            member.local_peers = names - {member.name}
            member.local_endpoints = endpoints
        self._finishing = False
        #: The member being worked on: an exception out of the group's own code is its.
        self.current = self.members[0]
        #: Each member's hand-over of its messages to the others.
        self.deliveries: list[LocalDelivery] = []
        #: Members whose end has been handled (closed, done sent), and their exit codes.
        self.codes: dict[str, int] = {}

    def interrupt(self, signum: int, frame: Any) -> None:
        """The SIGINT/SIGTERM handler (see :meth:`NodeRuntime.interrupt`)."""
        if not self._finishing:
            self.pending_signal.note(signum)
            raise Interrupted(signum)

    # -- the group's life -----------------------------------------------------------------------
    def run(self) -> int:
        """The process exit code: the worst of the members' (see :meth:`NodeRuntime.run`)."""
        ctx = zmq.Context()
        try:
            for self.current in self.members:
                self.current.open(ctx)
            for self.current in self.members:
                if self.current.terms.mode != "stepped":
                    raise CatbusError(f"a node group runs in stepped mode only; this run is "
                                      f"{self.current.terms.mode}: start its nodes one per "
                                      f"process")
                delivery = LocalDelivery(self.current.name, self.members)
                self.deliveries.append(delivery)
                self.current.link.data.local = delivery
            self._join()
            for self.current in self.members:
                self.current.begin()
            self._step({member.name: stepped_steps(member.terms.periodic(member.name))(
                member.link, member.driver, member.terms) for member in self.members})
        except BaseException as exc:
            code = signal_exit_code(exc)
            if code is None:   # a failure of the member being worked on: named by it
                code = self._close(self.current, self.current.exit_code(exc))
            self._finishing = True
            for member in self.members:
                if member.name not in self.codes:
                    self._close(member, code)
        finally:
            self._finishing = True
            ctx.term()
        return max(self.codes.values(), default=0)

    def _close(self, member: NodeRuntime, code: int) -> int:
        """End one member (once): its ``close()``, final progress and ``done``."""
        if member.name not in self.codes:
            self.codes[member.name] = code
            self.codes[member.name] = member.close(code)
            for delivery in self.deliveries:
                delivery.forget(member.name)
        return self.codes[member.name]

    def _join(self) -> None:
        """:func:`catbus.runtime.joining.join` for every member at once: each says ready when
        its neighbours outside the group have seen its hello (those inside need none)."""
        said = {member.name: False for member in self.members}
        for member in self.members:
            subscribe_inputs(member.link)
        while any(member.link.started is None for member in self.members):
            for member in self.members:
                member.link.stats.state = waiting_for(member.link, said[member.name])
            self._wait(None, self.members, 100)
            for member in self.members:
                if not said[member.name]:
                    said[member.name] = say_ready_if_due(member.link)

    def _step(self, loops: dict[str, Iterator[str | None]]) -> None:
        """Resume each member's loop in launch order until it must wait; when none could go
        on, wait for a message for any of them. A loop that returns (its part of the run is
        over) or raises ends its member only.

        The members with a period go first; those without (the recorder) work, a tick at a
        time, only while the others wait and no message has come: a reply from outside the
        group (the robot's action) is then answered at once, as a process of its own would
        answer it, and recording stays off the lockstep's path as long as it keeps up."""
        live = [member for member in self.members if member.name in loops]
        while live:
            if self._resume(loops, live, idle=False) or self._wait(loops, live, 0):
                continue
            if not self._resume(loops, live, idle=True):
                self._wait(loops, live, WAIT_MS)

    def _resume(self, loops: dict[str, Iterator[str | None]], live: list[NodeRuntime],
                idle: bool) -> bool:
        """Resume the live members with a period (``idle``: those without) in launch order;
        whether any of them moved on (stepped, handled a tick, or ended)."""
        moved = False
        for member in [m for m in live if (m.driver.period is None) == idle]:
            before = member.driver.completed
            try:
                next(loops[member.name])
            except StopIteration:
                self._end(member, live, 0)
                moved = True
            except (KeyboardInterrupt, Interrupted):
                raise
            except BaseException as exc:
                self._end(member, live, member.exit_code(exc))
                moved = True
            else:
                moved = moved or member.driver.completed != before
        return moved

    def _end(self, member: NodeRuntime, live: list[NodeRuntime], code: int) -> None:
        live.remove(member)
        self._close(member, code)

    def _wait(self, loops: dict[str, Iterator[str | None]] | None, members: list[NodeRuntime],
              timeout_ms: int) -> bool:
        """Wait up to ``timeout_ms`` for a message on any member's sockets, then have each
        member's link handle what came for it; whether anything came. With ``loops`` (the
        run), a member whose link raises (the registry's ``stop``, a lost registry) ends
        alone -- closed, out of ``members``; without (joining), what it raises ends the
        group, in its name."""
        owner: dict[Any, NodeRuntime] = {}
        items: list = []
        for member in members:
            for item in member.link.poll_items():
                items.append(item)
                owner[item[0]] = member
        self.pending_signal.raise_if_pending()
        ready: dict[str, list] = {}
        found = zmq.zmq_poll(items, timeout_ms)
        for sock, _ in found:
            ready.setdefault(owner[sock].name, []).append(sock)
        for member in list(members):
            self.current = member
            try:
                member.link.handle(ready.get(member.name, ()))
            except (KeyboardInterrupt, Interrupted):
                raise
            except BaseException as exc:
                if loops is None:
                    raise
                loops.pop(member.name).close()   # (its finally blocks, if any)
                self._end(member, members, member.exit_code(exc))
        return bool(found)


__all__ = ["GroupRuntime", "LocalDelivery"]
