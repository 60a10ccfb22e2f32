"""flat_evade end to end through catbus's own runners: what docs/flat_evade.md predicts, the seed-0
compatibility numbers in inline and stepped mode, and the commands a new user runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from mcap.reader import make_reader

import catbus
from catbus.recording.reader import Recording
from tests.test_flat_evade_compat import CHECKPOINTS, assert_printed

ROOT = Path(__file__).resolve().parent.parent
FLAT_EVADE = ROOT / "launch" / "flat_evade.yaml"


def states_by_tick(path: Path) -> dict[int, dict]:
    return {m.tick: m.value for m in Recording(path).messages("env/state")}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("seed", range(5))
def test_safe_set_keeps_the_robot_clear_and_unsafe_gets_it_caught(seed: int,
                                                                  tmp_path: Path) -> None:
    safe = catbus.run(FLAT_EVADE, mode="inline", seed=seed, record=tmp_path / "safe.mcap")
    unsafe = catbus.run(FLAT_EVADE, mode="inline", seed=seed, record=tmp_path / "unsafe.mcap",
                        overrides={"robot.safe_controller": "Unsafe"})
    assert safe.scores["min_distance"] > 5.0
    assert unsafe.scores["min_distance"] < 1.0
    assert unsafe.scores["safety"] < 0.0 == safe.scores["safety"]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("mode", ["inline", "stepped"])
def test_legacy_rng_reproduces_the_original_seed0_numbers(mode: str, tmp_path: Path) -> None:
    record = tmp_path / f"{mode}.mcap"
    result = catbus.run(FLAT_EVADE, mode=mode, seed=0, record=record,
                        overrides={"env.rng": "legacy"})
    states = states_by_tick(record)
    for step, (robot_x, human_x, robot_goal, human_goal) in CHECKPOINTS.items():
        assert_printed(states[step]["robot"]["state"], robot_x, f"robot x after step {step}")
        assert_printed(states[step]["human"]["state"], human_x, f"human x after step {step}")
        assert_printed(states[step]["robot_goal"]["pos"], robot_goal, f"robot goal {step}")
        assert_printed(states[step]["human_goal"]["pos"], human_goal, f"human goal {step}")
    assert result.scores["achieved_goals"] == 1
    assert result.scores["human_goals"] == 2
    assert result.scores["safety"] == 0
    assert result.scores["min_distance_tick"] == 189
    assert abs(result.scores["min_distance"] - 12.574) < 5e-4


@pytest.mark.timeout(180)
def test_a_new_user_launches_evaluates_and_plots(tmp_path: Path) -> None:
    """The README's commands, as a user types them: parallel run, MCAP, eval, plot."""
    env = dict(os.environ)
    record = tmp_path / "run.mcap"
    launch = subprocess.run(
        [sys.executable, "-m", "catbus", "launch", str(FLAT_EVADE), "--steps", "150",
         "--record", str(record), "--no-progress"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert launch.returncode == 0, launch.stderr
    assert "env" in launch.stdout and "min_distance" in launch.stdout
    with open(record, "rb") as stream:
        reader = make_reader(stream)
        topics = {channel.topic for channel in reader.get_summary().channels.values()}
        metadata = {m.name: m.metadata for m in reader.iter_metadata()}
    assert {"env/state", "robot/sensors", "robot/action", "human/action"} <= topics
    assert metadata["catbus"]["mode"] == "parallel"

    scores = subprocess.run([sys.executable, "-m", "catbus", "eval", str(record), "--json"],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert scores.returncode == 0, scores.stderr
    values = json.loads(scores.stdout)
    assert {"achieved_goals", "safety", "min_distance", "steps_below_d_min"} <= set(values)
    assert values["min_distance"] > 5.0

    image = tmp_path / "run.png"
    plot = subprocess.run([sys.executable, "-m", "catbus", "plot", str(record), "-o", str(image)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert plot.returncode == 0, plot.stderr
    assert image.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and image.stat().st_size > 20_000


@pytest.mark.timeout(60)
def test_parallel_run_holds_actions_between_agent_cycles(tmp_path: Path) -> None:
    """The realtime launch file: agents at 0.2 s, environment at 0.01 s (zero-order hold)."""
    record = tmp_path / "rt.mcap"
    catbus.run(ROOT / "launch" / "flat_evade_realtime.yaml", mode="stepped", steps=100,
               record=record)
    actions = list(Recording(record).messages("robot/action"))
    states = list(Recording(record).messages("env/state"))
    assert [m.tick for m in actions] == [0, 20, 40, 60, 80, 100]
    assert len(states) == 101
    assert np.isfinite(states[-1].value["robot"]["state"]).all()
