"""Worker processes of a sweep, owned by the sweep (no ``multiprocessing.Pool``).

Each worker is a ``forkserver`` process with a duplex pipe and
a private temporary folder (``TMPDIR``: its runs' ipc folders and temporary recordings). The
parent waits on every busy worker's pipe *and* its process sentinel, so a worker that dies
(a segfault in a simulator's C library, ``os._exit``) is seen at once: the episode becomes a
failed row naming the signal or exit code, and the next episode gets a new worker. A worker
busy past the episode timeout is killed (SIGKILL, by pid). Killed or not, a worker's own child
processes (stepped node processes) are waited for -- they get SIGTERM from their parent-death
signal -- and SIGKILLed if still there after a grace period (never a process that took over a
child's pid: psutil checks its start time); its folder is removed.

How workers start: ``spawn`` imports numpy and catbus afresh in every worker, 0.5-1 s each: with
short episodes that start-up was most of a sweep (2 jobs ran no faster than 1). While the sweep
process has no other thread (the command line, before any progress bar), a worker is forked
from it: instant, and safe, since no other thread can hold a lock. Once it has threads (tqdm's
monitor, a notebook's), workers come from a fork server instead: one clean process, started
once with catbus preloaded, that forks each worker in milliseconds; the sweep stops it at the
end if it started it.

Workers ignore SIGINT (Ctrl-C on a terminal reaches the whole process group): the sweep stops
them itself, by pid. A worker asks for SIGKILL if the sweep process dies (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import signal
import tempfile
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any, Callable

import psutil

from catbus.runtime.signals import die_with_parent, noted_ctrl_c
from catbus.sweep.episode import EXIT_TIMEOUT, Episode
from catbus.sweep.mpservices import BorrowedServices

#: Seconds a dead worker's child processes get to follow it (parent-death SIGTERM) before SIGKILL.
CHILD_GRACE = 5.0
#: The sweep waits for its workers in slices this long (seconds), looking at Ctrl-C between.
WAIT_SLICE = 0.2


def _worker_main(conn: Any, tmpdir: str, parent: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    die_with_parent(signal.SIGKILL)
    try:   # the sweep died before we asked for its death signal (our parent is the fork server)
        os.kill(parent, 0)
    except ProcessLookupError:
        os._exit(1)
    os.environ["TMPDIR"] = tmpdir
    tempfile.tempdir = None
    from catbus.sweep.episode import run_episode

    while True:
        try:
            task = conn.recv()
        except EOFError:
            return
        if task is None:
            return
        conn.send(run_episode(task))


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def children_of(pid: int) -> list[int]:
    """Pids of the direct children of ``pid`` that have not exited."""
    return [child.pid for child in _children(pid)]


def _children(pid: int) -> list[psutil.Process]:
    try:
        return [child for child in psutil.Process(pid).children() if _running(child)]
    except psutil.Error:   # pid gone, or not ours to look at
        return []


def _running(process: psutil.Process) -> bool:
    """Still the process it was (psutil compares start times, so a reused pid is not it) and not
    a zombie: a zombie has exited, only its exit status waits to be collected."""
    try:
        return process.is_running() and process.status() not in (psutil.STATUS_ZOMBIE,
                                                                  psutil.STATUS_DEAD)
    except psutil.Error:
        return False


@dataclass
class Worker:
    process: Any
    conn: Any
    tmpdir: Path
    task: Episode | None = None
    started: float = 0.0
    episodes: int = 0

    @property
    def pid(self) -> int:
        return self.process.pid


class WorkerPool:
    """Up to ``jobs`` workers running :class:`Episode` tasks; ``fresh`` (or a task with
    ``extra["fresh"]``): a new worker per episode."""

    def __init__(self, jobs: int, *, fresh: bool = False, timeout: float | None = None) -> None:
        self.jobs = max(1, int(jobs))
        self.fresh = fresh
        self.timeout = timeout
        self.root = Path(tempfile.mkdtemp(prefix="sweep-"))
        # multiprocessing's fork server, resource tracker and temporary folder, for the sweep's
        # lifetime only (see catbus.sweep.mpservices): nothing of them outlives the sweep.
        self._services = BorrowedServices(str(self.root))
        self.ctx = multiprocessing.get_context("forkserver")
        self.ctx.set_forkserver_preload(["catbus.sweep.episode"])
        self.fork_ctx = multiprocessing.get_context("fork")
        self.workers: list[Worker] = []

    # -- workers ----------------------------------------------------------------------------------
    def _start_worker(self) -> Worker:
        tmpdir = Path(tempfile.mkdtemp(prefix="w", dir=self.root))
        ctx = self.fork_ctx if threading.active_count() == 1 else self.ctx
        mine, theirs = ctx.Pipe(duplex=True)
        process = ctx.Process(target=_worker_main, args=(theirs, str(tmpdir), os.getpid()),
                                   name="catbus-sweep-worker", daemon=True)
        process.start()
        theirs.close()
        worker = Worker(process, mine, tmpdir)
        self.workers.append(worker)
        return worker

    def _end_worker(self, worker: Worker, *, kill: bool) -> None:
        """Stop ``worker`` (politely, or SIGKILL by pid), then its leftover children, then its
        folder."""
        children = _children(worker.pid) if worker.process.is_alive() else []
        if not kill:
            try:
                worker.conn.send(None)
            except OSError:
                pass
            worker.process.join(5.0)
        if worker.process.is_alive():
            try:
                os.kill(worker.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        worker.process.join(5.0)
        deadline = time.monotonic() + CHILD_GRACE
        while any(_running(child) for child in children) and time.monotonic() < deadline:
            time.sleep(0.02)
        for child in children:
            if _running(child):
                try:
                    child.kill()   # psutil refuses if the pid now belongs to another process
                except psutil.Error:
                    pass
        worker.conn.close()
        if worker in self.workers:
            self.workers.remove(worker)
        shutil.rmtree(worker.tmpdir, ignore_errors=True)

    def close(self, *, kill: bool = False) -> None:
        """Stop every worker (busy ones by SIGKILL) and remove the sweep's folder."""
        for worker in list(self.workers):
            self._end_worker(worker, kill=kill or worker.task is not None)
        self._services.give_back()
        shutil.rmtree(self.root, ignore_errors=True)

    # -- running ----------------------------------------------------------------------------------
    def run(self, tasks: list[Episode], on_row: Callable[[dict[str, Any]], None]) -> None:
        """Run every task; ``on_row(row)`` for each finished (or failed) episode, as it comes.
        Ctrl-C raises KeyboardInterrupt here, between two waits (see :func:`noted_ctrl_c`)."""
        with noted_ctrl_c() as ctrl_c:
            self._run(tasks, on_row, ctrl_c)

    def _run(self, tasks: list[Episode], on_row: Callable[[dict[str, Any]], None],
             ctrl_c: list[int]) -> None:
        pending = list(reversed(tasks))
        while pending or any(w.task is not None for w in self.workers):
            if ctrl_c:
                raise KeyboardInterrupt
            for worker in self.workers:   # give idle workers work
                if worker.task is None and pending:
                    self._assign(worker, pending.pop())
            while pending and len(self.workers) < self.jobs:
                self._assign(self._start_worker(), pending.pop())
            busy = [w for w in self.workers if w.task is not None]
            timeout = WAIT_SLICE   # Ctrl-C is looked at between two waits
            if self.timeout is not None:
                now = time.monotonic()
                timeout = min(timeout, max(0.0, min(w.started + self.timeout for w in busy) - now))
            handles = {}
            for w in busy:
                handles[w.conn] = w
                handles[w.process.sentinel] = w
            ready = wait(list(handles), timeout)
            done = []
            for item in ready:
                worker = handles[item]
                if worker in done:
                    continue
                done.append(worker)
                on_row(self._collect(worker))
            if self.timeout is not None:
                now = time.monotonic()
                for worker in busy:
                    if worker not in done and now - worker.started >= self.timeout:
                        task = worker.task
                        self._end_worker(worker, kill=True)
                        on_row({**task.base_row(), "status": "failed",
                                "exit_code": EXIT_TIMEOUT, "worker_pid": worker.pid,
                                "error": f"timeout: episode still running after "
                                         f"{self.timeout:g} s (worker killed)",
                                "wall_time_s": round(now - worker.started, 4),
                                "record": task.record})

    def _assign(self, worker: Worker, task: Episode) -> None:
        worker.task, worker.started = task, time.monotonic()
        worker.conn.send(task)

    def _collect(self, worker: Worker) -> dict[str, Any]:
        """The row of ``worker``'s episode: what it sent, or why it died."""
        task = worker.task
        row = None
        try:
            if worker.conn.poll():
                row = worker.conn.recv()
        except (EOFError, OSError):
            row = None
        if row is not None:
            worker.task = None
            worker.episodes += 1
            if self.fresh or task.extra.get("fresh"):
                self._end_worker(worker, kill=False)
            return row
        worker.process.join(5.0)
        code = worker.process.exitcode
        elapsed = time.monotonic() - worker.started
        self._end_worker(worker, kill=True)
        if code is not None and code < 0:
            error, exit_code = f"worker died: {signal_name(-code)}", 128 - code
        else:
            error, exit_code = f"worker exited with code {code}", code
        return {**task.base_row(), "status": "failed", "exit_code": exit_code, "error": error,
                "wall_time_s": round(elapsed, 4), "worker_pid": worker.pid,
                "record": task.record}
