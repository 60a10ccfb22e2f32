"""The run loops of a node process, one per way of running, chosen once before the first step.

Each is a function ``(link, driver, run) -> None`` that returns when the node's part of the run
is over (the end of the run, the end of the episode) and raises when it is told to stop. A loop
learns that its node ended the episode from the driver's
:class:`~catbus.runtime.driver.StepOutcome`, never from the node, and ends it the one way every
loop does, :meth:`~catbus.runtime.link.ProcessLink.episode_ended`. The
process lifecycle around them is :mod:`catbus.runtime.process`; ``inline`` has its own loop
(:mod:`catbus.supervise.inline`) over the same :class:`~catbus.runtime.driver.NodeDriver`.
"""

from __future__ import annotations

from typing import Callable, Iterator

from catbus.runtime.driver import NodeDriver
from catbus.runtime.latency import latency_of
from catbus.runtime.link import ProcessLink
from catbus.runtime.steplog import step_log_for
from catbus.runtime.loops import parallel, stepped
from catbus.runtime.terms import RunTerms

Loop = Callable[[ProcessLink, NodeDriver, RunTerms], None]
#: A loop as a generator: it yields None whenever the node must wait for a message, and
#: :data:`~catbus.runtime.loops.stepped.RETIRED` while its process has handed over.
Steps = Callable[[ProcessLink, NodeDriver, RunTerms], Iterator[str | None]]


def choose_loop(mode: str, periodic: bool) -> Loop:
    """The loop for ``mode`` (``stepped`` or ``parallel``) and a node with or without a period."""
    if mode == "stepped":
        return _stepped_periodic if periodic else _stepped_reactive
    return _parallel_periodic if periodic else _parallel_reactive


def stepped_steps(periodic: bool) -> Steps:
    """``stepped`` mode's loop for a node with or without a period, as a generator that yields
    whenever the node waits for a message (a group process runs several of them in one
    thread: :mod:`catbus.runtime.group`); a node without a period also yields after each tick
    it handles, so that the group's stepping nodes go first."""
    return _periodic_steps if periodic else _reactive_tick_steps


def _periodic_steps(link: ProcessLink, driver: NodeDriver,
                    run: RunTerms) -> Iterator[str | None]:
    pace = run.run_info.get("pace")
    return stepped.periodic_steps(link, driver, run.require_schedule(),
                                  pace=pace if isinstance(pace, (int, float)) and pace > 0
                                  else None, latency=latency_of(run.run_info), seed=run.seed)


def _reactive_steps(link: ProcessLink, driver: NodeDriver,
                    run: RunTerms) -> Iterator[str | None]:
    return stepped.reactive_steps(link, driver, run.require_schedule())


def _reactive_tick_steps(link: ProcessLink, driver: NodeDriver,
                         run: RunTerms) -> Iterator[str | None]:
    return stepped.reactive_steps(link, driver, run.require_schedule(), batch=1)


def _stepped_periodic(link: ProcessLink, driver: NodeDriver, run: RunTerms) -> None:
    _drive(link, _periodic_steps(link, driver, run))


def _stepped_reactive(link: ProcessLink, driver: NodeDriver, run: RunTerms) -> None:
    _drive(link, _reactive_steps(link, driver, run))


def _drive(link: ProcessLink, steps: Iterator[str | None]) -> None:
    """Run a stepped loop in a node process: receive whenever it waits for a message, and
    handle the control link while it has handed over."""
    receive_one, service = link.receive_one, link.service
    for waiting in steps:
        if waiting is None:
            receive_one()
        else:   # stepped.RETIRED
            service(100)


def _parallel_periodic(link: ProcessLink, driver: NodeDriver, run: RunTerms) -> None:
    parallel.run_periodic(link, driver, run.duration, step_log_for(run.run_info, driver))


def _parallel_reactive(link: ProcessLink, driver: NodeDriver, run: RunTerms) -> None:
    parallel.run_reactive(link, driver, run.duration)


__all__ = ["Loop", "Steps", "choose_loop", "stepped_steps"]
