"""``catbus launch FILE``: run a launch file, here or (``--only``) this host's share of a run
owned elsewhere."""

from __future__ import annotations

import argparse
import contextlib
import sys
import threading
from typing import Any

from catbus.cli.common import EXIT_CODES, RAW, add_keys, add_log_level, add_run_options, \
    interrupt_exit_code, interrupts_set, print_result
from catbus.errors import ConfigError


def add_parser(commands: Any) -> None:
    """Add ``launch`` to the ``catbus`` subcommands (``commands`` from ``add_subparsers``)."""
    p = commands.add_parser("launch", help="run a launch file", epilog=EXIT_CODES,
                            formatter_class=RAW,
                            description="Run a launch file until its duration, steps or the "
                            "end of the episode,\nor until Ctrl-C (exit 130) or SIGTERM (exit "
                            "143): either stops every node\ngracefully and keeps the recording.")
    p.add_argument("file", help="launch file (YAML)")
    add_run_options(p)
    p.add_argument("--max-steps", type=int, metavar="N",
                   help="without --steps/--duration the run lasts until a node ends the "
                        "episode, at most N environment steps (default: the file's max_steps, "
                        "else 100000)")
    p.add_argument("--record", metavar="PATH", help="record every topic to this MCAP file")
    p.add_argument("--pace", type=float, metavar="R",
                   help="stepped and inline: run at R times real time (1: as fast as the wall "
                        "clock, to watch a live view and swap by hand); default: as fast as "
                        "possible")
    p.add_argument("--remote", action="append", default=[], metavar="NODE",
                   help="do not start NODE here; wait for it to join with `catbus node`")
    p.add_argument("--group", action="append", default=[], metavar="NAME=NODE,NODE",
                   help="stepped: run these nodes in one process (a node group; their messages "
                        "to each other pass without a socket), e.g. --group "
                        "world=env,human,recorder; over the file's group: keys (repeatable)")
    p.add_argument("--only", metavar="NODE[,NODE]",
                   help="start only these nodes of the file, on this host, for the run whose "
                        "registry is --bus tcp://HOST:PORT (its launcher, on another host, has "
                        "them remote); parameters and seed come from that registry")
    p.add_argument("--bus", metavar="ADDR", help="registry address: tcp://HOST:PORT (HOST an "
                   "address of this machine, or 0.0.0.0) for nodes on other hosts; default: "
                   "the file's bus, else ipc")
    p.add_argument("--remote-timeout", type=float, default=120.0, metavar="S",
                   help="seconds to wait for remote nodes to join (default 120)")
    add_keys(p)
    p.add_argument("--insecure", action="store_true",
                   help="accept an open bus (no --keys) on an address other hosts reach "
                        "(tcp://0.0.0.0:PORT, a LAN address): anyone who reaches it can join, "
                        "read and publish; without this such a bus is refused (loopback and "
                        "ipc need no keys)")
    p.add_argument("--deadline", type=float, default=30.0, metavar="S",
                   # "5 s": catbus.supervise.launcher.END_GRACE (not imported: the CLI loads no zmq).
                   help="a node silent for this long (e.g. stuck in a step) fails the run, "
                        "naming it (default 30); so does a stepped run in which no node "
                        "completes a tick for this long, and, in parallel mode, a node still "
                        "running 5 s (at most S) after the run's end")
    p.add_argument("--data-ports", metavar="FIRST-LAST",
                   help="the run's node processes (those started here, and with --only) bind "
                        "their data sockets in this port range (TCP), e.g. 7710-7799")
    p.add_argument("--rejoin-timeout", type=float, default=None, metavar="S",
                   help="a node whose link is down (host unreachable, cable out, process "
                        "stopped) may take this long to come back; stepped runs hold for it, "
                        "parallel ones go on without it (default: --deadline)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    add_log_level(p, "INFO")
    p.add_argument("--foxglove", nargs="?", type=int, const=8765, default=None, metavar="PORT",
                   help="also serve every topic to the Foxglove app on ws://127.0.0.1:PORT "
                        "(default 8765; needs catbus[foxglove]; not in inline mode)")
    p.set_defaults(func=cmd_launch)


def cmd_launch(args: argparse.Namespace) -> int:
    """Run the file to its end; 0, or 130/143 when a signal stopped it (the summary is printed
    either way)."""
    from catbus.api.run import checked_spec, check_timing, execute
    from catbus.supervise.rundir import claim_record, stderr_line

    # Every option is checked before anything starts (one line, exit 2): see checked_spec too.
    check_timing(deadline=args.deadline, remote_timeout=args.remote_timeout,
                 rejoin_timeout=args.rejoin_timeout)
    if args.foxglove is not None and not 0 < args.foxglove < 65536:
        raise ConfigError("command line", "--foxglove",
                          f"must be a TCP port from 1 to 65535, got {args.foxglove}")
    if args.only is not None:
        return _launch_share(args)
    spec = checked_spec(args.file, mode=args.mode, seed=args.seed, steps=args.steps,
                    duration=args.duration, max_steps=args.max_steps,
                    overrides=args.overrides, record=args.record, remote=args.remote,
                    bus=args.bus, pace=args.pace, keys=args.keys, args=args.launch_args,
                    groups=args.group)
    data_ports = _data_ports(args.data_ports)
    if data_ports is not None and spec.mode != "inline":
        from catbus.spec.runchecks import check_data_ports

        check_data_ports(data_ports, [n.name for n in spec.nodes if not n.remote], spec.bus)
    for warning in spec.unpublished_input_warnings():
        print(f"catbus: warning: {warning}", file=sys.stderr)
    if spec.groups and spec.mode == "parallel":
        print(f"catbus: note: node groups ({', '.join(spec.groups)}) are for stepped runs; in "
              f"parallel every node runs in its own process, at its own period", file=sys.stderr)
    progress = None if not args.no_progress else False
    launcher = None
    if spec.mode == "inline":
        # No run folder and no bus: the launcher's checks and start line, said here.
        claim_record(spec.record, where=str(spec.path or "command line"), say=stderr_line)
        stderr_line(f"catbus: run {spec.name} (mode inline) in this process (no bus)")
    else:
        from catbus.supervise.launcher import Launcher

        launcher = Launcher(spec, progress=progress, deadline=args.deadline,
                            remote_timeout=args.remote_timeout, announce=True,
                            log_level=args.log_level, rejoin_timeout=args.rejoin_timeout,
                            data_ports=data_ports, insecure=args.insecure)
    bridge = None
    if args.foxglove is not None:
        if launcher is None:
            print("catbus: launch: --foxglove needs a bus (mode stepped or parallel); an inline "
                  "run can be exported afterwards: catbus export FILE -o view.mcap",
                  file=sys.stderr)
            return 2
        from catbus.recording.foxglove_bridge import BridgeThread

        bridge = BridgeThread.for_launcher(launcher, spec, port=args.foxglove)
    stop = threading.Event()   # inline: set by Ctrl-C and SIGTERM too (see interrupts_set)
    try:
        with interrupts_set(stop) if launcher is None else contextlib.nullcontext():
            result = execute(spec, progress=progress, deadline=args.deadline,
                             remote_timeout=args.remote_timeout, launcher=launcher,
                             log_level=args.log_level, stop=stop if launcher is None else None)
    finally:
        if bridge is not None:
            bridge.stop()
    # Interrupted: 130 (Ctrl-C) or 143 (SIGTERM), from the signal the launcher handled. (An
    # inline run lets the KeyboardInterrupt through, and main() turns it into the same codes.)
    code = interrupt_exit_code(result.signal) if result.interrupted else 0
    if result.end_reason and result.end_reason.startswith("reached max_steps"):
        print(f"catbus: {result.end_reason}", file=sys.stderr)
    print_result(result, as_json=args.json)
    return code


def _data_ports(text: str | None) -> tuple[int, int] | None:
    """``--data-ports``, checked before anything starts."""
    if text is None:
        return None
    from catbus.runtime.dataplane import parse_ports

    try:
        return parse_ports(text)
    except ValueError as exc:
        raise ConfigError("command line", "--data-ports", str(exc)) from None


def _launch_share(args: argparse.Namespace) -> int:
    """``catbus launch FILE --only NODES --bus ADDR``: this host's share of a run owned
    elsewhere (:mod:`catbus.supervise.share`)."""
    from catbus.api.run import load
    from catbus.supervise.share import run_share

    for option in ("record", "steps", "duration", "seed", "mode", "pace", "insecure"):
        if getattr(args, option, None) not in (None, False):
            raise ConfigError("command line", f"--{option}",
                              "not with --only: the run's owner decides it (its registry hands "
                              "every node the run's settings)")
    spec = load(args.file, overrides=args.overrides, record=False, keys=args.keys,
                args=args.launch_args)
    names = [name.strip() for name in args.only.split(",") if name.strip()]
    extra = ["--keys", str(spec.keys)] if spec.keys else []   # this host's client folder
    if args.data_ports is not None:
        from catbus.spec.runchecks import check_data_ports
        from catbus.supervise.share import check_only

        low, high = _data_ports(args.data_ports)
        check_only(spec, names, args.bus)   # the names and the bus first: their errors say more
        check_data_ports((low, high), names, args.bus)
        extra += ["--data-ports", f"{low}-{high}"]
    return run_share(spec, names, args.bus, extra=extra)
