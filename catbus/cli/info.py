"""``catbus info RUN.mcap``: what a recording holds, like ``ros2 bag info``: the run (mode, seed,
length in sim and wall time), its nodes with classes and processes, its topics with message
counts and rates, losses, swaps, restarts, scores and why it ended
(:func:`catbus.recording.summary.summarize`). ``--json``: the same as one JSON object.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from catbus.cli.common import json_error, print_json
from catbus.errors import CatbusError


def add_parser(commands: Any) -> None:
    """Add ``info`` to the ``catbus`` subcommands (``commands`` from ``add_subparsers``)."""
    p = commands.add_parser("info", help="summarize a recording: run, nodes, topics, rates, "
                            "losses, swaps, scores")
    p.add_argument("file", help="MCAP recording")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--no-eval", action="store_true", help="leave out the evaluator's scores "
                   "(only what the nodes reported)")
    p.set_defaults(func=cmd_info)


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def format_info(info: dict[str, Any]) -> str:
    """The summary as ``catbus info`` prints it."""
    lines = [f"file:      {info['file']}" + ("" if info["complete"] else
                                              "  (not closed cleanly: read up to its last "
                                              "complete chunk)"),
             f"run:       {info['run'] or '?'}, mode {info['mode'] or '?'}, seed "
             f"{info['seed'] if info['seed'] is not None else '?'}",
             f"duration:  {info['duration_sim_s']:.3f} s sim"
             + (f" (last tick {info['last_tick']})" if info["last_tick"] is not None else "")
             + f", {info['duration_wall_s']:.3f} s wall",
             f"messages:  {info['messages']}",
             f"ended:     {info['end_reason']}", "nodes:"]
    for name, node in info["nodes"].items():
        period = (f"{node['period']:g} s" if node.get("period") else "reactive"
                  if node.get("launched", True) else "joined from outside the launch file")
        incarnations = node["incarnations"]
        processes = f", {len(incarnations)} processes" if len(incarnations) > 1 else ""
        lines.append(f"  {name:<14} {node.get('class') or '?'}  ({period}"
                     f"{', remote' if node.get('remote') else ''}{processes})")
    lines.append("topics:")
    width = max((len(t) for t in info["topics"]), default=5)
    lines.append(f"  {'topic'.ljust(width)}  {'messages':>8}  {'Hz sim':>8}  {'Hz wall':>8}  from")
    for topic, row in info["topics"].items():
        lines.append(f"  {topic.ljust(width)}  {row['messages']:>8}  {_rate(row['hz_sim']):>8}"
                     f"  {_rate(row['hz_wall']):>8}  {', '.join(row['publishers']) or '-'}")
    drops = info["drops"]
    lost = "; ".join(f"{s.get('topic')} from {s.get('publisher')}: {s.get('lost')}"
                     for s in drops["streams"])
    lines.append(f"drops:     {drops['total'] if drops['total'] is not None else '?'}"
                 + (f" ({lost})" if lost else "")
                 + (f", malformed {drops['malformed']}" if drops.get("malformed") else ""))
    from catbus.control import describe

    def describe_record(record: dict[str, Any]) -> str:
        try:
            return describe(record)
        except (KeyError, TypeError, ValueError):   # a record of another catbus version
            return str(record)

    for key in ("swaps", "restarts", "rejoins"):
        lines.append(f"{key + ':':<10} {len(info[key]) or 'none'}")
        lines.extend(f"  {describe_record(record)}" for record in info[key])
    if info["param_changes"]:
        lines.append(f"params:    {len(info['param_changes'])} live change(s)")
        lines.extend(f"  tick {c.get('tick')}: {c.get('node')} {c.get('changed')}"
                     for c in info["param_changes"])
    if info["spliced"]:
        lines.append(f"spliced:   {info['spliced']}")
    if info["scores"]:
        from catbus.recording.evaluate import format_table

        lines.append("scores:")
        lines.extend(f"  {line}" for line in format_table(info["scores"]).splitlines())
    if info.get("scores_note"):
        lines.append(f"scores:    evaluator not run: {info['scores_note']}")
    return "\n".join(lines)


def cmd_info(args: argparse.Namespace) -> int:
    """``catbus info FILE [--json] [--no-eval]``; a file that is not a recording: exit 2."""
    from catbus.recording.evaluate import to_jsonable
    from catbus.recording.summary import summarize

    try:
        info = summarize(args.file, scores=not args.no_eval)
    except CatbusError as exc:
        print(f"catbus info: {exc}", file=sys.stderr)
        if args.json:
            json_error(str(exc), 2)
        return 2
    if args.json:
        print_json(to_jsonable(info))
    else:
        print(format_info(info))
    return 0


__all__ = ["add_parser", "cmd_info", "format_info"]
