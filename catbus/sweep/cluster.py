"""Sweep episodes on a Dask distributed cluster (``--cluster tcp://HOST:PORT``, extra ``catbus[dask]``).

Each episode is one Dask task, ``client.submit(run_task, episode, pure=False, retries=0)``:
the same :class:`~catbus.sweep.episode.Episode` the local pool sends its workers, run by the
same :func:`~catbus.sweep.episode.run_episode`, so a row is the row a local sweep gives (apart
from ``wall_time_s`` and ``worker_pid``). Rows come back as futures complete
(``distributed.as_completed``) and go through the sweep's usual writer, bar and summary.

Where an episode runs, on its Dask worker:

* in the worker's own process (a thread of it), like a reused local worker, for an inline
  episode; an episode that kills that process (a segfault, ``os._exit``) kills the Dask worker.
  The scheduler then reschedules the task up to ``distributed.scheduler.allowed-failures`` times
  (Dask's default: 3, each one killing another worker) before it gives up with ``KilledWorker``,
  which becomes a failed row "worker died ...". That number is the scheduler's setting, not the
  client's: start the scheduler with ``DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES=0`` (or
  ``dask.config.set({"distributed.scheduler.allowed-failures": 0})`` before a ``LocalCluster``)
  for a crash to be a failed row at once. The sweep never changes a scheduler it does not own.
* in a new child process of the worker (``python -m catbus.sweep.cluster``, not daemonic, in a
  new session with a private ``TMPDIR``) when the episode needs one: stepped or parallel mode
  (whose node processes a daemonic Dask worker process may not start itself), ``--fresh`` or a
  ``one_per_process`` node class, or ``--episode-timeout`` (the child's whole process group is
  SIGKILLed past it). A child that dies is a failed row naming the signal or exit code, exactly
  as in a local sweep, and the Dask worker lives on. A worker that dies (killed, or its nanny
  gone) takes its child with it: the child stops its run as on SIGTERM and removes its folder
  itself, since the worker can no longer (the task may already run again elsewhere).

Launch files, node code (the launch's ``pythonpath``) and ``--record`` folders are used at the
same paths on the workers: a shared file system, or the same checkout everywhere; the workers
need catbus installed.
"""

from __future__ import annotations

import os
import pickle
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

from catbus.errors import ConfigError, RunTimeout
from catbus.runtime.signals import die_with_parent
from catbus.sweep.episode import EXIT_FAILED, EXIT_TIMEOUT, Episode, run_episode

#: Seconds to wait for the scheduler at ``--cluster`` before giving up (exit 1).
CONNECT_TIMEOUT = 10.0
#: The line that a missing Dask install gives.
MISSING = "--cluster needs Dask distributed: pip install 'catbus[dask]'"


def _distributed() -> Any:
    try:
        import distributed
    except ImportError:
        raise ConfigError("<sweep>", "cluster", MISSING) from None
    return distributed


