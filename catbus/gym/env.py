"""A catbus graph as a Gymnasium environment: :class:`CatbusEnv` and :func:`make`.

Design (inline mode): the agent node the trainer controls is replaced by a *stand-in* node class
(:mod:`catbus.gym.standin`) with the agent's declared inputs, outputs, parameters and period
(after remapping), plus the mapping's extra ``topics``. The rest of the graph (the environment,
other agents, the recorder if the run records) runs unchanged in an inline run, in the trainer's
own thread: the run stops before each of the stand-in's steps and :meth:`CatbusEnv.step` goes on
with it, the action set (:mod:`catbus.gym.inline_episode`). So the graph advances exactly one
agent period per :meth:`CatbusEnv.step`, on the inline schedule, and nothing in the graph can tell
the agent is a trainer. :meth:`CatbusEnv.reset` stops the previous run (between two steps, as
Ctrl-C would) and starts a new one with the episode's seed; it is cheap (no process).

Stepped mode: the rest of the graph runs in its own processes (:func:`catbus.start`, stepped,
with the agent as a remote node) and keeps running while the trainer thinks; the stand-in is a
real process-mode node (:class:`~catbus.runtime.process.NodeRuntime`) run in a background thread
of the trainer's process. While it waits for the action it keeps its control link alive in short
slices (heartbeats, the registry's stop), so heartbeats never depend on the trainer's pace, and it
reports :data:`~catbus.wire.protocol.AWAITING_CONTROLLER_STATE`: the registry's stall check
(``deadline``) then leaves the run alone, since a trainer that thinks is not a stuck graph. The
``deadline`` bounds what it bounds in any run: a node silent (no heartbeat) that long, a lockstep
stuck on itself that long. Same seed, same actions: the same observations as inline.
"""

from __future__ import annotations

import dataclasses
import importlib
import itertools
import math
import os
import queue
import threading
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import gymnasium

from catbus.errors import ConfigError
from catbus.gym.mapping import GymMapping
from catbus.api.run import load
from catbus.spec.launchfile import LaunchSpec
from catbus.spec.nodelist import RECORDER_CLASS
from catbus.spec.nodespec import TopicBinding
from catbus.gym.inline_episode import InlineEpisode
from catbus.gym.standin import STOP, Channel, stand_in_class
from catbus.wire.protocol import DEFAULT_DEADLINE

#: Stepped mode: seconds the trainer waits for the graph to reach the agent's next step before
#: failing (a node stuck in a step). Generous: the graph usually answers in milliseconds.
STEP_TIMEOUT = 120.0
_episodes = itertools.count()


