"""``catbus conformance [options] -- COMMAND ...``: judge a node written in another language
against the protocol, check by check (the kit: :mod:`catbus.conformance`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from catbus.cli.common import RAW, print_json

DESCRIPTION = """\
Start small catbus runs around a node written in any language and say, check by check, what it
does right and wrong: PASS or FAIL with one line of reason and the section of docs/protocol.md
to read. Exit code 0 only if every chosen check passes.

COMMAND starts the node under test. In each run the kit replaces {bus} by the run's bus address
and {name} by the node's name in every word of it; the environment has the same values as
CATBUS_BUS and CATBUS_NAME. The node registers as a remote node of the kit's launch files, with
catbus nodes as its neighbours: a feeder of each input it declares (the demo talker's message,
{"count", "t", "values": float64[4]}, unless --feed), a reader of its first output, and the
recorder.

  catbus conformance -- ./mynode --bus {bus} --name {name}
  catbus conformance --only register,protocol -- python3 node.py
  catbus conformance --list
"""


def add_parser(commands: Any) -> None:
    """Add ``conformance`` to the ``catbus`` subcommands."""
    p = commands.add_parser("conformance", help="test a node in another language against the "
                            "protocol", description=DESCRIPTION, formatter_class=RAW)
    p.add_argument("--name", default="node",
                   help="the node's name in the runs ({name}; default: node)")
    p.add_argument("--only", default="", metavar="CHECK,...",
                   help="run only these checks (see --list)")
    p.add_argument("--skip", default="", metavar="CHECK,...", help="leave these checks out")
    p.add_argument("--timeout", type=float, default=20.0, metavar="S",
                   help="seconds the node gets to register and to join a run (default 20)")
    p.add_argument("--deadline", type=float, default=10.0, metavar="S",
                   help="the runs' deadline: a node or a lockstep silent this long fails the "
                        "run (default 10)")
    p.add_argument("--feed", default="catbus.conformance.nodes:Feeder", metavar="module:Class",
                   help="the catbus node class feeding each input of the node (its first "
                        "output is fed)")
    p.add_argument("--keep", type=Path, metavar="DIR",
                   help="keep the node's output and the recordings in DIR")
    p.add_argument("--list", action="store_true", help="list the checks and exit")
    p.add_argument("--json", action="store_true", help="the report as one JSON object")
    p.add_argument("command", nargs=argparse.REMAINDER, metavar="-- COMMAND",
                   help="the command that starts the node under test")
    p.set_defaults(func=cmd_conformance)


def cmd_conformance(args: argparse.Namespace) -> int:
    from catbus.conformance import CHECKS, Options, choose, run_kit
    from catbus.errors import CatbusError

    if args.list:
        for check in CHECKS:
            print(f"{check.id:<11}{check.title}  ({check.pointer})")
        return 0
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        raise CatbusError("give the node's command after --, e.g. catbus conformance -- "
                         "./mynode --bus {bus} --name {name}")
    try:
        checks = choose(_ids(args.only), _ids(args.skip))
    except ValueError as exc:
        raise CatbusError(str(exc)) from None
    if args.name in ("feeder", "reader", "recorder") or not args.name.isidentifier():
        raise CatbusError(f"--name {args.name!r}: a node name ([A-Za-z_][A-Za-z0-9_]*) other "
                         "than feeder, reader and recorder")
    options = Options(name=args.name, timeout=args.timeout, deadline=args.deadline,
                      feed=args.feed, keep=args.keep)
    report = run_kit(command, checks, options,
                     say=lambda line: print(f"catbus conformance: {line}", file=sys.stderr,
                                            flush=True))
    if args.json:
        print_json(report.to_dict())
    else:
        print("\n".join(report.lines()))
    return report.exit_code


def _ids(text: str) -> list[str]:
    return [word.strip() for word in text.split(",") if word.strip()]


__all__ = ["add_parser", "cmd_conformance"]
