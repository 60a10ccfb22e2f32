"""The control plane's vocabularies as enums: what a member is, what a replacement is doing, and
what the host of the control plane is told. Compared by identity, never as text; each value is
the word the graph message and the tools show."""

from __future__ import annotations

from enum import Enum


class MemberState(str, Enum):
    """Where a node of the run stands (``state`` in the graph message).

    ``expected`` -> ``registered`` -> ``ready`` -> ``running`` -> ``done``; ``failed`` from
    anywhere; ``restarting`` while its process is being replaced after a failure (no process
    may own the name then, and the lockstep waits)."""

    EXPECTED = "expected"
    REGISTERED = "registered"
    READY = "ready"
    RUNNING = "running"
    RESTARTING = "restarting"
    DONE = "done"
    FAILED = "failed"

    @property
    def alive(self) -> bool:
        """Registered and not finished: its process is owed heartbeats and deadlines."""
        return self in (MemberState.REGISTERED, MemberState.READY, MemberState.RUNNING)

    @property
    def finished(self) -> bool:
        return self in (MemberState.DONE, MemberState.FAILED)


class SwitchKind(str, Enum):
    """Why a node's process is being replaced."""

    SWAP = "swap"          # asked for: a tool, the launch file's schedule, --replace by hand
    RESTART = "restart"    # its process failed and its restart policy answers


class Phase(str, Enum):
    """How far one replacement has come. A swap goes ORDERED -> JOINING -> READY ->
    TAKEN_OVER -> (done); a restart WAITING_EXIT -> DUE -> STARTING -> JOINING -> STARTED ->
    (done). Each handler checks the phase before it acts, so a message that comes at the wrong
    moment (a late ``ready``, a second ``handover``) changes nothing."""

    WAITING_EXIT = "waiting for the failed process to exit"
    DUE = "waiting out the restart backoff"
    ORDERED = "starting the replacement"
    STARTING = "starting the new process"
    JOINING = "the new process is joining"
    READY = "the new process is ready; the old one is handing over"
    TAKEN_OVER = "the new process took over; waiting for its first step"
    STARTED = "the new process started; waiting for its first step"


class NoticeKind(str, Enum):
    """What the control plane tells its host (the launcher, ``catbus bus``)."""

    REGISTERED = "registered"
    STARTED = "started"
    END = "end"                    # a node ended the episode (message: why)
    DONE = "done"
    FAILED = "failed"              # the run fails because of this node (message, traceback)
    LOST = "lost"                  # a node's link is down; the run waits for it
    BACK = "back"                  # ... and it came back
    SWAPPED = "swapped"            # a swap or restart is done (message: one line)
    SWAP_FAILED = "swap-failed"    # a swap failed; the old process goes on (message: why)
    RESTARTING = "restarting"      # a node's process failed and will be started again
    SPLICED = "spliced"            # a node went on mid-episode without its state


__all__ = ["MemberState", "SwitchKind", "Phase", "NoticeKind"]
