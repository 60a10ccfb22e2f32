"""A day of use, as a new user would try it: several runs on one machine (``catbus run list``,
``--run``, no guessing, the start line, one writer per recording) and the small bugs they hit
(``verify --mode``, ``node --param``, ``catbus bus``, ``--version``, "did you mean", ``plot --mp4``
without ffmpeg, ``--json`` on failure, the ``period`` column).

Real processes in the ``bus_sandbox`` (a private run-folder root, leak checks); every process is
stopped by its pid; waits are on files and process exits, never on fixed sleeps.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, wait_until

pytestmark = [pytest.mark.usefixtures("bus_sandbox"), pytest.mark.timeout(120)]

DEMO = str(ROOT / "launch" / "demo.yaml")
FLAT = str(ROOT / "launch" / "flat_evade.yaml")
START_LINE = re.compile(r"catbus: run (\S+) \(mode (\w+)\) on (\S+)")


def catbus(*args: str, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "catbus", *args], cwd=ROOT, text=True,
                          capture_output=True, stdin=subprocess.DEVNULL, timeout=timeout,
                          env=env)


class Background:
    """A catbus command in the background, its output in files (read while it runs)."""

    def __init__(self, folder: Path, label: str, *args: str) -> None:
        self.out, self.err = folder / f"{label}.out", folder / f"{label}.err"
        with open(self.out, "w") as out, open(self.err, "w") as err:
            self.process = subprocess.Popen([sys.executable, "-m", "catbus", *args], cwd=ROOT,
                                            text=True, stdout=out, stderr=err,
                                            stdin=subprocess.DEVNULL)
        self.pid = self.process.pid

    def stderr(self) -> str:
        return self.err.read_text()

    def stdout(self) -> str:
        return self.out.read_text()

    def wait_for(self, pattern: str, stream: str = "stderr", timeout: float = 30) -> re.Match:
        def seen():
            text = self.stderr() if stream == "stderr" else self.stdout()
            found = re.search(pattern, text)
            assert found or self.process.poll() is None, \
                f"exited ({self.process.returncode}) before {pattern!r}:\n{self.stderr()}"
            return found
        return wait_until(seen, timeout, interval=0.05, what=pattern)

    def interrupt(self, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        return self.process.wait(timeout=timeout)

    def kill(self) -> None:
        """After a failed test: stop it as Ctrl-C does (its nodes too), SIGKILL if stuck."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


@pytest.fixture
def background(tmp_path: Path):
    started: list[Background] = []

    def start(label: str, *args: str) -> Background:
        started.append(Background(tmp_path, label, *args))
        return started[-1]

    yield start
    for proc in started:
        proc.kill()


def _running(tool_run: Background) -> None:
    """Wait until the run's nodes are running (its registry answers with them started)."""
    def ready():
        listed = catbus("node", "list", "--bus", START_LINE.search(tool_run.stderr())[3])
        return listed.returncode == 0 and listed.stdout.startswith("mode parallel, running")
    wait_until(ready, 30, interval=0.1, what="the run to start")


