"""Bodies of ``catbus eval`` and ``catbus plot`` (the main CLI parses the arguments).

Both take an :class:`argparse.Namespace` and return the process exit code: 0 on success, 2 on a
:class:`~catbus.errors.CatbusError` (its one-line message goes to stderr, without a traceback).
Notes about the file itself (cut short, messages lost) go to stderr, so ``--json`` output on stdout
stays machine-readable.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from catbus.errors import CatbusError
from catbus.recording.evaluate import NoFFmpeg, evaluate_file, format_table, plot_file, \
    to_jsonable
from catbus.wire.protocol import DROPS_TOPIC
from catbus.recording.reader import Recording


def cmd_eval(args: argparse.Namespace) -> int:
    """``catbus eval FILE [--json] [--d-min D]``: print the run's scores."""
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
            print(json.dumps({"error": str(exc), "exit_code": 2}, indent=2))
        return 2
    if getattr(args, "json", False):
        print(json.dumps(to_jsonable(scores), indent=2))
    else:
        print(_title(recording))
        print(format_table(scores))
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    """``catbus plot FILE [-o OUT] [--mp4]``: draw the run as a PNG (default ``FILE.png``); with
    ``--mp4`` also an animation beside it (``.mp4``, needs ffmpeg: without it, the PNG is
    written, then one line says why there is no MP4, exit 2)."""
    mp4 = bool(getattr(args, "mp4", False))
    try:
        recording = Recording(args.file)
        _warn_about(recording)
        output = getattr(args, "output", None)
        out = Path(output) if output else Path(args.file).with_suffix(".png")
        written = plot_file(recording, out, mp4=mp4)
    except NoFFmpeg as exc:
        # The PNG is drawn all the same; the missing animation is an error (exit 2).
        for path in exc.written:
            print(f"wrote {path}")
        print(f"catbus plot: {exc}", file=sys.stderr)
        return 2
    except CatbusError as exc:
        print(f"catbus plot: {exc}", file=sys.stderr)
        return 2
    for path in written:
        print(f"wrote {path}")
    return 0


def _title(recording: Recording) -> str:
    meta = recording.metadata
    parts = [str(recording.path)]
    details = [f"{key} {meta[key]}" for key in ("mode", "seed") if key in meta]
    if details:
        parts.append(f"({', '.join(details)})")
    return " ".join(parts)


def _warn_about(recording: Recording) -> None:
    """Tell the user when the scores cover less than the whole run."""
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


__all__ = ["cmd_eval", "cmd_plot"]
