"""Smoke test of the benchmarks: each runs with ``--quick`` in a subprocess and prints its table.

Only that they run, end cleanly and print the result table is checked -- never a timing or a
ratio (PASS/MISS depends on the machine; see bench/README.md). The ``bus_sandbox`` fixture gives
the run a private TMPDIR and checks that no process (node, baseline, Manager, forkserver) and no
run folder is left behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.usefixtures("bus_sandbox")

TABLE_COLUMNS = ("metric", "catbus", "baseline", "ratio", "target", "result")


def run_quick(script: str, timeout: float) -> str:
    """Run ``bench/<script> --quick``; its stdout. Bounded: past ``timeout`` the script is asked
    for its stacks (SIGUSR1, faulthandler), its whole process group is killed, and the test
    fails showing those stacks, the processes that were still running and the output so far --
    never a bare pytest-timeout dump of this process waiting in ``communicate``."""
    proc = subprocess.Popen([sys.executable, str(ROOT / "bench" / script), "--quick"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stuck = _group_processes(proc.pid)
        try:
            os.kill(proc.pid, signal.SIGUSR1)   # bench scripts dump every thread's stack
            time.sleep(2.0)
        except ProcessLookupError:
            pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:   # node processes (own sessions) follow through their parent-death signal
            stdout, stderr = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, stderr = "", "(output lost: a process kept the pipes open)"
        pytest.fail(f"{script} --quick did not finish within {timeout:g} s; processes still "
                    f"running: {stuck}\n--- stdout ---\n{(stdout or '')[-3000:]}\n"
                    f"--- stderr (stacks at the end) ---\n{(stderr or '')[-8000:]}")
    assert proc.returncode == 0, (
        f"{script} --quick failed ({proc.returncode}):\n{stdout[-3000:]}\n{stderr[-5000:]}")
    return stdout


def _group_processes(pgid: int) -> list[str]:
    """``pid: command line`` of every process in process group ``pgid``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as stat:
                text = stat.read().decode(errors="replace")
            if int(text[text.rfind(")") + 2:].split()[2]) != pgid:
                continue
            with open(f"/proc/{entry}/cmdline", "rb") as cmd:
                found.append(f"{entry}: {cmd.read().replace(bytes(1), b' ').decode()[:160]}")
        except (OSError, ValueError, IndexError):
            continue
    return found


def check_table(output: str, metrics: list[str]) -> None:
    header = next((line for line in output.splitlines() if line.startswith("metric")), None)
    assert header is not None, f"no result table in:\n{output}"
    for column in TABLE_COLUMNS:
        assert column in header
    for metric in metrics:
        assert any(line.startswith(metric) for line in output.splitlines()), \
            f"no row for {metric!r} in:\n{output}"
    assert "targets:" in output


@pytest.mark.timeout(150)
def test_transport_quick() -> None:
    output = run_quick("transport.py", timeout=120)
    check_table(output, ["small round trip", "small round trip vs raw, catbus frame layout",
                         "raw, catbus frame layout / plain", "small throughput",
                         "1 MiB throughput"])
    assert "check" in output   # zero loss and zero-copy checks are printed


@pytest.mark.timeout(150)
def test_step_quick() -> None:
    output = run_quick("step.py", timeout=120)
    check_table(output, ["flat_evade stepped (rec on) / inline (rec off)",
                         "flat_evade stepped (rec on) / Manager design",
                         "flat_evade inline / plain loop",
                         "trivial stepped tick / raw pyzmq lockstep"])
