"""Gymnasium both ways: a Gymnasium environment as a catbus node (catbus.adapters, installed with
catbus; launch/cartpole.yaml names it by its older path nodes.adapters) and a catbus graph as a
Gymnasium environment (catbus.gym)."""

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

    return catbus.gym.make(FLAT_EVADE, agent="robot", mapping=MAPPING, **{"record": False,
                                                                         **options})


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
    assert results[-1][4]["end_reason"] == "ran its 3 steps"


def test_inline_runs_in_the_trainers_thread_and_a_reset_stops_it_gracefully(
        tmp_path: Path) -> None:
    """No thread per episode: the graph's steps run in the caller's thread between env.step
    calls. A reset mid-episode stops that run as Ctrl-C would: its result says interrupted and
    its recording is complete up to where it stopped."""
    before = threading.active_count()
    env = make_env(record=str(tmp_path / "ep-{episode}.mcap"))
    try:
        env.reset(seed=0)
        for _ in range(5):
            env.step(np.zeros(2, np.float32))
        assert threading.active_count() == before
        env.reset(seed=1)
        stopped = env.result
        assert stopped.interrupted and stopped.nodes["env"]["steps"] == 6, stopped.nodes["env"]
    finally:
        env.close()
    first = min(tmp_path.glob("ep-*.mcap"), key=lambda f: f.stat().st_mtime)
    ticks = [m.tick for m in catbus.Recording(first).messages("robot/action")]
    assert ticks == [0, 1, 2, 3, 4]   # the agent's five actions; the sixth was never given


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


# -- the adapter as installed, as a user's project uses it --------------------------------------
def test_the_old_adapter_path_names_the_installed_classes() -> None:
    import catbus.adapters.gymnasium
    import catbus.adapters.policies
    import nodes.adapters.gymnasium
    import nodes.adapters.policies

    assert nodes.adapters.gymnasium.GymnasiumEnv is catbus.adapters.gymnasium.GymnasiumEnv
    assert nodes.adapters.policies.LinearPolicy is catbus.adapters.policies.LinearPolicy


PENDULUM_WEIGHTS = [[-2.0, 0.3, -0.8]]   # a Box action: one row per action dimension


def plain_pendulum_return(seed: int) -> float:
    """Pendulum-v1 with the same linear policy in a plain Gymnasium loop (float32 actions, as
    the adapter hands them to the environment)."""
    env = gymnasium.make("Pendulum-v1")
    observation, _ = env.reset(seed=seed)
    w = np.asarray(PENDULUM_WEIGHTS, dtype=np.float64)
    total = 0.0
    while True:
        action = np.clip(w @ np.asarray(observation, dtype=np.float64), -2.0, 2.0).tolist()
        observation, reward, terminated, truncated, _ = env.step(
            np.asarray(action, dtype=env.action_space.dtype))
        total += float(reward)
        if terminated or truncated:
            env.close()
            return total


@pytest.mark.parametrize("mode", ["inline", "stepped"])
def test_a_users_project_runs_the_installed_adapter(tmp_path: Path, mode: str) -> None:
    """A launch file in a project of its own, no clone of this repository on its import path:
    ``catbus.adapters.*`` come with catbus. Pendulum-v1 (a Box action) returns exactly what a
    plain Gymnasium loop returns."""
    import json
    import os
    import subprocess
    import sys

    launch = tmp_path / "pendulum.yaml"
    launch.write_text(json.dumps({
        "name": "pendulum", "seed": 2,
        "nodes": {
            "env": {"class": "catbus.adapters.gymnasium:GymnasiumEnv", "period": 0.05,
                    "remap": {"~/action": "policy/action"}, "params": {"env_id": "Pendulum-v1"}},
            "policy": {"class": "catbus.adapters.policies:LinearPolicy", "period": 0.05,
                       "remap": {"~/observation": "env/observation"},
                       "params": {"weights": PENDULUM_WEIGHTS, "discrete": False,
                                  "low": -2.0, "high": 2.0}}}}))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-m", "catbus", "launch", str(launch), "--mode", mode,
                           "--json"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=240)
    assert done.returncode == 0, done.stderr
    scores = json.loads(done.stdout)["scores"]
    assert scores["episode_return"] == plain_pendulum_return(2)
    assert scores["episode_length"] == 200


# -- catbus.gym.make: recording, default mapping, one_per_process, vector envs -----------------
def flat_evade_doc(record: Path) -> dict:
    """launch/flat_evade.yaml as a dict, its ``record:`` pointing into a test folder."""
    import yaml

    doc = yaml.safe_load(FLAT_EVADE.read_text())
    doc.update(record=str(record), pythonpath=[str(ROOT)])
    return doc


