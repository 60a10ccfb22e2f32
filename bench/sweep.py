"""Sweep throughput: ``catbus.sweep`` over flat_evade episodes with 1 and 2 jobs, against a plain
``multiprocessing.Pool(2).map`` over the same episodes without catbus.

The episodes: launch/flat_evade.yaml inline (env, robot, human), seeds 0..N-1, ``--steps`` steps,
no recording and no evaluator (scores are not needed for timing). The baseline drives the very
node objects (``FlatEvadeEnv``, ``ModelBasedAgent``) in a plain loop with catbus's schedule, as
tests/test_flat_evade_compat.py does (tick 0 is the reset; agents act on a tick's sensors, the
env applies their actions at the next tick; every message goes through the codec, so the nodes
see what a run gives them), one episode per ``Pool.map`` item. Both sides pay for their worker
start-up (catbus: spawned workers; the Pool: its default context) inside the timed wall time.

Targets: 2 jobs >= 1.8x the episodes/s of 1 job; the 2-job sweep's wall time <= 1.15x the
Pool's. The machine has to have 2 free cores for the first.
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import REPO, Row, code_state, print_table, setup_paths  # noqa: E402

LAUNCH = REPO / "launch" / "flat_evade.yaml"
PERIOD = 0.01


def plain_episode(args: tuple[int, int]) -> int:
    """One flat_evade episode in a plain loop (no catbus runtime); the number of env steps."""
    seed, steps = args
    from catbus.params import resolve
    from catbus.wire.codec import decode_payload, encode_payload
    from nodes.flat_evade.agent import ModelBasedAgent
    from nodes.flat_evade.env import FlatEvadeEnv

    def wire(value):
        payload, buffers = encode_payload(value)
        return decode_payload(payload, [bytes(b) for b in buffers])

    def make(cls, name, given):
        node = cls()
        node.bind(name, seed, PERIOD, {})
        node.setup(resolve(cls.params, given, where="bench", prefix=f"{name}.params"))
        return node

    def published(node, out):
        return {t.replace("~/", f"{node.name}/", 1): wire(m) for t, m in (out or {}).items()}

    env = make(FlatEvadeEnv, "env", {"rng": "generator", "noise_model": "uniform"})
    agents = [make(ModelBasedAgent, "robot", {"safe_controller": "SafeSet"}),
              make(ModelBasedAgent, "human", {"safe_controller": "Unsafe"})]
    actions = {"robot/action": None, "human/action": None}
    for k in range(steps + 1):
        t = k * PERIOD
        for node in (env, *agents):
            node.tick = k
        bus = published(env, env.step(t, actions))
        for agent in agents:
            bus.update(published(agent, agent.step(t, {"~/sensors": bus[f"{agent.name}/sensors"]})))
        actions = {topic: bus[topic] for topic in actions}
    return steps + 1


def run_sweep(jobs: int, episodes: int, steps: int) -> float:
    import catbus

    began = time.perf_counter()
    rows = catbus.sweep(LAUNCH, seeds=range(episodes), jobs=jobs, mode="inline", steps=steps,
                        evaluate=False)
    wall = time.perf_counter() - began
    bad = [r for r in rows if r["status"] != "ok"]
    if bad:
        raise SystemExit(f"sweep episodes failed: {bad[0]['error']}")
    return wall


def run_pool(episodes: int, steps: int) -> float:
    began = time.perf_counter()
    with multiprocessing.Pool(2) as pool:
        done = pool.map(plain_episode, [(seed, steps) for seed in range(episodes)])
    wall = time.perf_counter() - began
    assert done == [steps + 1] * episodes
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--episodes", type=int, default=8)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="smoke test: 2 episodes of 20 "
                        "steps, 1 repetition")
    args = parser.parse_args()
    if args.quick:
        args.episodes, args.steps, args.reps = 2, 20, 1
    setup_paths()
    one, two, pool = [], [], []
    for rep in range(args.reps):
        print(f"[rep {rep + 1}/{args.reps}] sweep 1 job, sweep 2 jobs, Pool(2).map ...",
              flush=True)
        one.append(run_sweep(1, args.episodes, args.steps))
        two.append(run_sweep(2, args.episodes, args.steps))
        pool.append(run_pool(args.episodes, args.steps))
    n = args.episodes
    rows = [
        Row("2 jobs vs 1 job", "episodes/s", [n / w for w in two], [n / w for w in one], 1.8,
            True, "catbus sweep --jobs 2", "catbus sweep --jobs 1"),
        Row("sweep vs Pool(2).map", "s wall", two, pool, 1.15, False, "catbus sweep --jobs 2",
            "multiprocessing.Pool(2).map, plain loop"),
    ]
    print_table(f"sweep: {n} flat_evade episodes of {args.steps} steps, inline, no recording",
                rows, args.reps, extra=[f"code: {code_state()}"])


if __name__ == "__main__":
    main()
