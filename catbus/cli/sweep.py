"""``catbus sweep FILE``: a grid of settings x seeds, one episode each, and a summary of the
scores (the sweep itself: :mod:`catbus.sweep`)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from catbus.cli.common import EXIT_CODES, RAW, add_arg_option, add_log_level, print_json
from catbus.wire.protocol import MODES


def add_parser(commands: Any) -> None:
    """Add ``sweep`` to the ``catbus`` subcommands (``commands`` from ``add_subparsers``)."""
    p = commands.add_parser("sweep", help="run a grid of settings x seeds, one episode each, "
                            "and summarize the scores", epilog=EXIT_CODES,
                            formatter_class=RAW,
                            description="Every (setting, seed) episode in its own worker "
                            "process (private endpoints\nand files). Rows are streamed to --out "
                            "as they come: --out runs/r.csv writes\nruns/r.csv and runs/r.jsonl,"
                            " and a failed episode's whole error (traceback)\ngoes to "
                            "runs/r.logs/SETTING/seed-N.log. At the end, a summary per setting:\n"
                            "numbers as mean ± std and 95% CI, booleans as the rate of true and "
                            "its 95%\nWilson interval. Exit 1 if any episode failed; Ctrl-C: "
                            "130, finished rows kept\n(--resume runs the rest).")
    p.add_argument("file", help="launch file (YAML)")
    p.add_argument("--seeds", default=None, metavar="A:B|S,S,..", help="seeds: A:B half-open "
                   "(0:100 is 0..99) or a list 3,7,9 (default: the file's seed)")
    p.add_argument("--set", dest="grid", action="append", default=[],
                   metavar="NODE.PARAM=V1,V2,..", help="values of a parameter (repeatable; every "
                   "combination is a setting); split on top-level commas, each read as YAML "
                   "flow: --set robot.feedback.u_max=[100,100],[200,200]")
    add_arg_option(p)
    p.add_argument("--mode", choices=MODES, default="inline", help="default inline")
    p.add_argument("--jobs", type=int, default=None, help="worker processes, at least 1 "
                   "(default: cores)")
    p.add_argument("--out", metavar="FILE.csv", help="results table; its rows also as JSON "
                   "lines in FILE.jsonl, failed episodes' errors in FILE.logs/")
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
    add_log_level(p, "WARNING")
    p.add_argument("--cluster", metavar="tcp://HOST:PORT", default=None,
                   help="run the episodes on this Dask distributed scheduler's workers "
                   "(pip install 'catbus[dask]'); no scheduler within 10 s: exit 1")
    p.set_defaults(func=cmd_sweep)


def cmd_sweep(args: argparse.Namespace) -> int:
    """Run every episode, print the summary per setting and each failed row; exit 1 if any
    episode failed, so a script sees it without reading the table."""
    from catbus.sweep.api import score_keys, sweep
    from catbus.sweep.grid import parse_seeds, parse_sets
    from catbus.sweep.stats import format_summary, summarize

    from catbus.errors import ConfigError

    if args.jobs is not None and args.jobs < 1:
        raise ConfigError("command line", "--jobs", f"must be at least 1 worker process, got "
                                                    f"{args.jobs}")
    if args.episode_timeout is not None and not args.episode_timeout > 0:
        raise ConfigError("command line", "--episode-timeout", f"must be a number of seconds "
                                                               f"above 0, got "
                                                               f"{args.episode_timeout:g}")
    grid = parse_sets(args.grid)
    seeds = parse_seeds(args.seeds) if args.seeds is not None else None
    if args.resume and not args.out:
        print("catbus: sweep: --resume needs --out (the rows to resume from)", file=sys.stderr)
        return 2
    launch: Any = args.file
    if args.launch_args:
        # The file with its arguments substituted and includes expanded, checked once here; the
        # episodes run that document (absolute paths, so from any worker's folder).
        from catbus.api.run import load

        launch = load(args.file, args=args.launch_args).document
    rows = sweep(launch, seeds=seeds, grid=grid, mode=args.mode, jobs=args.jobs,
                 out=args.out, record=args.record, steps=args.steps, fresh=args.fresh,
                 episode_timeout=args.episode_timeout, resume=args.resume,
                 progress=None if not args.no_progress else False, deadline=args.deadline,
                 cluster=args.cluster, log_level=args.log_level)
    summary = summarize(rows, score_keys(rows, list(grid)))
    failed = [r for r in rows if r.get("status") != "ok"]
    if args.json:
        print_json(summary)
    else:
        print(format_summary(summary))
        for row in failed:
            error = str(row.get("error") or "").strip().splitlines()
            log = f" (whole error: {row['error_log']})" if row.get("error_log") else ""
            print(f"failed: {row.get('setting')} seed {row.get('seed')}: "
                  f"{error[0] if error else row.get('exit_code')}{log}")
        if args.out:
            from catbus.sweep.results import paths_for

            table, lines = paths_for(args.out)
            print(f"results: {table} (and {lines})")
    return 1 if failed else 0
