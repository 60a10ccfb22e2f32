"""One inline episode of :class:`~catbus.gym.env.CatbusEnv`, run in the trainer's own thread.

The inline run is a generator (:meth:`catbus.supervise.inline.InlineRun.steps`) that stops before
each step of the stand-in: :meth:`InlineEpisode.advance` runs the graph up to the agent's next step
and returns its inputs; the trainer's action is set on the channel, and the next call runs that
step and on. No thread and no hand-over between the trainer and the graph: a step costs what an
inline step costs (before, the graph ran in a thread of its own and each step paid two
hand-overs between threads: 0.6-0.7x the speed of an inline run of flat_evade). As in any plain Gymnasium environment,
a node stuck in a step blocks ``env.step`` (there is no deadline: it would take SIGUSR1 from the
trainer's process for the whole episode).
"""

from __future__ import annotations

import threading
from typing import Any, Generator

from catbus.api.result import RunResult
from catbus.gym.standin import STOP, Channel, StandIn
from catbus.spec.launchfile import LaunchSpec
from catbus.supervise.inline import InlineRun, run_to_end


class InlineEpisode:
    """The graph of ``spec`` with ``agent`` played by the trainer through ``channel``."""

    def __init__(self, spec: LaunchSpec, agent: str, channel: Channel) -> None:
        self.channel = channel
        self.stand_in: type[StandIn] = spec.node(agent).node_class
        self._stop = threading.Event()
        run = InlineRun(spec, progress=False, deadline=None, stop=self._stop,
                        pause_before=agent)
        self._steps: Generator[tuple[int, dict], None, RunResult] | None = run.steps()

    def advance(self) -> tuple:
        """Run up to the agent's next step: ``("step", tick, messages by topic)``, or
        ``("end", result)`` once the run is over; a node's failure raises here."""
        steps = self._steps
        assert steps is not None, "the episode is over"
        try:
            tick, inputs = next(steps)
        except StopIteration as done:
            self._steps = None
            return ("end", done.value)
        except BaseException:
            self._steps = None
            raise
        return ("step", tick, self.stand_in.messages(inputs))

    def act(self, action: dict[str, Any]) -> None:
        """The agent's output at the step :meth:`advance` stopped before."""
        self.channel.action = action

    def halt(self) -> RunResult | None:
        """Stop the run between two steps, as Ctrl-C would (every node closes); its result,
        or None if it was over already or a node failed on its way out."""
        steps, self._steps = self._steps, None
        if steps is None:
            return None
        self._stop.set()
        self.channel.action = STOP   # the agent's pending step publishes nothing
        try:
            return run_to_end(steps)
        except Exception:   # the trainer has moved on to its next episode
            return None


__all__ = ["InlineEpisode"]
