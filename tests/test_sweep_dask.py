"""``catbus sweep --cluster`` / ``catbus.sweep(cluster=...)`` on a Dask ``LocalCluster`` (two
worker processes, loopback only): the same rows as a local sweep, a crashing episode is a failed
row, stepped episodes run in child processes of the workers, a worker (or its nanny) killed under
a running episode leaves no episode process or folder behind, Ctrl-C keeps finished rows, and the
errors for a missing Dask or an unreachable scheduler.

One cluster for the module (started in about a second). The module fixture gives it a private
``TMPDIR`` and marks its processes like ``bus_sandbox`` does; after each test, no process but the
cluster's workers (and multiprocessing's resource tracker) may be left and no run folder; after
the module, nothing at all. Skipped if Dask is not installed, unless ``CATBUS_REQUIRE_DASK=1`` (CI
installs ``.[all]``, which has it).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psutil
import pytest

try:
    import distributed
except ImportError:
    if os.environ.get("CATBUS_REQUIRE_DASK") == "1":
        raise
    pytest.skip("dask[distributed] is not installed (pip install 'catbus[dask]')",
                allow_module_level=True)

import dask

import catbus
from catbus.errors import ConfigError, RunTimeout
from catbus.sweep.results import read_rows
from tests.conftest import MARK, ROOT, marked_processes, wait_until
from tests.test_sweep import HANG_TIMEOUT, launch, launch_file

#: Columns that differ between two runs of the same episode (``pid``: a score the test node
#: reports, its process id).
VARYING = ("wall_time_s", "worker_pid", "record", "pid")


def same(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in VARYING} for r in rows]


class Cluster:
    def __init__(self, root: Path, mark: str) -> None:
        from multiprocessing import resource_tracker

        self.root, self.mark = root, mark
        tracker = resource_tracker._resource_tracker
        had_tracker = getattr(tracker, "_pid", None) is not None
        with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
            self.cluster = distributed.LocalCluster(n_workers=2, processes=True,
                                                    threads_per_worker=1, host="127.0.0.1",
                                                    dashboard_address=None)
        self.client = distributed.Client(self.cluster, set_as_default=False)
        self.tracker = None if had_tracker else tracker
        self.address = self.cluster.scheduler_address

    def expected(self) -> set[int]:
        """The processes that may be alive between tests: the workers, the resource tracker."""
        self.client.wait_for_workers(2, timeout=60)   # a worker killed by a test is restarted
        pids = set(self.client.run(os.getpid).values())
        if self.tracker is not None and getattr(self.tracker, "_pid", None):
            pids.add(self.tracker._pid)
        return pids

    def close(self) -> None:
        self.client.close()
        self.cluster.close()
        if self.tracker is not None and getattr(self.tracker, "_pid", None) is not None:
            self.tracker._stop()


def leftovers(mark: str, allowed: set[int], grace: float = 5.0) -> list[int]:
    deadline = time.monotonic() + grace
    while True:
        left = [p for p in marked_processes(mark) if p not in allowed]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory):
    tmp_path_factory.getbasetemp()   # fixed now: pytest would put tmp_path under our TMPDIR
    root = Path(tempfile.mkdtemp(prefix="cbd", dir="/tmp" if os.path.isdir("/tmp") else None))
    mark = uuid.uuid4().hex
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TMPDIR", str(root))
        mp.setattr(tempfile, "tempdir", None)
        mp.setenv(MARK, mark)
        path = os.environ.get("PYTHONPATH")
        mp.setenv("PYTHONPATH", str(ROOT) + (os.pathsep + path if path else ""))
        cluster = Cluster(root, mark)
        try:
            yield cluster
        finally:
            cluster.close()
            left = leftovers(mark, set())
            for pid in left:
                os.kill(pid, 9)
            shutil.rmtree(root, ignore_errors=True)
            assert not left, f"processes left after the cluster closed: {left}"


@pytest.fixture
def cluster(dask_cluster):
    yield dask_cluster
    left = leftovers(dask_cluster.mark, dask_cluster.expected())
    from catbus.supervise.rundir import runs_root

    runs = sorted(runs_root().iterdir()) if runs_root().is_dir() else []
    assert not left, f"processes left after the test: {left}"
    assert not runs, f"run folders left after the test: {runs}"


# -- same rows as a local sweep ------------------------------------------------------------------
@pytest.mark.timeout(120)
@pytest.mark.parametrize("mode", ["inline", "stepped"])
def test_cluster_rows_are_the_local_rows(cluster, tmp_path, mode):
    grid = {"env.gain": [1, 2.5]}
    local = catbus.sweep(launch(), seeds=range(3), grid=grid, jobs=2, mode=mode)
    remote = catbus.sweep(launch(), seeds=range(3), grid=grid, mode=mode, out=tmp_path / "r.csv",
                          cluster=cluster.client)
    assert same(remote) == same(local)
    assert [r["score"] for r in remote] == [1.0, 11.0, 21.0, 2.5, 12.5, 22.5]
    on_disk = sorted(read_rows(tmp_path / "r.csv"), key=lambda r: (r["setting"], r["seed"]))
    assert same(on_disk) == same(remote)
    assert len((tmp_path / "r.jsonl").read_text().splitlines()) == 6
    if mode == "inline":   # in the Dask workers themselves
        assert {r["worker_pid"] for r in remote} <= set(cluster.client.run(os.getpid).values())
    else:                  # each in a new child process of a worker
        assert len({r["worker_pid"] for r in remote}) == 6


# -- crashes -------------------------------------------------------------------------------------
@pytest.mark.timeout(120)
@pytest.mark.parametrize("fail", ["segv", "exit"])
def test_an_episode_that_kills_its_dask_worker_is_a_failed_row(cluster, fail):
    """allowed-failures is 0 on this scheduler: no retry on another worker."""
    rows = catbus.sweep(launch(fail=fail, fail_seed=1), seeds=range(4), cluster=cluster.address)
    assert [(r["seed"], r["status"]) for r in rows] == [(0, "ok"), (1, "failed"), (2, "ok"),
                                                        (3, "ok")]
    assert rows[1]["error"].startswith("worker died") and "Dask worker" in rows[1]["error"]
    assert rows[1]["exit_code"] == 1 and "score" not in rows[1]
    assert [rows[i]["score"] for i in (0, 2, 3)] == [1.0, 21.0, 31.0]


@pytest.mark.timeout(120)
def test_stepped_episodes_crash_and_time_out_in_their_own_child_process(cluster):
    before = set(cluster.client.run(os.getpid).values())
    crashed = catbus.sweep(launch(fail="segv", fail_seed=1), seeds=range(3), mode="stepped",
                           cluster=cluster.client)
    assert [(r["seed"], r["status"], r["exit_code"]) for r in crashed] == [
        (0, "ok", 0), (1, "failed", 1), (2, "ok", 0)]
    assert "node env failed" in crashed[1]["error"]   # as in a local stepped sweep
    stuck = catbus.sweep(launch(fail="hang", fail_seed=0), seeds=[0, 1], mode="stepped",
                         episode_timeout=HANG_TIMEOUT, cluster=cluster.client)
    assert [(r["seed"], r["status"], r["exit_code"]) for r in stuck] == [(0, "failed", 124),
                                                                         (1, "ok", 0)]
    assert "timeout" in stuck[0]["error"]
    # the workers lived on (no restart); the fixture checks no node process is left
    assert set(cluster.client.run(os.getpid).values()) == before


# -- a worker that dies --------------------------------------------------------------------------
#: An episode that runs far longer than any test: killed mid-run, never by its end.
LONG = 10 ** 7


def episode_children(mark: str) -> list[psutil.Process]:
    """The ``python -m catbus.sweep.cluster`` episode processes started under ``mark``."""
    found = []
    for pid in marked_processes(mark):
        try:
            process = psutil.Process(pid)
            if "catbus.sweep.cluster" in process.cmdline():
                found.append(process)
        except psutil.Error:
            pass
    return found


def episode_processes(folder: Path) -> list[int]:
    """Live processes of the episode whose folder is ``folder`` (its TMPDIR: itself, its nodes)."""
    found = []
    for process in psutil.process_iter():
        try:
            if process.environ().get("TMPDIR", "").startswith(str(folder)) and \
                    process.status() != psutil.STATUS_ZOMBIE:
                found.append(process.pid)
        except psutil.Error:
            pass
    return found


def started(folder: Path) -> bool:
    """Whether the run of the episode whose folder is ``folder`` has started (its registry
    says so), asked over the ipc socket in its run folder."""
    from catbus.client import query_graph
    from catbus.errors import CatbusError

    for registry in folder.glob("catbus-*/*/registry.sock"):
        try:
            return bool(query_graph(f"ipc://{registry}", timeout=0.5)["started"])
        except CatbusError:
            return False
    return False


def kill_under_a_running_episode(client, mark: str, victim) -> tuple[list[dict], float]:
    """Start a long stepped episode on ``client``'s cluster, SIGKILL ``victim(worker pid)``
    once it runs, and wait (bounded) until nothing of the episode is left: no process, no
    folder. Returns the sweep's rows and the seconds that took."""
    import threading

    rows: list[dict] = []
    thread = threading.Thread(target=lambda: rows.extend(catbus.sweep(
        launch(steps=LONG), seeds=[0], mode="stepped", cluster=client)), daemon=True)
    thread.start()
    [child] = wait_until(lambda: episode_children(mark), 60, interval=0.1,
                         what="the episode's child process")
    folder = Path(child.cmdline()[-1]).parent
    wait_until(lambda: started(folder), 60, interval=0.1, what="the episode's run to start")
    os.kill(victim(child.ppid()), signal.SIGKILL)
    killed = time.monotonic()
    wait_until(lambda: not episode_processes(folder) and not folder.exists(), 30, interval=0.1,
               what=f"the episode's processes and folder {folder} to be gone")
    took = time.monotonic() - killed
    thread.join(60)
    return rows, took


