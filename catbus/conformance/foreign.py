"""The node under test: its command, started once per run with that run's bus and its name.

The command is a template: ``{bus}`` and ``{name}`` in any of its words are replaced (nothing
else is: a brace of a JSON argument stays as it is), and the environment carries the same
values as ``CATBUS_BUS`` and ``CATBUS_NAME``, so a node may take either. Its output goes to
files of the kit's work folder (a pipe could fill up and block it), and the kit ends only the
processes it started, by their pid.
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

BUS_PLACEHOLDER = "{bus}"
NAME_PLACEHOLDER = "{name}"
BUS_VARIABLE = "CATBUS_BUS"
NAME_VARIABLE = "CATBUS_NAME"


def fill(command: Sequence[str], bus: str, name: str) -> list[str]:
    """``command`` with ``{bus}`` and ``{name}`` replaced in every word."""
    return [word.replace(BUS_PLACEHOLDER, bus).replace(NAME_PLACEHOLDER, name)
            for word in command]


@dataclass
class Foreign:
    """One process of the node under test."""

    process: subprocess.Popen
    out: Path
    err: Path
    #: Monotonic time it was seen to have exited (None: running, or not looked at yet).
    exited_at: float | None = None

    @classmethod
    def start(cls, command: Sequence[str], bus: str, name: str, folder: Path,
              label: str) -> "Foreign":
        out, err = folder / f"{label}.out", folder / f"{label}.err"
        env = dict(os.environ, **{BUS_VARIABLE: bus, NAME_VARIABLE: name})
        with open(out, "wb") as stdout, open(err, "wb") as stderr:
            process = subprocess.Popen(fill(command, bus, name), stdout=stdout, stderr=stderr,
                                       stdin=subprocess.DEVNULL, env=env)
        return cls(process, out, err)

    @property
    def pid(self) -> int:
        return self.process.pid

    def poll(self) -> int | None:
        """Its exit code, or None while it runs."""
        code = self.process.poll()
        if code is not None and self.exited_at is None:
            self.exited_at = time.monotonic()
        return code

    def wait(self, timeout: float) -> int | None:
        """Its exit code once it exits within ``timeout`` seconds, else None (it goes on)."""
        try:
            code = self.process.wait(timeout=max(0.0, timeout))
        except subprocess.TimeoutExpired:
            return None
        self.poll()
        return code

    def kill(self) -> None:
        """End it (SIGKILL) if it is still running, and reap it."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()

    def stderr_tail(self, lines: int = 3) -> str:
        """Its last lines on stderr, joined by " | " (for a reason that names its own words)."""
        try:
            text = self.err.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(line.strip() for line in text[-lines:])


__all__ = ["Foreign", "fill", "BUS_PLACEHOLDER", "NAME_PLACEHOLDER", "BUS_VARIABLE",
           "NAME_VARIABLE"]
