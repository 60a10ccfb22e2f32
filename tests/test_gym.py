"""Gymnasium both ways: a Gymnasium environment as a catbus node (nodes/adapters, launch/cartpole.yaml)
and a catbus graph as a Gymnasium environment (catbus.gym)."""

from __future__ import annotations

import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

gymnasium = pytest.importorskip("gymnasium")

import catbus  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CARTPOLE = ROOT / "launch" / "cartpole.yaml"
FLAT_EVADE = ROOT / "launch" / "flat_evade.yaml"
MAPPING = "nodes.flat_evade.gym_mapping:robot_mapping"

pytestmark = [pytest.mark.usefixtures("bus_sandbox"), pytest.mark.timeout(300)]


def plain_gymnasium_return(seed: int, weights: list[float]) -> tuple[float, int]:
    """The same environment, seed and policy in a plain Gymnasium loop."""
    env = gymnasium.make("CartPole-v1")
    observation, _ = env.reset(seed=seed)
    w = np.asarray(weights, dtype=np.float64)
    total, length = 0.0, 0
    while True:
        action = int(w @ np.asarray(observation, dtype=np.float64) + 0.0 > 0)
        observation, reward, terminated, truncated, _ = env.step(action)
        total += float(reward)
        length += 1
        if terminated or truncated:
            env.close()
            return total, length


# A weak policy: episodes end at different lengths for different seeds (not always 500).
WEAK = [0.0, 0.0, 1.0, 1.0]


@pytest.mark.parametrize("mode", ["inline", "stepped"])
@pytest.mark.parametrize("seed", [0, 5])
def test_cartpole_return_equals_plain_gymnasium(mode: str, seed: int) -> None:
    expected, length = plain_gymnasium_return(seed, WEAK)
    result = catbus.run(CARTPOLE, mode=mode, seed=seed,
                        overrides={"policy.weights": WEAK}, deadline=60)
    assert result.scores["episode_return"] == expected
    assert result.scores["episode_length"] == length
    assert result.end_reason in ("terminated", "truncated")


def test_cartpole_default_policy_balances() -> None:
    result = catbus.run(CARTPOLE, mode="inline", seed=0)
    assert result.scores["episode_return"] == plain_gymnasium_return(0, [0.0, 0.5, 10.0, 2.0])[0]


def test_cartpole_parallel_completes() -> None:
    result = catbus.run(CARTPOLE, mode="parallel", seed=0,
                        overrides={"env.env_kwargs": {"max_episode_steps": 25}}, deadline=60)
    assert result.end_reason in ("terminated", "truncated")
    assert 0 < result.scores["episode_return"] <= 25


def make_env(**options):
    import catbus.gym

    return catbus.gym.make(FLAT_EVADE, agent="robot", mapping=MAPPING, record=False, **options)


def test_import_catbus_does_not_import_gymnasium() -> None:
    import subprocess
    import sys

    code = "import sys, catbus; catbus.Node; assert 'gymnasium' not in sys.modules; " \
           "assert 'gym' not in catbus.__all__"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_make_passes_check_env() -> None:
    from gymnasium.utils.env_checker import check_env

    env = make_env()
    try:
        with warnings.catch_warnings():   # it warns about the unbounded observation box
            warnings.simplefilter("ignore", UserWarning)
            check_env(env.unwrapped, skip_render_check=True)
    finally:
        env.close()
    assert not _gym_threads()


def rollout(env, seed: int, steps: int) -> tuple[list[np.ndarray], list[float]]:
    env.action_space.seed(seed)
    observation, _ = env.reset(seed=seed)
    observations, rewards = [observation], []
    for _ in range(steps):
        observation, reward, terminated, truncated, _ = env.step(env.action_space.sample())
        observations.append(observation)
        rewards.append(reward)
        assert not terminated and not truncated
    return observations, rewards


def test_random_rollout_is_reproducible() -> None:
    env = make_env()
    try:
        first = rollout(env, seed=3, steps=40)
        second = rollout(env, seed=3, steps=40)
        other = rollout(env, seed=4, steps=40)
    finally:
        env.close()
    assert all(np.array_equal(a, b) for a, b in zip(first[0], second[0]))
    assert first[1] == second[1]
    assert not np.array_equal(first[0][0], other[0][0])
    assert first[0][0].dtype == np.float32 and first[0][0].shape == (12,)


def test_episode_truncates_at_max_steps() -> None:
    env = make_env(max_steps=7)
    try:
        env.reset(seed=0)
        flags = [env.step(env.action_space.sample())[2:4] for _ in range(7)]
        assert flags[-1] == (False, True) and all(f == (False, False) for f in flags[:-1])
        with pytest.raises(RuntimeError, match="reset"):
            env.step(env.action_space.sample())
        env.reset()                        # a new episode after the end
        env.step(env.action_space.sample())
    finally:
        env.close()


