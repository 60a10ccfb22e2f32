"""``catbus run list``: the runs running on this machine."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from catbus.cli.common import RAW, print_json


def add_parser(commands: Any) -> None:
    """Add ``run`` to the ``catbus`` subcommands (``commands`` from ``add_subparsers``)."""
    p = commands.add_parser("run", help="list the runs running on this machine",
                            description="list: every live run on this machine (launched or "
                            "`catbus bus`): its name (what --run\ntakes), launcher pid, start "
                            "time, mode, bus address and run folder.",
                            formatter_class=RAW)
    p.add_argument("action", choices=("list",))
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    """``catbus run list``."""
    return run_list(as_json=args.json)


def run_list(as_json: bool = False) -> int:
    """Every live run on this machine, newest first: a table, or a JSON list (``[]`` when there
    is none; the table then says so on stderr). Exit code 0 either way: no run is an answer."""
    from catbus.client import live_runs

    rows = live_runs()
    if as_json:
        print_json(rows)
        return 0
    if not rows:
        print("no catbus run is running on this machine", file=sys.stderr)
        return 0
    header = ("NAME", "PID", "STARTED", "MODE", "BUS", "FOLDER")
    table = [header] + [(r["name"], str(r["pid"]), r["started"].replace("T", " "),
                         str(r["mode"] or "-"), str(r["bus"]), r["folder"]) for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
    for row in table:
        print("  ".join([c.ljust(w) for c, w in zip(row, widths)] + [row[-1]]))
    return 0
