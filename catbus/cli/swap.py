"""``catbus swap NAME [module:Class] [--param k=v ...] [--run NAME | --bus ADDR]``: replace a
running node by a new process, without stopping the run (see :mod:`catbus.launch.swaps`)."""

from __future__ import annotations

import argparse
import sys
from typing import Any, Callable

SWAP_DESCRIPTION = """\
Replace the running node NAME by a new process -- of the same class with other parameters, or
of another class that declares the same inputs and outputs -- while the rest of the run goes
on. The run's launcher starts the replacement; it connects, takes over between two steps
(stepped: no tick lost or repeated; parallel: the gap is measured), then the old process stops.
If the replacement fails to start or before its first step, the old process goes on and this
command says why (exit 1). A node with snapshot()/restore() hands its state over.

  catbus swap robot --param safe_controller=Unsafe
  catbus swap robot mypkg.agents:Other --run flat_evade
"""


def add_parser(commands: Any, add_run_choice: Callable[..., None]) -> None:
    p = commands.add_parser("swap", help="replace a running node (hot swap)",
                            description=SWAP_DESCRIPTION,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", help="the node to replace")
    p.add_argument("cls", nargs="?", default="", metavar="module:Class",
                   help="the replacement's class (default: the node's own)")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="parameter of the replacement, on top of the launch file's "
                        "(repeatable; KEY may be dotted: safe.d_min=20)")
    add_run_choice(p, "registry address (default: the run on this machine)")
    p.add_argument("--timeout", type=float, default=60.0, metavar="S",
                   help="seconds to wait for the swap to be done (default 60)")
    p.set_defaults(func=cmd_swap)


def cmd_swap(args: argparse.Namespace) -> int:
    from catbus import params as params_mod
    from catbus.cli.introspect import _say_run, find_run
    from catbus.launch.swapclient import request_swap

    overrides: dict = {}
    for assignment in args.param:
        parts, value = params_mod.parse_assignment(assignment, where="--param")
        overrides = params_mod.deep_merge(overrides, params_mod.nest(parts, value))
    run = find_run(args.bus, args.run)
    _say_run(run)
    print(f"catbus: swapping {args.name} ...", file=sys.stderr, flush=True)
    from catbus.security import load_option

    reply = request_swap(run["registry"], args.name, args.cls, overrides, timeout=args.timeout,
                         keys=load_option(args.keys))
    print(f"swapped: {reply.message}")
    return 0
