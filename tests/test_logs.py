"""Node logs (``self.log``): on stderr as ``[NODE] LEVEL message`` at the level ``--log-level``
sets, in every mode, and in the recording on ``catbus/log`` in Foxglove's ``Log`` shape."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
from pathlib import Path

import pytest

import catbus
from catbus.errors import ConfigError
from catbus.runtime.driver import NodeDriver
from catbus.runtime.logs import install_terminal, uninstall_terminal
from catbus.wire.protocol import LOG_TOPIC
from tests.conftest import ROOT
from tests.log_nodes import Talker

MODES = ["inline", "stepped", "parallel"]
STEPS = 5
LAUNCH = {"name": "logs", "nodes": {
    "talker": {"class": "tests.log_nodes:Talker"},
    "listener": {"class": "tests.log_nodes:Listener"}}}


def launch_file(tmp_path: Path) -> Path:
    path = tmp_path / "logs.yaml"
    path.write_text(json.dumps(LAUNCH))
    return path


def catbus_cli(*args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "catbus", *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=timeout)


def check_shape(value: dict) -> None:
    assert set(value) == {"timestamp", "level", "message", "name", "file", "line"}
    assert set(value["timestamp"]) == {"sec", "nsec"}
    assert all(type(value["timestamp"][k]) is int for k in ("sec", "nsec"))
    assert type(value["level"]) is int and type(value["line"]) is int
    assert value["file"].endswith("log_nodes.py") and value["line"] > 0


@pytest.mark.timeout(120)
@pytest.mark.parametrize("mode", MODES)
def test_logs_reach_stderr_and_the_recording(mode: str, tmp_path: Path, bus_sandbox) -> None:
    path = launch_file(tmp_path)
    record = tmp_path / "default.mcap"
    out = catbus_cli("launch", str(path), "--mode", mode, "--steps", str(STEPS), "--record",
                     str(record), "--no-progress")
    assert out.returncode == 0, out.stderr
    err = out.stderr
    for tick in range(STEPS + 1):
        assert f"[talker] INFO tick {tick}\n" in err
    assert "[talker] INFO setting up\n" in err and "[talker] INFO closing\n" in err
    assert "[listener] WARNING heard 0\n" in err
    assert "DEBUG" not in err
    assert err.count("[talker] INFO tick 1\n") == 1          # printed once, not twice

    logs = [m for m in catbus.Recording(record).messages([LOG_TOPIC])]
    for m in logs:
        check_shape(m.value)
    talker = [m for m in logs if m.value["name"] == "talker"]
    assert [m.value["message"] for m in talker] == [f"tick {t}" for t in range(STEPS + 1)]
    assert {m.value["level"] for m in talker} == {2}
    heard = [m.value for m in logs if m.value["name"] == "listener"]
    assert heard and {v["level"] for v in heard} == {3}
    assert all(v["message"].startswith("heard ") for v in heard)
    if mode != "parallel":   # stepped recordings place each record at its tick
        assert [m.tick for m in talker] == list(range(STEPS + 1))
        for m in talker:
            stamp = m.value["timestamp"]
            assert stamp["sec"] * 10**9 + stamp["nsec"] == round(m.sim_time * 1e9)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("mode", MODES)
def test_log_level_debug(mode: str, tmp_path: Path, bus_sandbox) -> None:
    path = launch_file(tmp_path)
    record = tmp_path / "debug.mcap"
    out = catbus_cli("launch", str(path), "--mode", mode, "--steps", "3", "--record",
                     str(record), "--no-progress", "--log-level", "debug")
    assert out.returncode == 0, out.stderr
    assert "[talker] DEBUG detail 2\n" in out.stderr and "[talker] INFO tick 2\n" in out.stderr
    logs = [m.value for m in catbus.Recording(record).messages([LOG_TOPIC])]
    debug = [v["message"] for v in logs if v["level"] == 1]
    assert debug == [f"detail {t}" for t in range(4)]


@pytest.mark.timeout(120)
def test_log_level_error_silences_and_bad_level_is_refused(tmp_path: Path, bus_sandbox) -> None:
    path = launch_file(tmp_path)
    record = tmp_path / "quiet.mcap"
    out = catbus_cli("launch", str(path), "--mode", "stepped", "--steps", "2", "--record",
                     str(record), "--no-progress", "--log-level", "ERROR")
    assert out.returncode == 0, out.stderr
    assert "[talker]" not in out.stderr and "[listener]" not in out.stderr
    assert LOG_TOPIC not in catbus.Recording(record).topics()
    for command in ("launch", "sweep"):
        out = catbus_cli(command, str(path), "--log-level", "loud")
        assert out.returncode == 2
        assert "--log-level: invalid log level 'loud'" in out.stderr
    out = catbus_cli("node", "tests.log_nodes:Talker", "--name", "t", "--log-level", "x")
    assert out.returncode == 2 and "invalid log level" in out.stderr


@pytest.mark.timeout(180)
def test_verify_still_identical_when_nodes_log(tmp_path: Path, bus_sandbox) -> None:
    out = catbus_cli("verify", str(launch_file(tmp_path)), "--steps", "6", timeout=150)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "identical" in out.stdout


@pytest.mark.timeout(120)
def test_export_names_the_log_channel_foxglove_log(tmp_path: Path, bus_sandbox) -> None:
    from mcap.reader import make_reader

    record = tmp_path / "a.mcap"
    catbus.run(LAUNCH, mode="inline", steps=3, record=record, log_level="info")
    view = tmp_path / "view.mcap"
    out = catbus_cli("export", str(record), "-o", str(view))
    assert out.returncode == 0, out.stderr
    with open(view, "rb") as handle:
        reader = make_reader(handle)
        summary = reader.get_summary()
        channel = next(c for c in summary.channels.values() if c.topic == LOG_TOPIC)
        schema = summary.schemas[channel.schema_id]
        assert schema.name == "foxglove.Log" and schema.encoding == "jsonschema"
        assert channel.message_encoding == "json"
        assert set(json.loads(schema.data)["properties"]) == {
            "timestamp", "level", "message", "name", "file", "line"}
        values = [json.loads(message.data) for _, channel_, message in reader.iter_messages()
                  if channel_.topic == LOG_TOPIC]
    assert [v["message"] for v in values if v["name"] == "talker"] == [
        f"tick {t}" for t in range(4)]
    for value in values:
        check_shape(value)


@pytest.mark.timeout(60)
def test_python_api_level(capsys: pytest.CaptureFixture, bus_sandbox) -> None:
    logger = logging.getLogger("catbus.node")
    before = (logger.level, logger.propagate, list(logger.handlers))
    catbus.run(LAUNCH, mode="inline", steps=2)                       # default WARNING
    err = capsys.readouterr().err
    assert "[listener] WARNING heard 1" in err and "[talker] INFO" not in err
    catbus.run(LAUNCH, mode="inline", steps=2, log_level="Info")
    err = capsys.readouterr().err
    assert "[talker] INFO tick 2\n" in err and "DEBUG" not in err
    assert (logger.level, logger.propagate, list(logger.handlers)) == before   # restored
    with pytest.raises(ConfigError, match="not a log level"):
        catbus.run(LAUNCH, mode="inline", steps=2, log_level="verbose")


def test_logging_never_fails_a_node_nor_recurses() -> None:
    sent = []

    def publish(topic, value, tick, t, through):
        sent.append((topic, value, tick))
        if topic == LOG_TOPIC:
            driver.node.log.warning("inside publish")     # not published again
            raise RuntimeError("the wire is down")        # swallowed

    driver = NodeDriver(Talker, "talker", inputs=[], outputs=[("~/out", "talker/out")],
                        period=0.01, order={"talker": 0}, publish=publish)
    terminal = install_terminal("INFO")
    driver.setup({}, 0, {}, log_level="INFO")
    try:
        assert sent == []                                 # setup's record: terminal only
        driver.step(0, 0.0, {})
        driver.step(1, 0.01, {})
    finally:
        driver.close()
        uninstall_terminal(terminal)
    logs = [(value["message"], tick) for topic, value, tick in sent if topic == LOG_TOPIC]
    assert logs == [("tick 0", 0), ("tick 1", 1)]
    assert [tick for topic, _, tick in sent if topic == "talker/out"] == [0, 1]
    assert not driver.node.log.handlers                   # detached at close
