"""``catbus play FILE.mcap --with LAUNCH``: run a launch file with recorded topics replayed.

Every node that published a replayed topic in the recording is replaced by a
:class:`catbus.play.Player` of its replayed topics, under the same name and in the same place
(so the order within a tick, and what every reader sees, is the recording's); the other nodes run
as the launch file says. The run is built in memory from the launch's checked document
(:attr:`LaunchSpec.document`, which rebuilds the same run) and run with :func:`catbus.run`; no
file is written but ``--record``'s. See docs/replay.md.

Defaults chosen for reproduction: the recording's seed and mode (a node fed its own run's
sensors in stepped/inline then makes its recorded outputs bit for bit), no ``steps``: the player
ends the run after the recording's last message, and no recording unless ``--record`` (the
launch file's ``record:`` could be the very file being replayed).
"""

from __future__ import annotations

import argparse
import copy
import math
import sys
from pathlib import Path
from typing import Any

from catbus.cli.common import EXIT_CODES, RAW, add_log_level, interrupt_exit_code, json_error, \
    print_result
from catbus.errors import CatbusError, ConfigError, NodeFailed
from catbus.wire.protocol import MODES

PLAYER_CLASS = "catbus.play:Player"


def add_parser(commands: Any) -> argparse.ArgumentParser:
    """Add ``play`` to the ``catbus`` subcommands (``commands`` from ``add_subparsers``)."""
    p = commands.add_parser(
        "play", help="replay recorded topics into a launch file's other nodes",
        epilog=EXIT_CODES, formatter_class=RAW,
        description="Run LAUNCH with every node that published a replayed topic in FILE "
        "replaced by a player\nof its recorded messages (same name, same place); the other "
        "nodes run as usual.\nstepped/inline: each message at its recorded tick; parallel: at "
        "its recorded time / --rate.\nThe run ends after the recording's last message.")
    p.add_argument("file", help="the MCAP recording to replay")
    p.add_argument("--with", dest="launch", required=True, metavar="LAUNCH",
                   help="launch file whose other nodes run against the recording")
    p.add_argument("--topics", metavar="T1,T2", help="recorded topics to replay, comma-"
                   "separated (default: every topic outside catbus/)")
    p.add_argument("--mode", choices=MODES, help="default: the recording's mode")
    p.add_argument("--rate", type=float, default=None, metavar="R",
                   help="parallel mode: replay speed (2 = twice as fast; default 1)")
    p.add_argument("--record", metavar="OUT.mcap", help="record the run (default: none)")
    p.add_argument("--keys", metavar="DIR", help="CURVE keys for a TCP bus (`catbus keys "
                   "generate`; default: the launch file's security: keys)")
    p.add_argument("--seed", type=int, help="run seed (default: the recording's)")
    p.add_argument("--set", dest="overrides", action="append", default=[],
                   metavar="NODE.PARAM=VALUE", help="override a parameter of a node that runs "
                   "(repeatable), e.g. --set robot.safe_controller=Unsafe")
    p.add_argument("--deadline", type=float, default=30.0, metavar="S",
                   help="as for launch (default 30)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    add_log_level(p, "INFO")
    p.set_defaults(func=cmd_play)
    return p


def cmd_play(args: argparse.Namespace) -> int:
    """Build the replay run and run it; every mistake is one line on stderr and exit 2."""
    try:
        spec, notes = build_play_spec(args)
    except CatbusError as exc:
        return _fail(args, str(exc), exc.exit_code)
    for line in notes:
        print(f"catbus play: {line}", file=sys.stderr)
    for warning in spec.unpublished_input_warnings():   # spec is in memory: name the file
        warning = warning.replace("<launch>", f"{args.launch} (with players)", 1)
        print(f"catbus play: warning: {warning}", file=sys.stderr)
    return _run(args, spec)


def build_play_spec(args: argparse.Namespace) -> tuple[Any, list[str]]:
    """The checked :class:`~catbus.spec.launchfile.LaunchSpec` of the replay run, and notes
    for stderr. Raises ConfigError naming the file or option and the fix."""
    import catbus
    from catbus.play import Player, check_topics, open_recording, recorded_publishers, \
        recorded_topics

    recording = _located(args.file, lambda: open_recording(args.file, field=""))
    path = recording.path
    available = recorded_topics(recording)
    if not available:
        raise ConfigError(str(args.file), "", "the recording has no messages outside catbus/ "
                                              "(nothing to replay)")
    topics = _topic_list(args.topics) if args.topics is not None else list(available)
    if not topics:
        raise ConfigError("--topics", "", f"names no topic; give recorded topics, comma-"
                                          f"separated: {','.join(available)}")
    _located("--topics", lambda: check_topics(topics, available, path, field=""))
    meta = recording.metadata
    mode = args.mode or (meta.get("mode") if meta.get("mode") in MODES else None)
    seed = args.seed if args.seed is not None else (
        meta.get("seed") if isinstance(meta.get("seed"), int) else None)
    base = catbus.load(args.launch, mode=mode, seed=seed, overrides=args.overrides,
                       record=False, keys=getattr(args, "keys", None))
    if args.rate is not None:
        if base.mode != "parallel":
            raise ConfigError("--rate", "", f"applies to parallel mode only (this replay runs "
                                            f"{base.mode}: stepped and inline publish each "
                                            f"message at its recorded tick, as fast as they "
                                            f"can); add --mode parallel or drop --rate")
        if not (math.isfinite(args.rate) and args.rate > 0):
            raise ConfigError("--rate", "", f"must be a positive number (2 = twice as fast), "
                                            f"got {args.rate}")
    rate = args.rate if args.rate is not None else 1.0
    if args.record is not None and Path(args.record).absolute() == path:
        raise ConfigError("--record", "", f"{args.record} is the recording being replayed; "
                                          f"record to another file")

    replaced = _stand_ins(topics, recorded_publishers(recording), base, args.launch)
    for text in args.overrides:
        node = str(text).partition(".")[0]
        if node in replaced:
            raise ConfigError("--set", text, f"node {node} is replaced by a player of "
                                             f"{', '.join(replaced[node])}, so its parameters "
                                             f"do not apply; set those of a node that runs")
    document = copy.deepcopy(base.document)
    document["steps"] = document["duration"] = None
    notes = []
    for name, node_topics in replaced.items():
        params = {"file": str(path), "topics": node_topics, "rate": rate}
        entry: dict[str, Any] = {"class": PLAYER_CLASS, "params": params, "remote": False}
        try:
            entry["period"] = Player.declared_period(params)
        except ConfigError:     # the recording does not say: the launch file's period
            if base.node(name).period is not None:
                entry["period"] = base.node(name).period
        document["nodes"][name] = entry
        dropped = [b.topic for b in base.node(name).outputs if b.topic not in node_topics]
        notes.append(f"{name} replaced by a player of {', '.join(node_topics)} from {path.name}"
                     + (f" (not replayed: {', '.join(dropped)})" if dropped else ""))
    try:
        spec = catbus.load(document, record=args.record)
    except ConfigError as exc:   # the document is in memory: name the file it came from
        where = f"{args.launch} (with players)" if exc.where == "<launch>" else exc.where
        raise ConfigError(where, exc.field, exc.message) from None
    bound = _max_steps(spec, rate, _last_seconds(spec))
    if bound is not None and bound > spec.max_steps:
        spec = catbus.load(spec, max_steps=bound)
    # Parameters changed live while it was recorded: applied again at the same ticks.
    from catbus.play import recorded_param_changes

    param_changes, param_notes = recorded_param_changes(recording, spec, replaced)
    if param_changes:
        import dataclasses

        spec = dataclasses.replace(spec, param_changes=param_changes)
        notes += [f"{name}: parameters changed again at tick "
                  f"{', '.join(str(tick) for tick, _ in entries)}, as recorded"
                  for name, entries in param_changes.items()]
    return spec, notes + param_notes


def _stand_ins(topics: list[str], recorded: dict[str, str], base: Any,
               launch: str) -> dict[str, list[str]]:
    """``{node name: its replayed topics}`` in launch order: the recording's publisher of each
    topic (from ``catbus/drops``), else the launch's."""
    names = base.node_names
    launch_publishers = base.publishers()
    chosen: dict[str, list[str]] = {}
    for topic in topics:
        name = recorded.get(topic) or launch_publishers.get(topic)
        if name is None:
            raise ConfigError(str(launch), "nodes", f"no node publishes {topic!r}, so none can "
                              f"be replaced by its player: replay into the launch file the "
                              f"recording was made with (nodes here: {', '.join(names)})")
        if name not in names:
            raise ConfigError(str(launch), "nodes", f"the recording's {topic!r} was published "
                              f"by node {name!r}, which this launch file does not have (nodes: "
                              f"{', '.join(names)}); the player takes that node's name and "
                              f"place: add a node {name} where it ran, or use the launch file "
                              f"of the recording")
        chosen.setdefault(name, []).append(topic)
    return {name: chosen[name] for name in names if name in chosen}


def _last_seconds(spec: Any) -> float | None:
    """When the replay ends: the recording's last message, in seconds (from any player)."""
    from catbus.play import replay_plan

    ends = [replay_plan(n.params["file"], n.params.get("topics") or ()).last_ns / 1e9
            for n in spec.nodes if n.class_path == PLAYER_CLASS]
    return max(ends) if ends else None


def _max_steps(spec: Any, rate: float, last_s: float | None) -> int | None:
    """A ``max_steps`` bound that the replay (a player ends it) stays within."""
    first = next((n.period for n in spec.nodes if n.period is not None), None)
    if last_s is None or first is None:
        return None
    return math.ceil(last_s / min(rate, 1.0) / first) + 10


def _topic_list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _located(where: str, call: Any) -> Any:
    """Run ``call``; a ConfigError without a file (the player's checks) gets ``where``."""
    try:
        return call()
    except ConfigError as exc:
        if exc.where:
            raise
        raise ConfigError(str(where), exc.field, exc.message) from None


def _run(args: argparse.Namespace, spec: Any) -> int:
    import catbus

    print(f"catbus play: run {spec.name} (mode {spec.mode}, seed {spec.seed}) replaying "
          f"{args.file}", file=sys.stderr)
    try:
        result = catbus.run(spec, progress=None if not args.no_progress else False,
                            deadline=args.deadline, log_level=args.log_level)
    except NodeFailed as exc:
        return _fail(args, str(exc), exc.exit_code)
    except CatbusError as exc:
        return _fail(args, str(exc), exc.exit_code)
    except KeyboardInterrupt:   # inline lets Ctrl-C through
        code = interrupt_exit_code()
        print("catbus play: interrupted", file=sys.stderr)
        return code
    code = interrupt_exit_code(result.signal) if result.interrupted else 0
    print_result(result, as_json=args.json)
    return code


def _fail(args: argparse.Namespace, message: str, code: int) -> int:
    print(f"catbus play: {message}", file=sys.stderr)
    if getattr(args, "json", False):
        json_error(message.splitlines()[0], code)
    return code


__all__ = ["add_parser", "cmd_play", "build_play_spec"]