# -- 1. several runs on one machine ---------------------------------------------------------------
def test_two_live_runs_are_listed_named_chosen_and_never_guessed(tmp_path: Path, background):
    record = tmp_path / "a.mcap"
    first = background("first", "launch", DEMO, "--duration", "600", "--no-progress",
                       "--record", str(record))
    one = first.wait_for(START_LINE.pattern)
    assert one.group(1, 2) == ("demo", "parallel") and one[3].startswith("ipc://")
    second = background("second", "launch", DEMO, "--duration", "600", "--no-progress")
    two = second.wait_for(START_LINE.pattern)
    assert two.group(1, 2) == ("demo-2", "parallel"), second.stderr()
    _running(first)
    _running(second)

    listed = catbus("run", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    runs = {r["name"]: r for r in json.loads(listed.stdout)}
    assert set(runs) == {"demo", "demo-2"}
    assert runs["demo"]["pid"] == first.pid and runs["demo-2"]["pid"] == second.pid
    assert runs["demo"]["bus"] == one[3] and runs["demo"]["mode"] == "parallel"
    assert runs["demo"]["record"] == os.path.realpath(record)
    assert all(Path(r["folder"]).is_dir() and r["started"] for r in runs.values())
    table = catbus("run", "list").stdout.splitlines()
    assert table[0].split() == ["NAME", "PID", "STARTED", "MODE", "BUS", "FOLDER"]
    assert any(line.startswith("demo-2 ") and str(second.pid) in line for line in table[1:])

    # Neither --run nor --bus: no guess, one line naming both, exit 2.
    for args in (["node", "list"], ["topic", "list"], ["topic", "echo", "talker/chatter"],
                 ["topic", "hz", "talker/chatter"]):
        guessed = catbus(*args)
        assert guessed.returncode == 2 and guessed.stdout == "", (args, guessed)
        lines = guessed.stderr.splitlines()
        assert len(lines) == 1 and "--run" in lines[0], lines
        assert f"demo (pid {first.pid}" in lines[0] and f"demo-2 (pid {second.pid}" in lines[0]

    # --run: exact name, unique prefix, pid; each tool names the run it talks to on stderr.
    nodes = catbus("node", "list", "--run", "demo-2")
    assert nodes.returncode == 0 and nodes.stdout.startswith("mode parallel, running")
    assert f"catbus: run demo-2 (pid {second.pid}, mode parallel) on {two[3]}" in nodes.stderr
    topics = catbus("topic", "list", "--run", "demo")
    assert topics.returncode == 0 and "talker/chatter" in topics.stdout
    assert "catbus: run demo (" in topics.stderr
    echo = catbus("topic", "echo", "talker/chatter", "--count", "1", "--run", "demo-")
    assert echo.returncode == 0 and echo.stdout.startswith("--- talker/chatter"), echo.stderr
    assert "catbus: run demo-2 (" in echo.stderr
    hz = catbus("topic", "hz", "talker/chatter", "--count", "1", "--run", str(first.pid))
    assert hz.returncode == 0 and "Hz" in hz.stdout and "catbus: run demo (" in hz.stderr
    for bad in ("nope", ):
        wrong = catbus("node", "list", "--run", bad)
        assert wrong.returncode == 2 and len(wrong.stderr.splitlines()) == 1, wrong.stderr
        assert "no running run" in wrong.stderr
    both = catbus("node", "list", "--run", "demo", "--bus", one[3])
    assert both.returncode == 2 and "not both" in both.stderr

    # One writer per recording: refused at launch, naming the other run; nothing left behind.
    clash = catbus("launch", DEMO, "--duration", "1", "--record", str(record), "--no-progress")
    assert clash.returncode == 2, clash.stderr
    assert "Traceback" not in clash.stderr
    assert f"being written by the live run demo (pid {first.pid}" in clash.stderr
    clash_inline = catbus("launch", DEMO, "--mode", "inline", "--steps", "2",
                          "--record", str(record))
    assert clash_inline.returncode == 2 and "being written by the live run demo" in \
        clash_inline.stderr

    assert first.interrupt() == 130 and second.interrupt() == 130
    assert record.is_file()
    assert json.loads(catbus("run", "list", "--json").stdout) == []
    # Overwriting a finished recording: one line on stderr.
    again = catbus("launch", DEMO, "--mode", "stepped", "--steps", "3", "--record",
                   str(record), "--no-progress")
    assert again.returncode == 0, again.stderr
    said = [line for line in again.stderr.splitlines() if "overwriting" in line]
    assert said == [f"catbus: overwriting the recording {os.path.realpath(record)} (of an "
                    "earlier, finished run)"], again.stderr


def test_launch_start_line_goes_to_stderr_not_to_json_stdout():
    done = catbus("launch", DEMO, "--mode", "stepped", "--steps", "3", "--json")
    assert done.returncode == 0, done.stderr
    json.loads(done.stdout)
    match = START_LINE.search(done.stderr)
    assert match and match.group(1, 2) == ("demo", "stepped") and match[3].startswith("ipc://")
    inline = catbus("launch", DEMO, "--mode", "inline", "--steps", "3")
    assert "catbus: run demo (mode inline) in this process (no bus)" in inline.stderr


def test_catbus_node_uses_run_and_warns_that_the_launch_file_overrules_param(background):
    run = background("run", "launch", DEMO, "--duration", "600", "--no-progress",
                     "--remote", "talker")
    run.wait_for(r"catbus node nodes\.demo:Talker")
    other = background("other", "launch", DEMO, "--duration", "600", "--no-progress")
    other.wait_for(START_LINE.pattern)
    guessed = catbus("node", "nodes.demo:Talker", "--name", "talker", "--path", str(ROOT))
    assert guessed.returncode == 2 and "choose one with --run" in guessed.stderr
    node = background("node", "node", "nodes.demo:Talker", "--name", "talker", "--run", "demo",
                      "--param", "noise=0.5", "--path", str(ROOT))
    warning = node.wait_for(r"catbus: node talker: warning: --param ignored.*\n")
    assert "used: noise=0.1" in warning[0] and "--set talker.noise=" in warning[0]
    assert run.interrupt() == 130 and other.interrupt() == 130
    assert node.process.wait(timeout=30) == 0, node.stderr()


# -- 2. the bugs -------------------------------------------------------------------------------------
def test_verify_refuses_a_mode():
    refused = catbus("verify", DEMO, "--mode", "parallel")
    assert refused.returncode == 2
    assert "verify always runs the file inline and stepped" in refused.stderr
    assert len(refused.stderr.splitlines()) == 1


def test_version():
    shown = catbus("--version")
    assert shown.returncode == 0 and re.fullmatch(r"catbus \S+\n", shown.stdout), shown


def test_bus_defaults_to_ipc_in_a_run_folder_and_is_listed(background, bus_sandbox):
    bus = background("bus", "bus")
    line = bus.wait_for(r"registry at (\S+);", stream="stdout")
    assert line[1].startswith("ipc://")
    runs = json.loads(catbus("run", "list", "--json").stdout)
    assert [(r["name"], r["pid"], r["bus"]) for r in runs] == [("bus", bus.pid, line[1])]
    assert bus.interrupt() == 130
    assert bus_sandbox.run_folders() == []


def test_bus_on_a_taken_port_is_one_line_and_leaves_no_folder(bus_sandbox, background):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        failed = catbus("bus", "--bind", f"tcp://127.0.0.1:{port}")
    assert failed.returncode == 2, failed
    assert len(failed.stderr.splitlines()) == 1 and "Traceback" not in failed.stderr
    assert f"tcp://127.0.0.1:{port}" in failed.stderr and "cannot bind" in failed.stderr
    assert bus_sandbox.run_folders() == []
    free = background("free", "bus", "--bind", "tcp://127.0.0.1:0")
    address = free.wait_for(r"registry at (tcp://127\.0\.0\.1:(\d+));", stream="stdout")
    assert int(address[2]) > 0
    assert free.interrupt() == 130


def test_bus_is_documented():
    helped = catbus("bus", "--help")
    assert "open bus" in helped.stdout or "no launch file" in helped.stdout
    assert "catbus node" in catbus("--help").stdout


def test_parameter_typo_suggests_the_nearest_name():
    from catbus.errors import ConfigError
    from catbus.params import Param, resolve

    with pytest.raises(ConfigError, match=r"talker\.nosie: unknown parameter \(this node has: "
                                          r"noise\); did you mean 'noise'\?"):
        resolve({"noise": Param(float, 0.1)}, {"nosie": 1.0}, where="--set", prefix="talker")
    typo = catbus("launch", DEMO, "--steps", "1", "--set", "talker.nosie=1")
    assert typo.returncode == 2 and "did you mean 'noise'?" in typo.stderr


def test_plot_mp4_without_ffmpeg_still_writes_the_png(tmp_path: Path):
    record = tmp_path / "f.mcap"
    made = catbus("launch", FLAT, "--mode", "inline", "--steps", "20", "--record", str(record))
    assert made.returncode == 0, made.stderr
    no_ffmpeg = tmp_path / "bin"
    no_ffmpeg.mkdir()
    env = dict(os.environ, PATH=str(no_ffmpeg), MPLBACKEND="Agg")
    png = tmp_path / "f.png"
    plotted = catbus("plot", str(record), "-o", str(png), "--mp4", env=env)
    assert png.is_file() and png.stat().st_size > 0, plotted.stderr
    assert not png.with_suffix(".mp4").exists()
    assert plotted.returncode == 2
    assert plotted.stdout == f"wrote {png}\n"
    lines = plotted.stderr.strip().splitlines()
    assert len(lines) == 1 and "ffmpeg" in lines[0] and "the PNG was written" in lines[0]


def test_json_prints_an_object_on_failure(tmp_path: Path):
    bad = catbus("launch", DEMO, "--set", "talker.nosie=1", "--json")
    assert bad.returncode == 2
    data = json.loads(bad.stdout)
    assert data["exit_code"] == 2 and "nosie" in data["error"]
    missing = catbus("eval", str(tmp_path / "none.mcap"), "--json")
    assert missing.returncode == 2
    assert json.loads(missing.stdout)["exit_code"] == 2
    listed = catbus("run", "list", "--json")
    assert listed.returncode == 0 and json.loads(listed.stdout) == []


def test_summary_period_is_the_sim_period_in_stepped_mode():
    stepped = catbus("launch", DEMO, "--mode", "stepped", "--steps", "10", "--no-progress")
    assert stepped.returncode == 0, stepped.stderr
    lines = stepped.stdout.splitlines()
    assert re.search(r"\bsim period\s+wall/step\b", lines[1]), lines
    talker = next(line for line in lines if line.startswith("talker"))
    assert re.match(r"talker\s+\d+\s+50\.00 ms\s+[\d.]+ ms", talker), talker
    parallel = catbus("launch", DEMO, "--duration", "0.5", "--no-progress")
    assert parallel.returncode == 0
    assert "sim period" not in parallel.stdout and re.search(r"\bperiod\b", parallel.stdout)
