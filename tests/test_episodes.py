"""Episodes: runs that end only when a node ends the episode (bounded by ``max_steps``), and
scores nodes report with ``Node.report`` -- in every mode, in the result, the CLI and the
recording."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import catbus
from catbus.errors import ConfigError
from catbus.spec.launchfile import load_launch, max_steps_reason
from catbus.recording.evaluate import evaluate_file
from catbus.wire import messages as msg
from catbus.wire.protocol import SCORES_TOPIC
from tests.conftest import ROOT
from tests.episode_nodes import REASON

NODES = "tests.episode_nodes"
MODES = ["inline", "stepped", "parallel"]


def episode(end_at: int = 0, env: str = "EpisodeEnv", **top) -> dict:
    """env then agent at 0.01 s, and no steps or duration."""
    return {"name": "episode", **top, "nodes": {
        "env": {"class": f"{NODES}:{env}", "params": {"end_at": end_at}},
        "agent": {"class": f"{NODES}:EpisodeAgent"}}}


def check_reported(scores: dict, mode: str, env_steps: int) -> None:
    assert scores["steps"] == env_steps
    assert scores["env.x"] == "env" and scores["agent.x"] == 1.5     # both reported x
    assert "x" not in scores and scores["success"] is True
    if mode != "parallel":
        assert scores["seen"] == env_steps + 1


@pytest.mark.timeout(90)
@pytest.mark.parametrize("mode", MODES)
def test_environment_ends_the_episode_without_steps(mode: str, bus_sandbox) -> None:
    result = catbus.run(episode(end_at=30), mode=mode, deadline=20)
    assert result.end_reason == REASON and not result.interrupted
    check_reported(result.scores, mode, 30)
    if mode != "parallel":
        assert result.nodes["env"]["steps"] == 31 and result.nodes["env"]["tick"] == 30
        assert result.nodes["agent"]["tick"] == 30


@pytest.mark.timeout(90)
@pytest.mark.parametrize("mode", MODES)
def test_max_steps_ends_a_run_nobody_ends(mode: str, bus_sandbox) -> None:
    result = catbus.run(episode(end_at=0, max_steps=20), mode=mode, deadline=20)
    assert result.end_reason == max_steps_reason(20)
    assert result.end_reason == ("reached max_steps (20) without an end of episode; raise "
                                 "max_steps or give steps")
    assert not result.interrupted and result.scores["success"] is False
    if mode != "parallel":
        assert result.nodes["env"]["steps"] == 21 and result.scores["steps"] == 20


@pytest.mark.timeout(60)
def test_steps_and_duration_win_over_max_steps(bus_sandbox) -> None:
    result = catbus.run(episode(end_at=0, max_steps=5), mode="inline", steps=8)
    assert result.end_reason == "ran its 8 steps" and result.ended_by is None
    assert result.nodes["env"]["steps"] == 9
    result = catbus.run(episode(end_at=0), mode="inline", max_steps=7)   # keyword wins
    assert result.end_reason == max_steps_reason(7) and result.nodes["env"]["steps"] == 8


@pytest.mark.timeout(90)
@pytest.mark.parametrize("mode", MODES)
def test_reported_scores_are_recorded(mode: str, tmp_path: Path, bus_sandbox) -> None:
    record = tmp_path / f"{mode}.mcap"
    result = catbus.run(episode(end_at=12), mode=mode, record=record, deadline=20)
    check_reported(result.scores, mode, 12)
    recording = catbus.Recording(record)
    scores = [m.value for m in recording.messages([SCORES_TOPIC])]
    assert {s["node"] for s in scores} == {"env", "agent"}
    if mode != "parallel":
        assert [s["scores"]["steps"] for s in scores if s["node"] == "env"] == list(range(13))
    assert recording.end_metadata["scores"] == result.scores
    assert evaluate_file(recording) == result.scores          # no evaluator: the reports
    out = subprocess.run([sys.executable, "-m", "catbus", "eval", str(record), "--json"],
                         capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == result.scores


@pytest.mark.timeout(90)
def test_evaluator_scores_win_over_reported_ones(tmp_path: Path, bus_sandbox) -> None:
    record = tmp_path / "a.mcap"
    result = catbus.run(episode(end_at=5, env="EvaluatedEnv"), mode="stepped", record=record)
    assert result.scores["success"] == "evaluated" and result.scores["obs"] == 6
    assert result.scores["steps"] == 5 and result.scores["agent.x"] == 1.5
    assert evaluate_file(record) == result.scores


@pytest.mark.timeout(60)
def test_cli_says_max_steps_was_reached(tmp_path: Path, bus_sandbox) -> None:
    path = tmp_path / "e.yaml"
    path.write_text(json.dumps(episode(end_at=0)))
    out = subprocess.run([sys.executable, "-m", "catbus", "launch", str(path), "--mode",
                          "inline", "--max-steps", "4", "--no-progress"],
                         capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "catbus: reached max_steps (4) without an end of episode" in out.stderr
    assert "scores:" in out.stdout and "env.x" in out.stdout
    out = subprocess.run([sys.executable, "-m", "catbus", "launch", str(path), "--mode",
                          "inline", "--max-steps", "4", "--json"],
                         capture_output=True, text=True, cwd=ROOT, timeout=60)
    summary = json.loads(out.stdout)
    assert summary["scores"]["steps"] == 4 and summary["end_reason"] == max_steps_reason(4)


@pytest.mark.parametrize("value", ["0", "-3", "1.5", "lots", "true"])
def test_launch_file_max_steps_must_be_a_positive_integer(tmp_path: Path, value: str) -> None:
    path = tmp_path / "e.yaml"
    path.write_text(f"max_steps: {value}\nnodes:\n  env:\n    class: {NODES}:EpisodeEnv\n")
    with pytest.raises(ConfigError) as caught:
        load_launch(path)
    assert caught.value.field == "max_steps" and str(path) in caught.value.where
    assert str(caught.value).startswith(f"{path}: max_steps: must be a positive integer")
    with pytest.raises(ConfigError) as caught:
        load_launch(path, max_steps=0)
    assert caught.value.field == "--max-steps"


def test_max_steps_is_in_the_document_and_rebuilds() -> None:
    spec = catbus.load(episode(max_steps=9), mode="stepped")
    assert spec.max_steps == 9 and spec.bounded_by_max_steps
    assert catbus.load(spec.document).max_steps == 9
    assert catbus.load(episode()).max_steps == 100000


def test_report_checks_values_and_updates_keys() -> None:
    node = catbus.Node()
    node.bind("n", 0, 0.1, {})
    node.report(a=1, b="x")
    node.report(a=2.5, c=True)
    assert node._scores == {"a": 2.5, "b": "x", "c": True}
    import numpy as np

    node.report(d=np.float32(0.5))
    assert type(node._scores["d"]) is float
    with pytest.raises(TypeError, match="report\\(e=...\\)"):
        node.report(e=[1, 2])


def test_done_carries_scores() -> None:
    done = msg.decode(msg.encode(msg.Done(code=0, scores={"reward": 3.0, "ok": True})))
    assert done.scores == {"reward": 3.0, "ok": True}
    assert msg.decode(msg.encode(msg.Done())).scores == {}
