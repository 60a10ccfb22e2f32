"""``catbus`` command line: a thin layer over the Python API.

Every command turns a :class:`~catbus.errors.CatbusError` into one line on stderr and a non-zero
exit code; a traceback is shown only for bugs in catbus itself and for failing nodes (whose
traceback is the point).

Exit codes (the same for every command, see :data:`EXIT_CODES`): 0 done; 1 a node failed, got
stuck or lost its run, or something waited for did not come in time; 2 a usage, launch-file or
parameter mistake, or no run to look at; 130 interrupted by Ctrl-C (SIGINT) and 143 stopped by
SIGTERM -- 128 + the signal, the shell's convention. SIGTERM stops every command as gracefully as
Ctrl-C does (a run stops its nodes and finishes its recording).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from typing import Any, Sequence

from catbus.errors import CatbusError, ConfigError, NodeFailed

from catbus.wire.protocol import MODES

EXIT_CODES = """\
exit codes:
  0    done (a run ended at its duration, steps or episode end; topic echo/hz: the run ended)
  1    a node failed, got stuck or lost its run; a remote node or the start timed out
  2    wrong usage, launch file or parameter; no run to look at
  130  interrupted by Ctrl-C (SIGINT)
  143  stopped by SIGTERM (kill, timeout, systemd); also a node process stopped by it
