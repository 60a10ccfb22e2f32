"""Smoke test of the benchmarks: each runs with ``--quick`` in a subprocess and prints its table.

Only that they run, end cleanly and print the result table is checked -- never a timing or a
ratio (PASS/MISS depends on the machine; see bench/README.md). The ``bus_sandbox`` fixture gives
the run a private TMPDIR and checks that no process (node, baseline, Manager, forkserver) and no
run folder is left behind.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.usefixtures("bus_sandbox")

TABLE_COLUMNS = ("metric", "catbus", "baseline", "ratio", "target", "result")


def run_quick(script: str, timeout: float) -> str:
    completed = subprocess.run([sys.executable, str(ROOT / "bench" / script), "--quick"],
                               cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert completed.returncode == 0, (
        f"{script} --quick failed ({completed.returncode}):\n{completed.stdout[-3000:]}\n"
        f"{completed.stderr[-3000:]}")
    return completed.stdout


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
    check_table(output, ["small round trip", "small throughput", "1 MiB throughput"])
    assert "check" in output   # zero loss and zero-copy checks are printed


@pytest.mark.timeout(150)
def test_step_quick() -> None:
    output = run_quick("step.py", timeout=120)
    check_table(output, ["flat_evade stepped (rec on) / inline (rec off)",
                         "flat_evade stepped (rec on) / Manager design",
                         "flat_evade inline / plain loop",
                         "trivial stepped tick / raw pyzmq lockstep"])
