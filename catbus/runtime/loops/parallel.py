"""``parallel`` mode in a node process (``docs/design.md``, "Parallel mode"): the node steps at
its period in wall time on the newest inputs; a cycle missed because a step overran is skipped
and counted. A node without a period handles messages as they arrive."""

from __future__ import annotations

import time

from catbus.runtime.dataplane import receive_frames
from catbus.runtime.driver import NodeDriver
from catbus.runtime.link import CONTROL_EVERY, ProcessLink
from catbus.runtime.lockstep import waits_for_me
from catbus.runtime.steplog import StepLog


def run_periodic(link: ProcessLink, driver: NodeDriver, duration: float | None,
                 steplog: StepLog | None = None) -> None:
    """Step every ``period`` seconds of wall time until the duration or the episode's end.
    With ``steplog`` (a recorded run), each step is noted on ``catbus/steps``
    (:mod:`catbus.runtime.steplog`); the log is sent before a hand-over and when the loop
    ends, whichever way."""
    try:
        _run_periodic(link, driver, duration, steplog)
    finally:
        if steplog is not None:
            try:
                steplog.flush()
            except Exception:   # on the way out of a failure, which is what must be reported
                pass


def _run_periodic(link: ProcessLink, driver: NodeDriver, duration: float | None,
                  steplog: StepLog | None) -> None:
    link.wait_until_started()
    start = link.started
    period = driver.period
    inbox = driver.inbox
    stats = driver.stats
    # A process joining mid-run (hot swap, restart, a `catbus topic pub` started with the
    # run's elapsed time) goes on with the run's cycles: the next one due from now, so that
    # ticks keep counting periods since the run's start (not skipped cycles of its own).
    cycle = max(0, int((time.monotonic() - start) / period)) \
        if link.joining or link.start_elapsed else 0
    # A node without data inputs still gets progress (the end of the episode) on its data
    # socket, but looking at it every CONTROL_EVERY (in service) is soon enough.
    reads = bool(inbox.by_topic) or inbox.wildcard
    serviced = time.monotonic()
    while True:
        due = start + cycle * period
        now = time.monotonic()
        if now < due:
            link.service((due - now) * 1000)
            serviced = now
            continue
        if now - serviced >= CONTROL_EVERY:
            # A node that is always late never waits above, so it must look at its control
            # link here, or it never hears the registry: no stop, no end, and RegistryLost
            # once the registry has been "silent" for the timeout. Looked at no more often
            # than CONTROL_EVERY, so the step-after-step loop pays no system call per step.
            link.service(0)
            serviced = now
        late = int((now - due) / period)
        if late:
            stats.overruns += late
            cycle += late
        if duration is not None and cycle * period > duration + 1e-9:
            return
        if link.end_tick is not None or inbox.end_tick() is not None:
            return
        if link.retire_requested:
            if steplog is not None:
                steplog.flush()   # the old process's steps, before the replacement's
            link.hand_over(cycle, driver.snapshot())
            serviced = time.monotonic()
            continue   # resumed: the replacement failed; the cycles missed count as overruns
        if link.checkpoints is not None and cycle >= link.checkpoints.next_tick:
            link.checkpoints.take(cycle)
        if reads:
            link.drain_data()
        if steplog is None:
            outcome = driver.step(cycle, now - start, inbox.take_latest())
        else:
            outcome = steplog.step(cycle, now - start)
        if link.after_first_step is not None:
            link.after_first_step(cycle)
        if outcome.ended is not None:
            link.episode_ended(cycle, outcome.ended)
            return
        cycle += 1
        # No keep_alive here: both ways around the loop call service, which does it.


def run_reactive(link: ProcessLink, driver: NodeDriver, duration: float | None) -> None:
    """Handle messages as they arrive until the run ends.

    A reactive node has no clock of its own to end by, so it normally ends when every
    publisher it reads has finished (their final progress comes after their last data: the
    recorder keeps everything). Once the run is over -- its duration has passed, or the end
    of the episode is known -- it stops waiting for publishers that wait, through reactive
    nodes, for this very node: in a cycle of reactive nodes (ping answering pong answering
    ping) none of them would ever finish first.
    """
    link.wait_until_started()
    start = link.started
    publishers = link.peers.publishers
    inbox = driver.inbox
    sub = link.data.sub
    add = inbox.add_frames
    deliver = driver.deliver
    monotonic = time.monotonic
    awaited: list[str] | None = None   # publishers still waited for once the run is over
    driver.stats.state = "waiting for messages"
    # Wait in a blocking receive on the data socket, as a plain pyzmq receiver does: one
    # call per message instead of poll + receive + the zmq.Again of an empty receive. The
    # control link, subscriptions and the end of the run are looked at after a timeout, when
    # something else than a data message came (progress: perhaps the end), and at least
    # every CONTROL_EVERY while messages keep coming.
    link.block_on_data(CONTROL_EVERY * 1000)
    serviced = monotonic()
    while True:
        frames = receive_frames(sub, wait=True)
        check = frames is None or add(frames) is None
        now = monotonic()
        if check or now - serviced >= CONTROL_EVERY:
            link.service(0)
            serviced = now
            check = True
        if link.retire_requested:
            link.hand_over(driver.stats.tick + 1, driver.snapshot())
        if inbox.raw:
            outcome = deliver(inbox.take_raw_all())
            if link.after_first_step is not None:
                link.after_first_step(driver.completed)
            if outcome.ended is not None:
                # Ends now, at the tick of the message it ended on, like a periodic node.
                link.episode_ended(driver.completed, outcome.ended)
                return
        if not check:
            continue
        if awaited is None and (
                link.end_tick is not None or inbox.end_tick() is not None
                or (duration is not None and now - start > duration)):
            cyclic = waits_for_me(driver.name, link.graph_nodes)
            awaited = [p for p in publishers if p not in cyclic]
        if inbox.all_final(publishers if awaited is None else awaited) and \
                (publishers or awaited is not None):
            link.drain_data()
            if inbox.raw:
                deliver(inbox.take_raw_all())
            return
