"""Where a ``stepped`` run spends its processor, per node process and per function.

Not a benchmark (it prints no ratios): a diagnostic for when ``bench/step.py`` misses a target.
Each node class is subclassed so that, from the end of ``setup`` to ``close``, the node's own
process runs :mod:`cProfile` with a **per-thread CPU clock** (``time.thread_time``): time a process
spends blocked in ``poll`` or preempted by other processes is not counted, so on a small, busy
machine the numbers say what each function costs, not how long it waited. Results are divided by
the number of ticks: microseconds of CPU per tick. cProfile's own overhead inflates functions
that are called very often (compare the totals with ``bench/step.py``'s CPU line).

    python bench/profile_stepped.py trivial --steps 3000
    python bench/profile_stepped.py flat_evade --steps 2000       # recorder on
    python bench/profile_stepped.py flat_evade --inline           # the same nodes, inline mode
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import setup_paths  # noqa: E402

setup_paths()

from catbus.recording.recorder import Recorder  # noqa: E402
from nodes.flat_evade.agent import ModelBasedAgent  # noqa: E402
from nodes.flat_evade.env import FlatEvadeEnv  # noqa: E402
from bench.trivial_nodes import NullRecorder, TrivialAgent, TrivialEnv  # noqa: E402

ENV_VAR = "CATBUS_BENCH_PROFILE_DIR"


class Profiled:
    """Mixin: profile this process's main thread (CPU time) between setup and close."""

    _profiler: cProfile.Profile | None = None

    def setup(self, params: dict[str, Any]) -> None:
        super().setup(params)  # type: ignore[misc]
        if os.environ.get(ENV_VAR):
            self._profiler = cProfile.Profile(timer=time.thread_time)
            self._profiler.enable()

    def close(self) -> None:
        if self._profiler is not None:
            self._profiler.disable()
            name = self.name  # type: ignore[attr-defined]
            self._profiler.dump_stats(os.path.join(os.environ[ENV_VAR], f"{name}.prof"))
            self._profiler = None
        super().close()  # type: ignore[misc]


class PEnv(Profiled, FlatEvadeEnv):
    pass


class PAgent(Profiled, ModelBasedAgent):
    pass


class PRecorder(Profiled, Recorder):
    pass


class PTrivialEnv(Profiled, TrivialEnv):
    pass


class PTrivialAgent(Profiled, TrivialAgent):
    pass


class PNullRecorder(Profiled, NullRecorder):
    pass


def flat_evade_launch(steps: int, record: str, mode: str) -> dict[str, Any]:
    nodes: dict[str, Any] = {
        "env": {"class": "bench.profile_stepped:PEnv", "period": 0.01},
        "robot": {"class": "bench.profile_stepped:PAgent", "period": 0.01,
                  "params": {"safe_controller": "SafeSet"}},
        "human": {"class": "bench.profile_stepped:PAgent", "period": 0.01,
                  "params": {"safe_controller": "Unsafe"}},
    }
    if mode == "stepped":
        nodes["recorder"] = {"class": "bench.profile_stepped:PRecorder", "params": {"path": record}}
    return {"name": "flat_evade", "mode": mode, "steps": steps, "seed": 0, "nodes": nodes}


def trivial_launch(steps: int) -> dict[str, Any]:
    return {"name": "trivial", "mode": "stepped", "steps": steps, "nodes": {
        "env": {"class": "bench.profile_stepped:PTrivialEnv"},
        "a1": {"class": "bench.profile_stepped:PTrivialAgent"},
        "a2": {"class": "bench.profile_stepped:PTrivialAgent"},
        "rec": {"class": "bench.profile_stepped:PNullRecorder"},
    }}


def report(folder: Path, steps: int, top: int) -> None:
    for path in sorted(folder.glob("*.prof")):
        stats = pstats.Stats(str(path))
        total = stats.total_tt  # type: ignore[attr-defined]
        print(f"\n== {path.stem}: {total / steps * 1e6:.0f} us CPU per tick in the main thread "
              f"(profiled; {total:.2f} s over {steps} ticks)")
        rows = []
        for (file, line, func), (_cc, calls, tottime, cumtime, _callers) in \
                stats.stats.items():  # type: ignore[attr-defined]
            short = file.replace(str(Path(__file__).resolve().parents[1]) + "/", "")
            short = short.split("site-packages/")[-1]
            rows.append((tottime, cumtime, calls, f"{func} ({short}:{line})"))
        print(f"   {'self us/tick':>12}  {'incl us/tick':>12}  {'calls/tick':>10}  function")
        for tottime, cumtime, calls, name in sorted(rows, reverse=True)[:top]:
            print(f"   {tottime / steps * 1e6:12.1f}  {cumtime / steps * 1e6:12.1f}  "
                  f"{calls / steps:10.1f}  {name}")


def main(argv: list[str] | None = None) -> int:
    import catbus

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", choices=("trivial", "flat_evade"))
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--inline", action="store_true", help="flat_evade in inline mode")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="catbus-profile-") as folder:
        os.environ[ENV_VAR] = folder
        if args.run == "trivial":
            launch = trivial_launch(args.steps)
        else:
            launch = flat_evade_launch(args.steps, os.path.join(folder, "run.mcap"),
                                       "inline" if args.inline else "stepped")
        result = catbus.run(launch, progress=False, evaluate=False)
        env = result.nodes["env"]
        print(f"{args.run} {'inline' if args.inline else 'stepped'}: "
              f"{env['active_s'] / args.steps * 1e6:.0f} us per tick with profiling on")
        report(Path(folder), args.steps, args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
