"""``catbus topic list|echo|hz``: the topics of a running run.

``echo`` and ``hz`` read the topic straight from its publishers (:func:`catbus.client.subscribe`),
so they observe the run without slowing it down, and end by themselves when the run they watch
ends (:class:`catbus.client.RunWatch`): exit code 0 and one line on stderr saying so.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import TYPE_CHECKING, Any

from catbus.cli.common import EXIT_CODES, RAW, add_run_choice, say_run

if TYPE_CHECKING:   # imported when used: building the parser loads no ZeroMQ
    import zmq

    from catbus.client import RunWatch


def add_parser(commands: Any) -> None:
    """Add ``topic`` to the ``catbus`` subcommands (``commands`` from ``add_subparsers``)."""
    p = commands.add_parser("topic", help="inspect topics of a running run",
                            epilog=EXIT_CODES, formatter_class=RAW,
                            description="list: topics, publishers, subscribers. echo: print "
                            "each message. hz: message rate.\necho and hz run until --count, "
                            "Ctrl-C (exit 130), or the end of the run they watch\n(then they "
                            "say so on stderr and exit 0).")
    p.add_argument("action", choices=("list", "echo", "hz"))
    p.add_argument("topic", nargs="?")
    add_run_choice(p, "registry address (default: the run on this machine)")
    p.add_argument("--count", type=int, help="echo: stop after N messages; hz: after N windows")
    p.set_defaults(func=cmd_topic)


def cmd_topic(args: argparse.Namespace) -> int:
    """``list``, ``echo TOPIC`` or ``hz TOPIC``; echo and hz without a topic: exit 2."""
    if args.action != "list" and not args.topic:
        print(f"catbus: topic {args.action}: name the topic, e.g. catbus topic {args.action} "
              "robot/sensors", file=sys.stderr)
        return 2
    if args.action == "list":
        return topic_list(args.bus, run=args.run, keys=args.keys)
    if args.action == "echo":
        return topic_echo(args.topic, args.bus, count=args.count, run=args.run, keys=args.keys)
    return topic_hz(args.topic, args.bus, count=args.count, run=args.run, keys=args.keys)


def topic_list(bus: str | None, run: str | None = None, keys: Any = None) -> int:
    """Each topic of the run, who publishes it and who reads it."""
    from catbus.client import find_run, query_graph, topics_of

    found = find_run(bus, run)
    graph = query_graph(found["registry"], keys=keys)
    say_run(found, graph)
    topics = topics_of(graph)
    width = max((len(t) for t in topics), default=5)
    for topic in sorted(topics):
        info = topics[topic]
        print(f"{topic.ljust(width)}  from {', '.join(info['publishers'])}"
              f"  to {', '.join(info['subscribers']) or '-'}")
    return 0


def _subscribe(topic: str, bus: str | None, run_name: str | None = None, keys: Any = None
               ) -> tuple[zmq.Socket, RunWatch]:
    """A SUB socket on ``topic``'s publishers and a watch on their run, once the run is
    named on stderr."""
    from catbus.client import client_keys, find_run, query_graph, subscribe

    run = find_run(bus, run_name)
    keys = client_keys(keys)
    graph = query_graph(run["registry"], keys=keys)
    run["name"] = run.get("name") or graph.get("run") or None
    say_run(run, graph)
    return subscribe(topic, run, graph, keys)


def _ended(watch: RunWatch) -> int:
    print(f"catbus: {watch.reason}", file=sys.stderr, flush=True)
    return 0


def _printable(value: Any) -> Any:
    """A message as JSON can show it: small arrays as lists, big ones as their shape."""
    import numpy as np

    if isinstance(value, np.ndarray):
        return value.tolist() if value.size <= 64 else f"<array {value.dtype} {value.shape}>"
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {k: _printable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_printable(v) for v in value]
    return value


def topic_echo(topic: str, bus: str | None, count: int | None = None,
               run: str | None = None, keys: Any = None) -> int:
    """Print every message on ``topic`` until ``count`` of them, Ctrl-C, or the end of the run
    (then: exit code 0 and one line on stderr saying the run ended)."""
    from catbus.wire import codec

    sock, watch = _subscribe(topic, bus, run, keys)
    seen = 0
    try:
        while count is None or seen < count:
            if not sock.poll(200):
                # Only when nothing is waiting: what the run sent before it ended is printed.
                if watch.ended():
                    return _ended(watch)
                continue
            frames = sock.recv_multipart()
            try:
                _, header, value = codec.decode_message(frames)
            except codec.DecodeError as exc:
                print(f"# malformed message dropped: {exc}", file=sys.stderr)
                continue
            print(f"--- {topic}  tick {header.tick}  t {header.sim_time:.4f}  seq {header.seq}")
            print(json.dumps(_printable(value), default=str), flush=True)
            seen += 1
    finally:
        sock.close()
        watch.close()
    return 0


def topic_hz(topic: str, bus: str | None, count: int | None = None, window: float = 1.0,
             run: str | None = None, keys: Any = None) -> int:
    """Messages per second on ``topic``, printed every ``window`` seconds (wall clock), until
    ``count`` windows, Ctrl-C, or the end of the run (exit code 0, one line on stderr)."""
    sock, watch = _subscribe(topic, bus, run, keys)
    windows = 0
    try:
        while count is None or windows < count:
            began, received = time.monotonic(), 0
            while time.monotonic() - began < window:
                if sock.poll(50):
                    sock.recv_multipart()
                    received += 1
                elif watch.ended():
                    return _ended(watch)
            rate = received / (time.monotonic() - began)
            print(f"{topic}: {rate:.1f} Hz ({received} messages in {window:g} s)", flush=True)
            windows += 1
    finally:
        sock.close()
        watch.close()
    return 0