def connect(cluster: Any, timeout: float | None = None) -> tuple[Any, bool]:
    """``(client, owned)``: a new client of the scheduler at address ``cluster``
    (``owned``: the sweep closes it), or ``cluster`` itself if it is a ``distributed.Client``.

    Raises:
        ConfigError: Dask is not installed, or ``cluster`` is neither an address nor a client.
        RunTimeout: The scheduler did not answer within ``timeout`` seconds.
    """
    distributed = _distributed()
    if isinstance(cluster, distributed.Client):
        return cluster, False
    if not isinstance(cluster, str) or "://" not in cluster:
        raise ConfigError("<sweep>", "cluster", f"a scheduler address like tcp://HOST:8786 or a "
                          f"distributed.Client, got {cluster!r}")
    timeout = CONNECT_TIMEOUT if timeout is None else timeout
    try:
        client = distributed.Client(cluster, timeout=timeout, set_as_default=False)
    except (OSError, TimeoutError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RunTimeout(f"sweep: no Dask scheduler answered at {cluster} within {timeout:g} s "
                         f"({first})") from None
    return client, True


def needs_child(task: Episode, fresh: bool, timeout: float | None) -> bool:
    """Whether ``task`` runs in a child process of its Dask worker (see the module's doc)."""
    return (task.mode != "inline" or fresh or bool(task.extra.get("fresh"))
            or timeout is not None)


def run_task(task: Episode, child: bool = False, timeout: float | None = None) -> dict[str, Any]:
    """The Dask task: one episode -> its row (in this process, or in a child process)."""
    if not child:
        return run_episode(task)
    return _run_in_child(task, timeout)


def _failed(task: Episode, exit_code: int | None, error: str, began: float | None,
            pid: int | None) -> dict[str, Any]:
    wall = round(time.monotonic() - began, 4) if began is not None else None
    return {**task.base_row(), "status": "failed", "exit_code": exit_code, "error": error,
            "wall_time_s": wall, "worker_pid": pid,
            "record": task.record}


def _run_in_child(task: Episode, timeout: float | None) -> dict[str, Any]:
    from catbus.sweep.workers import signal_name

    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="catbus-episode-") as tmp:
        source, target = Path(tmp, "task.pickle"), Path(tmp, "row.pickle")
        source.write_bytes(pickle.dumps(task))
        proc = subprocess.Popen([sys.executable, "-m", "catbus.sweep.cluster", str(source),
                                 str(target)], env={**os.environ, "TMPDIR": tmp},
                                stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            code = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            code = None
        finally:   # timed out, cancelled, or done: nothing of the episode outlives this
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            proc.wait()
        if code is None:
            return _failed(task, EXIT_TIMEOUT, f"timeout: episode still running after "
                           f"{timeout:g} s (worker killed)", began, proc.pid)
        if code == 0 and target.is_file():
            return pickle.loads(target.read_bytes())
    if code < 0:
        return _failed(task, 128 - code, f"worker died: {signal_name(-code)}", began, proc.pid)
    return _failed(task, code, f"worker exited with code {code}", began, proc.pid)


def run(cluster: Any, tasks: list[Episode], on_row: Callable[[dict[str, Any]], None], *,
        fresh: bool = False, timeout: float | None = None,
        client: tuple[Any, bool] | None = None) -> None:
    """Run every task on the cluster; ``on_row(row)`` as each finishes (or fails).

    ``client``: what :func:`connect` returned (else it is called here). On any exception
    (Ctrl-C), the futures not finished are cancelled; a client the sweep made is closed.
    """
    distributed = _distributed()
    client, owned = client if client is not None else connect(cluster)
    futures: dict[Any, Episode] = {}
    pending = list(reversed(tasks))
    done = distributed.as_completed(loop=client.loop)

    def submit() -> None:
        # No more in flight than the cluster has threads: a worker holds only the episode it
        # runs, so one that dies takes no queued bystander with it (a KilledWorker for each).
        limit = max(1, sum(client.nthreads().values()))
        while pending and len(futures) < limit:
            task = pending.pop()
            future = client.submit(run_task, task, needs_child(task, fresh, timeout), timeout,
                                   pure=False, retries=0,
                                   key=f"catbus-episode-{task.slug}-seed-{task.seed}-"
                                       f"{os.urandom(4).hex()}")
            futures[future] = task
            done.add(future)

    try:
        submit()
        for future in done:
            task = futures.pop(future)
            try:
                row = future.result()
            except distributed.KilledWorker as exc:
                retried = getattr(exc, "allowed_failures", None)
                again = (f" (the cluster retried it {retried} times)" if retried else
                         "" if retried == 0 else
                         " (the cluster retried it distributed.scheduler.allowed-failures times)")
                row = _failed(task, EXIT_FAILED, f"worker died: the Dask worker running the "
                              f"episode died{again}", None, None)
            except Exception as exc:   # the task itself failed (unpickling, a lost cluster ...)
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                row = _failed(task, EXIT_FAILED, f"cluster: {type(exc).__name__}: {first}",
                              None, None)
            future.release()
            on_row(row)
            submit()
    finally:
        if futures:
            try:
                client.cancel(list(futures), force=True)
            except Exception:
                pass
        if owned:
            client.close()


#: Seconds an episode whose Dask worker died gets to end its run gracefully (its node processes
#: stopped, its run folder removed) before it removes its folder and ends itself.
ORPHAN_GRACE = 10.0
#: Exit code of an episode child that stopped because its worker is gone (nobody reads it).
EXIT_ORPHANED = 1


class WorkerGone(BaseException):
    """The Dask worker that started this episode child died (the parent-death signal, SIGTERM).
    A BaseException, so that no ``except Exception`` of the episode turns it into a row."""


def _worker_gone(signum: int, frame: object) -> None:
    raise WorkerGone()


def _watch_worker(worker: int, folder: Path, grace: float = ORPHAN_GRACE) -> None:
    """The last resort behind the parent-death signal: once the worker is gone, ``grace``
    seconds for the episode to stop, then its folder is removed and this process ends (its
    node processes then get their own parent-death signal)."""
    def watch() -> None:
        while os.getppid() == worker:
            time.sleep(0.2)
        time.sleep(grace)
        shutil.rmtree(folder, ignore_errors=True)
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="catbus-worker-watchdog", daemon=True).start()


def _child_main(source: str, target: str) -> int:
    """``python -m catbus.sweep.cluster TASK ROW``: run the pickled episode, pickle its row.

    The worker that started this process removes its folder (``TASK``'s) when it returns; a
    worker killed (SIGKILL, or its nanny gone) cannot, and its retried task runs elsewhere. So
    the worker's death is this process's SIGTERM (PR_SET_PDEATHSIG): a run stops as on
    SIGTERM (every node stopped, the run folder removed), anything else is unwound, and the
    folder is removed here; :func:`_watch_worker` bounds how long that may take."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    folder = Path(source).parent
    worker = os.getppid()
    signal.signal(signal.SIGTERM, _worker_gone)   # a run installs its own while it goes
    die_with_parent(signal.SIGTERM)
    _watch_worker(worker, folder)
    try:
        if os.getppid() != worker:   # died before the signal was asked for
            raise WorkerGone()
        task = pickle.loads(Path(source).read_bytes())
        row = run_episode(task)
        if os.getppid() == worker:
            Path(target).write_bytes(pickle.dumps(row))
            return 0
    except WorkerGone:
        if os.getppid() == worker:   # a SIGTERM from someone else: the worker reports the exit
            return 128 + signal.SIGTERM
    shutil.rmtree(folder, ignore_errors=True)
    sys.stderr.flush()
    os._exit(EXIT_ORPHANED)   # no interpreter shutdown: nothing of the episode may hold it up


if __name__ == "__main__":
    sys.exit(_child_main(*sys.argv[1:3]))
