"""The run's control plane as a state machine: events in, instructions out, no socket and no
clock (``docs/design.md``, "Control plane"). :class:`ControlPlane` is the whole of it; the
registry and the launcher are its adapters."""

from catbus.control.config import NodeConfig, RestartPolicy, RunConfig, ScheduledSwap
from catbus.control.events import (LinkClosed, ProcessExited, ProcessRefused, ProcessStarted,
                                   Received, StopRun, Tick)
from catbus.control.instructions import KillProcess, Notice, Send, StartProcess
from catbus.control.kinds import MemberState, NoticeKind, Phase, SwitchKind
from catbus.control.plane import ControlPlane, splice_line
from catbus.control.swaps import describe

__all__ = ["ControlPlane", "RunConfig", "NodeConfig", "RestartPolicy", "ScheduledSwap",
           "Received", "Tick", "LinkClosed", "ProcessStarted", "ProcessRefused",
           "ProcessExited", "StopRun", "Send", "StartProcess", "KillProcess", "Notice",
           "MemberState", "NoticeKind", "Phase", "SwitchKind", "describe", "splice_line"]
