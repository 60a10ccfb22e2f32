"""Replay (docs/replay.md): ``catbus.play:Player`` and ``catbus play``.

One stepped recording of flat_evade is made per module; the robot and the human are then run
against its recorded sensors (the player in the environment's place) and must make their
recorded actions bit for bit, in stepped and in inline mode. Real processes and sockets.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

import catbus
from catbus.errors import ConfigError
from catbus.recording.reader import Recording
from catbus.wire import codec

ROOT = Path(__file__).resolve().parent.parent
LAUNCH = ROOT / "launch" / "flat_evade.yaml"
STEPS = 200
SEED = 3
SENSORS = ["robot/sensors", "human/sensors"]
ACTIONS = ["robot/action", "human/action"]

pytestmark = pytest.mark.usefixtures("bus_sandbox")


@pytest.fixture(scope="module")
def original(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """flat_evade, stepped, STEPS steps, recorded (its own run folder root, cleaned up)."""
    path = tmp_path_factory.mktemp("play") / "original.mcap"
    root = tempfile.mkdtemp(prefix="cbp", dir="/tmp" if os.path.isdir("/tmp") else None)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TMPDIR", root)
        patch.setattr(tempfile, "tempdir", None)
        old = os.environ.get("PYTHONPATH")
        patch.setenv("PYTHONPATH", str(ROOT) + (os.pathsep + old if old else ""))
        try:
            catbus.run(LAUNCH, mode="stepped", steps=STEPS, seed=SEED, record=path)
        finally:
            shutil.rmtree(root, ignore_errors=True)
    return path


def by_tick(path: Path, topic: str) -> list[tuple[int, bytes]]:
    return [(m.tick, m.data) for m in Recording(path).messages([topic], decode=False)]


def replay_launch(recording: Path, **player_params) -> dict:
    """flat_evade with a player of the recorded sensors in the environment's name and place."""
    document = yaml.safe_load(LAUNCH.read_text())
    document.pop("record")
    document.pop("steps")            # the player ends the run
    document["pythonpath"] = [str(ROOT)]
    document["nodes"]["env"] = {"class": "catbus.play:Player",
                                "params": {"file": str(recording), "topics": SENSORS,
                                           **player_params}}
    return document


# ------------------------------------------------------------------------------------------------
# Exactness
# ------------------------------------------------------------------------------------------------
@pytest.mark.timeout(30)
def test_recorded_values_encode_back_to_the_recorded_bytes(original: Path) -> None:
    """What the player publishes (the decoded value) is encoded by the codec into exactly the
    bytes the recorder stored, for every message of the run."""
    count = 0
    for message in Recording(original).messages(decode=False):
        if message.topic.startswith("catbus/"):
            continue
        payload, buffers = codec.split_record_bytes(message.data)
        value = codec.decode_payload(payload, buffers)
        assert codec.record_bytes(*codec.encode_payload(value)) == message.data, message.topic
        count += 1
    assert count == 5 * (STEPS + 1)


@pytest.mark.timeout(40)
@pytest.mark.parametrize("mode", ["stepped", "inline"])
def test_agents_fed_their_recorded_sensors_make_their_recorded_actions(
        original: Path, tmp_path: Path, mode: str) -> None:
    out = tmp_path / f"replay-{mode}.mcap"
    spec = catbus.load(replay_launch(original), mode=mode, seed=SEED, record=out)
    env = spec.node("env")
    assert [b.topic for b in env.outputs] == SENSORS and env.period == 0.01
    result = catbus.run(spec)
    assert result.end_reason.startswith("replay of original.mcap finished")
    for topic in SENSORS + ACTIONS:   # sensors as recorded, actions as made: bit for bit
        recorded, replayed = by_tick(original, topic), by_tick(out, topic)
        assert len(recorded) == STEPS + 1
        assert replayed == recorded, topic
    replay_topics = set(Recording(out).topics())
    assert "env/state" not in replay_topics   # not replayed: only the topics asked for


# ------------------------------------------------------------------------------------------------
# The command
# ------------------------------------------------------------------------------------------------
def play_command() -> list[str]:
    """``catbus play`` once it is wired into catbus.cli.main, else its module."""
    from catbus.cli.main import build_parser

    try:
        with contextlib.redirect_stderr(io.StringIO()):
            build_parser().parse_args(["play", "x.mcap", "--with", "y.yaml"])
        return [sys.executable, "-m", "catbus", "play"]
    except SystemExit:
        return [sys.executable, "-m", "catbus.cli.play"]


@pytest.mark.timeout(40)
def test_play_command_end_to_end(original: Path, tmp_path: Path) -> None:
    out = tmp_path / "cli.mcap"
    done = subprocess.run(
        [*play_command(), str(original), "--with", str(LAUNCH), "--topics", ",".join(SENSORS),
         "--mode", "stepped", "--record", str(out), "--no-progress"],
        cwd=ROOT, text=True, capture_output=True, stdin=subprocess.DEVNULL, timeout=35)
    assert done.returncode == 0, done.stderr
    assert "env replaced by a player of robot/sensors, human/sensors" in done.stderr
    assert "not replayed: env/state" in done.stderr
    assert "Traceback" not in done.stderr
    assert f"recorded: {out}" in done.stdout
    meta = Recording(out).metadata
    assert (meta["mode"], meta["seed"]) == ("stepped", SEED)   # the recording's seed by default
    for topic in ACTIONS:
        assert by_tick(out, topic) == by_tick(original, topic), topic


