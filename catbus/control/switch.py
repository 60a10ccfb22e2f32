"""One node's replacement in progress, swap or restart: which processes take part, and how far
it has come (:class:`~catbus.control.kinds.Phase`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from catbus.control.kinds import Phase, SwitchKind
from catbus.control.members import Process
from catbus.wire import messages as msg


@dataclass
class Switch:
    node: str
    kind: SwitchKind
    phase: Phase
    #: The class the new process runs (a swap's order; a restart: the launch file's).
    cls: str = ""
    #: A swap's parameter overrides.
    params: dict = field(default_factory=dict)
    #: The tool that asked for the swap, answered with ``swap-reply`` (None: the launch file's
    #: schedule, a replacement by hand, or a restart).
    requester: bytes | None = None
    #: Monotonic time the phase began (each phase is bounded by the run's deadline).
    since: float = 0.0
    #: The pid the host reported for the process it started (its death before it registers
    #: fails the swap at once).
    spawned_pid: int | None = None
    #: The new process, from its ``register`` on.
    candidate: Process | None = None
    #: A swap's old process, once the new one has taken over (stopped after the first step).
    old: Process | None = None
    #: The old process's ``handover``, once it came.
    handover: msg.Handover | None = None
    #: A swap whose old process died before handing over: the new one starts as a restarted
    #: process would (and the episode is spliced).
    old_died: str = ""
    #: A restart: the failed process's pid while it is being waited for (killed or exiting),
    #: when the new one is due, and why the old one failed.
    dead_pid: int | None = None
    due: float = 0.0
    why: str = ""
    #: A restart begun while a neighbour was being restarted too: those neighbours. Each goes
    #: on from where its readers stopped hearing it, but a reader restarting with it has heard
    #: nothing, so the two cannot go on exactly where they stopped: the episode is spliced.
    together: set[str] = field(default_factory=set)

    def describe(self) -> str:
        """In words, for ``catbus node list`` (the graph's ``pending``)."""
        what = (f"swap to {self.cls}" if self.kind is SwitchKind.SWAP and self.cls else
                self.kind.value)
        pid = self.candidate.pid if self.candidate is not None else self.spawned_pid
        who = f" (pid {pid})" if pid else ""
        report = (f"; its last report: {self.candidate.activity}"
                  if self.candidate is not None and self.candidate.activity else "")
        return f"{what}{who}: {self.phase.value}{report}"


__all__ = ["Switch"]
