"""The kit as a whole: the join probe, then the runs the chosen checks need, then the verdicts.

A node that does not register well (or speaks another protocol version) gets no run: every
check that needs one is skipped, saying why, and the report says what to fix first.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from catbus.conformance.checks import CHECKS, Check, Report, Run, runs_for
from catbus.conformance.judge import judge
from catbus.conformance.probe import JoinRecord, probe
from catbus.conformance.runs import KIT_FEED, Plan, RunRecord, execute
from catbus.wire.protocol import PROTOCOL_VERSION


@dataclass(frozen=True)
class Options:
    """``name``: the node's name in every run (``{name}``); ``timeout``: seconds the node gets
    to register (in the probe) and to join a run; ``deadline``: the runs' ``--deadline`` (a
    node silent or a lockstep still this long fails the run); ``feed``: the class that feeds
    the node's inputs; ``keep``: a folder to keep logs and recordings in (else a temporary
    one, removed)."""

    name: str = "node"
    timeout: float = 20.0
    deadline: float = 10.0
    feed: str = KIT_FEED
    keep: Path | None = None


def run_kit(command: Sequence[str], checks: Sequence[Check] = CHECKS,
            options: Options = Options(),
            say: Callable[[str], None] = lambda line: None) -> Report:
    """Judge the node started by ``command`` on ``checks``; ``say`` hears what the kit is
    doing (one line per run)."""
    # Sockets live in a short folder of their own: an ipc path must stay under ~107 bytes.
    scratch = Path(tempfile.mkdtemp(prefix="cbk-"))
    folder = options.keep or scratch
    folder.mkdir(parents=True, exist_ok=True)
    try:
        say(f"join: starting {' '.join(command)} against a registry that refuses it")
        join = probe(command, options.name, folder, options.timeout)
        plan = plan_for(join, options)
        records: dict[Run, RunRecord] = {}
        for run in runs_for(checks):
            if run is Run.JOIN or plan is None:
                continue
            say(f"{run.value}: {RUN_SAYS[run]}")
            records[run] = execute(plan, run, command, scratch if options.keep is None
                                   else folder)
        return Report([judge(check, options.name, join, plan, records) for check in checks])
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def plan_for(join: JoinRecord, options: Options) -> Plan | None:
    """The runs' wiring, if the node registered well enough to join a real run."""
    register = join.register
    if register is None or join.problem or register.name != options.name or \
            register.protocol != PROTOCOL_VERSION:
        return None
    return Plan(options.name, register, feed=options.feed, timeout=options.timeout,
                deadline=options.deadline)


RUN_SAYS = {
    Run.STEPPED: "a stepped run with random delays (feeder -> node -> reader, recorded)",
    Run.AGAIN: "the same stepped run again, other delays (the recordings must be equal)",
    Run.STOP: "a stepped run stopped while the node waits (a hello asked meanwhile)",
    Run.PARALLEL: "a parallel run over TCP that a neighbour ends by ending the episode",
}

__all__ = ["Options", "run_kit", "plan_for"]
