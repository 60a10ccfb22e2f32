"""What every ``catbus`` command shares: the exit codes, SIGTERM handling, the options several
commands take, and how results and errors are printed.

It imports nothing heavy (no ZeroMQ, numpy or MCAP): every command module imports it at parse
time, and ``catbus --help`` or ``catbus run list`` should not pay for a run's libraries.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import threading
from typing import Any, Iterator

from catbus.wire.protocol import MODES

EXIT_CODES = """\
exit codes:
  0    done (a run ended at its duration, steps or episode end; topic echo/hz: the run ended)
  1    a node failed, got stuck or lost its run; a remote node or the start timed out
  2    wrong usage, launch file or parameter; no run to look at
  130  interrupted by Ctrl-C (SIGINT)
  143  stopped by SIGTERM (kill, timeout, systemd); also a node process stopped by it
"""

#: The help formatter of commands whose description or epilog is laid out by hand.
RAW = argparse.RawDescriptionHelpFormatter

#: Signals that reached this process through :func:`_on_sigterm` (SIGTERM).
_signals: list[int] = []


def _on_sigterm(signum: int, frame: Any) -> None:
    """SIGTERM stops a command as Ctrl-C does (its cleanup runs); the exit code tells them
    apart. While a run is launched, the launcher has its own handler."""
    _signals.append(signum)
    raise KeyboardInterrupt


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """While a command runs, SIGTERM raises KeyboardInterrupt as Ctrl-C does, so every command
    cleans up the same way; :func:`interrupt_exit_code` then tells which signal it was."""
    _signals.clear()
    try:
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:   # not the main thread (main() called from a thread): leave SIGTERM be
        previous = None
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def interrupts_set(event: threading.Event) -> Iterator[None]:
    """While a run goes on in this very process (inline), Ctrl-C and SIGTERM also set ``event``
    (the run's stop, looked at between two steps) before they raise KeyboardInterrupt as
    before: node code that swallows the exception (a bare ``except:``, in a library it calls)
    no longer makes the run ignore its one signal. Outside the main thread nothing changes."""
    handlers = {}
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous = signal.getsignal(sig)
            if previous == signal.SIG_IGN:   # (a background job's Ctrl-C): still ignored
                continue

            def on_signal(signum: int, frame: Any, previous: Any = previous) -> None:
                event.set()
                if callable(previous):
                    previous(signum, frame)
                else:
                    raise KeyboardInterrupt

            handlers[sig] = signal.signal(sig, on_signal)
    except ValueError:   # not the main thread
        pass
    try:
        yield
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)


def interrupt_exit_code(signum: int | None = None) -> int:
    """128 + the signal that interrupted the command: SIGTERM if one came, else SIGINT."""
    if signum is None:
        signum = _signals[-1] if _signals else signal.SIGINT
    return 128 + int(signum)


# -- options ---------------------------------------------------------------------------------------
def _log_level_type(value: str) -> str:
    from catbus.runtime.logs import argparse_level

    return argparse_level(value)


def add_log_level(parser: argparse.ArgumentParser, default: str | None) -> None:
    """``--log-level``; ``default`` None: the run's level (a node joining a run)."""
    said = (f"default {default}" if default else
            "default: the run's level, which `catbus launch --log-level` sets, else INFO")
    parser.add_argument("--log-level", type=_log_level_type, default=default, metavar="LEVEL",
                        help="DEBUG, INFO, WARNING or ERROR (any case): nodes' self.log records "
                             "at this level and above go to stderr as `[NODE] LEVEL message` "
                             f"and into the recording (catbus/log) ({said})")


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """How a launch file runs: ``--mode``, ``--steps``/``--duration``, ``--seed``, ``--set``,
    ``--arg`` (``catbus launch``, ``catbus verify``)."""
    parser.add_argument("--mode", choices=MODES, help="how nodes run (default: the file's mode, "
                        "else parallel)")
    end = parser.add_mutually_exclusive_group()
    end.add_argument("--steps", type=int, help="environment steps after the reset")
    end.add_argument("--duration", type=float, help="seconds (sim time; wall time in parallel)")
    parser.add_argument("--seed", type=int, help="run seed (default: the file's, else 0)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="NODE.PARAM=VALUE", help="override a node parameter "
                        "(repeatable), e.g. --set robot.safe_controller=Unsafe")
    add_arg_option(parser)


def add_arg_option(parser: argparse.ArgumentParser) -> None:
    """``--arg NAME=VALUE``: a value for the launch file's ``args:`` (``catbus launch``,
    ``verify``, ``sweep``)."""
    parser.add_argument("--arg", dest="launch_args", action="append", default=[],
                        metavar="NAME=VALUE", help="set an argument the launch file declares "
                        "under args: (repeatable; VALUE read as YAML), used as $(arg NAME) in "
                        "the file")


def add_run_choice(parser: argparse.ArgumentParser, bus_help: str) -> None:
    """Which live run a command talks to: ``--bus``, ``--run``, and ``--keys`` for a secured
    one (see :func:`catbus.client.find_run`)."""
    parser.add_argument("--bus", metavar="ADDR", help=bus_help)
    parser.add_argument("--run", metavar="NAME", help="the run on this machine to talk to: its "
                        "name in `catbus run list` (a unique prefix, or the launcher's pid, "
                        "will do); needed when several runs are running")
    add_keys(parser)


def add_keys(parser: argparse.ArgumentParser) -> None:
    """``--keys DIR``: CURVE keys of a secured TCP run."""
    parser.add_argument("--keys", metavar="DIR", help="CURVE keys for a secured TCP run: a "
                        "folder from `catbus keys generate` (on another host: its clients/NAME "
                        "folder)")


# -- output ----------------------------------------------------------------------------------------
def print_result(result: Any, *, as_json: bool) -> None:
    """A finished run on stdout: its summary as JSON, or the table, the recording and the
    scores (``catbus launch``, ``catbus play``)."""
    from catbus.recording.evaluate import format_table

    if as_json:
        print(json.dumps(result.summary, default=str, indent=2))
        return
    print(result.table())
    if result.record is not None:
        print(f"recorded: {result.record}")
    if result.scores:
        print("scores:")
        print("\n".join(f"  {line}" for line in format_table(result.scores).splitlines()))


def print_json(data: Any) -> None:
    """``data`` on stdout as indented JSON (what is not JSON, e.g. a path, as its string)."""
    print(json.dumps(data, default=str, indent=2))


def json_error(error: str, exit_code: int, **extra: Any) -> None:
    """``--json`` and a failure: still one JSON object on stdout, ``{"error", "exit_code"}``
    (a failed run adds its ``summary`` so far)."""
    data = {"error": error, "exit_code": exit_code,
            **{k: v for k, v in extra.items() if v is not None}}
    try:
        print(json.dumps(data, default=str, indent=2), flush=True)
    except BrokenPipeError:
        pass


def say_run(run: dict[str, Any], graph: dict[str, Any] | None = None) -> None:
    """One line on stderr naming the run a tool talks to (stdout stays the tool's data).
    ``run``: a :func:`catbus.client.find_run` result; ``graph``: what its registry said."""
    name = run.get("name") or (graph or {}).get("run") or "?"
    mode = run.get("mode") or (graph or {}).get("mode")
    pid = f"pid {run['pid']}, " if run.get("pid") else ""
    print(f"catbus: run {name} ({pid}mode {mode or '?'}) on {run['registry']}",
          file=sys.stderr, flush=True)
