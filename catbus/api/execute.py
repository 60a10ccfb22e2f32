"""Running a checked launch spec to its end -- inline, or as processes under a launcher -- and
scoring its recording: what :func:`catbus.run` and a :class:`~catbus.api.handle.RunHandle`'s
thread both do once the spec is checked.

``one_per_process``: a node class may say its simulator allows one simulation per process
(``one_per_process = True``). Parallel and stepped runs give every node a process of its own
anyway. An inline run would put the simulation in the calling process, so the first inline run
of such a launch runs here as usual, and every later one in this process (whose simulator is
used up) runs inline in a child process: a fresh interpreter (never a fork, which would inherit
the used simulator), started with this process's import path, that runs the same spec and
hands back its result or its error. The caller sees no difference but the start-up time; Ctrl-C
and ``stop`` end the child's run between two steps, as they end an inline run here.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

from catbus.api.result import RunResult
from catbus.errors import ConfigError, NodeFailed, RunTimeout
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
            rejoin_timeout: float | None = None, insecure: bool = False) -> RunResult:
    """Run a checked spec to its end (what :func:`run` does after :func:`load`).

    ``launcher``: a :class:`~catbus.supervise.launcher.Launcher` already built for ``spec``
    (parallel and stepped; :class:`~catbus.api.handle.RunHandle` keeps it to stop the run).
    ``stop``: inline mode, an event that ends the run between two steps, as Ctrl-C would.
    ``log_level``: as for :func:`run` (None: WARNING); a ``launcher`` given has its own.
    """
    check_timing(deadline=deadline, remote_timeout=remote_timeout,
                 rejoin_timeout=rejoin_timeout, where="")
    if spec.mode == "inline":
        own = one_per_process_classes(spec)
        if own and _simulated_here and not _is_own_process:   # used up: a fresh process
            return _execute_in_child(spec, own, progress=progress, deadline=deadline,
                                     evaluate=evaluate, stop=stop, log_level=log_level)
        from catbus.supervise.inline import run_inline

        if own:
            _simulated_here.update(own)
        result = run_inline(spec, progress=progress, deadline=deadline, stop=stop,
                            log_level=log_level)
    else:
        if launcher is None:
            from catbus.supervise.launcher import Launcher

            launcher = Launcher(spec, progress=progress, deadline=deadline,
                                remote_timeout=remote_timeout, log_level=log_level,
                                rejoin_timeout=rejoin_timeout, insecure=insecure)
        result = launcher.run()
    if evaluate and spec.record is not None and not result.interrupted:
        evaluated = _scores(spec.record)
        if evaluated:
            # The evaluator's keys win over reported ones of the same name (docs/design.md,
            # "Scores").
            result.scores = {**(result.scores or {}), **evaluated}
    return result


#: The ``one_per_process`` classes whose simulation this process has run inline.
_simulated_here: set[str] = set()
#: True in the child of :func:`_execute_in_child`: it runs its one run here, never in a child.
_is_own_process = False


def one_per_process_classes(spec: LaunchSpec) -> list[str]:
    """``module.Class`` of every node class of ``spec`` that sets ``one_per_process``."""
    return [f"{n.node_class.__module__}.{n.node_class.__qualname__}" for n in spec.nodes
            if getattr(n.node_class, "one_per_process", False)]


def _execute_in_child(spec: LaunchSpec, own: list[str], *, progress: bool | None,
                      deadline: float, evaluate: bool, stop: threading.Event | None,
                      log_level: str | None) -> RunResult:
    """Run the inline ``spec`` in a fresh Python process (see the module documentation) and
    return its result, or raise its error, as if it had run here."""
    import json

    try:
        request = pickle.dumps({"spec": spec, "progress": progress, "deadline": deadline,
                                "evaluate": evaluate, "log_level": log_level})
    except Exception as exc:   # a node class defined in __main__ or in a function
        raise ConfigError(str(spec.path or "<launch>"), "mode",
                          f"{', '.join(own)} set one_per_process and this process has run one "
                          f"simulation already, so this inline run needs a process of its own, "
                          f"and its launch cannot be sent to one ({type(exc).__name__}: {exc}); "
                          f"define the node classes in an importable module, or use mode "
                          f"stepped") from None
    folder = Path(tempfile.mkdtemp(prefix="catbus-own-"))
    interrupted = False
    try:
        (folder / "path").write_text(json.dumps([os.fspath(p) for p in sys.path]))
        (folder / "request").write_bytes(request)
        command = [sys.executable, "-c",
                   "from catbus.api.execute import _child_main; _child_main()", str(folder)]
        child = subprocess.Popen(command)
        try:
            while True:
                try:
                    child.wait(timeout=0.1)
                    break
                except subprocess.TimeoutExpired:
                    # Signalled once its handlers are set (it says so): a signal that came
                    # earlier would kill it instead of stopping its run.
                    if stop is not None and stop.is_set() and (folder / "ready").exists():
                        child.send_signal(signal.SIGTERM)
                        stop = None          # once; then wait for the graceful end
        except KeyboardInterrupt:
            interrupted = True
            child.send_signal(signal.SIGINT)  # in case the terminal's Ctrl-C did not reach it
            child.wait()
        answer = folder / "answer"
        if interrupted and not answer.is_file():
            raise KeyboardInterrupt
        if not answer.is_file():
            raise NodeFailed(f"the run's own process (one_per_process: {', '.join(own)}) "
                             f"exited with code {child.returncode} before it finished")
        kind, payload = pickle.loads(answer.read_bytes())
    finally:
        for leftover in folder.iterdir():
            leftover.unlink()
        folder.rmdir()
    if interrupted:   # as for an inline run here: the KeyboardInterrupt goes through
        raise KeyboardInterrupt
    if kind == "result":
        return RunResult(spec=spec, **payload)
    raise _rebuild_error(payload, spec)


def _child_main() -> None:
    """The child of :func:`_execute_in_child`: run the request in its folder (``argv[1]``),
    write the answer there. Ctrl-C and SIGTERM end the run between two steps."""
    import json

    from catbus.runtime.signals import die_with_parent
    from catbus.spec.imports import use_import_path

    global _is_own_process
    _is_own_process = True
    folder = Path(sys.argv[1])
    die_with_parent(signal.SIGTERM)
    stop = threading.Event()
    stopped: list[int] = []

    def on_signal(signum: int, _: Any) -> None:
        stopped.append(signum)
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    (folder / "ready").touch()
    answer: tuple[str, Any]
    try:
        # The parent's import path first: unpickling the spec imports its node classes.
        use_import_path(json.loads((folder / "path").read_text()))
        request = pickle.loads((folder / "request").read_bytes())
        spec = request["spec"]
        result = execute(spec, progress=request["progress"], deadline=request["deadline"],
                         evaluate=request["evaluate"], stop=stop,
                         log_level=request["log_level"])
        answer = ("result", _result_fields(result))
    except BaseException as exc:   # every error goes back to the caller, as if raised there
        answer = ("error", _error_payload(exc))
    try:
        data = pickle.dumps(answer)
    except Exception:   # an unpicklable part: its text still explains it
        data = pickle.dumps(("error", {"type": "NodeFailed", "message": str(answer[1])}))
    (folder / "answer").write_bytes(data)


def _result_fields(result: RunResult) -> dict[str, Any]:
    """A result's fields but its spec (the parent has the spec; its classes need not travel)."""
    return {f.name: getattr(result, f.name) for f in dataclasses.fields(result)
            if f.name != "spec"}


