"""Private run folders for ``ipc://`` endpoints, their cleanup, and finding running runs.

Each run owns ``<tmp>/catbus-<uid>/<run-id>/`` (mode 0700) holding its ipc socket files and a
``run.json`` with the launcher's pid, its start time and the registry endpoint. The folder is
removed when the run ends; a launcher killed with SIGKILL cannot do that, so every new run removes
folders whose launcher is no longer alive (pid *and* process start time are compared, so a reused
pid does not keep a stale folder alive). ``catbus topic ...`` finds the running runs the same way.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

RUN_FILE = "run.json"


def runs_root() -> Path:
    return Path(tempfile.gettempdir()) / f"catbus-{os.getuid()}"


def process_start_time(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (field 22 of /proc/PID/stat), or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            text = stat.read().decode(errors="replace")
    except OSError:
        return None
    return text[text.rfind(")") + 2:].split()[19]


@dataclass
class RunDir:
    """The folder of one run. Create with :meth:`create`; remove with :meth:`remove`."""

    path: Path

    @staticmethod
    def create(name: str = "run") -> "RunDir":
        remove_stale_runs()
        root = runs_root()
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in name)[:24]
        path = root / f"{safe}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        path.mkdir(mode=0o700)
        return RunDir(path)

    def endpoint(self, label: str) -> str:
        """A fresh ``ipc://`` endpoint inside this folder (kept short: unix socket paths are
        limited to about 107 bytes)."""
        return f"ipc://{self.path / label}.sock"

    def publish(self, registry: str, name: str) -> None:
        """Write run.json so that introspection tools and stale-run cleanup can find this run."""
        info = {"pid": os.getpid(), "start": process_start_time(os.getpid()),
                "registry": registry, "name": name}
        tmp = self.path / (RUN_FILE + ".tmp")
        tmp.write_text(json.dumps(info))
        tmp.replace(self.path / RUN_FILE)

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def _owner_alive(folder: Path) -> bool:
    try:
        info = json.loads((folder / RUN_FILE).read_text())
        return process_start_time(int(info["pid"])) == info["start"]
    except (OSError, ValueError, KeyError, TypeError):
        # No run.json yet: the owner is the pid in the folder name, if that process still exists.
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


def running_runs() -> list[dict]:
    """run.json of every live run on this machine, newest first."""
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
                info["folder"] = str(folder)
                info["mtime"] = run_file.stat().st_mtime
                found.append(info)
    return sorted(found, key=lambda info: info["mtime"], reverse=True)
