"""``catbus bus``: host an open bus, a registry with no launch file that nodes join with
``catbus node``.

Hosting a registry is what a launcher does, not what a client of a run does, so this lives with
the command rather than in :mod:`catbus.client`. ZeroMQ and the registry are imported when the
bus starts, so that building the ``catbus`` parser stays cheap.
"""

from __future__ import annotations

import argparse
import signal
import sys
from typing import Any

from catbus.cli.common import EXIT_CODES, RAW, add_keys


def add_parser(commands: Any) -> None:
    """Add ``bus`` to the ``catbus`` subcommands (``commands`` from ``add_subparsers``)."""
    p = commands.add_parser(
        "bus", help="host an open bus (a registry without a launch file); nodes join with "
        "`catbus node`", epilog=EXIT_CODES, formatter_class=RAW,
        description="Host a registry with no launch file: every node that joins with "
        "`catbus node CLASS --name NAME`\n(--param for its parameters) starts at once, in "
        "parallel mode. It runs until Ctrl-C\n(exit 130) or SIGTERM (exit 143). `catbus run "
        "list` lists it; `catbus node`, `catbus topic`\nand `catbus node list` find it like a "
        "launched run.")
    p.add_argument("--bind", default=None, metavar="ADDR",
                   help="address to bind: tcp://HOST:PORT (PORT 0 or '*': a free port) for "
                        "nodes on other hosts; default: ipc, in a private run folder")
    p.add_argument("--mode", choices=("parallel",), default="parallel",
                   help="only parallel: an open bus has no schedule")
    p.add_argument("--seed", type=int, default=0, help="run seed handed to nodes (default 0)")
    add_keys(p)
    p.add_argument("--insecure", action="store_true",
                   help="accept an open bus (no --keys) bound on an address other hosts reach: "
                        "anyone who reaches it can join, read and publish; without this such a "
                        "bus is refused (loopback and ipc need no keys)")
    p.set_defaults(func=cmd_bus)


def cmd_bus(args: argparse.Namespace) -> int:
    """Host the bus until a signal stops it."""
    return host_bus(args.bind, mode=args.mode, seed=args.seed, keys=args.keys,
                    insecure=args.insecure)


def host_bus(bind: str | None, *, mode: str = "parallel", seed: int = 0,
             keys: Any = None, insecure: bool = False) -> int:
    """A registry with no launch file; nodes start as soon as they connect. ``bind`` None: ipc
    in the bus's run folder; a ``tcp://`` address with port 0 or ``*``: a free port. An address
    that cannot be bound is one line (exit 2), and no folder is left; so is an open (keyless)
    TCP bus on an address other hosts reach, unless ``insecure``. Returns 128 + the signal that
    stopped it (130 Ctrl-C, 143 SIGTERM), like every catbus command."""
    import zmq

    from catbus import security
    from catbus.control import Notice, NoticeKind, RunConfig
    from catbus.errors import ConfigError
    from catbus.runtime.hostaddr import machine_addresses
    from catbus.supervise.registry import Registry
    from catbus.supervise.remote import open_bus_problem
    from catbus.supervise.rundir import RunDir
    from catbus.wire.protocol import bus_address_problem
    from catbus.wire.sockets import bind_problem

    if bind is not None:
        if bind.startswith("tcp://") and bind.rsplit(":", 1)[-1] == "0":
            bind = bind[:-1] + "*"
        problem = bus_address_problem(bind) if not bind.endswith(":*") else None
        if problem is not None:
            raise ConfigError("--bind", bind, f"{problem}; give tcp://HOST:PORT")
    keys = security.host_keys(keys, bind or "ipc", "--keys")
    ctx = zmq.Context.instance()
    rundir = RunDir.create("bus")
    try:
        registry = Registry(ctx, bind or rundir.endpoint("registry"), RunConfig(
            mode=mode, seed=seed, run_info={"name": "bus", "mode": mode, "seed": seed,
                                            "security": security.run_info(keys)}), keys=keys)
    except zmq.ZMQError as exc:
        rundir.remove()
        raise ConfigError("--bind", bind or "ipc", f"cannot bind: "
                          f"{bind_problem(bind or '', exc, machine_addresses())} (port 0 picks "
                          f"a free one)") from None
    refusal = None if insecure else open_bus_problem(registry.endpoint, keys)
    if refusal is not None:
        registry.close()
        rundir.remove()
        raise ConfigError("--bind", bind or "ipc", refusal)
    stopping: list[int] = []
    try:
        published = rundir.publish(registry.endpoint, "bus", mode=mode)
        security.announce(registry.endpoint, keys)
        print(f"catbus bus: run {published['id']}, registry at {registry.endpoint}; join with "
              f"catbus node module:Class --name NAME --bus {registry.endpoint}", flush=True)
        # Ctrl-C and SIGTERM only note the request (the loop below looks every 200 ms), as the
        # launcher does: an exception raised by a handler can land in code that swallows it,
        # and a bus started with SIGINT ignored (a background job) got no KeyboardInterrupt.
        previous = {sig: signal.signal(sig, lambda signum, _: stopping.append(signum))
                    for sig in (signal.SIGINT, signal.SIGTERM)}
    except BaseException:
        registry.close()
        rundir.remove()
        raise
    try:
        while not stopping:
            for notice in registry.poll(200):   # an open bus starts no process: notices only
                if not isinstance(notice, Notice) or notice.kind is NoticeKind.STARTED:
                    continue
                detail = f": {notice.message}" if notice.message else ""
                print(f"{notice.kind.value} {notice.node}{detail}", flush=True)
                if notice.detail:
                    print(notice.detail, file=sys.stderr, flush=True)
    finally:
        registry.stop("the bus is shutting down")
        registry.close()
        rundir.remove()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 128 + stopping[0]
