"""Measurements of ``bench/step.py`` beyond flat_evade's modes: inline's overhead per node step
on a graph of trivial nodes, and flat_evade's robot trained through :mod:`catbus.gym`.

Why here: ``bench/step.py`` keeps its measurements and the table; these are the newer rows
kept apart so each module stays short.

* **Inline overhead per node step.** ``bench.trivial_nodes`` ``TinyEnv`` + two ``TinyAgent``
  (each step returns one small dict; no clock reads, no arrays) run inline (recording off) and as
  the same node objects called in a plain loop (each input the newest value published on its
  topic, as in ``flat_plain``). Both are timed the same way: the env's tick-0 ``step`` start to
  its tick-N ``step`` end. Overhead per node step = (inline tick - plain tick) / node steps per
  tick: what catbus adds to one ``node.step`` call (the inbox, the driver's checks, the local
  copy of each message, the schedule loop).
* **catbus.gym.** flat_evade with its robot replaced by :func:`catbus.gym.make` (recording off),
  driven with random actions (``action_space.sample()``, seeded): steps/s = N ``env.step``
  calls / their wall time, after ``reset``. The baseline is ``catbus launch`` of the same graph
  in the same mode, recording off (the rows of ``bench/step.py``), measured in the same
  repetition.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from catbus.api.run import load
from catbus.spec.runinfo import schedule_for

LAUNCH = Path(__file__).resolve().parents[1] / "launch" / "flat_evade.yaml"
GYM_MAPPING = "nodes.flat_evade.gym_mapping:robot_mapping"


def tiny_launch(steps: int) -> dict[str, Any]:
    """The trivial graph of the inline-overhead row: an env and two agents, period 0.01."""
    return {"name": "tiny", "mode": "inline", "steps": steps, "seed": 0, "nodes": {
        "env": {"class": "bench.trivial_nodes:TinyEnv"},
        "a1": {"class": "bench.trivial_nodes:TinyAgent"},
        "a2": {"class": "bench.trivial_nodes:TinyAgent"},
    }}


def plain_loop(launch: Any, steps: int) -> tuple[float, int]:
    """``launch``'s node objects, set up as catbus does, called in schedule order in a plain
    loop (each input the newest value published on its topic; no codec, no inbox, no copy).
    Returns (seconds from the clock node's tick-0 step start to its tick-N step end, node steps
    per tick)."""
    spec = load(launch, mode="inline", steps=steps, record=False)
    schedule = schedule_for(spec)
    order = schedule.steps()
    members = {}
    for node_spec in spec.nodes:
        node = node_spec.node_class()
        node.bind(node_spec.name, spec.seed, node_spec.period, {})
        node.setup(node_spec.params)
        members[node_spec.name] = (node, [(b.declared, b.topic) for b in node_spec.inputs],
                                   {b.declared: b.topic for b in node_spec.outputs})
    clock = spec.clock_node
    latest: dict[str, Any] = {}
    t0 = t1 = 0.0
    env_steps = calls = 0
    for tick, name in order:
        node, inputs, outputs = members[name]
        began = time.perf_counter()
        out = node.step(schedule.sim_time(tick), {d: latest.get(t) for d, t in inputs})
        calls += 1
        if name == clock:
            t1 = time.perf_counter()
            if env_steps == 0:
                t0 = began
            env_steps += 1
        if out:
            for declared, value in out.items():
                latest[outputs[declared]] = value
    for node, _, _ in members.values():
        node.close()
    if env_steps != steps + 1:
        raise RuntimeError(f"plain loop: the clock node stepped {env_steps} times, expected "
                           f"{steps + 1}")
    return t1 - t0, round(calls / env_steps)


def tiny_inline_us(steps: int) -> float:
    """Microseconds per node step of the trivial graph in ``inline`` (recording off)."""
    import catbus

    result = catbus.run(tiny_launch(steps), mode="inline", record=False, progress=False,
                        evaluate=False)
    env = result.nodes["env"]
    if env.get("steps") != steps + 1:
        raise RuntimeError(f"tiny inline: env ran {env.get('steps')} steps")
    return env["active_s"] / steps / len(result.nodes) * 1e6


def tiny_plain_us(steps: int) -> float:
    """Microseconds per node step of the trivial graph's node objects in a plain loop."""
    seconds, calls = plain_loop(tiny_launch(steps), steps)
    return seconds / steps / calls * 1e6


def gym_rate(mode: str, steps: int, seed: int = 0) -> float:
    """catbus.gym on flat_evade's robot in ``mode``, random actions: ``env.step`` calls per
    second over ``steps`` steps after ``reset`` (recording off)."""
    import catbus.gym

    env = catbus.gym.make(LAUNCH, "robot", GYM_MAPPING, mode=mode, record=False,
                          steps=steps + 2, max_steps=steps)
    try:
        env.action_space.seed(seed)
        env.reset(seed=seed)
        actions = [env.action_space.sample() for _ in range(steps)]
        done = 0
        began = time.perf_counter()
        for action in actions:
            _, _, terminated, truncated, _ = env.step(action)
            done += 1
            if terminated or truncated:
                break
        elapsed = time.perf_counter() - began
    finally:
        env.close()
    if done != steps:
        raise RuntimeError(f"catbus.gym {mode}: the episode ended after {done} of {steps} steps")
    return done / elapsed


__all__ = ["tiny_launch", "plain_loop", "tiny_inline_us", "tiny_plain_us", "gym_rate"]
