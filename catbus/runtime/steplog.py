"""The step log of a recorded ``parallel`` run (``catbus/steps``; docs/reproduce.md).

A parallel node steps on the wall clock and takes the newest input it happens to have, so what
it computed depends on timing no one controls. To rerun it exactly (``catbus reproduce``), the
recording must say, for every step of every periodic node, its cycle, the time it was given,
how long it took and *which* message of each input it consumed: the publisher, incarnation and
sequence number of the newest message taken, and how many were taken since the step before
(what an ``all`` input shows). Those are the only facts about timing a node's outputs depend on.

Steps are sent in batches (:data:`DEFAULT_BATCH` steps a message) on ``catbus/steps``, which
only the recorder reads; a batch is also sent before a node hands over (hot swap) and when its
loop ends, so only a process killed outright loses its last, unsent batch (docs/reproduce.md
says what that costs). Nothing here runs unless the run is recorded: the loop keeps its plain
step when :func:`step_log_for` returns None.
"""

from __future__ import annotations

from typing import Any, Mapping

from catbus.wire.protocol import STEPS_TOPIC

#: The run_info key that asks nodes for a step log: its value is the steps per batch.
STEP_LOG_KEY = "step_log"
#: Steps per ``catbus/steps`` message: 25 steps of a 10 ms node is a message every 0.25 s.
DEFAULT_BATCH = 25


class StepLog:
    """Steps a parallel node's driver and notes each step (see the module docstring)."""

    def __init__(self, driver: Any, batch: int = DEFAULT_BATCH) -> None:
        self.driver = driver
        self.batch = max(1, int(batch))
        buffers = driver.inbox.buffers
        self.queues = list(buffers.queues.values())
        self.current = buffers.current
        #: The input topics, in the order each step's consumption lists them.
        self.topics = list(buffers.queues)
        self.steps: list[list[Any]] = []

    def step(self, cycle: int, t: float) -> Any:
        """Take the newest inputs, step the node at ``(cycle, t)`` (its
        :class:`~catbus.runtime.driver.StepOutcome` is returned) and note the step."""
        driver = self.driver
        taken = [len(queue) for queue in self.queues]
        inputs = driver.inbox.take_latest()
        current = self.current
        consumed: list[Any] = []
        for topic, count in zip(self.topics, taken):
            message = current[topic]
            if message is None:
                consumed.append(None)
            else:
                header = message.header
                consumed.append([header.publisher, header.incarnation, header.seq, count])
        stats = driver.stats
        before = stats.step_time
        outcome = driver.step(cycle, t, inputs)
        self.steps.append([cycle, t, stats.step_time - before, consumed])
        if len(self.steps) >= self.batch:
            self.flush()
        return outcome

    def flush(self) -> None:
        """Send the steps noted since the last batch (nothing if none)."""
        if not self.steps:
            return
        steps, self.steps = self.steps, []
        cycle, t = steps[-1][0], steps[-1][1]
        self.driver.publish_reserved(STEPS_TOPIC, {"node": self.driver.name,
                                                   "topics": self.topics, "steps": steps},
                                     cycle, t)


def step_log_for(run_info: Mapping[str, Any], driver: Any) -> StepLog | None:
    """The step log a parallel node keeps in this run, or None (the run is not recorded)."""
    batch = run_info.get(STEP_LOG_KEY)
    if not isinstance(batch, int) or isinstance(batch, bool) or batch <= 0:
        return None
    return StepLog(driver, batch)


__all__ = ["DEFAULT_BATCH", "STEP_LOG_KEY", "StepLog", "step_log_for"]
