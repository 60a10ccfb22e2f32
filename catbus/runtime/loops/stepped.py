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

from catbus.runtime.driver import NodeDriver
from catbus.runtime.link import STEPPED_WAIT_MS, ProcessLink
from catbus.runtime.lockstep import (frontier, input_limits, known_end, ready,
                                     reporting_interval, requirements)
from catbus.runtime.schedule import Schedule
from catbus.runtime.simclock import sim_time_function


def prepare(link: ProcessLink, driver: NodeDriver) -> None:
    """Before the first tick: count progress carried by data (which topics we read from whom,
    and who reads what of ours), block on the data socket in short waits, and wait for the
    start."""
    driver.inbox.set_sources(link.peers.sources)
    driver.plan_carrying(link.peers.reads_from_me.values())
    # receive_one blocks on the data socket for at most this long; control and subscriptions
    # are looked at when it times out, and every CONTROL_EVERY otherwise.
    link.block_on_data(STEPPED_WAIT_MS)
    link.control_due = 0.0
    link.wait_until_started()


def run_periodic(link: ProcessLink, driver: NodeDriver, schedule: Schedule) -> None:
    """Step the node's due ticks, each once its peers have completed what it needs."""
    prepare(link, driver)
    name = driver.name
    k = schedule.period_ticks(name)
    last = schedule.last_tick
    inbox = driver.inbox
    progress = inbox.progress
    stats = driver.stats
    node = driver.node
    offsets = input_limits(name, link.peers, schedule)
    needs = requirements(name, link.peers, schedule)
    sim_time = sim_time_function(schedule)
    publish_progress = link.data.publish_progress
    tick = 0
    while True:
        if tick > known_end(last, link.end_tick, inbox.end):
            return
        waited = time.perf_counter()
        stats.state = f"waiting for tick {tick}"
        # No extra receive once ready: being ready means every publisher's progress for the
        # ticks this step may see is in, and each connection is in order, so their data is.
        while not ready(progress, tick, needs):
            link.receive_one()
            if tick > known_end(last, link.end_tick, inbox.end):
                return
        stats.wait_time += time.perf_counter() - waited
        inputs = inbox.take_by_tick({topic: tick + off for topic, off in offsets.items()})
        through = schedule.completes_through(name, tick)
        carried = driver.step(tick, sim_time(tick), inputs, through)
        if node._end_requested is not None:
            link.stop_reason = node._end_requested
            link.end_tick = driver.completed = tick
            publish_progress(tick, tick, tick, False)
            return
        if not carried:
            publish_progress(tick, through, None, False)
        driver.completed = through
        tick += k
        link.tend()


def run_reactive(link: ProcessLink, driver: NodeDriver, schedule: Schedule) -> None:
    """A node without a period (the recorder): handle messages in schedule order as soon as
    every publisher has completed their tick."""
    prepare(link, driver)
    publishers = link.peers.publishers
    # Only flow control reads the progress of a node nobody reads data from (the recorder),
    # so it reports every few ticks instead of every tick: less traffic for everyone.
    report_every = reporting_interval(bool(link.peers.subscribers and driver.outputs))
    last = schedule.last_tick
    inbox = driver.inbox
    stats = driver.stats
    through = inbox.through
    publish_progress = link.data.publish_progress
    reported = done = -1
    seen = -1   # inbox.advances when the frontier was last computed
    stats.state = "waiting for tick 0"
    while done < known_end(last, link.end_tick, inbox.end):
        link.receive_one()
        if inbox.advances == seen and link.end_tick is None:
            continue   # no peer progressed: the frontier cannot have moved
        seen = inbox.advances
        reachable = frontier([through(p) for p in publishers],
                             known_end(last, link.end_tick, inbox.end))
        if reachable > done:
            driver.deliver(inbox.take_raw_through(reachable))
            done = driver.completed = stats.tick = reachable
            if done - reported >= report_every:
                publish_progress(done, done, None, False)
                reported = done
            stats.state = f"waiting for tick {done + 1}"
