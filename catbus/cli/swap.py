"""``catbus swap NAME [module:Class] [--param k=v ...] [--run NAME | --bus ADDR] [--wait]``:
replace a running node by a new process, without stopping the run (see
:mod:`catbus.control.swaps`; the client's side: :mod:`catbus.client.swap`)."""

from __future__ import annotations

import argparse
import functools
import sys
from typing import Any

from catbus.cli.common import RAW, add_run_choice, say_run

SWAP_DESCRIPTION = """\
Replace the running node NAME by a new process -- of the same class with other parameters, or
of another class (module:Class, before or after the options) that declares the same inputs and
outputs -- while the rest of the run goes on. The run's launcher starts the replacement; it
connects, takes over between two steps (stepped: no tick lost or repeated; parallel: the gap is
measured), then the old process stops. If the replacement fails to start or before its first
step, the old process goes on and this command says why (exit 1). A node with
snapshot()/restore() hands its state over.

A run that has not started yet refuses a swap; --wait waits for it to start, then asks. No run
answering at the address within 3 s, or a run that stops answering during the swap (its
launcher gone): one line, exit 2.

  catbus swap robot --param safe_controller=Unsafe
  catbus swap robot mypkg.agents:Other --run flat_evade
  catbus swap robot --bus tcp://10.0.0.1:7700 --wait mypkg.agents:Other
"""


def add_parser(commands: Any) -> None:
    """Add ``swap`` to the ``catbus`` subcommands (``commands`` from ``add_subparsers``)."""
    p = commands.add_parser("swap", help="replace a running node (hot swap)",
                            description=SWAP_DESCRIPTION, formatter_class=RAW)
    p.add_argument("name", metavar="NAME", help="the node to replace")
    p.add_argument("cls", nargs="?", default="", metavar="module:Class",
                   help="the replacement's class (default: the node's class in the launch "
                        "file); may also come after the options")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="parameter of the replacement, on top of the launch file's "
                        "(repeatable; KEY may be dotted: safe.d_min=20)")
    add_run_choice(p, "registry address (default: the run on this machine)")
    p.add_argument("--wait", action="store_true",
                   help="if the run has not started yet, wait for it to start (up to "
                        "--timeout), then swap; without it such a run refuses")
    p.add_argument("--timeout", type=float, default=60.0, metavar="S",
                   help="seconds to wait for the swap to be done (default 60); with --wait "
                        "also the longest wait for the run to start")
    p.set_defaults(func=cmd_swap, take_extra=functools.partial(_class_among_options, p))


def _class_among_options(parser: argparse.ArgumentParser, args: argparse.Namespace,
                         extra: list[str]) -> argparse.Namespace:
    """The words argparse left over: the class, given after an option (``catbus swap robot
    --run X mypkg:Other``; argparse takes positionals only before the first option)."""
    unknown = [word for word in extra if word.startswith("-")]
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    classes = ([args.cls] if args.cls else []) + extra
    if len(classes) > 1:
        parser.error(f"one replacement class at most (module:Class), not {' '.join(classes)}")
    args.cls = classes[0]
    return args


def cmd_swap(args: argparse.Namespace) -> int:
    """Ask the run for the swap and wait for it: 0 when done; a refusal or a failed
    replacement is a :class:`~catbus.client.swap.SwapFailed` (exit 1), the old process going on."""
    from catbus import params as params_mod
    from catbus.client import SwapFailed, ask_graph, find_run, request_swap
    from catbus.security import load_option

    overrides: dict = {}
    for assignment in args.param:
        parts, value = params_mod.parse_assignment(assignment, where="--param")
        overrides = params_mod.deep_merge(overrides, params_mod.nest(parts, value))
    run = find_run(args.bus, args.run)
    keys = load_option(args.keys)
    graph = ask_graph(run["registry"], keys)   # no run there: one line within 3 s
    say_run(run, {"run": graph.run, "mode": graph.mode})
    if args.wait and not graph.started:
        print(f"catbus: the run has not started yet; waiting for it (up to {args.timeout:g} s)",
              file=sys.stderr, flush=True)
    print(f"catbus: swapping {args.name} ...", file=sys.stderr, flush=True)
    try:
        reply = request_swap(run["registry"], args.name, args.cls, overrides,
                             timeout=args.timeout, keys=keys, wait=args.wait)
    except SwapFailed as exc:
        if exc.not_started and not args.wait:
            raise SwapFailed(f"{exc} (or use --wait)", not_started=True) from None
        raise
    print(f"swapped: {reply.message}")
    return 0
