"""``stepped`` mode in a node process: lockstep by progress (``docs/design.md``, "Lockstep by
progress").

A node steps tick ``t`` once every publisher it reads has completed the tick the schedule says it
must see, and once none of its subscribers is more than :data:`~catbus.runtime.lockstep.WINDOW`
ticks behind. There is no central clock: the registry is only told, by heartbeats, how far
everyone is. The decisions are the pure functions of :mod:`catbus.runtime.lockstep`; this module
only waits for the messages they need.
"""

from __future__ import annotations

import time
from typing import Any, Iterator, Mapping

from catbus.runtime.driver import CARRIED, NodeDriver
from catbus.runtime.latency import LatencyPlan, plans_for, reader_keys
from catbus.runtime.link import STEPPED_WAIT_MS, ProcessLink
from catbus.runtime.lockstep import (frontier, input_limits, known_end, ready,
                                     reporting_interval, requirements, retain_horizon)
from catbus.runtime.schedule import Schedule
from catbus.runtime.simclock import sim_time_function


def prepare(link: ProcessLink, driver: NodeDriver, schedule: Schedule, first_tick: int) -> None:
    """Before the first tick: count progress carried by data (which topics we read from whom,
    and who reads what of ours), keep what a re-subscribing neighbour may need, block on the
    data socket in short waits, and wait for the start. A process taking over mid-run (hot
    swap, restart) first forgets what its predecessor had already been given."""
    driver.inbox.set_sources(link.peers.sources)
    driver.inbox.last_tick = schedule.last_tick
    driver.plan_carrying(link.peers.reads_from_me.values())
    # (more, if a reader checkpoints: catbus.runtime.checkpoints.prepare set it)
    link.data.retain_ticks = max(link.data.retain_ticks, retain_horizon(schedule))
    # receive_one blocks on the data socket for at most this long; control and subscriptions
    # are looked at when it times out, and every CONTROL_EVERY otherwise.
    link.block_on_data(STEPPED_WAIT_MS)
    link.control_due = 0.0
    link.wait_until_started()
    if first_tick > 0:
        k = schedule.period_ticks(driver.name) or 1
        offsets = input_limits(driver.name, link.peers, schedule)
        driver.inbox.resume_after({topic: first_tick - k + off for topic, off in offsets.items()},
                                  first_tick - 1)
        driver.continue_from(first_tick)


#: What a stepped loop yields while its process has handed over (hot swap) and waits for the
#: registry's answer; it yields None when it waits for a message.
RETIRED = "retired"


def handing_over(link: ProcessLink, next_tick: int, snapshot: bytes | None) -> Iterator[str]:
    """Hot swap, between two steps (:meth:`ProcessLink.hand_over`), as part of a loop that
    yields: :data:`RETIRED` until the registry says ``stop`` (the replacement took over:
    :class:`Stopped` is raised where the link is serviced) or ``resume``."""
    link.start_hand_over(next_tick, snapshot)
    while link.retired:
        yield RETIRED
    link.stats.state = f"resumed at tick {next_tick}"


