"""Shared helpers of the benchmarks: import paths, repetition bookkeeping and the result table."""

from __future__ import annotations

import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

REPO = Path(__file__).resolve().parents[1]


def setup_paths() -> None:
    """Make ``bench.*`` importable here and in every child process (catbus node processes inherit
    the environment, so ``bench.transport_nodes:Ping`` resolves whatever the working folder)."""
    root = str(REPO)
    if root not in sys.path:
        sys.path.insert(0, root)
    parts = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if root not in parts:
        os.environ["PYTHONPATH"] = os.pathsep.join([root, *parts])


def code_state() -> str:
    """Which catbus was measured: the commit, and whether the working tree had changes
    (read-only git queries; "unknown" outside a git checkout)."""
    import subprocess

    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, text=True,
                                capture_output=True, timeout=10).stdout.strip()
        changed = subprocess.run(["git", "status", "--porcelain", "--", "catbus", "nodes"],
                                 cwd=REPO, text=True, capture_output=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if not commit:
        return "unknown"
    files = [line[3:] for line in changed.splitlines() if line.strip()]
    return commit + (f" + uncommitted changes in {', '.join(files)}" if files else "")


def warm_allocator() -> None:
    """Allocate and free one 8 MiB block, which raises glibc's dynamic mmap/trim thresholds.

    Why: :func:`catbus.wire.codec.encode_payload` calls ``msgpack.packb`` inside the ``default`` hook
    of another ``packb`` (once per array); each Packer allocates a 256 KiB buffer, and while the
    thresholds are at their start values the inner one is mmapped/trimmed every time, so encoding
    one small array costs ~15 us instead of ~3 us. catbus node processes happen to be past that
    point after start-up; a freshly spawned baseline process is not. Baseline processes call this
    first so both sides run the codec at the same speed (see bench/README.md).
    """
    block = bytearray(8 << 20)
    del block


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


@dataclass
class Row:
    """One line of the result table: a catbus value beside its baseline and the target ratio.

    ``higher_is_better``: the ratio catbus/baseline must be >= ``target`` (throughput, steps/s);
    otherwise it must be <= ``target`` (latency, tick time). ``target=None`` is informational.
    """

    metric: str
    unit: str
    catbus: list[float]
    baseline: list[float]
    target: float | None
    higher_is_better: bool
    catbus_label: str = "catbus"
    baseline_label: str = "baseline"
    note: str = ""
    #: The target bounds the catbus value itself (in ``unit``), not the ratio: an overhead in
    #: microseconds, whose baseline is shown for scale.
    absolute: bool = False

    @property
    def value(self) -> float:
        return median(self.catbus)

    @property
    def base(self) -> float:
        return median(self.baseline)

    @property
    def ratio(self) -> float:
        return self.value / self.base if self.base else float("nan")

    @property
    def verdict(self) -> str:
        if self.target is None:
            return "info"
        if self.ratio != self.ratio:  # NaN
            return "MISS"
        measured = self.value if self.absolute else self.ratio
        ok = measured >= self.target if self.higher_is_better else measured <= self.target
        return "PASS" if ok else "MISS"

    @property
    def target_text(self) -> str:
        if self.target is None:
            return "-"
        unit = f" {self.unit}" if self.absolute else "x"
        return f"{'>=' if self.higher_is_better else '<='} {self.target:g}{unit}"


def _fmt(value: float) -> str:
    if value != value:
        return "n/a"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.1f}"
    return f"{value:.3g}" if abs(value) < 10 else f"{value:.2f}"


def print_table(title: str, rows: Sequence[Row], reps: int, extra: Sequence[str] = (),
                checks: Sequence[tuple[str, bool]] = ()) -> None:
    """The result table: medians over ``reps`` repetitions, the ratio, target and verdict; then
    pass/fail ``checks`` (properties rather than ratios) and free-form ``extra`` lines."""
    header = ("metric", "unit", "catbus", "baseline", "ratio", "target", "result")
    lines = [header]
    for row in rows:
        lines.append((row.metric, row.unit, _fmt(row.value), _fmt(row.base), f"{row.ratio:.3f}x",
                      row.target_text, row.verdict))
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]

    def render(line: Sequence[str]) -> str:
        return "  ".join(str(cell).ljust(w) if i < 2 else str(cell).rjust(w)
                         for i, (cell, w) in enumerate(zip(line, widths)))

    print()
    print(f"== {title} (median of {reps} repetition{'s' if reps != 1 else ''} each, "
          "catbus and baseline alternated) ==")
    print(render(header))
    print("  ".join("-" * w for w in widths))
    for line in lines[1:]:
        print(render(line))
    print()
    for row in rows:
        pairs = ", ".join(f"{_fmt(c)}/{_fmt(b)}" for c, b in zip(row.catbus, row.baseline))
        print(f"  {row.metric}: catbus = {row.catbus_label}; baseline = {row.baseline_label}"
              + (f"; {row.note}" if row.note else ""))
        ratios = [c / b for c, b in zip(row.catbus, row.baseline) if b]
        spread = (f"; ratio per repetition {min(ratios):.2f}-{max(ratios):.2f}x, median "
                  f"{median(ratios):.2f}x" if len(ratios) > 1 else "")
        print(f"    per repetition (catbus/baseline): {pairs}{spread}")
    if checks:
        print()
        width = max(len(text) for text, _ in checks)
        for text, ok in checks:
            print(f"  check  {text.ljust(width)}  {'PASS' if ok else 'MISS'}")
    for line in extra:
        print(line)
    misses = [row.metric for row in rows if row.verdict == "MISS"]
    misses += [text for text, ok in checks if not ok]
    passes = sum(r.verdict == "PASS" for r in rows) + sum(ok for _, ok in checks)
    print()
    print(f"targets: {passes} PASS, {len(misses)} MISS"
          + (f" ({'; '.join(misses)})" if misses else ""))
    sys.stdout.flush()


