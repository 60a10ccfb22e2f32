"""Step-log benchmark: what recording a parallel run's step log (``catbus/steps``, for ``catbus
reproduce``) costs.

What is measured and why. A recorded parallel run now logs, for every step of every periodic
node, its cycle, time, duration and which message of each input it consumed
(:mod:`catbus.runtime.steplog`), in batches. The price is CPU in the node processes (the
bookkeeping, the batches' encoding) and in the recorder (one more channel). flat_evade
(``launch/flat_evade.yaml``, periods 0.01 s) runs ``parallel`` with the recorder on for
``--steps`` environment steps, with the step log (catbus) and without it (baseline: the same run
with the log switched off), alternated. A parallel run's wall time is its period times its steps
whatever the cost, so the figure is CPU: the user + system time of every node process and the
recorder (``RUSAGE_CHILDREN`` of this process, which launches and waits for them), minus the
start-up CPU of a run of 0 steps measured in the same repetition, per environment cycle. Each
repetition's figures are printed. A second row times the bookkeeping alone, in this process:
flat_evade's robot stepped by its driver with and without a :class:`StepLog` around it (its
batches encoded as a node process would), per step. No target: the ratios are
information.

    python bench/steplog.py               # 5 repetitions (about 2 minutes)
    python bench/steplog.py --reps 3 --steps 300
    python bench/steplog.py --quick       # smoke: 1 short repetition
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import Row, median, print_table, setup_paths  # noqa: E402

setup_paths()

import yaml  # noqa: E402

import catbus  # noqa: E402
import catbus.runtime.steplog as steplog  # noqa: E402
from catbus.runtime.driver import NodeDriver  # noqa: E402
from catbus.runtime.inbox import InputBinding  # noqa: E402
from catbus.wire import codec  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
LAUNCH = ROOT / "launch" / "flat_evade.yaml"


def launch_document() -> dict:
    document = yaml.safe_load(LAUNCH.read_text())
    document.pop("record", None)
    document["pythonpath"] = [str(ROOT)]
    return document


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_cpu(steps: int, logged: bool, folder: Path, label: str) -> float:
    """CPU seconds of one recorded parallel flat_evade run's processes."""
    steplog.DEFAULT_BATCH = 25 if logged else 0   # read by build_run_info at launch
    before = children_cpu()
    catbus.run(launch_document(), mode="parallel", steps=steps, evaluate=False,
               record=folder / f"{label}.mcap")
    return children_cpu() - before


def driver_step_us(steps: int) -> tuple[float, float]:
    """Microseconds per step of flat_evade's robot driver fed a sensor message every step, with
    a :class:`StepLog` around it and without: two drivers, timed in alternating blocks of 50
    steps (so that drift of the machine falls on both alike)."""
    from nodes.flat_evade.agent import ModelBasedAgent

    spec = catbus.load(launch_document(), mode="inline")
    node = spec.node("robot")
    sensors = _recorded_sensors(spec)

    def publish(topic, value, tick, t, through):   # encode as a node process does
        codec.encode_message(topic, codec.Header("robot", 0, tick, t, 0.0), value)

    drivers = []
    for _ in range(2):
        driver = NodeDriver(ModelBasedAgent, "robot",
                            inputs=[InputBinding(b.declared, b.topic, b.policy)
                                    for b in node.inputs],
                            outputs=[(b.declared, b.topic) for b in node.outputs], period=0.01,
                            order={"env": 0, "robot": 1, "human": 2}, publish=publish)
        driver.setup(node.params, 0, {})
        drivers.append(driver)
    log = steplog.StepLog(drivers[0])
    spent = [0.0, 0.0]
    warm, block = 100, 50
    for first in range(-warm, steps, block):
        for which, driver in enumerate(drivers):
            queue = driver.inbox.buffers.queues["robot/sensors"]
            began = time.perf_counter()
            for tick in range(first + warm, first + warm + block):
                queue.append((tick, sensors[tick % len(sensors)].received()))
                if which == 0:
                    log.step(tick, tick * 0.01)
                else:
                    driver.step(tick, tick * 0.01, driver.inbox.take_latest())
            if first >= 0:
                spent[which] += time.perf_counter() - began
    log.flush()
    for driver in drivers:
        driver.close()
    timed = (steps // block) * block
    return spent[0] / timed * 1e6, spent[1] / timed * 1e6


def _recorded_sensors(spec) -> list:
    """A short inline run's robot sensor messages, as frames to feed the driver."""
    from catbus.reproduce.streams import Stored

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "sensors.mcap"
        catbus.run(spec, steps=50, record=path, evaluate=False)
        out = []
        for message in catbus.Recording(path).messages("robot/sensors", decode=False):
            payload, buffers = codec.split_record_bytes(message.data)
            header = codec.Header("env", message.sequence, 0, message.sim_time, 0.0)
            out.append(Stored((1, message.sequence), [codec.envelope(
                codec.topic_frame("robot/sensors"), header.pack(), payload), *buffers], 0, 0))
        return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--steps", type=int, default=500, help="environment steps per run")
    parser.add_argument("--quick", action="store_true", help="1 repetition of 100 steps")
    args = parser.parse_args(argv)
    if args.quick:
        args.reps, args.steps = 1, 100
    logged, plain, micro_logged, micro_plain = [], [], [], []
    with tempfile.TemporaryDirectory(prefix="catbus-steplog-") as folder:
        for rep in range(args.reps):
            start = run_cpu(0, True, Path(folder), f"start{rep}")
            with_log = run_cpu(args.steps, True, Path(folder), f"log{rep}")
            without = run_cpu(args.steps, False, Path(folder), f"plain{rep}")
            logged.append((with_log - start) / args.steps * 1e3)
            plain.append((without - start) / args.steps * 1e3)
            with_log_us, without_us = driver_step_us(args.steps * 4)
            micro_logged.append(with_log_us)
            micro_plain.append(without_us)
            print(f"[rep {rep + 1}/{args.reps}] CPU per cycle, all processes: with step log "
                  f"{logged[-1]:.3f} ms, without {plain[-1]:.3f} ms (start-up {start:.2f} s); "
                  f"robot driver step: {micro_logged[-1]:.1f} us vs {micro_plain[-1]:.1f} us",
                  flush=True)
    rows = [Row("parallel flat_evade CPU / cycle, step log on vs off", "ms", logged, plain,
                None, False, "with step log", "without"),
            Row("robot driver step, StepLog vs plain (in process)", "us", micro_logged,
                micro_plain, None, False, "with step log", "without")]
    print_table("step log cost", rows, args.reps,
                extra=[f"median CPU per cycle: {median(logged):.3f} vs {median(plain):.3f} ms"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