class CatbusEnv(gymnasium.Env):
    """One agent of a catbus launch as a ``gymnasium.Env`` (see :func:`make`)."""

    metadata = {"render_modes": []}

    def __init__(self, launch: Any, agent: str, mapping: GymMapping | str | None = None, *,
                 mode: str = "inline", overrides: Sequence[str] | Mapping[str, Any] = (),
                 record: str | os.PathLike | bool | None = None, max_steps: int | None = None,
                 steps: int | None = None, deadline: float = DEFAULT_DEADLINE) -> None:
        if mode not in ("inline", "stepped"):
            raise ConfigError("catbus.gym", "mode",
                              f"mode {mode!r} is not supported: use 'inline' (the graph in this "
                              f"process) or 'stepped' (the graph in its processes, running "
                              f"while the trainer thinks)")
        self.mode = mode
        self.deadline = float(deadline)
        # Checked now: a wrong launch, agent or override fails at make(), not at reset().
        if isinstance(record, os.PathLike):
            record = os.fspath(record)
        template = record if isinstance(record, str) and "{" in record else None
        if template is not None:   # the recorder is attached now, its path set per episode
            record = template.format(seed=0, episode=0)
        # A trainer runs thousands of episodes: the launch's own ``record:`` (meant for
        # ``catbus launch``) is used only with record=True, never by default.
        base = load(launch, mode=mode, overrides=overrides,
                    record=None if record is True else (record or False))
        if record is True and base.record is None:
            raise ConfigError(str(base.path or "<launch>"), "record",
                              "record=True records to the launch's record: path, and this launch "
                              "names none; give record='runs/episode-{episode}.mcap'")
        self._base = base
        self._record = template
        self.agent = base.node(agent)
        if mapping is None:
            mapping = _default_mapping(base, agent)
        elif isinstance(mapping, str):
            mapping = _import_mapping(mapping, base)
        self.mapping = mapping
        if mode == "inline":
            _refuse_one_per_process(base, agent)
        if self.agent.period is None:
            raise ConfigError(str(base.path or "<launch>"), f"nodes.{agent}.period",
                              "the trained agent must be periodic (each step() is one of its "
                              "periods)")
        outputs = {b.topic for b in self.agent.outputs}
        self.observation_space = mapping.observation_space
        self.action_space = mapping.action_space
        self.max_steps = max_steps if max_steps is not None else mapping.max_steps
        self._steps_override = steps
        self._outputs = outputs
        self._thread: threading.Thread | None = None   # stepped: runs the stand-in's node
        self._inline: InlineEpisode | None = None       # inline: the episode's run
        self._handle: Any = None   # stepped: the RunHandle of the episode's run
        self._channel: Channel | None = None
        self._previous: Optional[dict] = None
        self._last_obs: Any = None
        self._count = 0
        self._over = True
        self.result: Any = None    # the RunResult of the last finished episode run

    # -- episode runs ---------------------------------------------------------------------------
    def _episode_spec(self, seed: int) -> LaunchSpec:
        base = self._base
        changes: dict[str, Any] = {"seed": int(seed)}
        if self._record is not None:
            path = Path(self._record.format(seed=seed, episode=next(_episodes))).resolve()
            changes["record"] = path
        if self._steps_override is not None:
            changes.update(steps=self._steps_override, duration=None)
        elif self.max_steps is not None:
            # The trainer truncates at max_steps; the run must not end before it does.
            # max_steps counts the first periodic node's periods; ours are the agent's.
            clock = next(n.period for n in base.nodes if n.period is not None)
            bound = math.ceil(self.max_steps * self.agent.period / clock) + 2
            changes.update(steps=None, duration=None, max_steps=max(base.max_steps, bound))
        channel = Channel()
        stand_in = stand_in_class(self.agent, self.mapping.topics, channel)
        nodes = []
        for node in base.nodes:
            if "record" in changes and node.class_path == RECORDER_CLASS:
                node = dataclasses.replace(node, params={**node.params,
                                                         "path": str(changes["record"])})
            if node.name == self.agent.name:
                inputs = tuple(node.inputs) + tuple(
                    TopicBinding(topic, topic) for topic in self.mapping.topics
                    if topic not in {b.topic for b in node.inputs})
                node = dataclasses.replace(node, node_class=stand_in, inputs=inputs,
                                           class_path=f"{__name__}:{stand_in.__name__}",
                                           remote=self.mode == "stepped")
            nodes.append(node)
        changes["nodes"] = tuple(nodes)
        self._channel = channel
        return dataclasses.replace(base, **changes)

    def _start(self, seed: int) -> None:
        spec = self._episode_spec(seed)
        if self.mode == "stepped":
            self._start_stepped(spec)
        else:
            self._inline = InlineEpisode(spec, self.agent.name, self._channel)

    def _start_stepped(self, spec: LaunchSpec) -> None:
        """The graph in its processes, the stand-in a remote node run in a thread of ours."""
        from catbus.api.handle import RunHandle
        from catbus.runtime.inbox import InputBinding
        from catbus.runtime.process import NodeRuntime

        channel = self._channel
        node = spec.node(self.agent.name)
        stand_in = node.node_class
        # Checked like catbus.start checks it; the agent is remote: we start it ourselves below,
        # so the launcher does not print the command that starts it.
        handle = RunHandle(spec, progress=False, deadline=self.deadline, evaluate=False,
                           announce_remote=False)
        self._handle = handle
        runtime = NodeRuntime(
            stand_in, node.name, handle.bus, class_path=node.class_path, params=dict(node.params),
            inputs=[InputBinding(b.declared, b.topic, b.policy) for b in node.inputs],
            outputs=[(b.declared, b.topic) for b in node.outputs], period=node.period,
            keys=handle.keys)   # a secured TCP run's CURVE keys
        stand_in.attach_runtime(runtime)

        def main() -> None:
            try:
                if handle.bus is not None:
                    runtime.run()
                if runtime.driver is None:   # it never joined: do not wait remote_timeout
                    handle.stop()
                result = handle.wait()
            except BaseException as error:   # handed to the trainer
                channel.inputs.put(("error", error))
            else:
                channel.inputs.put(("end", result))

        self._thread = threading.Thread(target=main, name=f"catbus-gym-{spec.name}", daemon=True)
        self._thread.start()

    def _halt(self) -> None:
        """Stop the current run (if any) and wait for its thread."""
        inline, self._inline = self._inline, None
        if inline is not None:
            result = inline.halt()
            if result is not None:
                self.result = result
            return
        thread, channel = self._thread, self._channel
        handle, self._handle = self._handle, None
        if thread is None:
            if handle is not None:     # the run ended; its thread has waited for it
                handle.stop()
            return
        assert channel is not None
        if handle is not None:
            handle.stop()
        channel.actions.put(STOP)   # a stand-in waiting for an action returns at once
        thread.join()
        self._thread = None
        while True:                   # keep the last result, drop what the trainer never read
            try:
                item = channel.inputs.get_nowait()
            except queue.Empty:
                break
            if item[0] == "end":
                self.result = item[1]

    def _next(self) -> tuple:
        if self._inline is not None:
            try:
                item = self._inline.advance()
            except BaseException:
                self._inline, self._over = None, True
                raise
            if item[0] == "end":
                self._inline, self._over, self.result = None, True, item[1]
            return item
        assert self._channel is not None
        try:
            item = self._channel.inputs.get(timeout=STEP_TIMEOUT)
        except queue.Empty:
            raise RuntimeError(f"catbus.gym: the graph did not reach {self.agent.name}'s next "
                               f"step within {STEP_TIMEOUT:g} s (a node is stuck)") from None
        if item[0] in ("error", "end"):   # the run's thread has nothing left to do
            if self._thread is not None:
                self._thread.join()
            self._thread, self._over = None, True
            if item[0] == "error":
                raise item[1]
            self.result = item[1]
        return item

    # -- gymnasium.Env --------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[Any, dict]:
        super().reset(seed=seed)
        self._halt()
        # The run seed: the given one, else drawn from the env's generator (itself seeded by
        # the last given seed), so reset(seed=s), reset(), reset() is reproducible.
        run_seed = int(seed) if seed is not None else int(self.np_random.integers(2 ** 31 - 1))
        self._start(run_seed)
        self._over, self._count, self._previous = False, 0, None
        item = self._next()
        if item[0] == "end":
            raise RuntimeError(f"catbus.gym: the run ended before {self.agent.name} stepped "
                               f"({getattr(item[1], 'end_reason', None)})")
        messages = item[2]
        self._previous = messages
        self._last_obs = self.mapping.observation(messages)
        return self._last_obs, dict(self.mapping.info(messages), tick=item[1], seed=run_seed)

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
        if self._over or self._channel is None:
            raise RuntimeError("catbus.gym: step() after the episode ended; call reset()")
        message = dict(self.mapping.action(action))
        unknown = set(message) - self._outputs
        if unknown:
            raise ValueError(f"catbus.gym: the mapping's action() names {sorted(unknown)}, not "
                             f"outputs of {self.agent.name} ({sorted(self._outputs)})")
        if self._inline is not None:
            self._inline.act(message)
        else:
            self._channel.actions.put(message)
        self._count += 1
        item = self._next()
        if item[0] == "end":
            result = item[1]
            reason = getattr(result, "end_reason", None)
            # No node ended the episode: its length (steps, max_steps) ran out: truncation.
            by_bound = getattr(result, "ended_by", None) is None
            return (self._last_obs, 0.0, not by_bound, by_bound,
                    {"end_reason": reason, "scores": getattr(result, "scores", None)})
        tick, messages = item[1], item[2]
        observation = self.mapping.observation(messages)
        reward = float(self.mapping.reward(self._previous, messages))
        terminated = bool(self.mapping.terminated(messages))
        truncated = bool(self.mapping.truncated(messages)) or (
            self.max_steps is not None and self._count >= self.max_steps)
        self._previous, self._last_obs = messages, observation
        self._over = terminated or truncated
        return observation, reward, terminated, truncated, dict(self.mapping.info(messages),
                                                                tick=tick)

    def close(self) -> None:
        self._halt()
        self._over = True
        super().close()

    def __del__(self) -> None:
        try:
            self._halt()
        except Exception:   # noqa: BLE001 -- interpreter shutdown
            pass