@pytest.mark.timeout(180)
def test_a_killed_worker_leaves_no_episode_process_or_folder(dask_cluster):
    """SIGKILL of the Dask worker running a stepped episode: its child (the episode) stops its
    run (the nodes stopped), removes its folder and exits -- the worker cannot clean up, and the
    scheduler may already run the task again elsewhere. The row says the worker died. On a
    cluster of its own: under load, a nanny may give up restarting the killed worker, which
    must not cost the other tests their shared cluster's workers."""
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        own = distributed.LocalCluster(n_workers=1, processes=True, threads_per_worker=1,
                                       host="127.0.0.1", dashboard_address=None)
    client = distributed.Client(own, set_as_default=False)
    try:
        rows, took = kill_under_a_running_episode(client, dask_cluster.mark, lambda worker: worker)
    finally:
        client.close()
        own.close()
    assert [r["status"] for r in rows] == ["failed"] and "worker died" in rows[0]["error"], rows
    assert not list(dask_cluster.root.glob("catbus-episode-*"))
    left = leftovers(dask_cluster.mark, dask_cluster.expected())
    assert not left, f"processes left after the test: {left}"
    print(f"\nepisode gone {took:.2f} s after its worker was killed")


@pytest.mark.timeout(120)
def test_a_killed_nanny_leaves_no_episode_process_or_folder(dask_cluster, tmp_path):
    """The same when the nanny of a ``dask worker`` process is killed (its worker process then
    exits): a scheduler of its own and one external ``dask worker``, so the episode runs there."""
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        scheduler = distributed.LocalCluster(n_workers=0, processes=True, host="127.0.0.1",
                                             dashboard_address="127.0.0.1:0")
    client = distributed.Client(scheduler, set_as_default=False)
    nanny = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker",
                              scheduler.scheduler_address, "--nthreads", "1", "--nworkers", "1",
                              "--no-dashboard", "--host", "127.0.0.1"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             stdin=subprocess.DEVNULL)
    try:
        client.wait_for_workers(1, timeout=60)
        rows, took = kill_under_a_running_episode(client, dask_cluster.mark,
                                                  lambda worker: nanny.pid)
        assert [r["status"] for r in rows] == ["failed"], rows
        wait_until(lambda: not leftovers(dask_cluster.mark, dask_cluster.expected(), grace=0),
                   30, what="the external worker's processes to end")
        print(f"\nepisode gone {took:.2f} s after its worker's nanny was killed")
    finally:
        if nanny.poll() is None:
            nanny.kill()
        nanny.wait()
        client.close()
        scheduler.close()
    assert not list(dask_cluster.root.glob("catbus-episode-*"))