def test_run_end_is_reported() -> None:
    """An episode whose run ends (here the launch's own steps) ends the Gymnasium episode."""
    env = make_env(steps=3)
    try:
        env.reset(seed=0)
        results = [env.step(np.zeros(2, np.float32)) for _ in range(4)]
    finally:
        env.close()
    assert [r[3] for r in results] == [False, False, False, True]
    assert results[-1][4]["end_reason"] is None


def test_unknown_mode_is_refused_clearly() -> None:
    with pytest.raises(catbus.ConfigError, match="stepped"):
        make_env(mode="parallel")


def fixed_rollout(env, seed: int, steps: int) -> list[np.ndarray]:
    """Observations of a rollout with fixed (not sampled) actions."""
    observation, _ = env.reset(seed=seed)
    observations = [observation]
    for i in range(steps):
        action = np.array([0.5 * np.cos(i / 3), 0.5 * np.sin(i / 5)], np.float32)
        observation, _, terminated, truncated, _ = env.step(action)
        observations.append(observation)
        assert not terminated and not truncated
    return observations


def test_stepped_rollout_equals_inline(capfd: pytest.CaptureFixture[str]) -> None:
    runs = {}
    for mode in ("inline", "stepped"):
        env = make_env(mode=mode)
        try:
            runs[mode] = fixed_rollout(env, seed=7, steps=20)
            runs[mode + " again"] = fixed_rollout(env, seed=7, steps=20)   # a second episode
        finally:
            env.close()
    for key in ("stepped", "stepped again", "inline again"):
        assert len(runs[key]) == 21
        assert all(np.array_equal(a, b) for a, b in zip(runs["inline"], runs[key])), key
    # The launcher does not tell the user to start the agent: the env starts it.
    assert "catbus node" not in capfd.readouterr().err


def test_stepped_graph_lives_while_the_trainer_thinks() -> None:
    """A trainer pausing twice the deadline: the stand-in heartbeats during the pause (else the
    registry fails it after ``deadline`` without heartbeat) and says it awaits its controller
    (else the stall check fails the run: no node completes a tick during the pause)."""
    from catbus.wire.protocol import AWAITING_CONTROLLER_STATE

    env = make_env(mode="stepped", deadline=1.5)
    try:
        env.reset(seed=1)
        env.step(np.zeros(2, np.float32))
        registry = env._handle._launcher.registry
        time.sleep(3.0)                  # the trainer thinks
        robot = registry.members["robot"]
        # Still running after twice the deadline: its heartbeats flowed during the pause.
        assert robot.state == "running" and robot.activity == AWAITING_CONTROLLER_STATE
        for _ in range(3):
            *_, info = env.step(np.zeros(2, np.float32))
        assert env._handle.running and "human_distance" in info
    finally:
        env.close()


def test_stepped_close_leaves_nothing(bus_sandbox) -> None:
    env = make_env(mode="stepped")
    env.reset(seed=0)
    env.step(np.zeros(2, np.float32))
    assert bus_sandbox.processes()             # the graph runs in its processes
    env.close()
    assert not _gym_threads()
    assert not [t for t in threading.enumerate() if t.name.startswith("catbus-run-")]
    assert not bus_sandbox.processes()
    assert not bus_sandbox.run_folders()
    env.close()                                # twice: harmless


def test_gymnasium_make_registered_env() -> None:
    import catbus.gym  # noqa: F401  -- registers catbus/FlatEvade-v0

    env = gymnasium.make("catbus/FlatEvade-v0", max_steps=5)
    try:
        observation, info = env.reset(seed=1)
        assert env.observation_space.contains(observation)
        for _ in range(5):
            observation, reward, terminated, truncated, info = env.step(env.action_space.sample())
        assert truncated and "human_distance" in info
    finally:
        env.close()


def test_sync_vector_env_steps() -> None:
    import catbus.gym  # noqa: F401

    envs = gymnasium.vector.SyncVectorEnv(
        [lambda: gymnasium.make("catbus/FlatEvade-v0") for _ in range(2)])
    try:
        observations, _ = envs.reset(seed=[0, 1])
        assert observations.shape == (2, 12)
        assert not np.array_equal(observations[0], observations[1])
        for _ in range(3):
            observations, rewards, terminated, truncated, _ = envs.step(envs.action_space.sample())
        assert observations.shape == (2, 12) and rewards.shape == (2,)
    finally:
        envs.close()
    assert not _gym_threads()


def _gym_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("catbus-gym-")]


def test_recording_per_episode(tmp_path: Path) -> None:
    import catbus.gym

    env = catbus.gym.make(FLAT_EVADE, agent="robot", mapping=MAPPING, max_steps=5,
                          record=str(tmp_path / "ep-{episode}-seed-{seed}.mcap"))
    try:
        for seed in (0, 1):
            env.reset(seed=seed)
            for _ in range(5):
                env.step(env.action_space.sample())
    finally:
        env.close()
    files = sorted(tmp_path.glob("ep-*.mcap"))
    assert [f.name.split("-seed-")[1] for f in files] == ["0.mcap", "1.mcap"]
    topics = {m.topic for m in catbus.Recording(files[0]).messages()}
    assert {"robot/action", "robot/sensors", "human/action"} <= topics