def alternate(reps: int, pairs: Sequence[tuple[str, Callable[[], None], Callable[[], None]]],
              log: Callable[[str], None] = print) -> None:
    """Run each (name, catbus, baseline) pair ``reps`` times, catbus and baseline alternating."""
    for rep in range(reps):
        for name, run_catbus, run_baseline in pairs:
            log(f"[rep {rep + 1}/{reps}] {name}: catbus ...")
            run_catbus()
            log(f"[rep {rep + 1}/{reps}] {name}: baseline ...")
            run_baseline()


class BaselineFailed(RuntimeError):
    """A baseline's processes did not all report: one exited without a result, or the wait timed
    out. The message names each process, whether it reported and how it ended."""


def collect_results(procs: Sequence[tuple[str, Any, Any]], timeout: float,
                    what: str) -> dict[str, Any]:
    """Wait for one result from each ``(name, process, receiving connection)``, at most
    ``timeout`` seconds in all; returns ``{name: result}``.

    Each process's sentinel is watched together with its pipe, so a process that dies (an
    exception, a signal) fails the wait at once, named, instead of leaving the caller -- and
    the processes still waiting for it at a barrier or in a lockstep -- blocked until the
    timeout. Every process is stopped before this returns or raises (join, then SIGKILL).
    """
    from multiprocessing.connection import wait

    results: dict[str, Any] = {}
    pending = {conn: (name, proc) for name, proc, conn in procs}
    deadline = time.monotonic() + timeout
    failure = None
    try:
        while pending and failure is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                failure = f"timed out after {timeout:g} s"
                break
            sentinels = {proc.sentinel: (conn, name) for conn, (name, proc) in pending.items()}
            ready = wait([*pending, *sentinels], remaining)
            for item in ready:
                if item in pending:
                    name, _ = pending[item]
                    try:
                        results[name] = item.recv()
                    except EOFError:
                        failure = f"process {name} exited before sending its result"
                        break
                    del pending[item]
                elif item in sentinels:
                    conn, name = sentinels[item]
                    # Exited: a result it sent before is still in the pipe; else it died.
                    if conn in pending and not conn.poll():
                        failure = f"process {name} exited before sending its result"
                        break
    finally:
        for _, proc, _ in procs:
            proc.join(10.0 if failure is None else 0.5)
        stuck = {name for name, proc, _ in procs if proc.is_alive()}
        for _, proc, _ in procs:
            if proc.is_alive():
                proc.kill()
                proc.join(5.0)
    if failure is not None:
        states = "; ".join(
            f"{name}: {'reported' if name in results else 'no result'}, "
            + ("was still running (killed now)" if name in stuck else _exit_text(proc.exitcode))
            for name, proc, _ in procs)
        raise BaselineFailed(f"{what}: {failure} ({states})")
    return results


def run_processes(ctx: Any, jobs: Sequence[tuple[str, Callable, tuple]], timeout: float,
                  what: str) -> list[Any]:
    """Start each ``(name, target, args)`` in a process of ``ctx`` with the sending end of a
    pipe appended to its arguments; what each sends, in order. A process that dies, or a run
    longer than ``timeout`` seconds, fails at once with every process named
    (:func:`collect_results`)."""
    procs = []
    for name, target, args in jobs:
        receive, send = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=target, args=(*args, send), daemon=True, name=name)
        proc.start()
        send.close()
        procs.append((name, proc, receive))
    results = collect_results(procs, timeout, what)
    return [results[name] for name, _, _ in jobs]


def _exit_text(code: int | None) -> str:
    if code is None:
        return "exit status unknown"
    return f"killed by signal {-code}" if code < 0 else f"exited with code {code}"
