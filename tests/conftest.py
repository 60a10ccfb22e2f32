"""Shared fixtures.

``bus_sandbox`` is for tests that start real catbus processes. It gives the test a private run
folder root (``TMPDIR`` points to a fresh short folder, so ``catbus.supervise.rundir.runs_root()`` -- and
``catbus topic ...`` looking for "the run on this machine" -- sees only this test's runs, never a
run someone else has going on the same machine), and marks every process the test starts with an
environment variable. After the test it checks that nothing leaked:

* no process carrying the mark (a child, or a grandchild reparented after its launcher died) and
  no child of the test process is still alive -- leftovers are killed by pid and the test errors;
* no run folder (ipc socket files) is left under ``runs_root()``.

Use it with ``pytestmark = pytest.mark.usefixtures("bus_sandbox")`` or as an argument.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from typing import Any
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parent.parent
MARK = "CATBUS_TEST_SANDBOX"
#: How long processes get to finish exiting after the test before they count as leaked. Tests
#: wait for their processes themselves; this only absorbs the last moments of an exit.
EXIT_GRACE = 3.0


@dataclass
class Sandbox:
    root: Path       # what TMPDIR points to
    mark: str        # value of MARK in every process the test starts

    def runs_root(self) -> Path:
        from catbus.supervise.rundir import runs_root

        return runs_root()

    def run_folders(self) -> list[Path]:
        root = self.runs_root()
        return sorted(root.iterdir()) if root.is_dir() else []

    def processes(self) -> list[int]:
        """Live processes started by this test (see :func:`marked_processes`)."""
        return marked_processes(self.mark)


def alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie (a zombie has exited; only its status is left)."""
    try:
        return psutil.Process(pid).status() not in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)
    except psutil.Error:
        return False


def marked_processes(mark: str) -> list[int]:
    """Live processes whose environment carries ``MARK=mark`` or whose parent is this process."""
    me = os.getpid()
    found = []
    for process in psutil.process_iter():
        if process.pid == me:
            continue
        try:
            ours = process.ppid() == me or process.environ().get(MARK) == mark
        except psutil.Error:   # gone, or another user's (its environment is not ours to read)
            continue
        if ours and alive(process.pid):
            found.append(process.pid)
    return found


def wait_until(condition, timeout: float, interval: float = 0.02, what: str = "a condition"):
    """Poll ``condition`` until it returns something truthy (returned) or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def _cmdline(pid: int) -> str:
    try:
        return " ".join(psutil.Process(pid).cmdline()) or "?"
    except psutil.Error:
        return "?"


@pytest.fixture
def bus_sandbox(monkeypatch: pytest.MonkeyPatch,
                tmp_path_factory: pytest.TempPathFactory) -> Sandbox:
    tmp_path_factory.getbasetemp()   # fixed now: pytest would put tmp_path under our TMPDIR
    # A short folder: ipc socket paths must stay under ~107 bytes.
    base = "/tmp" if os.path.isdir("/tmp") else None
    root = Path(tempfile.mkdtemp(prefix="cbt", dir=base))
    mark = uuid.uuid4().hex
    monkeypatch.setenv("TMPDIR", str(root))
    monkeypatch.setattr(tempfile, "tempdir", None)   # gettempdir() caches its answer
    monkeypatch.setenv(MARK, mark)
    path = os.environ.get("PYTHONPATH")
    monkeypatch.setenv("PYTHONPATH", str(ROOT) + (os.pathsep + path if path else ""))
    sandbox = Sandbox(root, mark)
    try:
        yield sandbox
    finally:
        deadline = time.monotonic() + EXIT_GRACE
        leaked = marked_processes(mark)
        while leaked and time.monotonic() < deadline:
            time.sleep(0.05)
            leaked = marked_processes(mark)
        described = [f"{pid}: {_cmdline(pid)}" for pid in leaked]
        for pid in leaked:   # ours (marked or our children): end them so later tests run clean
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        folders = [str(p) for p in sandbox.run_folders()]
        shutil.rmtree(root, ignore_errors=True)
        assert not described, f"processes left running after the test: {described}"
        assert not folders, f"run folders left after the test: {folders}"


def pack_control(op: str, **fields: Any) -> bytes:
    """A control message built by hand, as a node in another language builds it (a
    ``register`` says the protocol version it speaks unless the caller gives one)."""
    import msgpack

    from catbus.wire.protocol import PROTOCOL_VERSION

    if op == "register":
        fields.setdefault("protocol", PROTOCOL_VERSION)
    return msgpack.packb({"op": op, **fields})


@pytest.fixture(autouse=True)
def unit_tests_start_no_process_and_open_no_socket(request: pytest.FixtureRequest,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A test marked ``unit`` is pure logic (``python -m pytest -m unit`` runs them all in
    seconds): starting a process or opening a ZeroMQ socket in one fails it, so the marker
    keeps meaning what it says."""
    if request.node.get_closest_marker("unit") is None:
        return
    import subprocess

    import zmq

    def refuse(what: str):
        def refused(*args: Any, **kwargs: Any) -> Any:
            raise AssertionError(f"a unit test must not {what} (marked unit: pure logic only)")
        return refused

    monkeypatch.setattr(subprocess.Popen, "__init__", refuse("start a process"))
    monkeypatch.setattr(zmq.Context, "socket", refuse("open a socket"))
