"""Commands on recordings: ``catbus eval``, ``catbus plot``, ``catbus export`` and ``catbus
verify`` (which makes two recordings and compares them).

``eval`` and ``plot`` return 2 on a :class:`~catbus.errors.CatbusError` (its one-line message on
stderr, without a traceback). Notes about the file itself (cut short, messages lost) go to
stderr, so ``--json`` output on stdout stays machine-readable. The recording libraries are
imported when a command runs, so that building the ``catbus`` parser stays cheap.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from catbus.cli.common import add_run_options, json_error, print_json
from catbus.errors import CatbusError

if TYPE_CHECKING:
    from catbus.recording.reader import Recording


# Four parsers, not one add_parser: `catbus --help` lists the commands in an order that puts
# foxglove and sweep between them (see catbus.cli.main).
def add_eval_parser(commands: Any) -> None:
    """Add ``eval`` to the ``catbus`` subcommands (``commands`` from ``add_subparsers``)."""
    p = commands.add_parser("eval", help="score a recording")
    p.add_argument("file", help="MCAP recording")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--d-min", dest="d_min", type=float, default=None,
                   help="safety distance for the steps-below count (default: the evaluator's)")
    p.set_defaults(func=cmd_eval)


def add_export_parser(commands: Any) -> None:
    """Add ``export`` to the ``catbus`` subcommands."""
    p = commands.add_parser("export", help="write a copy of a recording that Foxglove can show "
                            "(JSON messages with JSON Schemas, plus scene channels)")
    p.add_argument("file", help="MCAP recording")
    p.add_argument("-o", "--output", required=True, help="MCAP file to write")
    p.add_argument("--no-scene", action="store_true", help="leave out the scene channels")
    p.set_defaults(func=cmd_export)


def add_plot_parser(commands: Any) -> None:
    """Add ``plot`` to the ``catbus`` subcommands."""
    p = commands.add_parser("plot", help="draw a recording: with its environment's plotter, "
                            "or any numeric field of any topic over time (--topic, --field)")
    p.add_argument("file", help="MCAP recording")
    p.add_argument("-o", "--output", default=None, help="PNG to write (default: FILE.png)")
    p.add_argument("--mp4", action="store_true", help="also write an animation (needs ffmpeg; "
                   "the environment's plotter only)")
    p.add_argument("--topic", action="append", default=[], metavar="T",
                   help="plot this topic's field over time, one panel each (repeatable); "
                        "without it, the plotter the recording names draws it")
    p.add_argument("--field", action="append", default=[], metavar="F",
                   help="the field of each --topic, in order (or one for all), e.g. "
                        "robot.pos or pos[0]; an array is one line per element (default: every "
                        "number in the message)")
    p.set_defaults(func=cmd_plot)


def add_verify_parser(commands: Any) -> None:
    """Add ``verify`` to the ``catbus`` subcommands."""
    p = commands.add_parser("verify", help="run inline and stepped and compare the recordings; "
                            "for RUN.mcap, whether a parallel recording reproduces")
    p.add_argument("file", help="launch file, or an .mcap recording of a parallel run")
    add_run_options(p)
    p.add_argument("--group", action="append", default=[], metavar="NAME=NODE,NODE",
                   help="run the stepped side with these nodes in one process (a node group), "
                        "e.g. --group world=env,human,recorder (repeatable)")
    p.set_defaults(func=cmd_verify)


def cmd_eval(args: argparse.Namespace) -> int:
    """``catbus eval FILE [--json] [--d-min D]``: print the run's scores."""
    from catbus.recording.evaluate import evaluate_file, format_table, to_jsonable
    from catbus.recording.reader import Recording

    try:
        recording = Recording(args.file)
        _warn_about(recording)
        options = {}
        if getattr(args, "d_min", None) is not None:
            options["d_min"] = args.d_min
        scores = evaluate_file(recording, **options)
    except CatbusError as exc:
        print(f"catbus eval: {exc}", file=sys.stderr)
        if getattr(args, "json", False):   # --json: a JSON object also on failure
            json_error(str(exc), 2)
        return 2
    if getattr(args, "json", False):
        print_json(to_jsonable(scores))
    else:
        print(_title(recording))
        print(format_table(scores))
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    """``catbus plot FILE [-o OUT] [--mp4]``: draw the run as a PNG (default ``FILE.png``, the
    ``.mcap`` replaced); with ``--mp4`` also an animation beside it (``.mp4``, needs ffmpeg:
    without it, the PNG is written, then one line says why there is no MP4, exit 2)."""
    from catbus.recording.evaluate import NoFFmpeg, plot_file
    from catbus.recording.reader import Recording

    mp4 = bool(getattr(args, "mp4", False))
    if getattr(args, "topic", None) or getattr(args, "field", None):
        return _plot_fields(args)
    try:
        recording = Recording(args.file)
        _warn_about(recording)
        output = getattr(args, "output", None)
        out = Path(output) if output else Path(str(args.file).removesuffix(".mcap") + ".png")
        written = plot_file(recording, out, mp4=mp4)
    except NoFFmpeg as exc:
        # The PNG is drawn all the same; the missing animation is an error (exit 2).
        for path in exc.written:
            print(f"wrote {path}")
        print(f"catbus plot: {exc}", file=sys.stderr)
        return 2
    except CatbusError as exc:
        hint = ("; plot any field of any topic with --topic T --field F (e.g. --topic "
                "env/state --field robot.pos)") if "names no plotter" in str(exc) else ""
        print(f"catbus plot: {exc}{hint}", file=sys.stderr)
        return 2
    for path in written:
        print(f"wrote {path}")
    return 0


