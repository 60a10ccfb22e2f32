"""``catbus keys generate DIR``: CURVE keys that secure a TCP run."""

from __future__ import annotations

import argparse
from typing import Any

from catbus.cli.common import RAW
from catbus.errors import ConfigError


def add_parser(commands: Any) -> None:
    """Add ``keys`` to the ``catbus`` subcommands (``commands`` from ``add_subparsers``)."""
    p = commands.add_parser(
        "keys", help="create CURVE keys that secure a TCP run",
        formatter_class=RAW,
        description="generate DIR: the bus key pair, this host's client key (allowed any node) "
        "and allow.yaml,\nall owner-only; each --node NAME=CLIENT adds clients/CLIENT/ (a key "
        "pair and the bus\npublic key: copy that folder to the host of NAME) allowed to register "
        "NAME. Run it\nagain to add clients; existing keys are kept. Then: security: {keys: DIR} "
        "in the\nlaunch file (or --keys DIR), and on the other host `catbus node ... --keys "
        "CLIENT/`.")
    p.add_argument("action", choices=("generate",))
    p.add_argument("folder", metavar="DIR", help="the keys folder (created 0700)")
    p.add_argument("--node", action="append", default=[], metavar="NAME[=CLIENT]",
                   help="client CLIENT (default: NAME) may register node NAME (repeatable; one "
                        "client may run several nodes)")
    p.set_defaults(func=cmd_keys)


def cmd_keys(args: argparse.Namespace) -> int:
    """Create the keys (existing ones are kept) and print what was created and who may register
    which node."""
    from catbus.security import generate

    clients: dict[str, list[str]] = {}
    for item in args.node:
        name, _, client = item.partition("=")
        if not name.isidentifier():
            raise ConfigError("--node", item, "expected NAME[=CLIENT], NAME a node name")
        clients.setdefault(client or name, []).append(name)
    done = generate(args.folder, clients)
    for path in done["created"]:
        print(f"created {path}")
    print(f"allow-list {args.folder}/allow.yaml:")
    for client, names in done["allow"].items():
        where = "this host" if client == "local" else f"{args.folder}/clients/{client}"
        print(f"  {client:<12} may register {', '.join(names)}  ({where})")
    return 0
