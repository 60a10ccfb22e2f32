"""Looking into a running run: ``catbus topic list|echo|hz``, ``catbus node list``, ``catbus bus``.

A run on this machine is found through its run folder (see :mod:`catbus.supervise.rundir`): the only
live run, or the one ``--run NAME`` names (with several live runs and neither ``--run`` nor
``--bus``, the tools refuse to guess); ``--bus`` names any other. Each tool says on stderr which
run it talks to. ``echo`` and ``hz`` connect a SUB socket straight to the topic's publisher, like any
node, so they observe the run without slowing it down through a broker. They end by themselves
when the run they watch ends (:class:`RunWatch`): its run folder is removed, or its registry stops
answering.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

import zmq

from catbus import security
from catbus.wire import codec
from catbus.wire import messages as msg
from catbus.errors import CatbusError
from catbus.supervise.rundir import RUN_FILE, running_runs, select_run

#: How often ``echo`` and ``hz`` ask the registry whether the run is still there, and how long it
#: may leave them unanswered before they take the run for gone.
WATCH_EVERY = 0.5
REGISTRY_SILENCE = 3.0


def find_run(bus: str | None, run: str | None = None) -> dict[str, Any]:
    """``{"registry", "folder", "name", ...}`` of the run at ``bus`` (folder and name unknown:
    None), else of the run on this machine ``run`` names, else of the only one running."""
    if bus and run:
        raise CatbusError("give --run NAME (a run on this machine) or --bus ADDR, not both")
    if bus:
        return {"registry": bus, "folder": None, "name": None, "id": None}
    info = select_run(run)
    return dict(info, name=info["id"])


def find_registry(bus: str | None, run: str | None = None) -> str:
    """``bus`` if given, else the registry of the run ``run`` names, else of the only run."""
    return find_run(bus, run)["registry"]


def _say_run(run: dict[str, Any], graph: dict[str, Any] | None = None) -> None:
    """One line on stderr naming the run a tool talks to (stdout stays the tool's data)."""
    name = run.get("name") or (graph or {}).get("run") or "?"
    mode = run.get("mode") or (graph or {}).get("mode")
    pid = f"pid {run['pid']}, " if run.get("pid") else ""
    print(f"catbus: run {name} ({pid}mode {mode or '?'}) on {run['registry']}",
          file=sys.stderr, flush=True)


class RunWatch:
    """Tells a tool watching a run (``echo``, ``hz``) that the run has ended: its run folder was
    removed (a run on this machine; the launcher removes it last), or its registry has not
    answered a ``graph?`` for :data:`REGISTRY_SILENCE` seconds (any run, also one whose launcher
    was killed, or one on another host). Cheap to call often: it asks at most every
    :data:`WATCH_EVERY` seconds and never blocks."""

    def __init__(self, run: dict[str, Any], keys: Any = None) -> None:
        self.address, self.name = run["registry"], run.get("name") or run["registry"]
        self.run_file = Path(run["folder"]) / RUN_FILE if run.get("folder") else None
        self.socket = zmq.Context.instance().socket(zmq.DEALER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.setsockopt(zmq.SNDHWM, 4)
        self.handshake = security.dial(self.socket, self.address, keys)
        self.answered = self.asked = time.monotonic()
        #: Why the run is taken for ended, once it is.
        self.reason: str | None = None

    def ended(self) -> bool:
        if self.reason is not None:
            return True
        now = time.monotonic()
        if self.run_file is not None and not self.run_file.exists():
            self.reason = f"run {self.name} ended"
            return True
        while self.socket.poll(0):
            try:
                msg.decode(self.socket.recv())
                self.answered = now
            except msg.MalformedMessage:
                pass
        refused = self.handshake.problem()
        if refused or now - self.answered > REGISTRY_SILENCE:
            self.reason = refused or (f"run {self.name} ended (its registry at "
                                      f"{self.address} has not answered for "
                                      f"{REGISTRY_SILENCE:g} s)")
            return True
        if now - self.asked >= WATCH_EVERY:
            self.asked = now
            try:
                self.socket.send(msg.encode(msg.GraphQuery()), zmq.NOBLOCK)
            except zmq.Again:
                pass
        return False

    def close(self) -> None:
        self.handshake.close()
        self.socket.close()


def query_graph(bus: str | None, timeout: float = 3.0, run: str | None = None,
                keys: Any = None) -> dict[str, Any]:
    """Ask the registry who is in the run (the same ``graph`` nodes receive). ``keys``: a
    :class:`catbus.security.Keys`, or a ``--keys`` folder."""
    from catbus.client.ask import ask_registry

    address = find_registry(bus, run)
    keys = security.load_option(keys) if isinstance(keys, (str, Path)) else keys
    reply = ask_registry(address, msg.GraphQuery(), timeout=timeout, keys=keys)
    if not isinstance(reply, msg.Graph):
        raise CatbusError(f"{address} is not a catbus registry")
    return {"op": reply.OP, "nodes": reply.nodes, "mode": reply.mode, "started": reply.started,
            "run": reply.run}


def _topics(graph: dict[str, Any]) -> dict[str, dict[str, Any]]:
    topics: dict[str, dict[str, Any]] = {}
    for node in graph["nodes"]:
        for _, topic in node["outputs"]:
            topics.setdefault(topic, {"publishers": [], "subscribers": [], "endpoints": [],
                                      "keys": []})
            topics[topic]["publishers"].append(node["name"])
            topics[topic]["endpoints"].append(node["endpoint"])
            topics[topic]["keys"].append(str(node.get("key") or ""))   # CURVE: its XPUB's key
    for node in graph["nodes"]:
        for _, topic, _ in node["inputs"]:
            if topic in topics:
                topics[topic]["subscribers"].append(node["name"])
    return topics


def topic_list(bus: str | None, run: str | None = None, keys: Any = None) -> int:
    found = find_run(bus, run)
    graph = query_graph(found["registry"], keys=keys)
    _say_run(found, graph)
    topics = _topics(graph)
    width = max((len(t) for t in topics), default=5)
    for topic in sorted(topics):
        info = topics[topic]
        print(f"{topic.ljust(width)}  from {', '.join(info['publishers'])}"
              f"  to {', '.join(info['subscribers']) or '-'}")
    return 0


def node_list(bus: str | None, run: str | None = None, keys: Any = None) -> int:
    found = find_run(bus, run)
    graph = query_graph(found["registry"], keys=keys)
    _say_run(found, graph)
    print(f"mode {graph.get('mode')}, {'running' if graph.get('started') else 'starting'}")
    for node in graph["nodes"]:
        period = f"{node['period']:g} s" if node.get("period") else "reactive"
        print(f"{node['name']:<12} {node['state']:<10} pid {node['pid']:<8} {node['host']:<12} "
              f"{period:<10} tick {node['tick']:<8} {node['cls']}")
        if node.get("pending"):   # a swap or restart in progress, and what it waits for
            print(f"{'':<12} pending: {node['pending']}")
    return 0


def _subscribe(topic: str, bus: str | None, run_name: str | None = None, keys: Any = None
               ) -> tuple[zmq.Socket, RunWatch]:
    """A SUB socket on ``topic``'s publishers, and a watch on the run they belong to."""
    run = find_run(bus, run_name)
    keys = security.load_option(keys) if isinstance(keys, (str, Path)) else keys
    graph = query_graph(run["registry"], keys=keys)
    run["name"] = run.get("name") or graph.get("run") or None
    _say_run(run, graph)
    topics = _topics(graph)
    if topic not in topics:
        known = ", ".join(sorted(topics)) or "none"
        raise CatbusError(f"no node publishes {topic!r} in this run (topics: {known})")
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.SUB)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SUBSCRIBE, codec.topic_frame(topic))
    for endpoint, key in zip(topics[topic]["endpoints"], topics[topic]["keys"]):
        security.dial(sock, endpoint, keys, key.encode() or None).close()   # each publisher's key
    return sock, RunWatch(run, keys)


