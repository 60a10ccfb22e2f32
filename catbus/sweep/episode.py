"""One episode of a sweep, run inside a worker process: ``catbus.run`` turned into a row."""

from __future__ import annotations

import os
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Exit codes of a row (``exit_code``): as the shell would report the episode as a command.
EXIT_OK, EXIT_FAILED, EXIT_CONFIG, EXIT_TIMEOUT = 0, 1, 2, 124
#: Row columns a score may not take (it is then named ``score.<name>``).
RESERVED = {"setting", "seed", "steps", "wall_time_s", "dropped", "malformed", "status",
            "exit_code", "error", "end_reason", "worker_pid", "record"}


@dataclass
class Episode:
    """What a worker is asked to run. ``index``: its place in the grid."""

    index: int
    launch: Any                       # a path string or a launch dict
    setting: dict[str, Any]
    slug: str
    seed: int
    mode: str
    steps: int | None = None
    record: str | None = None         # this episode's own MCAP path, or None
    score_record: bool = False        # no record asked for, but the environment has an evaluator
    deadline: float = 30.0
    evaluate: bool = True             # score the recording with the environment's evaluator
    log_level: str = "WARNING"        # the nodes' logs at this level and above: stderr, recording
    extra: dict[str, Any] = field(default_factory=dict)

    def base_row(self) -> dict[str, Any]:
        return {"setting": self.slug, **self.setting, "seed": self.seed}


def run_episode(task: Episode) -> dict[str, Any]:
    """Run ``task`` with :func:`catbus.run`; never raises for the episode's own failures."""
    from catbus.errors import ConfigError, NodeFailed
    from catbus.api.run import run

    began = time.monotonic()
    row = task.base_row()
    record: str | bool = False
    temporary = None
    if task.record is not None:
        Path(task.record).parent.mkdir(parents=True, exist_ok=True)
        record = task.record
    elif task.score_record:
        fd, temporary = tempfile.mkstemp(prefix="episode-", suffix=".mcap")
        os.close(fd)
        record = temporary
    result = None
    try:
        result = run(task.launch, mode=task.mode, seed=task.seed, steps=task.steps,
                     overrides=task.setting, record=record, bus="ipc", progress=False,
                     deadline=task.deadline, evaluate=task.evaluate,
                     log_level=getattr(task, "log_level", "WARNING"))
        row.update(status="ok", exit_code=EXIT_OK, error=None)
        if result.interrupted:
            row.update(status="failed", exit_code=130, error="interrupted")
    except NodeFailed as exc:
        result = exc.result if getattr(exc, "result", None) is not None else None
        row.update(status="failed", exit_code=EXIT_FAILED, error=str(exc))
    except ConfigError as exc:
        row.update(status="failed", exit_code=EXIT_CONFIG, error=str(exc))
    except Exception as exc:   # a bug in a node's import, an evaluator ...: the row says so
        row.update(status="failed", exit_code=EXIT_FAILED,
                   error=f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=-3)}".strip())
    finally:
        if temporary is not None:
            try:
                os.unlink(temporary)
            except OSError:
                pass
    if result is not None:
        scores = result.scores or {}
        if row["status"] == "ok":
            taken = set(row) | RESERVED
            row.update({(f"score.{k}" if k in taken else k): v for k, v in scores.items()})
        nodes = result.nodes or {}
        clock = getattr(result.spec, "clock_node", None)
        clock = clock() if callable(clock) else clock
        row["steps"] = nodes.get(clock, {}).get("steps") if clock else None
        row["dropped"] = sum(int(s.get("dropped", 0) or 0) for s in nodes.values())
        row["malformed"] = sum(int(s.get("malformed", 0) or 0) for s in nodes.values())
        row["end_reason"] = result.end_reason
    row["wall_time_s"] = round(time.monotonic() - began, 4)
    row["worker_pid"] = os.getpid()
    row["record"] = task.record
    return row