def _plot_fields(args: argparse.Namespace) -> int:
    """``catbus plot FILE --topic T --field F ...``: fields over time, no plotter needed."""
    from catbus.recording.fieldplot import pair_specs, plot_fields
    from catbus.recording.reader import Recording

    try:
        if args.mp4:
            raise CatbusError("--mp4 is the environment plotter's; a --topic plot is a PNG")
        specs = pair_specs(args.topic, args.field)
        recording = Recording(args.file)
        _warn_about(recording)
        out = Path(args.output) if args.output else \
            Path(str(args.file).removesuffix(".mcap") + ".png")
        written, notes = plot_fields(recording, specs, out)
    except CatbusError as exc:
        print(f"catbus plot: {exc}", file=sys.stderr)
        return 2
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    print(f"wrote {written}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """``catbus export FILE -o OUT``: a copy Foxglove can show; says what it wrote."""
    from catbus.recording.export import export

    written = export(args.file, args.output, scene=not args.no_scene)
    scene = ", ".join(f"{t} ({n})" for t, n in written["scene"].items()) or "none"
    print(f"wrote {args.output}: {len(written['channels'])} JSON channels, scene channels: "
          f"{scene}; {written['messages']} messages")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    """``catbus verify FILE``: run it inline and stepped and compare the recordings. ``--mode``
    is refused (exit 2) rather than ignored: verify always runs both modes. ``catbus verify
    RUN.mcap`` (by the suffix): whether a parallel recording reproduces (docs/reproduce.md)."""
    from catbus.recording.verify import verify, verify_recording

    if Path(args.file).suffix == ".mcap":
        given = [option for option, value in (("--mode", args.mode), ("--seed", args.seed),
                                              ("--steps", args.steps),
                                              ("--duration", args.duration),
                                              ("--set", args.overrides),
                                              ("--group", args.group)) if value]
        if given:
            print(f"catbus: verify {args.file}: {given[0]} does not apply to a recording: it is "
                  "stepped again as recorded (for a what-if: catbus reproduce FILE --set ...)",
                  file=sys.stderr)
            return 2
        return verify_recording(args.file)
    if args.mode is not None:
        print(f"catbus: verify: --mode {args.mode} does not apply: verify always runs the file "
              "inline and stepped and compares the two recordings (parallel runs are not "
              "deterministic)", file=sys.stderr)
        return 2
    return verify(args.file, seed=args.seed, steps=args.steps, duration=args.duration,
                  overrides=args.overrides, args=args.launch_args, groups=args.group)


def _title(recording: Recording) -> str:
    meta = recording.metadata
    parts = [str(recording.path)]
    details = [f"{key} {meta[key]}" for key in ("mode", "seed") if key in meta]
    if details:
        parts.append(f"({', '.join(details)})")
    return " ".join(parts)


def _warn_about(recording: Recording) -> None:
    """Tell the user when the scores cover less than the whole run."""
    from catbus.wire.protocol import DROPS_TOPIC

    if not recording.complete:
        print(f"note: {recording.path} was not closed cleanly (recorder killed?); using the "
              "messages up to the last complete chunk", file=sys.stderr)
        return
    lost = recording.end_metadata.get("drops")
    if isinstance(lost, int) and lost > 0:
        streams = []
        for message in recording.messages([DROPS_TOPIC]):
            value = message.value if isinstance(message.value, dict) else {}
            streams = [f"{s['topic']} from {s['publisher']}: {s['lost']}"
                       for s in value.get("streams", []) if s.get("lost")]
        print(f"note: {lost} message(s) were lost before reaching the recorder"
              + (f" ({'; '.join(streams)})" if streams else ""), file=sys.stderr)


__all__ = ["add_eval_parser", "add_export_parser", "add_plot_parser", "add_verify_parser",
           "cmd_eval", "cmd_plot", "cmd_export", "cmd_verify"]