#: The class attribute a node class names its default Gymnasium mappings with, as it names its
#: evaluator: ``{"agent name": "module:attr"}``, or one ``"module:attr"`` for any agent.
MAPPING_ATTRIBUTE = "gym_mapping"


def _default_mapping(spec: LaunchSpec, agent: str) -> GymMapping:
    """The mapping a node class of the launch names for ``agent`` (the first in launch order):
    the environment knows its own observations and rewards, so ``make(launch, agent=...)``
    needs no import path for the scenarios that ship one."""
    for node in spec.nodes:
        named = getattr(node.node_class, MAPPING_ATTRIBUTE, None)
        ref = named.get(agent) if isinstance(named, Mapping) else named
        if ref:
            return _import_mapping(str(ref), spec)
    raise ConfigError(str(spec.path or "<launch>"), "mapping",
                      f"no mapping given, and no node class of this launch names one for "
                      f"{agent} (class attribute {MAPPING_ATTRIBUTE} = {{{agent!r}: "
                      f"'module:attr'}}); pass mapping=catbus.gym.GymMapping(...) or "
                      f"mapping='module:attr'")


def _refuse_one_per_process(spec: LaunchSpec, agent: str) -> None:
    """Inline runs every episode's graph in this process; a class that allows one simulation
    per process would fail at the second reset with its own error, so say why now."""
    for node in spec.nodes:
        if node.name != agent and getattr(node.node_class, "one_per_process", False):
            raise ConfigError(str(spec.path or "<launch>"), f"nodes.{node.name}",
                              f"{node.node_class.__name__} sets one_per_process (one simulation "
                              f"per process), and mode='inline' runs every episode in this "
                              f"process; use mode='stepped' (each episode's nodes in processes "
                              f"of their own)")


