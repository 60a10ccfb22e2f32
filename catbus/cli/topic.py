"""``catbus topic list|echo|hz|pub``: the topics of a running run.

``echo`` and ``hz`` read the topic straight from its publishers (:func:`catbus.client.subscribe`),
so they observe the run without slowing it down, and end by themselves when the run they watch
ends (:class:`catbus.client.RunWatch`): exit code 0 and one line on stderr saying so. ``echo
--field a.b[0]`` prints only that field (:mod:`catbus.recording.fields`). ``pub`` joins a
parallel run as a node of its own that publishes one topic nobody else publishes
(:mod:`catbus.client.publish`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import TYPE_CHECKING, Any

from catbus.cli.common import EXIT_CODES, RAW, add_run_choice, print_json, say_run
from catbus.errors import CatbusError

if TYPE_CHECKING:   # imported when used: building the parser loads no ZeroMQ
    import zmq

    from catbus.client import RunWatch


def add_parser(commands: Any) -> None:
    """Add ``topic`` to the ``catbus`` subcommands (``commands`` from ``add_subparsers``)."""
    p = commands.add_parser("topic", help="inspect topics of a running run, publish on one",
                            epilog=EXIT_CODES, formatter_class=RAW,
                            description="list: topics, publishers, subscribers. echo: print "
                            "each message (--field: one field of it). hz: message rate.\n"
                            "pub TOPIC VALUE: publish VALUE (YAML flow, e.g. '{control: [[1.0], "
                            "[0.0]]}') on a topic no node publishes,\njoining a parallel run as "
                            "a node of its own (stepped and inline runs refuse it).\necho, hz "
                            "and pub run until --count, Ctrl-C (exit 130), or the end of the run "
                            "they watch\n(then they say so on stderr and exit 0).")
    p.add_argument("action", choices=("list", "echo", "hz", "pub"))
    p.add_argument("topic", nargs="?")
    p.add_argument("value", nargs="?", help="pub: the message, in YAML flow style")
    add_run_choice(p, "registry address (default: the run on this machine)")
    p.add_argument("-n", "--count", type=int, help="echo: stop after N messages; hz: after N "
                   "windows; pub: publish N messages, then leave the run (default: until Ctrl-C "
                   "or the run's end)")
    p.add_argument("--field", metavar="PATH", help="echo: print only this field of each "
                   "message, e.g. robot.pos[0] (keys with dots, [i] for elements)")
    p.add_argument("--rate", type=float, default=1.0, metavar="HZ",
                   help="pub: messages per second (default 1)")
    p.add_argument("--numpy", action="store_true", help="pub: send every list of numbers "
                   "(nested, rectangular) as a float64 numpy array, for readers that do array "
                   "arithmetic on it (default: plain lists, as YAML gives them)")
    p.add_argument("--json", action="store_true", help="list: as JSON; echo: one JSON object "
                   "per message ({topic, tick, t, seq, value})")
    p.set_defaults(func=cmd_topic)


def _refuse(action: str, why: str) -> int:
    print(f"catbus: topic {action}: {why}", file=sys.stderr)
    return 2


def cmd_topic(args: argparse.Namespace) -> int:
    """``list``, ``echo TOPIC``, ``hz TOPIC`` or ``pub TOPIC VALUE``; a missing topic or value,
    or an option of another action: one line, exit 2."""
    action = args.action
    if action != "list" and not args.topic:
        return _refuse(action, f"name the topic, e.g. catbus topic {action} robot/sensors"
                       + (" '{x: 1.0}'" if action == "pub" else ""))
    if args.value is not None and action != "pub":
        return _refuse(action, f"unexpected argument {args.value!r} (only pub takes a value)")
    if args.field is not None and action != "echo":
        return _refuse(action, "--field is echo's (catbus topic echo TOPIC --field a.b[0])")
    if args.count is not None and args.count < 1:
        return _refuse(action, f"--count {args.count}: give 1 or more")
    if action == "list":
        return topic_list(args.bus, run=args.run, keys=args.keys, as_json=args.json)
    if action == "echo":
        return topic_echo(args.topic, args.bus, count=args.count, run=args.run, keys=args.keys,
                          field=args.field, as_json=args.json)
    if action == "pub":
        if args.value is None:
            return _refuse(action, f"give the message, e.g. catbus topic pub {args.topic} "
                                   "'{x: 1.0}' (YAML flow style)")
        return topic_pub(args.topic, args.value, args.bus, rate=args.rate, count=args.count,
                         run=args.run, keys=args.keys, numpy=args.numpy)
    return topic_hz(args.topic, args.bus, count=args.count, run=args.run, keys=args.keys)


def topic_list(bus: str | None, run: str | None = None, keys: Any = None,
               as_json: bool = False) -> int:
    """Each topic of the run, who publishes it and who reads it."""
    from catbus.client import find_run, query_graph, topics_of

    found = find_run(bus, run)
    graph = query_graph(found["registry"], keys=keys)
    say_run(found, graph)
    topics = topics_of(graph)
    if as_json:
        print_json({topic: {"publishers": info["publishers"], "subscribers": info["subscribers"]}
                    for topic, info in sorted(topics.items())})
        return 0
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
               run: str | None = None, keys: Any = None, field: str | None = None,
               as_json: bool = False) -> int:
    """Print every message on ``topic`` (``field``: only that field of it) until ``count`` of
    them, Ctrl-C, or the end of the run (then: exit code 0 and one line on stderr saying the
    run ended). A message without ``field``: one line naming what it has instead, exit 2."""
    from catbus.recording.fields import FieldError, get_field, parse_field
    from catbus.wire import codec

    parts = parse_field(field) if field is not None else None   # a bad path: before connecting
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
            if parts is not None:
                try:
                    value = get_field(value, parts)
                except FieldError as exc:
                    print(f"catbus: topic echo: {topic} (tick {header.tick}): {exc}",
                          file=sys.stderr)
                    return 2
            if as_json:
                print(json.dumps({"topic": topic, "tick": header.tick, "t": header.sim_time,
                                  "seq": header.seq, "value": _printable(value)}, default=str),
                      flush=True)
            else:
                print(f"--- {topic}{f' {field}' if field else ''}  tick {header.tick}  "
                      f"t {header.sim_time:.4f}  seq {header.seq}")
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


def topic_pub(topic: str, value: str, bus: str | None, rate: float = 1.0,
              count: int | None = None, run: str | None = None, keys: Any = None,
              numpy: bool = False) -> int:
    """Publish ``value`` (YAML flow text) on ``topic`` ``rate`` times a second, ``count`` times
    (None: until Ctrl-C or the run's end), as a node of its own in a parallel run. Refused with
    one line (exit 2) when the run is not parallel, or a node already publishes ``topic``."""
    from catbus.client import find_run, query_graph
    from catbus.client.publish import guest_name, parse_value, publish, publish_problem

    message = parse_value(value, numpy=numpy)   # a bad VALUE: before anything connects
    if not rate > 0:
        return _refuse("pub", f"--rate {rate:g}: give a rate above 0 (messages per second)")
    try:
        found = find_run(bus, run)
    except CatbusError as exc:
        if str(exc).startswith("no catbus run is running"):
            raise CatbusError(f"{exc} (an inline run has no bus: nothing can join it)") from None
        raise
    graph = query_graph(found["registry"], keys=keys)
    run_name = found.get("name") or graph.get("run") or None
    found["name"] = run_name
    say_run(found, graph)
    problem = publish_problem(graph, topic)
    if problem is not None:
        return _refuse("pub", problem)
    name = guest_name(topic, (node["name"] for node in graph.get("nodes", [])))
    sent, code = publish(found, topic, message, rate=rate, count=count, keys=keys, name=name)
    if sent or code != 1:   # (refused by the registry: the runtime said why)
        print(f"catbus: topic pub: published {sent} message(s) on {topic}", file=sys.stderr,
              flush=True)
    return code
