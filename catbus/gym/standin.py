"""The trained agent's place in the graph: a *stand-in* node class with the agent's declared
inputs, outputs, parameters and period (after remapping), plus the mapping's extra ``topics``,
whose output at each step is the trainer's action (``docs/design.md``, "catbus.gym").

Inline, the run stops before each of the stand-in's steps and the trainer's own thread goes on
with it (:mod:`catbus.gym.inline_episode`): the action is simply there when the step runs.
Stepped, the stand-in is a real node of a process-mode run, in a thread of the trainer's
process: it hands its inputs to the trainer through one queue and waits for the action on
another, tending its control link meanwhile.
"""

from __future__ import annotations

import queue
from typing import Any, Optional, Sequence

from catbus.node import Node
from catbus.wire.protocol import AWAITING_CONTROLLER_STATE

#: Stepped mode: the stand-in waits for the trainer's action in slices this long (seconds), and
#: tends its control link between them (heartbeats, the registry's stop).
ACTION_SLICE = 0.1

#: The action that means "the run is being stopped": the stand-in publishes nothing.
STOP = object()


class Channel:
    """Between the trainer and the stand-in of one episode: the trainer's ``action`` (inline),
    and two queues (stepped, where the stand-in runs in another thread).

    ``queue.SimpleQueue`` (in C) rather than ``queue.Queue`` (a Python Condition, a new waiter
    lock per wait): a trainer's step is two hand-overs, and a round trip through two of these
    costs ~13 us of CPU against ~22-30 us (two threads, measured on the reference VM)."""

    def __init__(self) -> None:
        #: Inline: the action of the stand-in's next step, set before the run goes on.
        self.action: Any = STOP
        self.inputs: "queue.SimpleQueue[tuple]" = queue.SimpleQueue()   # graph -> trainer
        self.actions: "queue.SimpleQueue[Any]" = queue.SimpleQueue()    # trainer -> graph


class StandIn(Node):
    """The trained agent's place in the graph (subclassed per episode with its declarations)."""

    _channel: Channel
    _topics: dict[str, str]          # declared input -> topic
    _declared_out: dict[str, str]    # output topic -> declared
    _runtime: Any = None             # stepped: the NodeRuntime running this node

    @classmethod
    def attach_runtime(cls, runtime: Any) -> None:
        """Stepped: the :class:`~catbus.runtime.process.NodeRuntime` that runs this (per
        episode) class, set before it runs. The stand-in tends that runtime's control link
        while the trainer thinks, so that heartbeats never depend on the trainer's pace."""
        cls._runtime = runtime

    @classmethod
    def messages(cls, inputs: dict[str, Any]) -> dict[str, Any]:
        """A step's inputs by topic, as the trainer's mapping reads them."""
        return {cls._topics[name]: value for name, value in inputs.items()}

    def setup(self, params: dict[str, Any]) -> None:
        pass

    def step(self, t: float, inputs: dict[str, Any]) -> Optional[dict[str, Any]]:
        runtime = self._runtime
        if runtime is None:    # inline: the trainer set the action before the run went on
            action = self._channel.action
        else:
            self._channel.inputs.put(("step", self.tick, self.messages(inputs)))
            action = self._await_action(runtime.link)
        if action is STOP:
            return None
        return {self._declared_out.get(topic, topic): value for topic, value in action.items()}

    def _await_action(self, link: Any) -> Any:
        """Stepped: wait for the trainer in short slices, tending the control link between them
        (heartbeats go on at their pace; the registry's stop, or its silence, raises here and
        ends the node as it would between steps)."""
        stats = link.stats
        before, stats.state = stats.state, AWAITING_CONTROLLER_STATE
        try:
            while True:
                try:
                    return self._channel.actions.get(timeout=ACTION_SLICE)
                except queue.Empty:
                    link.tend()
        finally:
            stats.state = before


def stand_in_class(agent: Any, extra: Sequence[str], channel: Channel) -> type[StandIn]:
    """The stand-in class of one episode for ``agent`` (a NodeSpec), also reading ``extra``
    topics (the mapping's ``topics``)."""
    declared_in = {b.declared: b.topic for b in agent.inputs}
    for topic in extra:
        if topic not in declared_in.values():
            declared_in[topic] = topic
    attrs = {
        "inputs": list(declared_in),
        "outputs": [b.declared for b in agent.outputs],
        "params": agent.node_class.params,
        "period": agent.period,
        "_channel": channel,
        "_topics": declared_in,
        "_declared_out": {b.topic: b.declared for b in agent.outputs},
        "__module__": __name__,
    }
    return type(f"GymAgent_{agent.name}", (StandIn,), attrs)


__all__ = ["ACTION_SLICE", "STOP", "Channel", "StandIn", "stand_in_class"]
