"""Running a checked launch spec to its end -- inline, or as processes under a launcher -- and
scoring its recording: what :func:`catbus.run` and a :class:`~catbus.api.handle.RunHandle`'s
thread both do once the spec is checked."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from catbus.api.result import RunResult
from catbus.errors import ConfigError
from catbus.spec.launchfile import LaunchSpec


def check_timing(*, deadline: float | None = None, remote_timeout: float | None = None,
                 rejoin_timeout: float | None = None, where: str = "command line") -> None:
    """Refuse (ConfigError, exit 2) a ``deadline`` or ``remote_timeout`` that is not a finite
    number of seconds above 0 (``--deadline 0`` failed every run at once)."""
    import math

    for name, value in (("deadline", deadline), ("remote-timeout", remote_timeout),
                        ("rejoin-timeout", rejoin_timeout)):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                not math.isfinite(value) or value <= 0:
            field = f"--{name}" if where == "command line" else name.replace("-", "_")
            raise ConfigError(where, field, f"must be a number of seconds above 0, got {value!r}")


def execute(spec: LaunchSpec, *, progress: bool | None = False, deadline: float = 30.0,
            remote_timeout: float = 120.0, evaluate: bool = True, launcher: Any = None,
            stop: threading.Event | None = None, log_level: str | None = None,
            rejoin_timeout: float | None = None) -> RunResult:
    """Run a checked spec to its end (what :func:`run` does after :func:`load`).

    ``launcher``: a :class:`~catbus.supervise.launcher.Launcher` already built for ``spec``
    (parallel and stepped; :class:`~catbus.api.handle.RunHandle` keeps it to stop the run).
    ``stop``: inline mode, an event that ends the run between two steps, as Ctrl-C would.
    ``log_level``: as for :func:`run` (None: WARNING); a ``launcher`` given has its own.
    """
    check_timing(deadline=deadline, remote_timeout=remote_timeout,
                 rejoin_timeout=rejoin_timeout, where="")
    if spec.mode == "inline":
        from catbus.supervise.inline import run_inline

        result = run_inline(spec, progress=progress, deadline=deadline, stop=stop,
                            log_level=log_level)
    else:
        if launcher is None:
            from catbus.supervise.launcher import Launcher

            launcher = Launcher(spec, progress=progress, deadline=deadline,
                                remote_timeout=remote_timeout, log_level=log_level,
                                rejoin_timeout=rejoin_timeout)
        result = launcher.run()
    if evaluate and spec.record is not None and not result.interrupted:
        evaluated = _scores(spec.record)
        if evaluated:
            # The evaluator's keys win over reported ones of the same name (docs/design.md,
            # "Scores").
            result.scores = {**(result.scores or {}), **evaluated}
    return result


def _scores(record: Path) -> dict[str, Any] | None:
    """The scores of the evaluator(s) the recording names (None: none named, or it failed)."""
    from catbus.errors import CatbusError
    from catbus.recording.evaluate import evaluator_scores

    try:
        return evaluator_scores(record) or None
    except CatbusError:
        return None


__all__ = ["execute", "check_timing"]