def test_make_records_only_when_asked(tmp_path: Path) -> None:
    """The launch's own ``record:`` is for ``catbus launch``; a trainer's episodes are not
    recorded unless record= asks (True: to that path)."""
    import catbus.gym

    record = tmp_path / "flat_evade.mcap"
    for options in ({}, {"record": None}, {"record": False}):
        env = catbus.gym.make(flat_evade_doc(record), agent="robot", max_steps=3, **options)
        try:
            env.reset(seed=0)
            for _ in range(3):
                env.step(env.action_space.sample())
        finally:
            env.close()
        assert not record.exists(), options
    env = catbus.gym.make(flat_evade_doc(record), agent="robot", max_steps=3, record=True)
    try:
        env.reset(seed=0)
        for _ in range(3):
            env.step(env.action_space.sample())
    finally:
        env.close()
    assert "robot/action" in catbus.Recording(record).topics()
    no_record = {k: v for k, v in flat_evade_doc(record).items() if k != "record"}
    with pytest.raises(catbus.ConfigError, match="record=True"):
        catbus.gym.make(no_record, agent="robot", record=True)


def test_the_environment_names_its_default_mapping() -> None:
    """flat_evade's environment class names the robot's mapping (``gym_mapping``), as it names
    its evaluator: no import path to give."""
    import catbus.gym
    from catbus.gym.env import _default_mapping
    from nodes.flat_evade.env import FlatEvadeEnv
    from nodes.flat_evade.gym_mapping import robot_mapping

    assert FlatEvadeEnv.gym_mapping == {"robot": MAPPING}
    env = catbus.gym.make(FLAT_EVADE, agent="robot")
    try:
        assert env.mapping is robot_mapping
        observation, _ = env.reset(seed=0)
        assert observation.shape == (12,)
    finally:
        env.close()
    with pytest.raises(catbus.ConfigError, match=r"no node class .* names one for human.*"
                                                 r"gym_mapping"):
        _default_mapping(catbus.load(FLAT_EVADE), "human")


def test_inline_refuses_a_class_that_wants_its_own_process() -> None:
    """Every inline episode runs in the trainer's process; a simulator that allows one per
    process would fail at the second reset with its own error. Refused at make(), saying why
    and what to use; stepped gives each episode's nodes their own processes."""
    import catbus.gym
    from catbus.gym import GymMapping

    doc = {"name": "own", "pythonpath": [str(ROOT)],
           "nodes": {"env": {"class": "tests.sweep_nodes:OwnProcess"},
                     "listener": {"class": "tests.sweep_nodes:Listener"}}}
    mapping = GymMapping(gymnasium.spaces.Box(-1, 1, (1,)), gymnasium.spaces.Discrete(2),
                         observation=lambda m: np.zeros(1, np.float32), action=lambda a: {})
    with pytest.raises(catbus.ConfigError, match=r"nodes\.env: OwnProcess sets one_per_process"
                                                 r".*mode='stepped'"):
        catbus.gym.make(doc, agent="listener", mapping=mapping)
    env = catbus.gym.make(doc, agent="listener", mapping=mapping, mode="stepped", max_steps=2)
    try:
        for seed in (0, 1):                # two episodes, each in fresh node processes
            env.reset(seed=seed)
            assert env.step(0)[3] is False and env.step(1)[3] is True
    finally:
        env.close()


def fresh_process_flat_evade() -> gymnasium.Env:
    """An env factory for any process: the ``module:id`` form imports catbus.gym (which
    registers the id) first, also in a worker started with ``spawn``."""
    return gymnasium.make("catbus.gym:catbus/FlatEvade-v0", max_steps=4)


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_async_vector_env_steps(context: str) -> None:
    """``gymnasium.vector.AsyncVectorEnv``: each copy in a worker process of its own, its graph
    inline in that process; episodes truncate and reset by themselves."""
    import gc
    from multiprocessing import resource_tracker

    tracker = resource_tracker._resource_tracker       # spawn starts it, for the process's life
    started_tracker = getattr(tracker, "_pid", 0) is None
    envs = gymnasium.vector.AsyncVectorEnv([fresh_process_flat_evade] * 2, context=context)
    try:
        observations, _ = envs.reset(seed=[0, 1])
        assert observations.shape == (2, 12)
        assert not np.array_equal(observations[0], observations[1])
        truncations = []
        for _ in range(5):
            observations, rewards, terminated, truncated, _ = envs.step(
                envs.action_space.sample())
            truncations.append(truncated.tolist())
        assert observations.shape == (2, 12) and rewards.shape == (2,)
        assert truncations[3] == [True, True] and not any(terminated)
    finally:
        envs.close()
        del envs                 # its shared memory's lock is unlinked now, not by the tracker
        gc.collect()
        if started_tracker and getattr(tracker, "_pid", None) is not None:
            tracker._stop()                              # not a leak of catbus's: ours to stop
    # bus_sandbox: the workers (children of this process) are gone