def _ended(watch: RunWatch) -> int:
    print(f"catbus: {watch.reason}", file=sys.stderr, flush=True)
    return 0


def _printable(value: Any) -> Any:
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


def run_list(as_json: bool = False) -> int:
    """``catbus run list``: every live run on this machine, newest first."""
    import datetime

    runs = running_runs()
    rows = [{"name": r["id"], "pid": r.get("pid"),
             "started": datetime.datetime.fromtimestamp(float(r["started"])).isoformat(
                 timespec="seconds"),
             "mode": r.get("mode"), "bus": r.get("registry"), "folder": r["folder"],
             "launch_name": r.get("name"), "record": r.get("record")} for r in runs]
    if as_json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no catbus run is running on this machine", file=sys.stderr)
        return 0
    header = ("NAME", "PID", "STARTED", "MODE", "BUS", "FOLDER")
    table = [header] + [(r["name"], str(r["pid"]), r["started"].replace("T", " "),
                         str(r["mode"] or "-"), str(r["bus"]), r["folder"]) for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
    for row in table:
        print("  ".join([c.ljust(w) for c, w in zip(row, widths)] + [row[-1]]))
    return 0


def host_bus(bind: str | None, *, mode: str = "parallel", seed: int = 0,
             keys: Any = None) -> int:
    """``catbus bus``: a registry with no launch file; nodes start as soon as they connect.
    ``bind`` None: ipc in the bus's run folder; a ``tcp://`` address with port 0 or ``*``: a
    free port. An address that cannot be bound is one line (exit 2), and no folder is left."""
    from catbus.control import Notice, NoticeKind, RunConfig
    from catbus.errors import ConfigError
    from catbus.supervise.registry import Registry
    from catbus.supervise.rundir import RunDir
    from catbus.wire.protocol import bus_address_problem

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
        raise ConfigError("--bind", bind or "ipc", f"cannot bind: {exc.strerror} (HOST must be "
                          f"an address of this machine, or 0.0.0.0, and PORT free; port 0 "
                          f"picks a free one)") from None
    stopping: list[int] = []
    try:
        published = rundir.publish(registry.endpoint, "bus", mode=mode)
        security.announce(registry.endpoint, keys)
        print(f"catbus bus: run {published['id']}, registry at {registry.endpoint}; join with "
              f"catbus node module:Class --name NAME --bus {registry.endpoint}", flush=True)
        previous = signal.signal(signal.SIGTERM, lambda signum, _: stopping.append(signum))
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
    except KeyboardInterrupt:
        stopping.append(signal.SIGINT)
    finally:
        registry.stop("the bus is shutting down")
        registry.close()
        rundir.remove()
        signal.signal(signal.SIGTERM, previous)
    # Stopped by a signal, like every catbus command: 128 + the signal (130 Ctrl-C, 143 SIGTERM).
    return 128 + stopping[0]
