"""The run's progress bar: on a terminal it shows in every mode; in a pipe it never does.

A real pseudo-terminal (with a window size, as a terminal has) stands in for a person's terminal;
the bar appears only for runs that last more than a second, so the runs here are long enough.
"""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.usefixtures("bus_sandbox")

FLAT_EVADE = str(ROOT / "launch" / "flat_evade.yaml")
#: Long enough to pass the bar's one-second threshold in each mode on a slow machine.
STEPS = {"inline": "8000", "stepped": "2500", "parallel": "250"}


def _run_in_terminal(args: list[str], timeout: float) -> tuple[int, str]:
    """Run ``args`` with stdout and stderr on a pseudo-terminal of 100x30; returns (exit code,
    everything it wrote)."""
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=terminal, stderr=terminal,
                               cwd=ROOT)
    os.close(terminal)
    chunks = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            try:
                data = os.read(controller, 65536)
            except OSError:   # EIO: every writer closed the terminal, the process is done
                break
            if not data:
                break
            chunks.append(data)
        code = process.wait(max(1.0, deadline - time.monotonic()))
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(controller)
    return code, b"".join(chunks).decode(errors="replace")


@pytest.mark.timeout(120)
@pytest.mark.parametrize("mode", ["inline", "stepped", "parallel"])
def test_a_terminal_shows_the_progress_bar(mode: str, tmp_path: Path) -> None:
    code, output = _run_in_terminal(
        [sys.executable, "-m", "catbus", "launch", FLAT_EVADE, "--mode", mode,
         "--steps", STEPS[mode], "--record", str(tmp_path / "r.mcap")], timeout=100)
    assert code == 0, output[-2000:]
    frames = [line for line in output.replace("\r", "\n").splitlines() if line.startswith("run:")]
    assert frames, f"no progress bar on a terminal in {mode} mode:\n{output[-2000:]}"
    assert any("tick/s" in frame and "sim " in frame for frame in frames), frames[-3:]


@pytest.mark.timeout(120)
def test_a_pipe_gets_no_progress_bar(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "catbus", "launch", FLAT_EVADE, "--mode", "inline", "--steps",
         STEPS["inline"], "--record", str(tmp_path / "r.mcap")],
        cwd=ROOT, capture_output=True, text=True, timeout=100)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "run:" not in done.stderr and "tick/s" not in done.stderr
