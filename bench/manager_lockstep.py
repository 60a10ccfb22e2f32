"""Baseline of ``bench/step.py``: flat_evade in the original toolbox's multiprocessing design.

What the original toolbox did, kept here: one process for the
environment and one per agent, exchanging through ``multiprocessing.Manager`` proxies -- a dict of
sensor data and a dict of actions, every access guarded by a Manager ``Lock`` (so every acquire,
read, write and release is an IPC round trip to the manager process) -- with processes that poll
and ``time.sleep(0.001)`` between polls, and the environment putting each step's
``(env_info, measurements)`` on a Manager ``Queue`` as its record. The ``forkserver`` start method,
as the original's ``sim_mp.py``.

What is different, on purpose: it runs in lockstep with catbus's schedule (the original ran the
environment free of the agents, so agents missed most steps): at tick t the environment waits for
both agents' actions of tick t-1 (polling every 1 ms), steps, records and publishes its sensors;
each agent polls every 1 ms for sensors of a newer tick, acts on them and writes its action. The
nodes are the catbus node objects of ``launch/flat_evade.yaml`` (same classes, parameters, seed),
called directly, so the work per step is identical and only the exchange differs.

Timing: (end of the env's tick-N ``step`` - start of its tick-0 ``step``), after a barrier that all
three processes reach once set up -- process and manager start-up are excluded, the same rule
catbus's ``active_s`` follows.
"""

from __future__ import annotations

import multiprocessing as mp
import time
from pathlib import Path
from typing import Any

LAUNCH = Path(__file__).resolve().parents[1] / "launch" / "flat_evade.yaml"
POLL = 0.001          # the original's busy-polling sleep
END = -2              # sensors["tick"] once the run is over
AGENTS = ("robot", "human")


def _node(name: str, steps: int) -> tuple[Any, Any]:
    """The launch file's node ``name`` set up exactly as catbus would, and the schedule."""
    from catbus.api.run import load
    from catbus.spec.runinfo import schedule_for

    spec = load(LAUNCH, mode="inline", steps=steps, record=False)
    node_spec = spec.node(name)
    node = node_spec.node_class()
    node.bind(node_spec.name, spec.seed, node_spec.period, {})
    node.setup(node_spec.params)
    return node, schedule_for(spec)


def env_process(steps: int, sensors: Any, actions: Any, lock: Any, record: Any, barrier: Any,
                results: Any) -> None:
    """``results``: the sending end of this process's own pipe (see :func:`run`)."""
    env, schedule = _node("env", steps)
    barrier.wait()
    t0 = t1 = 0.0
    for tick in range(steps + 1):
        inputs: dict[str, Any] = {"robot/action": None, "human/action": None}
        if tick > 0:
            while True:             # wait for both agents' actions of the previous tick
                with lock:
                    acts = actions.copy()
                if all(acts.get(a, (-1, None))[0] >= tick - 1 for a in AGENTS):
                    break
                time.sleep(POLL)
            inputs = {f"{a}/action": acts[a][1] for a in AGENTS}
        began = time.perf_counter()
        out = env.step(schedule.sim_time(tick), inputs)
        ended = time.perf_counter()
        if tick == 0:
            t0 = began
        t1 = ended
        record.put((out["~/state"], {a: out[f"{a}/sensors"] for a in AGENTS}))
        with lock:
            sensors.update({"tick": tick, **{a: out[f"{a}/sensors"] for a in AGENTS}})
    while True:                     # let the agents finish the last tick, then stop them
        with lock:
            acts = actions.copy()
        if all(acts.get(a, (-1, None))[0] >= steps for a in AGENTS):
            break
        time.sleep(POLL)
    with lock:
        sensors["tick"] = END
    env.close()
    results.send({"active_s": t1 - t0, "steps": steps})


def agent_process(name: str, steps: int, sensors: Any, actions: Any, lock: Any,
                  barrier: Any, results: Any) -> None:
    agent, schedule = _node(name, steps)
    barrier.wait()
    last = -1
    while True:
        with lock:
            tick = sensors.get("tick", -1)
            measured = sensors.get(name) if tick > last else None
        if tick == END:
            break
        if tick <= last:
            time.sleep(POLL)
            continue
        out = agent.step(schedule.sim_time(tick), {"~/sensors": measured})
        with lock:
            actions[name] = (tick, out["~/action"] if out else None)
        last = tick
    agent.close()
    results.send({"acted": last})


def run(steps: int, timeout: float = 120.0) -> dict[str, Any]:
    """One run; returns ``{"active_s", "steps", "records"}``. Raises
    :class:`bench.common.BaselineFailed`, naming the processes, if one of them dies or the run
    takes more than ``timeout`` seconds.

    Each process reports on a pipe of its own and the parent watches those pipes together with
    the processes' sentinels (:func:`bench.common.run_processes`). Before, the env reported
    on a shared queue that nothing but a timeout could interrupt: a process that died (in
    set-up, at the barrier, or later) left the others blocked -- at the barrier or polling for a
    tick that never came -- and the parent waiting out its whole timeout, as long as the smoke
    test's own budget, before failing without saying which process had gone.
    """
    from bench.common import run_processes

    ctx = mp.get_context("forkserver")
    with ctx.Manager() as manager:
        sensors, actions = manager.dict(), manager.dict()
        lock, record = manager.Lock(), manager.Queue()
        barrier = ctx.Barrier(1 + len(AGENTS))
        jobs = [("manager-env", env_process,
                 (steps, sensors, actions, lock, record, barrier))]
        jobs += [(f"manager-{name}", agent_process,
                  (name, steps, sensors, actions, lock, barrier)) for name in AGENTS]
        outcome = run_processes(ctx, jobs, timeout, "Manager-design baseline")[0]
        records = 0
        while not record.empty():
            record.get()
            records += 1
    outcome["records"] = records
    return outcome
