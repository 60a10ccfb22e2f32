"""The kit's checks, what each one's verdict looks like, and the report they make.

Every check names the part of ``docs/protocol.md`` it tests (a heading's anchor), so that a
FAIL points the implementer at the paragraph to read rather than at catbus's source; and the
runs it needs, so that ``--only`` starts no run that no chosen check reads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Iterable, Sequence

#: Where the checks point: the protocol document, relative to the repository and the site.
DOC = "docs/protocol.md"


class Run(str, Enum):
    """The runs the kit starts around the node under test (see :mod:`catbus.conformance.runs`).

    ``join``: a registry of the kit's own reads the ``register`` and refuses it; ``stepped``
    and ``again``: two equal stepped runs (the second with other random delays); ``stop``: a
    stepped run stopped while the node waits for a neighbour; ``parallel``: a parallel run over
    TCP that a neighbour ends by ending the episode."""

    JOIN = "join"
    STEPPED = "stepped"
    AGAIN = "again"
    STOP = "stop"
    PARALLEL = "parallel"


@dataclass(frozen=True)
class Check:
    """One thing a node must do: ``id`` (what ``--only`` takes), a one-line ``title``, the
    ``section`` of the protocol document that says it, and the ``runs`` it is judged from."""

    id: str
    title: str
    section: str
    runs: tuple[Run, ...]

    @property
    def pointer(self) -> str:
        return f"{DOC}#{self.section}"


CHECKS: tuple[Check, ...] = (
    Check("register", "sends a well-formed register with its name, its endpoint bound first",
          "joining-a-run", (Run.JOIN,)),
    Check("protocol", "announces the protocol version of this catbus", "versions",
          (Run.JOIN,)),
    Check("reject", "exits with code 1 when the registry refuses it", "joining-a-run",
          (Run.JOIN,)),
    Check("welcome", "runs with the welcome's period and topics, not its own",
          "joining-a-run", (Run.JOIN, Run.STEPPED)),
    Check("ready", "says ready after every neighbour's hello: the run starts",
          "connecting-subscriptions-and-the-hello-barrier", (Run.JOIN, Run.STEPPED)),
    Check("hellos", "answers a hello once started: catbus/progress with heard",
          "answering-a-hello", (Run.JOIN, Run.STOP)),
    Check("heartbeats", "heartbeats report its real tick and step count",
          "liveness-heartbeats-and-timeouts", (Run.JOIN, Run.STOP)),
    Check("through", "stepped: through = min(t + k - 1, last_tick), progress when needed",
          "after-stepping-tick-t", (Run.JOIN, Run.STEPPED)),
    Check("final", "leaves with a final progress claiming only what it completed",
          "leaving-final-progress-done-exit", (Run.JOIN, Run.STEPPED, Run.STOP, Run.PARALLEL)),
    Check("stats", "publishes catbus/stats as it leaves, before its final progress",
          "leaving-final-progress-done-exit", (Run.JOIN, Run.STEPPED)),
    Check("done", "says done and exits 0 at the end of the run", "exit-codes",
          (Run.JOIN, Run.STEPPED)),
    Check("end", "leaves at the end of the episode a neighbour announced, exit 0",
          "end-of-the-run-and-of-the-episode", (Run.JOIN, Run.PARALLEL)),
    Check("stop", "leaves on stop within its wait, final progress and done, exit 0",
          "stop-and-shutdown-order", (Run.JOIN, Run.STOP)),
    Check("stepped", "two stepped runs with random delays record the same data",
          "stepped-mode", (Run.JOIN, Run.STEPPED, Run.AGAIN)),
    Check("parallel", "runs in a parallel run over TCP: cycles, through nil", "parallel-mode",
          (Run.JOIN, Run.PARALLEL)),
)
BY_ID = {check.id: check for check in CHECKS}


class Status(str, Enum):
    PASS = "PASS"
    FAIL = "FAIL"
    SKIP = "SKIP"   # could not be judged: a run it needs did not happen


@dataclass(frozen=True)
class Outcome:
    """A check's verdict with its one-line reason."""

    check: Check
    status: Status
    reason: str

    def line(self) -> str:
        return f"{self.status.value}  {self.check.id:<10} {self.reason}  ({self.check.pointer})"

    def to_dict(self) -> dict:
        return {"id": self.check.id, "status": self.status.value, "title": self.check.title,
                "reason": self.reason, "section": self.check.pointer}


def passed(check: Check, reason: str) -> Outcome:
    return Outcome(check, Status.PASS, reason)


def failed(check: Check, reason: str) -> Outcome:
    return Outcome(check, Status.FAIL, reason)


def skipped(check: Check, reason: str) -> Outcome:
    return Outcome(check, Status.SKIP, reason)


@dataclass
class Report:
    """Every chosen check's outcome, in the order of :data:`CHECKS`."""

    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Every chosen check passed (a skipped one did not)."""
        return bool(self.outcomes) and all(o.status is Status.PASS for o in self.outcomes)

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1

    def status(self, check_id: str) -> Status | None:
        return next((o.status for o in self.outcomes if o.check.id == check_id), None)

    def lines(self) -> list[str]:
        count = sum(o.status is Status.PASS for o in self.outcomes)
        return [o.line() for o in self.outcomes] + \
            [f"{count} of {len(self.outcomes)} checks passed"]

    def to_dict(self) -> dict:
        return {"ok": self.ok, "checks": [o.to_dict() for o in self.outcomes]}


def choose(only: Iterable[str] = (), skip: Iterable[str] = ()) -> list[Check]:
    """The checks to run: ``only`` these (all by default), less ``skip``. ValueError names an
    unknown id and lists the known ones."""
    only, skip = list(only), list(skip)
    unknown = [name for name in only + skip if name not in BY_ID]
    if unknown:
        raise ValueError(f"unknown check {unknown[0]!r} (checks: {', '.join(BY_ID)})")
    chosen = [c for c in CHECKS if (not only or c.id in only) and c.id not in skip]
    if not chosen:
        raise ValueError("no check left to run")
    return chosen


def runs_for(checks: Sequence[Check]) -> list[Run]:
    """The runs these checks need, in the order they are made."""
    needed = {run for check in checks for run in check.runs}
    return [run for run in Run if run in needed]


__all__ = ["Check", "CHECKS", "BY_ID", "Run", "Status", "Outcome", "Report", "passed", "failed",
           "skipped", "choose", "runs_for", "DOC"]