def first_tick(link: ProcessLink, schedule: Schedule, name: str) -> int:
    """Where this process starts: 0, or for a process taking over mid-run the tick its
    predecessor would have stepped next (a hot swap's ``takeover``), or for one that starts as
    a restarted process does (a restart, or a swap whose old process died before it handed
    over: :attr:`~catbus.runtime.link.ProcessLink.restarting`) the tick after the last one
    every reader has received from its predecessor (the ``heard`` of its neighbours' answers;
    the registry's guess if none reads it), on its period's grid."""
    takeover = link.takeover
    if link.resume_tick is not None:   # restored from a checkpoint: step again from it
        return link.resume_tick
    if not link.restarting:
        return 0 if takeover is None else takeover.tick
    readers = [peer for peer in link.peers.subscribers if peer in link.inbox.heard]
    heard = [link.inbox.heard[peer].get(name, -1) for peer in readers]
    if heard:
        tick = min(heard) + 1
    else:
        # A restart's guess comes with its start; a dead swap's with its takeover (-1: none).
        tick = link.start_tick if takeover is None else max(0, takeover.tick)
    k = schedule.period_ticks(name) or 1
    return -(-tick // k) * k


def pace_function(link: ProcessLink, schedule: Schedule, pace: float | None):
    """``--pace R``: a function that waits (handling I/O) until tick ``t`` is due at R times
    real time from the start, or None to run as fast as the lockstep allows."""
    if not pace:
        return None
    sim_time = sim_time_function(schedule)
    start = link.started

    def wait_for(tick: int) -> None:
        due = start + sim_time(tick) / pace
        while (now := time.monotonic()) < due:
            link.service(min(50.0, (due - now) * 1000))

    return wait_for


def periodic_steps(link: ProcessLink, driver: NodeDriver, schedule: Schedule,
                   pace: float | None = None, latency: Mapping[str, Any] | None = None,
                   seed: int = 0) -> Iterator[str | None]:
    """Step the node's due ticks, each once its peers have completed what it needs.
    ``latency``: the run's latency models (``run_info["latency"]``), None if it has none.

    A generator that yields whenever the node must wait for a message: its caller receives
    (a node process: :meth:`ProcessLink.receive_one`; a group process: whatever came for any
    of its nodes) and resumes it."""
    name = driver.name
    tick = first_tick(link, schedule, name)
    own = delay_inputs(link, driver, schedule, latency, seed)
    prepare(link, driver, schedule, tick)
    horizon = link.data.retain_ticks
    k = schedule.period_ticks(name)
    last = schedule.last_tick
    inbox = driver.inbox
    progress = inbox.progress
    stats = driver.stats
    offsets = input_limits(name, link.peers, schedule)
    needs = requirements(name, link.peers, schedule)
    sim_time = sim_time_function(schedule)
    publish_progress = link.data.publish_progress
    paced = pace_function(link, schedule, pace)
    retire_at = link.retire_at
    checkpoints = link.checkpoints
    while True:
        if tick > known_end(last, link.end_tick, inbox.end):
            return
        if checkpoints is not None and tick >= checkpoints.next_tick:
            checkpoints.take(tick)   # between two steps, like a hand-over
        if link.retire_requested or tick == retire_at:
            # Between two ticks: everything of tick - 1 is sent, nothing of tick is.
            yield from handing_over(link, tick, driver.snapshot())
        waited = time.perf_counter()
        stats.state = f"waiting for tick {tick}"
        # No extra receive once ready: being ready means every publisher's progress for the
        # ticks this step may see is in, and each connection is in order, so their data is.
        while not ready(progress, tick, needs):
            yield
            if tick > known_end(last, link.end_tick, inbox.end):
                return
        if paced is not None:
            paced(tick)
        stats.wait_time += time.perf_counter() - waited
        inputs = inbox.take_by_tick({topic: tick + off for topic, off in offsets.items()})
        through = schedule.completes_through(name, tick)
        outcome = driver.step(tick, sim_time(tick), inputs, through)
        if own is not None:   # a reader may show this step's data up to its delay later
            link.data.retain_ticks = max(link.data.retain_ticks,
                                         horizon + own.visible(tick) - tick)
        if outcome is not CARRIED:   # the common case (flat_evade) tests one identity only
            if outcome.ended is not None:
                link.episode_ended(tick, outcome.ended)
                return
            publish_progress(tick, through, None, False)
        if link.after_first_step is not None:
            link.after_first_step(tick)
        tick += k
        link.tend()


def delay_inputs(link: ProcessLink, driver: NodeDriver, schedule: Schedule,
                 latency: Mapping[str, Any] | None, seed: int) -> LatencyPlan | None:
    """Latency (:mod:`catbus.runtime.latency`): file the messages of publishers with latency by
    when they become visible (those that came while joining are filed again); returns this
    node's own plan (it keeps its messages for re-subscribing readers that much longer), None
    without one."""
    plans = plans_for(latency, seed, schedule) if latency else {}
    if not plans:
        return None
    keys = reader_keys(driver.name, link.peers.publisher_of, plans, schedule)
    if keys:
        driver.inbox.set_latency(keys)
    return plans.get(driver.name)


def reactive_steps(link: ProcessLink, driver: NodeDriver, schedule: Schedule,
                   batch: int | None = None) -> Iterator[str | None]:
    """A node without a period (the recorder): handle messages in schedule order as soon as
    every publisher has completed their tick. Yields whenever it must wait for a message (see
    :func:`periodic_steps`); with ``batch``, also after handling that many ticks (a group
    process then lets its stepping nodes go first: :mod:`catbus.runtime.group`)."""
    start = first_tick(link, schedule, driver.name)
    prepare(link, driver, schedule, start)
    publishers = link.peers.publishers
    # Only flow control reads the progress of a node nobody reads data from (the recorder),
    # so it reports every few ticks instead of every tick: less traffic for everyone.
    report_every = reporting_interval(bool(link.peers.subscribers and driver.outputs))
    last = schedule.last_tick
    inbox = driver.inbox
    stats = driver.stats
    through = inbox.through
    publish_progress = link.data.publish_progress
    reported = done = start - 1
    seen = -1   # inbox.advances when the frontier was last computed
    reachable = done
    stats.state = f"waiting for tick {start}"
    while done < known_end(last, link.end_tick, inbox.end):
        yield
        if link.retire_requested:
            yield from handing_over(link, done + 1, driver.snapshot())
        if inbox.advances != seen or link.end_tick is not None:
            seen = inbox.advances
            reachable = frontier([through(p) for p in publishers],
                                 known_end(last, link.end_tick, inbox.end))
        # (else no peer progressed: the frontier cannot have moved)
        if reachable > done:
            upto = reachable if batch is None else min(reachable, done + batch)
            # A reactive node's end_episode does not end a stepped run: its publishers may
            # already be up to WINDOW ticks further, so no tick could be the same for all.
            driver.deliver(inbox.take_raw_through(upto), upto)
            done = upto
            if link.after_first_step is not None:
                link.after_first_step(done)
            if done - reported >= report_every:
                publish_progress(done, done, None, False)
                reported = done
            stats.state = f"waiting for tick {done + 1}"
    if inbox.wildcard:
        # A reader of every topic (the recorder) also keeps what its publishers say after their
        # last tick and before their final progress: their counters (catbus/stats).
        stats.state = "waiting for the final progress of every node"
        while not inbox.all_final(publishers):
            yield
        driver.deliver(inbox.take_raw_through(done), done)