def _error_payload(exc: BaseException) -> dict[str, Any]:
    """An error of the child's run as plain data (catbus errors take their own arguments, so
    they are rebuilt rather than unpickled)."""
    if isinstance(exc, ConfigError):
        return {"type": "ConfigError", "where": exc.where, "field": exc.field,
                "message": exc.message}
    if isinstance(exc, NodeFailed):
        result = exc.result if isinstance(exc.result, RunResult) else None
        return {"type": "NodeFailed", "message": str(exc),
                "result": _result_fields(result) if result is not None else None}
    if isinstance(exc, RunTimeout):
        return {"type": "RunTimeout", "message": str(exc)}
    try:
        pickle.loads(pickle.dumps(exc))
        return {"type": "pickled", "error": exc}
    except Exception:
        return {"type": "NodeFailed", "message": f"{type(exc).__name__}: {exc}"}


def _rebuild_error(payload: dict[str, Any], spec: LaunchSpec) -> BaseException:
    """The child's error, raised in the caller as the same type with the same text."""
    kind = payload.get("type")
    if kind == "ConfigError":
        return ConfigError(payload["where"], payload["field"], payload["message"])
    if kind == "RunTimeout":
        return RunTimeout(payload["message"])
    if kind == "pickled":
        return payload["error"]
    fields = payload.get("result")
    return NodeFailed(payload["message"],
                      RunResult(spec=spec, **fields) if fields is not None else None)


def _scores(record: Path) -> dict[str, Any] | None:
    """The scores of the evaluator(s) the recording names (None: none named, or it failed)."""
    from catbus.errors import CatbusError
    from catbus.recording.evaluate import evaluator_scores

    try:
        return evaluator_scores(record) or None
    except CatbusError:
        return None


__all__ = ["execute", "check_timing", "one_per_process_classes"]
