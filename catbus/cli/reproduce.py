"""``catbus reproduce RUN.mcap``: a recorded parallel run stepped again in this process, from
its step log; bit for bit, or as a what-if under the same timing (``--set``, ``--swap``). See
docs/reproduce.md. The library is :mod:`catbus.reproduce`; this module only parses and prints.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from catbus.cli.common import EXIT_CODES, RAW
from catbus.errors import ConfigError


def add_parser(commands: Any) -> argparse.ArgumentParser:
    """Add ``reproduce`` to the ``catbus`` subcommands (``commands`` from ``add_subparsers``)."""
    p = commands.add_parser(
        "reproduce", help="step a recorded parallel run again in one process, bit for bit or "
        "as a what-if", epilog=EXIT_CODES, formatter_class=RAW,
        description="Rebuild every node of RUN.mcap's launch document and step each at its "
        "recorded cycles and times,\nfed exactly the input messages it consumed (the "
        "recording's catbus/steps log).\nWithout --set/--swap every message is compared with "
        "the recorded one (exit 1 if one differs);\nwith them, the changed nodes' outputs are "
        "computed anew under the same timing (a what-if).")
    p.add_argument("file", help="an MCAP recording of a parallel run (catbus launch --record)")
    p.add_argument("--record", metavar="OUT.mcap", help="record the run computed again")
    p.add_argument("--set", dest="overrides", action="append", default=[],
                   metavar="NODE.PARAM=VALUE", help="what-if: another parameter value "
                   "(repeatable), e.g. --set robot.safe_controller=Unsafe")
    p.add_argument("--swap", dest="swaps", action="append", default=[],
                   metavar="NODE=module:Class", help="what-if: another class for a node "
                   "(repeatable; same inputs and outputs)")
    p.set_defaults(func=cmd_reproduce)
    return p


def parse_swaps(values: list[str]) -> dict[str, str]:
    """``NODE=module:Class`` strings as a mapping; a malformed one is a :class:`ConfigError`."""
    swaps = {}
    for value in values:
        name, _, class_path = value.partition("=")
        if not name or ":" not in class_path:
            raise ConfigError("--swap", value, "write NODE=module:Class, e.g. "
                              "--swap robot=nodes.flat_evade.agent:ModelBasedAgent")
        swaps[name.strip()] = class_path.strip()
    return swaps


def cmd_reproduce(args: argparse.Namespace) -> int:
    """Reproduce (or what-if) and report; 0 when reproduced (or the what-if ran), 1 when a
    message differs, 2 for bad input."""
    from catbus.reproduce.api import describe, reproduce

    swaps = parse_swaps(args.swaps)
    what_if = bool(args.overrides or swaps)
    outcome = reproduce(args.file, overrides=args.overrides, swaps=swaps, record=args.record)
    lines = describe(outcome, what_if)
    print(lines[0])
    for line in lines[1:]:
        print(f"catbus reproduce: {line}", file=sys.stderr)
    return 0 if what_if or outcome.exact else 1


__all__ = ["add_parser", "cmd_reproduce", "parse_swaps"]