# -- Ctrl-C --------------------------------------------------------------------------------------
@pytest.mark.timeout(120)
def test_an_interrupt_cancels_the_rest_and_keeps_finished_rows(cluster, tmp_path):
    seen = []

    def interrupt(row):
        seen.append(row)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        catbus.sweep(launch(), seeds=range(6), out=tmp_path / "r.csv", on_row=interrupt,
                     cluster=cluster.client)
    assert same(read_rows(tmp_path / "r.csv")) == same(seen) and len(seen) == 1
    again = catbus.sweep(launch(), seeds=range(6), out=tmp_path / "r.csv", resume=True,
                         cluster=cluster.client)
    assert [r["score"] for r in again] == [1.0, 11.0, 21.0, 31.0, 41.0, 51.0]


# -- the command line ----------------------------------------------------------------------------
@pytest.mark.timeout(120)
def test_cli_sweep_on_the_cluster(cluster, tmp_path):
    file = launch_file(tmp_path, fail="raise", fail_seed=1)
    done = subprocess.run([sys.executable, "-m", "catbus", "sweep", str(file), "--seeds", "0:3",
                           "--set", "env.gain=1,2", "--cluster", cluster.address, "--out",
                           str(tmp_path / "r.csv")], capture_output=True, text=True, timeout=100)
    assert done.returncode == 1, done.stderr
    assert "failed: gain=1 seed 1" in done.stdout and "95% CI" in done.stdout
    rows = read_rows(tmp_path / "r.csv")   # in the order they came
    assert sorted((r["setting"], r["seed"], r["status"]) for r in rows) == [
        (s, n, "failed" if n == 1 else "ok") for s in ("gain=1", "gain=2") for n in range(3)]


def test_without_dask_the_error_names_the_extra(monkeypatch, capsys, tmp_path):
    from catbus.cli.main import main

    monkeypatch.setitem(sys.modules, "distributed", None)   # import distributed -> ImportError
    with pytest.raises(ConfigError, match=r"pip install 'catbus\[dask\]'"):
        catbus.sweep(launch(), seeds=[0], cluster="tcp://127.0.0.1:8786")
    code = main(["sweep", str(launch_file(tmp_path)), "--cluster", "tcp://127.0.0.1:8786"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "catbus[dask]" in err


@pytest.mark.timeout(60)
def test_an_unreachable_scheduler_times_out_with_exit_1(monkeypatch):
    from catbus.sweep import cluster as dask_cluster

    with socket.socket() as s:   # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setattr(dask_cluster, "CONNECT_TIMEOUT", 1.0)
    with pytest.raises(RunTimeout, match=f"no Dask scheduler answered at tcp://127.0.0.1:{port} "
                                         f"within 1 s") as info:
        catbus.sweep(launch(), seeds=[0], cluster=f"tcp://127.0.0.1:{port}")
    assert info.value.exit_code == 1
