"""What the control plane is told: one frozen dataclass per kind of event, each handled by one
handler of :class:`~catbus.control.plane.ControlPlane`.

Time is an input: every event that needs it carries ``now`` (monotonic seconds, for deadlines)
and ``wall`` (Unix seconds, for records and the parallel gap), so the plane reads no clock and a
test can replay any interleaving exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

from catbus.wire import messages as msg


@dataclass(frozen=True)
class Received:
    """A control message came from the process with routing id ``identity``."""

    identity: bytes
    message: msg.Message
    now: float
    wall: float = 0.0


@dataclass(frozen=True)
class Tick:
    """Once per heartbeat interval: heartbeats go out and every deadline is checked.
    ``refused``: what the registry's socket refused so far (told to the nodes)."""

    now: float
    wall: float = 0.0
    refused: int = 0


@dataclass(frozen=True)
class LinkClosed:
    """The connection that last carried a message of process ``identity`` closed (ZeroMQ's
    heartbeats or the peer's kernel closed it)."""

    identity: bytes
    now: float


@dataclass(frozen=True)
class ProcessStarted:
    """The host started a process for ``node`` (after a :class:`~catbus.control.instructions.
    StartProcess`), with this ``pid``."""

    node: str
    pid: int
    now: float


@dataclass(frozen=True)
class ProcessRefused:
    """The host could not start the process a :class:`~catbus.control.instructions.
    StartProcess` asked for (the class does not import or fit, the parameters do not
    validate): ``reason`` says why."""

    node: str
    reason: str
    now: float


@dataclass(frozen=True)
class ProcessExited:
    """A process the host started has exited (``how``: "exited with code 1", "was killed by
    signal 9" ...)."""

    pid: int
    how: str
    now: float
    wall: float = 0.0
    #: The signal that ended it (killed by it, or exited on it: 128 + N), or 0.
    signal: int = 0


@dataclass(frozen=True)
class StopRun:
    """The run is being stopped (Ctrl-C, a failure, the host's end): every process is told."""

    reason: str
    now: float


Event = Received | Tick | LinkClosed | ProcessStarted | ProcessRefused | ProcessExited | StopRun

__all__ = ["Received", "Tick", "LinkClosed", "ProcessStarted", "ProcessRefused",
           "ProcessExited", "StopRun", "Event"]
