"""``catbus foxglove``: serve the topics of a running run to the Foxglove app (the bridge itself:
:mod:`catbus.recording.foxglove_bridge`)."""

from __future__ import annotations

import argparse
from typing import Any

from catbus.cli.common import EXIT_CODES, RAW, add_run_choice


def add_parser(commands: Any) -> None:
    """Add ``foxglove`` to the ``catbus`` subcommands (``commands`` from ``add_subparsers``)."""
    p = commands.add_parser("foxglove", help="serve the topics of a running run to the Foxglove "
                            "app (WebSocket); ends when the run ends", epilog=EXIT_CODES,
                            formatter_class=RAW)
    add_run_choice(p, "registry address (default: the run on this machine)")
    p.add_argument("--port", type=int, default=8765, help="WebSocket port (default 8765; 0: a "
                   "free one)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default "
                   "127.0.0.1)")
    p.set_defaults(func=cmd_foxglove)


def cmd_foxglove(args: argparse.Namespace) -> int:
    """Serve until the run ends (0) or a signal stops the bridge (130/143)."""
    from catbus.recording.foxglove_bridge import serve

    return serve(bus=args.bus, run=args.run, port=args.port, host=args.host, keys=args.keys)
