"""A process that takes a running node's place (a hot swap's replacement, a restarted process):
before its first step it goes on with the old process's sequence numbers and state, and after it
it tells the registry (``swapped``) and the recording (``catbus/swap``). The other events a
process records there -- its link came back, a swap of it failed -- are here too."""

from __future__ import annotations

import os
import socket
import time
from typing import Any

from catbus.runtime import checkpoints
from catbus.runtime.driver import NodeDriver
from catbus.runtime.link import ProcessLink
from catbus.runtime.terms import RunTerms
from catbus.wire import messages as msg
from catbus.wire.protocol import SWAP_TOPIC


def take_over(link: ProcessLink, driver: NodeDriver, terms: RunTerms, class_path: str) -> None:
    """Before the first step of a process that replaces another: go on with the old one's
    sequence numbers and state (a swap), and arrange to tell the registry -- and the recording,
    on ``catbus/swap`` -- once the first step is done.

    A takeover of kind ``restart`` (the old process died before it handed over) has no state or
    sequence numbers to go on with: the process starts as a restarted one does (fresh numbers,
    which readers take for a new publisher; in parallel the cycle due now, in stepped where its
    readers stopped hearing the old one: ``stepped.first_tick``) -- unless the node takes
    checkpoints: it then goes on from the latest (:mod:`catbus.runtime.checkpoints`), and is
    said to have taken over once it steps the first tick its readers lack: where the episode
    goes on (earlier ticks it steps again, and readers drop them as what they have)."""
    takeover = link.takeover
    old_died = takeover is not None and takeover.kind == "restart"
    restored = False
    point = checkpoints.restore_restarted(link, driver, terms)
    checkpoint, resume = point if point is not None else (-1, -1)
    if takeover is not None and not old_died:
        link.data.seq.update(takeover.seq)
        restored = driver.restore(takeover.snapshot)
        if terms.mode == "parallel" and terms.period:
            # Go on with the old process's next cycle, due now.
            link.started = time.monotonic() - takeover.tick * terms.period
    sim_time = (terms.schedule.sim_time if terms.schedule is not None
                else lambda tick: tick * (terms.period or 0.0))
    # What the user asked for names the event: a swap stays a swap when its old process died
    # first (``old_died`` says so), a restart is a restart.
    if takeover is None:
        kind = "restart"
    else:
        kind = "swap" if old_died else takeover.kind

    def first_step_done(tick: int) -> None:
        if tick < resume:   # stepping again what its readers have
            return
        link.after_first_step = None
        data = link.data
        first = data.last_publish or time.time()
        gap = None
        if terms.mode == "parallel" and takeover is not None and takeover.last_publish:
            gap = max(0.0, first - takeover.last_publish)
        event = {"node": driver.name, "kind": kind, "tick": tick, "sim_time": sim_time(tick),
                 "old": dict(takeover.old) if takeover else {},
                 "new": {"incarnation": data.incarnation, "pid": os.getpid(),
                         "host": socket.gethostname(), "class": class_path},
                 "params": driver.params, "state": "restored" if restored else "fresh",
                 "gap": gap}
        if old_died:
            event["old_died"] = True
        if checkpoint >= 0:
            event["state"] = checkpoints.state_text(checkpoint)
            if terms.mode == "parallel":   # the cycles its state went back: not exact
                event["rewound"] = max(0, tick - checkpoint)
        data.publish(SWAP_TOPIC, event, tick, sim_time(tick), None)
        link.send(msg.Swapped(tick=tick, first_publish=first, restored=restored or checkpoint >= 0,
                              checkpoint=checkpoint))

    link.after_first_step = first_step_done


def record_event(link: ProcessLink, driver: NodeDriver, kind: str, **fields: Any) -> None:
    """A ``catbus/swap`` event of this process at its current tick: ``rejoin`` (its link was
    down, or the process frozen, and is back: ``away_s``) or ``swap-failed`` (a swap of it
    failed and it goes on: ``reason``), so the recording has what the run's summary has."""
    event = {"node": driver.name, "kind": kind, "tick": driver.stats.tick,
             "sim_time": driver.sim_time, **fields, "incarnation": link.data.incarnation}
    link.data.publish(SWAP_TOPIC, event, max(driver.stats.tick, 0), driver.sim_time, None)


__all__ = ["take_over", "record_event"]