@pytest.mark.timeout(40)
def test_parallel_replay_completes(original: Path, tmp_path: Path) -> None:
    out = tmp_path / "parallel.mcap"
    result = catbus.run(replay_launch(original, rate=4.0), mode="parallel", seed=SEED,
                        record=out)
    assert result.end_reason.startswith("replay of original.mcap finished")
    recorded = [data for _, data in by_tick(original, "robot/sensors")]
    replayed = [data for _, data in by_tick(out, "robot/sensors")]
    # At 4x with the recorded period, about four messages are due per step and the newest goes
    # out (so the rate took effect); what goes out is recorded messages, in their order, up to
    # the last one.
    assert 10 <= len(replayed) < 0.75 * len(recorded) and replayed[-1] == recorded[-1]
    positions = [recorded.index(data) for data in replayed]
    assert positions == sorted(positions)
    assert by_tick(out, "robot/action")


# ------------------------------------------------------------------------------------------------
# Mistakes: one line naming the file or field and the fix, exit 2, nothing started
# ------------------------------------------------------------------------------------------------
def play(args: list[str]) -> tuple[int, str]:
    from catbus.cli.play import add_parser

    parser = argparse.ArgumentParser(prog="catbus")
    add_parser(parser.add_subparsers(dest="command", required=True))
    parsed = parser.parse_args(["play", *args])
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = parsed.func(parsed)
    return code, err.getvalue()


def foreign_mcap(path: Path) -> Path:
    from mcap.writer import Writer

    with open(path, "wb") as handle:
        writer = Writer(handle)
        writer.start(profile="", library="someone else")
        channel = writer.register_channel(topic="a", message_encoding="json", schema_id=0)
        writer.add_message(channel_id=channel, log_time=0, publish_time=0, data=b"{}")
        writer.finish()
    return path


@pytest.mark.timeout(30)
def test_mistakes_are_one_line_with_the_fix(original: Path, tmp_path: Path) -> None:
    launch = str(LAUNCH)
    said = []

    def refused(args: list[str], *expected: str) -> None:
        code, err = play(args)
        assert code == 2, err
        for text in expected:
            assert text in err, err
        said.append(err)

    refused([str(tmp_path / "nope.mcap"), "--with", launch], "nope.mcap: no such recording",
            "--record FILE")
    text = tmp_path / "text.mcap"
    text.write_text("hello")
    refused([str(text), "--with", launch], "not an MCAP recording")
    refused([str(foreign_mcap(tmp_path / "foreign.mcap")), "--with", launch],
            "not a catbus recording")
    refused([str(original), "--with", launch, "--topics", "robot/sensor"],
            "--topics: topic 'robot/sensor' is not in", "did you mean 'robot/sensors'?")
    refused([str(original), "--with", launch, "--topics", "catbus/drops"], "is not replayed")

    agents_only = yaml.safe_load(LAUNCH.read_text())
    del agents_only["nodes"]["env"]
    agents_only["pythonpath"] = [str(ROOT)]
    agents_file = tmp_path / "agents.yaml"
    agents_file.write_text(yaml.safe_dump(agents_only))
    refused([str(original), "--with", str(agents_file), "--topics", "robot/sensors"],
            f"{agents_file}: nodes:",
            "published by node 'env', which this launch file does not have")
    refused([str(original), "--with", str(tmp_path / "none.yaml")], "no such launch file")
    refused([str(original), "--with", launch, "--mode", "stepped", "--rate", "2"],
            "--rate: applies to parallel mode only")
    refused([str(original), "--with", launch, "--record", str(original)],
            "is the recording being replayed")
    refused([str(original), "--with", launch, "--topics", "robot/sensors", "--set",
             "env.noise_model=gaussian"], "--set: env.noise_model=gaussian: node env is replaced")
    for err in said:
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.timeout(30)
def test_launch_file_form_checks_the_recording_before_anything_starts(
        original: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nodes\.env\.params\.file: no such recording"):
        catbus.load(replay_launch(tmp_path / "missing.mcap"))
    with pytest.raises(ConfigError, match=r"nodes\.env\.params\.topics\[0\]: topic 'x' is not"):
        catbus.load({**replay_launch(original),
                     "nodes": {"env": {"class": "catbus.play:Player",
                                       "params": {"file": str(original), "topics": ["x"]}}}})
    with pytest.raises(ConfigError, match=r"nodes\.env\.params\.rate: must be a positive"):
        catbus.load(replay_launch(original, rate=0))
    # Remaps work as for any node: the declared names are the recorded topics.
    document = replay_launch(original)
    document["nodes"]["env"]["remap"] = {"robot/sensors": "robot/replayed"}
    document["nodes"]["robot"]["remap"] = {"~/sensors": "robot/replayed"}
    spec = catbus.load(document)
    assert [b.topic for b in spec.node("env").outputs] == ["robot/replayed", "human/sensors"]
    assert spec.publishers()["robot/replayed"] == "env"
    # Without topics: every recorded topic outside catbus/.
    everything = catbus.load({"nodes": {"env": {"class": "catbus.play:Player",
                                                "params": {"file": str(original)}}}})
    assert [b.topic for b in everything.node("env").outputs] == \
        ["robot/sensors", "human/sensors", "env/state", "robot/action", "human/action"]
