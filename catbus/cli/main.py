"""``catbus`` command line: a thin layer over the Python API.

This module only assembles the subcommands (each one's parser and handler live in its own
module: :mod:`catbus.cli.launch`, :mod:`~catbus.cli.node`, ...) and runs one.

Every command turns a :class:`~catbus.errors.CatbusError` into one line on stderr and a non-zero
exit code; a traceback is shown only for bugs in catbus itself and for failing nodes (whose
traceback is the point).

Exit codes (the same for every command, see :data:`~catbus.cli.common.EXIT_CODES`): 0 done; 1 a
node failed, got stuck or lost its run, or something waited for did not come in time; 2 a usage,
launch-file or parameter mistake, or no run to look at; 130 interrupted by Ctrl-C (SIGINT) and
143 stopped by SIGTERM -- 128 + the signal, the shell's convention. SIGTERM stops every command
as gracefully as Ctrl-C does (a run stops its nodes and finishes its recording).
"""

from __future__ import annotations

import argparse
import signal
import sys
from typing import Sequence

from catbus.cli import bus, conformance, foxglove, info, keys, launch, node, param, play, \
    recording, reproduce, runs, swap, sweep, topic
from catbus.cli.common import EXIT_CODES, RAW, interrupt_exit_code, json_error, \
    sigterm_as_interrupt
from catbus.errors import CatbusError, NodeFailed


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("catbus")
    except Exception:   # not installed (a source tree on sys.path)
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    """The ``catbus`` parser with every subcommand, in the order ``catbus --help`` lists them."""
    parser = argparse.ArgumentParser(
        prog="catbus", description="Benchmark agents against simulated environments: nodes "
        "exchanging topics over ZeroMQ, run in parallel, stepped or inline mode.",
        epilog=EXIT_CODES, formatter_class=RAW)
    parser.add_argument("--version", action="version", version=f"catbus {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    launch.add_parser(commands)
    node.add_parser(commands)
    swap.add_parser(commands)
    param.add_parser(commands)
    play.add_parser(commands)
    reproduce.add_parser(commands)
    bus.add_parser(commands)
    keys.add_parser(commands)
    runs.add_parser(commands)
    topic.add_parser(commands)
    info.add_parser(commands)
    recording.add_eval_parser(commands)
    recording.add_export_parser(commands)
    foxglove.add_parser(commands)
    recording.add_plot_parser(commands)
    sweep.add_parser(commands)
    recording.add_verify_parser(commands)
    conformance.add_parser(commands)
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """``argv`` parsed. Words argparse leaves over go to the command's ``take_extra`` if it has
    one (``swap``: its class after the options, which argparse does not take); else, as ever,
    ``unrecognized arguments`` (exit 2)."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        take_extra = getattr(args, "take_extra", None)
        if take_extra is None:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args = take_extra(args, extra)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command ``argv`` (default: ``sys.argv[1:]``) and return its exit code."""
    args = parse_args(argv)
    as_json = bool(getattr(args, "json", False))
    with sigterm_as_interrupt():
        try:
            return int(args.func(args) or 0)
        except NodeFailed as exc:
            print(f"catbus: {exc}", file=sys.stderr)
            if as_json:
                result = getattr(exc, "result", None)
                json_error(str(exc).splitlines()[0], exc.exit_code,
                           summary=getattr(result, "summary", None))
            return exc.exit_code
        except CatbusError as exc:
            print(f"catbus: {exc}", file=sys.stderr)
            if as_json:
                json_error(str(exc), exc.exit_code)
            return exc.exit_code
        except KeyboardInterrupt:
            code = interrupt_exit_code()
            said = "stopped by SIGTERM" if code == 128 + signal.SIGTERM else "interrupted"
            print(f"catbus: {said}", file=sys.stderr)
            if as_json:
                json_error(said, code)
            return code
        except BrokenPipeError:
            # `catbus topic echo ... | head`: the reader left; that is not an error.
            sys.stderr.close()
            return 0


if __name__ == "__main__":
    sys.exit(main())