"""

#: Signals that reached this process through :func:`_on_sigterm` (SIGTERM).
_signals: list[int] = []


def _on_sigterm(signum: int, frame: Any) -> None:
    """SIGTERM stops a command as Ctrl-C does (its cleanup runs); the exit code tells them
    apart. While a run is launched, the launcher has its own handler."""
    _signals.append(signum)
    raise KeyboardInterrupt


def interrupt_exit_code(signum: int | None = None) -> int:
    """128 + the signal that interrupted the command: SIGTERM if one came, else SIGINT."""
    if signum is None:
        signum = _signals[-1] if _signals else signal.SIGINT
    return 128 + int(signum)


def _log_level_type(value: str) -> str:
    from catbus.runtime.logs import argparse_level

    return argparse_level(value)


def _add_log_level(parser: argparse.ArgumentParser, default: str | None) -> None:
    said = (f"default {default}" if default else
            "default: the run's level, which `catbus launch --log-level` sets, else INFO")
    parser.add_argument("--log-level", type=_log_level_type, default=default, metavar="LEVEL",
                        help="DEBUG, INFO, WARNING or ERROR (any case): nodes' self.log records "
                             "at this level and above go to stderr as `[NODE] LEVEL message` "
                             f"and into the recording (catbus/log) ({said})")


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mode", choices=MODES, help="how nodes run (default: the file's mode, "
                        "else parallel)")
    end = parser.add_mutually_exclusive_group()
    end.add_argument("--steps", type=int, help="environment steps after the reset")
    end.add_argument("--duration", type=float, help="seconds (sim time; wall time in parallel)")
    parser.add_argument("--seed", type=int, help="run seed (default: the file's, else 0)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="NODE.PARAM=VALUE", help="override a node parameter "
                        "(repeatable), e.g. --set robot.safe_controller=Unsafe")


def _add_run_choice(parser: argparse.ArgumentParser, bus_help: str) -> None:
    parser.add_argument("--bus", metavar="ADDR", help=bus_help)
    parser.add_argument("--run", metavar="NAME", help="the run on this machine to talk to: its "
                        "name in `catbus run list` (a unique prefix, or the launcher's pid, "
                        "will do); needed when several runs are running")
    _add_keys(parser)


def _add_keys(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--keys", metavar="DIR", help="CURVE keys for a secured TCP run: a "
                        "folder from `catbus keys generate` (on another host: its clients/NAME "
                        "folder)")


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("catbus")
    except Exception:   # not installed (a source tree on sys.path)
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="catbus", description="Benchmark agents against simulated environments: nodes "
        "exchanging topics over ZeroMQ, run in parallel, stepped or inline mode.",
        epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"catbus {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = commands.add_parser("launch", help="run a launch file", epilog=EXIT_CODES,
                            formatter_class=argparse.RawDescriptionHelpFormatter,
                            description="Run a launch file until its duration, steps or the "
                            "end of the episode,\nor until Ctrl-C (exit 130) or SIGTERM (exit "
                            "143): either stops every node\ngracefully and keeps the recording.")
    p.add_argument("file", help="launch file (YAML)")
    _add_run_options(p)
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
    p.add_argument("--only", metavar="NODE[,NODE]",
                   help="start only these nodes of the file, on this host, for the run whose "
                        "registry is --bus tcp://HOST:PORT (its launcher, on another host, has "
                        "them remote); parameters and seed come from that registry")
    p.add_argument("--bus", metavar="ADDR", help="registry address: tcp://HOST:PORT (HOST an "
                   "address of this machine, or 0.0.0.0) for nodes on other hosts; default: "
                   "the file's bus, else ipc")
    p.add_argument("--remote-timeout", type=float, default=120.0, metavar="S",
                   help="seconds to wait for remote nodes to join (default 120)")
    _add_keys(p)
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
    _add_log_level(p, "INFO")
    p.add_argument("--foxglove", nargs="?", type=int, const=8765, default=None, metavar="PORT",
                   help="also serve every topic to the Foxglove app on ws://127.0.0.1:PORT "
                        "(default 8765; needs catbus[foxglove]; not in inline mode)")
    p.set_defaults(func=cmd_launch)

    p = commands.add_parser("node", help="run one node and join a run (`catbus node list`: "
                            "list the nodes of a running run)", epilog=EXIT_CODES,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("target", metavar="CLASS|list", help="module:Class of the node, or 'list'")
    p.add_argument("--name", help="node name (its identity in the run)")
    _add_run_choice(p, "registry address, e.g. tcp://10.0.0.1:7700 (default: the run on this "
                       "machine)")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="parameter, for an open bus (`catbus bus`); a run whose launch file has "
                        "this node sets its parameters (a --param that differs is warned about "
                        "and not used: use `catbus launch --set NODE.KEY=VALUE`) (repeatable)")
    p.add_argument("--remap", action="append", default=[], metavar="DECLARED=TOPIC",
                   help="rename a declared topic (repeatable)")
    p.add_argument("--period", type=float, help="override the class's period (seconds)")
    p.add_argument("--advertise", metavar="IP", help="address other hosts reach this one at")
    p.add_argument("--data-ports", metavar="FIRST-LAST",
                   help="bind the node's data socket on a free port of this range (TCP; for a "
                        "firewall that opens only these), e.g. 7710-7799; default: any free port")
    p.add_argument("--timeout", type=float, default=10.0,
                   help="seconds to wait for the registry (default 10)")
    p.add_argument("--path", dest="paths", action="append", default=[], metavar="DIR",
                   help="folder searched first for the class's package (repeatable; then the "
                   "current folder, then the installed packages); the launcher passes its run's "
                   "import path this way: the launch file's pythonpath folders, its folder, "
                   "its current folder")
    p.add_argument("--replace", action="store_true",
                   help="take the place of the running node of this name (hot swap: this "
                        "process connects, then takes over between two steps, then the old one "
                        "stops; from any host); --param values then go on top of the launch "
                        "file's")
    p.add_argument("--restart", action="store_true",
                   help="the running process of this name died: take its place at once, "
                        "starting where its readers stopped hearing from it (what "
                        "`catbus launch --only` does under restart: on-failure)")
    _add_log_level(p, None)
    p.set_defaults(func=cmd_node)

    from catbus.cli.swap import add_parser as add_swap_parser

    add_swap_parser(commands, _add_run_choice)

    from catbus.cli.play import add_parser as add_play_parser

    add_play_parser(commands)

    p = commands.add_parser(
        "bus", help="host an open bus (a registry without a launch file); nodes join with "
        "`catbus node`", epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter,
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
    _add_keys(p)
    p.set_defaults(func=cmd_bus)

    p = commands.add_parser(
        "keys", help="create CURVE keys that secure a TCP run",
        formatter_class=argparse.RawDescriptionHelpFormatter,
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

    p = commands.add_parser("run", help="list the runs running on this machine",
                            description="list: every live run on this machine (launched or "
                            "`catbus bus`): its name (what --run\ntakes), launcher pid, start "
                            "time, mode, bus address and run folder.",
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", choices=("list",))
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_run)

    p = commands.add_parser("topic", help="inspect topics of a running run",
                            epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter,
                            description="list: topics, publishers, subscribers. echo: print "
                            "each message. hz: message rate.\necho and hz run until --count, "
                            "Ctrl-C (exit 130), or the end of the run they watch\n(then they "
                            "say so on stderr and exit 0).")
    p.add_argument("action", choices=("list", "echo", "hz"))
    p.add_argument("topic", nargs="?")
    _add_run_choice(p, "registry address (default: the run on this machine)")
    p.add_argument("--count", type=int, help="echo: stop after N messages; hz: after N windows")
    p.set_defaults(func=cmd_topic)

    p = commands.add_parser("eval", help="score a recording")
    p.add_argument("file", help="MCAP recording")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--d-min", dest="d_min", type=float, default=None,
                   help="safety distance for the steps-below count (default: the evaluator's)")
    p.set_defaults(func=cmd_eval)

    p = commands.add_parser("export", help="write a copy of a recording that Foxglove can show "
                            "(JSON messages with JSON Schemas, plus scene channels)")
    p.add_argument("file", help="MCAP recording")
    p.add_argument("-o", "--output", required=True, help="MCAP file to write")
    p.add_argument("--no-scene", action="store_true", help="leave out the scene channels")
    p.set_defaults(func=cmd_export)

    p = commands.add_parser("foxglove", help="serve the topics of a running run to the Foxglove "
                            "app (WebSocket); ends when the run ends", epilog=EXIT_CODES,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_run_choice(p, "registry address (default: the run on this machine)")
    p.add_argument("--port", type=int, default=8765, help="WebSocket port (default 8765; 0: a "
                   "free one)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default "
                   "127.0.0.1)")
    p.set_defaults(func=cmd_foxglove)

    p = commands.add_parser("plot", help="draw a recording")
    p.add_argument("file", help="MCAP recording")
    p.add_argument("-o", "--output", default=None, help="PNG to write (default: FILE.png)")
    p.add_argument("--mp4", action="store_true", help="also write an animation (needs ffmpeg)")
    p.set_defaults(func=cmd_plot)

    p = commands.add_parser("sweep", help="run a grid of settings x seeds, one episode each, "
                            "and summarize the scores", epilog=EXIT_CODES,
                            formatter_class=argparse.RawDescriptionHelpFormatter,
                            description="Every (setting, seed) episode in its own worker "
                            "process (private endpoints\nand files), rows streamed to --out "
                            "(CSV) and --out's .jsonl as they come, a\nsummary per setting at "
                            "the end. Exit 1 if any episode failed; Ctrl-C: 130,\nfinished rows "
                            "kept (--resume runs the rest).")
    p.add_argument("file", help="launch file (YAML)")
    p.add_argument("--seeds", default=None, metavar="A:B|S,S,..", help="seeds: A:B half-open "
                   "(0:100 is 0..99) or a list 3,7,9 (default: the file's seed)")
    p.add_argument("--set", dest="grid", action="append", default=[],
                   metavar="NODE.PARAM=V1,V2,..", help="values of a parameter (repeatable; every "
                   "combination is a setting); split on top-level commas, each read as YAML "
                   "flow: --set robot.feedback.u_max=[100,100],[200,200]")
    p.add_argument("--mode", choices=MODES, default="inline", help="default inline")
    p.add_argument("--jobs", type=int, default=None, help="worker processes (default: cores)")
    p.add_argument("--out", metavar="CSV", help="results table (also written as CSV.jsonl)")
    p.add_argument("--record", metavar="DIR", help="record each episode to "
                   "DIR/<setting>/seed-<n>.mcap")
    p.add_argument("--steps", type=int, help="environment steps per episode")
    p.add_argument("--fresh", action="store_true", help="a new worker process per episode")
    p.add_argument("--episode-timeout", type=float, metavar="S", help="kill an episode's worker "
                   "after S seconds (failed row: timeout)")
    p.add_argument("--resume", action="store_true", help="skip episodes already in --out")
    p.add_argument("--deadline", type=float, default=30.0, metavar="S",
                   help="as for launch (default 30)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    _add_log_level(p, "WARNING")
    p.add_argument("--cluster", metavar="tcp://HOST:PORT", default=None,
                   help="run the episodes on this Dask distributed scheduler's workers "
                   "(pip install 'catbus[dask]'); no scheduler within 10 s: exit 1")
    p.set_defaults(func=cmd_sweep)

    p = commands.add_parser("verify", help="run inline and stepped and compare the recordings")
    p.add_argument("file", help="launch file")
    _add_run_options(p)
    p.set_defaults(func=cmd_verify)

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
    args = parse_args(argv)
    _signals.clear()
    try:
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:   # not the main thread (main() called from a thread): leave SIGTERM be
        previous = None
    as_json = bool(getattr(args, "json", False))
    try:
        return int(args.func(args) or 0)
    except NodeFailed as exc:
        print(f"catbus: {exc}", file=sys.stderr)
        if as_json:
            result = getattr(exc, "result", None)
            _json_error(str(exc).splitlines()[0], exc.exit_code,
                        summary=getattr(result, "summary", None))
        return exc.exit_code
    except CatbusError as exc:
        print(f"catbus: {exc}", file=sys.stderr)
        if as_json:
            _json_error(str(exc), exc.exit_code)
        return exc.exit_code
    except KeyboardInterrupt:
        code = interrupt_exit_code()
        print("catbus: stopped by SIGTERM" if code == 128 + signal.SIGTERM else
              "catbus: interrupted", file=sys.stderr)
        if as_json:
            _json_error("stopped by SIGTERM" if code == 128 + signal.SIGTERM else "interrupted",
                        code)
        return code
    except BrokenPipeError:
        # `catbus topic echo ... | head`: the reader left; that is not an error.
        sys.stderr.close()
        return 0
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


# -- commands -------------------------------------------------------------------------------------
def cmd_launch(args: argparse.Namespace) -> int:
    from catbus.api.run import _checked, check_timing, execute
    from catbus.supervise.rundir import claim_record, stderr_line

    # Every option is checked before anything starts (one line, exit 2): see _checked too.
    check_timing(deadline=args.deadline, remote_timeout=args.remote_timeout,
                 rejoin_timeout=args.rejoin_timeout)
    if args.foxglove is not None and not 0 < args.foxglove < 65536:
        raise ConfigError("command line", "--foxglove",
                          f"must be a TCP port from 1 to 65535, got {args.foxglove}")
    if args.only is not None:
        return _launch_share(args)
    spec = _checked(args.file, mode=args.mode, seed=args.seed, steps=args.steps,
                    duration=args.duration, max_steps=args.max_steps,
                    overrides=args.overrides, record=args.record, remote=args.remote,
                    bus=args.bus, pace=args.pace, keys=args.keys)
    for warning in spec.unpublished_input_warnings():
        print(f"catbus: warning: {warning}", file=sys.stderr)
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
                            data_ports=_data_ports(args.data_ports))
    bridge = None
    if args.foxglove is not None:
        if launcher is None:
            print("catbus: launch: --foxglove needs a bus (mode stepped or parallel); an inline "
                  "run can be exported afterwards: catbus export FILE -o view.mcap",
                  file=sys.stderr)
            return 2
        from catbus.recording.foxglove_bridge import BridgeThread

        bridge = BridgeThread.for_launcher(launcher, spec, port=args.foxglove)
    try:
        result = execute(spec, progress=progress, deadline=args.deadline,
                         remote_timeout=args.remote_timeout, launcher=launcher,
                         log_level=args.log_level)
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


def print_result(result: Any, *, as_json: bool) -> None:
    """A finished run on stdout: its summary as JSON, or the table, the recording and the
    scores (``catbus launch``, ``catbus play``)."""
    from catbus.recording.evaluate import format_table

    if as_json:
        print(json.dumps(result.summary, default=str, indent=2))
        return
    print(result.table())
    if result.record is not None:
        print(f"recorded: {result.record}")
    if result.scores:
        print("scores:")
        print("\n".join(f"  {line}" for line in format_table(result.scores).splitlines()))


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

    for option in ("record", "steps", "duration", "seed", "mode", "pace"):
        if getattr(args, option, None) not in (None, False):
            raise ConfigError("command line", f"--{option}",
                              "not with --only: the run's owner decides it (its registry hands "
                              "every node the run's settings)")
    spec = load(args.file, overrides=args.overrides, record=False, keys=args.keys)
    names = [name.strip() for name in args.only.split(",") if name.strip()]
    extra = ["--keys", str(spec.keys)] if spec.keys else []   # this host's client folder
    if args.data_ports is not None:
        low, high = _data_ports(args.data_ports)
        extra += ["--data-ports", f"{low}-{high}"]
    return run_share(spec, names, args.bus, extra=extra)


def cmd_node(args: argparse.Namespace) -> int:
    if args.target == "list":
        from catbus.cli.introspect import node_list

        return node_list(args.bus, run=args.run, keys=args.keys)
    if not args.name:
        print("catbus: node: --name is required (the node's identity in the run)",
              file=sys.stderr)
        return 2
    from catbus.cli.node import run_node

    return run_node(args.target, name=args.name, bus=args.bus, run=args.run, params=args.param,
                    data_ports=args.data_ports,
                    remaps=args.remap, period=args.period, advertise=args.advertise,
                    timeout=args.timeout, paths=args.paths, log_level=args.log_level,
                    replace=args.replace, restart=args.restart, keys=args.keys)


def cmd_bus(args: argparse.Namespace) -> int:
    from catbus.cli.introspect import host_bus

    return host_bus(args.bind, mode=args.mode, seed=args.seed, keys=args.keys)


def cmd_keys(args: argparse.Namespace) -> int:
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


def cmd_run(args: argparse.Namespace) -> int:
    from catbus.cli.introspect import run_list

    return run_list(as_json=args.json)


def cmd_topic(args: argparse.Namespace) -> int:
    from catbus.cli import introspect

    if args.action != "list" and not args.topic:
        print(f"catbus: topic {args.action}: name the topic, e.g. catbus topic {args.action} "
              "robot/sensors", file=sys.stderr)
        return 2
    if args.action == "list":
        return introspect.topic_list(args.bus, run=args.run, keys=args.keys)
    if args.action == "echo":
        return introspect.topic_echo(args.topic, args.bus, count=args.count, run=args.run,
                                     keys=args.keys)
    return introspect.topic_hz(args.topic, args.bus, count=args.count, run=args.run,
                               keys=args.keys)


def cmd_eval(args: argparse.Namespace) -> int:
    from catbus.cli.recording import cmd_eval as run_eval

    return run_eval(args)


def cmd_export(args: argparse.Namespace) -> int:
    from catbus.recording.export import export

    written = export(args.file, args.output, scene=not args.no_scene)
    scene = ", ".join(f"{t} ({n})" for t, n in written["scene"].items()) or "none"
    print(f"wrote {args.output}: {len(written['channels'])} JSON channels, scene channels: "
          f"{scene}; {written['messages']} messages")
    return 0


def cmd_foxglove(args: argparse.Namespace) -> int:
    from catbus.recording.foxglove_bridge import serve

    return serve(bus=args.bus, run=args.run, port=args.port, host=args.host, keys=args.keys)


def cmd_plot(args: argparse.Namespace) -> int:
    from catbus.cli.recording import cmd_plot as run_plot

    if args.output is None:
        args.output = str(args.file).removesuffix(".mcap") + ".png"
    return run_plot(args)


def cmd_sweep(args: argparse.Namespace) -> int:
    from catbus.sweep.api import score_keys, sweep
    from catbus.sweep.grid import parse_seeds, parse_sets
    from catbus.sweep.stats import format_summary, summarize

    grid = parse_sets(args.grid)
    seeds = parse_seeds(args.seeds) if args.seeds is not None else None
    if args.resume and not args.out:
        print("catbus: sweep: --resume needs --out (the rows to resume from)", file=sys.stderr)
        return 2
    rows = sweep(args.file, seeds=seeds, grid=grid, mode=args.mode, jobs=args.jobs,
                 out=args.out, record=args.record, steps=args.steps, fresh=args.fresh,
                 episode_timeout=args.episode_timeout, resume=args.resume,
                 progress=None if not args.no_progress else False, deadline=args.deadline,
                 cluster=args.cluster, log_level=args.log_level)
    summary = summarize(rows, score_keys(rows, list(grid)))
    failed = [r for r in rows if r.get("status") != "ok"]
    if args.json:
        print(json.dumps(summary, default=str, indent=2))
    else:
        print(format_summary(summary))
        for row in failed:
            error = str(row.get("error") or "").strip().splitlines()
            print(f"failed: {row.get('setting')} seed {row.get('seed')}: "
                  f"{error[0] if error else row.get('exit_code')}")
        if args.out:
            print(f"results: {args.out}")
    return 1 if failed else 0


def cmd_verify(args: argparse.Namespace) -> int:
    from catbus.recording.verify import verify

    if args.mode is not None:
        print(f"catbus: verify: --mode {args.mode} does not apply: verify always runs the file "
              "inline and stepped and compares the two recordings (parallel runs are not "
              "deterministic)", file=sys.stderr)
        return 2
    return verify(args.file, seed=args.seed, steps=args.steps, duration=args.duration,
                  overrides=args.overrides)


def _print_json(data: Any) -> None:
    print(json.dumps(data, default=str, indent=2))


def _json_error(error: str, exit_code: int, **extra: Any) -> None:
    """``--json`` and a failure: still one JSON object on stdout, ``{"error", "exit_code"}``
    (a failed run adds its ``summary`` so far)."""
    data = {"error": error, "exit_code": exit_code,
            **{k: v for k, v in extra.items() if v is not None}}
    try:
        print(json.dumps(data, default=str, indent=2), flush=True)
    except BrokenPipeError:
        pass


if __name__ == "__main__":
    sys.exit(main())
