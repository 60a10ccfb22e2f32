"""Private run folders for ``ipc://`` endpoints, their cleanup, and finding running runs.

Each run owns ``<tmp>/catbus-<uid>/<run-id>/`` (mode 0700) holding its ipc socket files and a
``run.json`` with the launcher's pid, its start time (``created``, see
:func:`process_start_time`) and the registry endpoint. The folder is removed when the run ends; a
launcher killed with SIGKILL cannot do that, so every new run removes folders whose launcher is no
longer alive (pid *and* process start time are compared, so a reused pid does not keep a stale
folder alive). ``catbus topic ...`` finds the running runs the same way.

run.json also says the run's ``id`` (its launch name, made unique among the live runs:
``demo``, ``demo-2``; what ``--run`` matches and ``catbus run list`` shows), its ``mode``, its
wall-clock ``started`` time and the absolute path of the recording it writes (``record``), so
that a second run refuses to write the same recording (:func:`claim_record`).
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import psutil

from catbus.errors import CatbusError, ConfigError

RUN_FILE = "run.json"


def runs_root() -> Path:
    return Path(tempfile.gettempdir()) / f"catbus-{os.getuid()}"


#: Seconds by which two readings of one process's start time may differ (float rounding, and on
#: Linux a wall clock set between the two psutil readings that make it up). A pid taken over by
#: another process that started this soon after the launcher is not a real case: the kernel hands
#: pids out in turn and reuses one only after going round all of them.
START_TOLERANCE = 1.0


def process_start_time(pid: int) -> float | None:
    """When ``pid`` started, on a clock that setting the wall clock does not move; None if there
    is no such process of this user's to look at (a pid reused by another user's process is no
    launcher of ours).

    Seconds since boot on Linux: psutil's ``create_time`` there is the kernel's start in ticks
    since boot plus the boot time, and the boot time moves with the wall clock (NTP's first sync
    on a board without a real-time clock steps it by months), which would make a live launcher
    look like another process. Elsewhere ``create_time`` is stored when the process starts and
    does not move: seconds since the epoch.
    """
    try:
        if sys.platform.startswith("linux"):
            boot = psutil.boot_time()   # first: psutil < 6 computes create_time from the last one
            return psutil.Process(pid).create_time() - boot
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def same_process(recorded: float, current: float | None) -> bool:
    """Is the process now at a run's pid (started at ``current``, None if there is none) the
    launcher that published ``recorded``? A process that took over the pid started after it."""
    return current is not None and current <= recorded + START_TOLERANCE


@dataclass
class RunDir:
    """The folder of one run. Create with :meth:`create`; remove with :meth:`remove`."""

    path: Path

    @staticmethod
    def create(name: str = "run") -> "RunDir":
        remove_stale_runs()
        root = runs_root()
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        _check_private(root)
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in name)[:24]
        path = root / f"{safe}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        path.mkdir(mode=0o700)
        return RunDir(path)

    def endpoint(self, label: str) -> str:
        """A fresh ``ipc://`` endpoint inside this folder (kept short: unix socket paths are
        limited to about 107 bytes)."""
        return f"ipc://{self.path / label}.sock"

    def publish(self, registry: str, name: str, *, mode: str | None = None,
                record: str | os.PathLike | None = None) -> dict[str, Any]:
        """Write run.json so that introspection tools and stale-run cleanup can find this run;
        returns what was written (``id``: the name ``--run`` matches, unique among live runs)."""
        info = {"pid": os.getpid(), "created": process_start_time(os.getpid()),
                "registry": registry, "name": name, "mode": mode, "started": time.time(),
                "record": os.path.realpath(record) if record is not None else None}
        # Two runs started at the same moment may pick the same id; the later one (by start
        # time, then pid) picks again once both are published.
        for _ in range(2):
            others = [r for r in running_runs() if r["folder"] != str(self.path)]
            info["id"] = _unique_id(name, {r["id"] for r in others})
            self._write(info)
            if not _earlier_with_id(info, running_runs()):
                break
        return dict(info, folder=str(self.path))

    def _write(self, info: dict[str, Any]) -> None:
        tmp = self.path / (RUN_FILE + ".tmp")
        tmp.write_text(json.dumps(info))
        tmp.replace(self.path / RUN_FILE)

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def _check_private(root: Path) -> None:
    """The runs folder must be this user's own, readable by nobody else (it holds every run's
    ipc sockets): one made by someone else in a shared temporary folder is refused, a lax mode
    is tightened."""
    info = root.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise CatbusError(f"{root} is not a folder of this user (owner uid {info.st_uid}); "
                          f"remove it, or set TMPDIR to a private folder")
    if stat.S_IMODE(info.st_mode) & 0o077:
        os.chmod(root, 0o700)


def _owner_alive(folder: Path) -> bool:
    try:
        info = json.loads((folder / RUN_FILE).read_text())
        return same_process(float(info["created"]), process_start_time(int(info["pid"])))
    except (OSError, ValueError, KeyError, TypeError):
        # No run.json yet, or one without `created`: the owner is the pid in the folder name, if
        # that process still exists.
        try:
            pid = int(folder.name.rsplit("-", 2)[-2])
        except (ValueError, IndexError):
            return False
        return process_start_time(pid) is not None


def remove_stale_runs() -> list[Path]:
    """Remove run folders whose launcher is dead; returns what was removed."""
    removed = []
    root = runs_root()
    if not root.is_dir():
        return removed
    for folder in root.iterdir():
        if folder.is_dir() and not _owner_alive(folder):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def _unique_id(name: str, taken: set[str]) -> str:
    if name not in taken:
        return name
    n = 2
    while f"{name}-{n}" in taken:
        n += 1
    return f"{name}-{n}"


def _order(info: dict[str, Any]) -> tuple[float, int]:
    return (float(info.get("started") or 0.0), int(info.get("pid") or 0))


def _earlier_with_id(info: dict[str, Any], runs: list[dict]) -> bool:
    """Does another live run with the same id predate ``info``?"""
    return any(r["id"] == info.get("id") and r.get("pid") != info["pid"] and
               _order(r) < _order(info) for r in runs)


def running_runs() -> list[dict]:
    """run.json of every live run on this machine, newest first (``id`` and ``folder``
    filled in also for runs of older catbus versions)."""
    found = []
    root = runs_root()
    if root.is_dir():
        for folder in root.iterdir():
            run_file = folder / RUN_FILE
            if run_file.is_file() and _owner_alive(folder):
                try:
                    info = json.loads(run_file.read_text())
                except ValueError:
                    continue
                if not isinstance(info, dict):
                    continue
                info["folder"] = str(folder)
                info["mtime"] = run_file.stat().st_mtime
                info.setdefault("id", info.get("name") or folder.name)
                info.setdefault("started", info["mtime"])
                found.append(info)
    return sorted(found, key=lambda info: (info["started"], info["mtime"]), reverse=True)


def describe_run(info: dict[str, Any]) -> str:
    """``demo (pid 123, parallel, ipc://...)``: a live run in one phrase."""
    details = [f"pid {info.get('pid')}"] + ([str(info["mode"])] if info.get("mode") else [])
    return f"{info['id']} ({', '.join(details)}, {info.get('registry')})"


def select_run(name: str | None, runs: list[dict] | None = None) -> dict[str, Any]:
    """The live run ``--run name`` means (an exact id, else a unique id prefix, else a pid);
    without a name, the only live run. Raises :class:`CatbusError` (exit 2) when there is no
    such run, or several and no way to choose: it never guesses."""
    runs = running_runs() if runs is None else runs
    hint = ("start one with `catbus launch FILE`, or name a registry elsewhere with --bus ADDR")
    if not runs:
        raise CatbusError(f"no catbus run is running on this machine; {hint}")
    listed = "; ".join(describe_run(r) for r in runs)
    if name is None:
        if len(runs) == 1:
            return runs[0]
        raise CatbusError(f"{len(runs)} catbus runs are running, choose one with --run NAME "
                          f"(or --bus ADDR): {listed}")
    matches = ([r for r in runs if r["id"] == name] or
               [r for r in runs if str(r["id"]).startswith(name)] or
               [r for r in runs if str(r.get("pid")) == name])
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise CatbusError(f"--run {name}: no running run is named so (running: {listed})")
    raise CatbusError(f"--run {name}: matches {len(matches)} runs, give more of the name or "
                      f"the pid: {'; '.join(describe_run(r) for r in matches)}")


def claim_record(record: str | os.PathLike | None, *, own: dict[str, Any] | None = None,
                 where: str = "", say: Callable[[str], None] | None = None) -> None:
    """Refuse (:class:`ConfigError`, exit 2) to write ``record`` while another live run writes
    it (the earlier one keeps it: ``own`` is this run's published run.json, if it has one);
    with ``say``, tell that an existing, finished recording is overwritten."""
    if record is None:
        return
    path = os.path.realpath(record)
    for other in running_runs():
        if other.get("record") != path:
            continue
        if own is not None and (other["folder"] == own.get("folder") or
                                _order(other) > _order(own)):
            continue
        raise ConfigError(where, "record", f"{path} is being written by the live run "
                          f"{describe_run(other)}; record elsewhere (--record PATH), or stop "
                          f"that run first")
    if say is not None and os.path.exists(path):
        say(f"catbus: overwriting the recording {path} (of an earlier, finished run)")


def stderr_line(text: str) -> None:
    print(text, file=sys.stderr, flush=True)