def _import_mapping(path: str, spec: LaunchSpec) -> GymMapping:
    """``module:attr`` with the launch's import path; ``attr`` a GymMapping or a function of no
    arguments returning one."""
    from catbus.spec.imports import use_import_path

    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise ConfigError("catbus.gym", "mapping", f"must be module:attr, got {path!r}")
    use_import_path(spec.import_path)
    value: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        value = getattr(value, part)
    if callable(value) and not isinstance(value, GymMapping):
        value = value()
    if not isinstance(value, GymMapping):
        raise ConfigError("catbus.gym", "mapping", f"{path} is not a catbus.gym.GymMapping")
    return value


def make(launch: Any, agent: str, mapping: GymMapping | str | None = None, *,
         mode: str = "inline", overrides: Sequence[str] | Mapping[str, Any] = (),
         record: str | os.PathLike | bool | None = None, max_steps: int | None = None,
         steps: int | None = None, deadline: float = DEFAULT_DEADLINE) -> CatbusEnv:
    """One agent of a catbus launch as a ``gymnasium.Env``.

    Args:
        launch: A launch file path, a dict with its layout, or a checked ``LaunchSpec``.
        agent: The node the trainer replaces (it must be periodic).
        mapping: A :class:`~catbus.gym.mapping.GymMapping`, or ``"module:attr"`` naming one (or
            a function returning one), imported with the launch's import path. None: the one a
            node class of the launch names for ``agent`` (class attribute ``gym_mapping``, e.g.
            flat_evade's environment names the robot's).
        mode: ``"inline"``: the graph runs in this process, one agent period per
            :meth:`~CatbusEnv.step`, only while ``step()`` runs (refused for a launch with a
            ``one_per_process`` class: every episode would run in this process).
            ``"stepped"``: the rest of the graph runs in its own processes (as ``catbus launch
            --mode stepped``) and keeps running (heartbeats and all) while the trainer thinks;
            the same seed and actions give the same observations as inline.
        overrides: Parameter overrides, as for :func:`catbus.run`.
        record: None or False (default): no recording, whatever the launch says. True: the
            launch's ``record:`` path. A path: that file; with ``{episode}`` and/or ``{seed}``
            in it each episode gets its own file, else each episode rewrites it.
        max_steps: Truncate after this many steps (default: the mapping's ``max_steps``); the
            run is then not bounded by the launch's ``steps``.
        steps: Bound each episode's run to this many periods of the first periodic node instead.
        deadline: Stepped: as for :func:`catbus.run` (seconds a node may go without heartbeat,
            or the lockstep without progress, before the run fails). The trainer's thinking
            time is not bounded by it: the stand-in heartbeats while it waits and reports that
            it awaits its controller, which the stall check leaves alone.
    """
    return CatbusEnv(launch, agent, mapping, mode=mode, overrides=overrides, record=record,
                     max_steps=max_steps, steps=steps, deadline=deadline)


__all__ = ["CatbusEnv", "make"]
