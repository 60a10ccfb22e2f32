"""Live view of a running run in the Foxglove app: ``catbus foxglove`` and ``catbus launch --foxglove``.

The bridge joins a run like ``catbus topic echo`` does: it asks the registry for the graph (again
every :data:`~catbus.client.WATCH_EVERY` seconds, so nodes that join later are seen) and
connects one SUB socket, subscribed to every topic, straight to every publisher's endpoint. It
never registers, so it does not slow the run down or take part in its schedule.

It serves what it receives with the ``foxglove-sdk`` package (extra ``foxglove``), in its own
``foxglove.Context``: ``foxglove.start_server`` on a loopback port of its own, behind
:class:`~catbus.recording.foxglove_front.SubprotocolFront` on ``ws://HOST:PORT``, so that
clients of either name of Foxglove's WebSocket protocol connect (``foxglove.sdk.v1``, the SDK's;
``foxglove.websocket.v1``, older Foxglove Studio and Lichtblick) and see the same channels.

Channels, as in ``catbus export`` (:mod:`catbus.recording.export`):

- each topic is a ``json`` channel, created at the topic's first message, whose JSON Schema is
  inferred from that message; values are converted as the export converts them (arrays as
  lists, NaN/inf as ``"NaN"``/``"Infinity"``/``"-Infinity"``);
- ``catbus/log`` (the nodes' log records) is a ``json`` channel with the schema
  ``foxglove.Log`` (:data:`~catbus.recording.export.FOXGLOVE_LOG_SCHEMA`), so Foxglove's Log
  panel lists them;
- scene converters the node classes name (``foxglove_scene``, e.g. flat_evade's) add
  ``protobuf`` channels with Foxglove's own schemas (``foxglove.SceneUpdate``);
- ``catbus/progress`` is not served.

Time: in ``stepped`` and ``inline`` runs a message's log time is its *sim* time (as its
``publish_time`` in a recording), so Foxglove's timeline is the simulation's, whatever the pace;
in ``parallel`` runs, where time is the wall clock, it is the message's wall time (header
``wall_time``). The run's mode comes with the graph.

An inline run has no bus to join: :class:`LiveNode` (``catbus.recording.foxglove_bridge:LiveNode``
in a launch file) serves a run from inside it, in any mode, with the same channels and times.

It ends when the run ends (its run folder is removed, or its registry stops answering for
:data:`~catbus.client.REGISTRY_SILENCE` s), on Ctrl-C, or when :meth:`Bridge.stop` is
called; then the WebSocket server is stopped.

``catbus launch --foxglove [PORT]`` runs the same bridge in a thread of the launcher process
(:class:`BridgeThread`), started once the registry is bound and stopped (joined) when the run
returns. Parameters for the scene come from the launch file there; ``catbus foxglove`` knows only
the node classes (from the graph), so their defaults are used.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import zmq

from catbus.node import Input, Node
from catbus.params import Param
from catbus.wire import codec
from catbus.wire import messages as msg
from catbus.wire.protocol import EVERY_TOPIC, PROGRESS_TOPIC
from catbus.wire.sockets import dual_stack
from catbus.recording.foxglove_server import DEFAULT_PORT, SIM_TIME_MODES, LiveServer

#: The most data messages one pass of :meth:`Bridge.run` handles before it looks at the registry
#: and the end of the run again.
RECEIVE_BATCH = 1000
#: How often (seconds) :meth:`Bridge.run` looks for the end of the run and whether to ask for the
#: graph again, whether or not messages are coming.
CHECK_EVERY = 0.05


class Bridge:
    """Serve the topics of the run whose registry is at ``registry`` to Foxglove.

    ``nodes`` (``{name: {"class", "params"}}``, e.g. from the launch file) sets up scene
    converters at once; without it they are built from the graph's node classes. ``run_folder``
    (a run on this machine) lets the bridge see the end of the run at once. The server listens
    when the constructor returns (:attr:`port` is the actual port, also with port 0)."""

    def __init__(self, registry: str, *, port: int = DEFAULT_PORT, host: str = "127.0.0.1",
                 nodes: Mapping[str, Mapping[str, Any]] | None = None,
                 run_folder: str | None = None, import_path: Any = (),
                 say: Callable[[str], None] | None = None, keys: Any = None) -> None:
        from catbus.client import REGISTRY_SILENCE, WATCH_EVERY
        from catbus.supervise.rundir import RUN_FILE

        self.registry = registry
        self.keys = keys   # catbus.security.Keys of a secured TCP run, or None
        self.say = say or (lambda text: print(f"catbus foxglove: {text}", file=sys.stderr,
                                              flush=True))
        self.run_file = Path(run_folder) / RUN_FILE if run_folder else None
        self.watch_every, self.silence = WATCH_EVERY, REGISTRY_SILENCE
        self.nodes = dict(nodes) if nodes else None
        self.live = LiveServer(port=port, host=host, nodes=self.nodes, import_path=import_path,
                               say=self.say)
        self.port: int = self.live.port
        self.host = host
        self._stop = threading.Event()
        self.endpoints: set[str] = set()
        #: The run's mode, from its graph (None until the first graph came).
        self.mode: str | None = None
        #: Why the bridge ended (the run ended, stopped), once it has.
        self.reason: str | None = None
        #: Data messages received (``catbus/progress`` not counted), graph replies received,
        #: and the publishers connected to: ``{node name: endpoint}``.
        self.received = 0
        self.graphs = 0
        self.publishers: dict[str, str] = {}

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    @property
    def channels(self) -> dict[str, Any]:
        """The channels served, by topic."""
        return self.live.channels

    @property
    def scene_channels(self) -> dict[str, Any]:
        """The scene channels served, by topic."""
        return self.live.scene_channels

    def stop(self) -> None:
        """Ask :meth:`run` to end (from any thread)."""
        self._stop.set()

    def run(self) -> str:
        """Serve until the run ends or :meth:`stop`; returns why it ended. Stops the server."""
        ctx = zmq.Context.instance()
        sub = ctx.socket(zmq.SUB)
        sub.setsockopt(zmq.LINGER, 0)
        dual_stack(sub)   # publishers at IPv6 addresses, as well as IPv4
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        dealer = ctx.socket(zmq.DEALER)
        dealer.setsockopt(zmq.LINGER, 0)
        dual_stack(dealer)
        dealer.setsockopt(zmq.SNDHWM, 4)
        from catbus import security

        handshake = security.dial(dealer, self.registry, self.keys)
        poller = zmq.Poller()
        poller.register(sub, zmq.POLLIN)
        poller.register(dealer, zmq.POLLIN)
        answered = asked = checked = time.monotonic()
        first = True
        try:
            dealer.send(msg.encode(msg.GraphQuery()), zmq.NOBLOCK)
            while not self._stop.is_set():
                ready = dict(poller.poll(100))
                if dealer in ready:
                    while dealer.poll(0):
                        try:
                            reply = msg.decode(dealer.recv())
                        except msg.MalformedMessage:
                            continue
                        answered = time.monotonic()
                        if isinstance(reply, msg.Graph):
                            self.graphs += 1
                            self._on_graph(reply, sub)
                            if first:
                                first = False
                                self.say(f"serving run {reply.run} on {self.url} (open it in "
                                         f"Foxglove: Open connection, Foxglove WebSocket)")
                if sub in ready:
                    for _ in range(RECEIVE_BATCH):
                        try:
                            frames = sub.recv_multipart(zmq.NOBLOCK)
                        except zmq.Again:
                            break
                        self._on_frames(frames)
                # The watch runs on every pass, also while messages keep the SUB readable (a
                # running run: always). Skipping it then stopped the graph queries as soon as
                # the first publisher's data flowed, so a publisher missing from the graphs
                # seen until then (it registered a moment later) was never connected to.
                now = time.monotonic()
                if now - checked < CHECK_EVERY:
                    continue
                checked = now
                if self.run_file is not None and not self.run_file.exists():
                    self.reason = "the run ended"
                    break
                if handshake.problem():
                    self.reason = handshake.problem()
                    break
                if now - answered > self.silence:
                    self.reason = (f"the run ended (its registry at {self.registry} has not "
                                   f"answered for {self.silence:g} s)")
                    break
                if now - asked >= self.watch_every:
                    asked = now
                    try:
                        dealer.send(msg.encode(msg.GraphQuery()), zmq.NOBLOCK)
                    except zmq.Again:
                        pass
            else:
                self.reason = self.reason or "stopped"
        finally:
            handshake.close()
            sub.close()
            dealer.close()
            self.close()
        return self.reason or "stopped"

    def close(self) -> None:
        """Close the channels and stop the WebSocket server (idempotent). When it returns, the
        port is free again: a new bridge may listen on it at once."""
        self.live.close()

    # -- internals ------------------------------------------------------------------------------
    def _on_graph(self, graph: Any, sub: zmq.Socket) -> None:
        self.mode = getattr(graph, "mode", None) or self.mode
        self.live.sim_time = self.mode in SIM_TIME_MODES
        for node in graph.nodes:
            endpoint = node.get("endpoint")
            if node.get("outputs") and endpoint and endpoint not in self.endpoints:
                self.endpoints.add(endpoint)
                self.publishers[str(node.get("name"))] = endpoint
                from catbus import security

                key = str(node.get("key") or "").encode() or None   # its XPUB's CURVE key
                security.dial(sub, endpoint, self.keys, key).close()
        if self.nodes is None:   # no launch file: scene converters from the graph's classes
            self.live.add_scenes({n["name"]: {"class": n.get("cls")} for n in graph.nodes})

    def _on_frames(self, frames: list[Any]) -> None:
        try:
            topic, header, value = codec.decode_message(frames)
        except codec.DecodeError:
            return
        if topic == PROGRESS_TOPIC:
            return
        self.received += 1
        self.live.publish(topic, value, header.sim_time, header.wall_time)


class BridgeThread:
    """A :class:`Bridge` in a thread of this process; :meth:`stop` ends and joins it."""

    def __init__(self, make: Callable[[], Bridge | None]) -> None:
        self._make = make
        self._bridge: Bridge | None = None
        self._stopping = threading.Event()
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="catbus-foxglove", daemon=True)
        self._thread.start()

    @classmethod
    def for_launcher(cls, launcher: Any, spec: Any, *, port: int = DEFAULT_PORT,
                     host: str = "127.0.0.1") -> "BridgeThread":
        """Start a bridge once ``launcher``'s registry is bound (its run folder known)."""
        nodes = {n.name: {"class": n.class_path, "params": dict(n.params)}
                 for n in spec.nodes} if _has_node_fields(spec) else None

        def make() -> Bridge | None:
            while not launcher.bus_ready.wait(0.1):
                if thread.stopping:
                    return None
            if launcher.bus is None:
                return None
            folder = getattr(getattr(launcher, "rundir", None), "path", None)
            return Bridge(launcher.bus, port=port, host=host, nodes=nodes,
                          run_folder=str(folder) if folder else None,
                          import_path=getattr(spec, "import_path", ()) or (),
                          keys=getattr(launcher, "keys", None))

        thread = cls(make)
        return thread

    def _main(self) -> None:
        try:
            self._bridge = self._make()
        except BaseException as exc:   # e.g. no foxglove-sdk, or the port is taken
            self.error = exc
            print(f"catbus foxglove: not serving: {exc}", file=sys.stderr, flush=True)
            return
        finally:
            self.ready.set()
        if self._bridge is None:
            return
        if self._stopping.is_set():
            self._bridge.close()
            return
        self._bridge.run()

    @property
    def bridge(self) -> Bridge | None:
        return self._bridge

    @property
    def stopping(self) -> bool:
        """True once :meth:`stop` was called. The factory :meth:`for_launcher` builds waits for
        the launcher's bus and looks at this between waits, so a run that ends (or fails)
        before its bus is ready does not leave the thread waiting for a bus that never
        comes."""
        return self._stopping.is_set()

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        self.ready.wait(timeout)
        if self._bridge is not None:
            self._bridge.stop()
        self._thread.join(timeout)


class LiveNode(Node):
    """Serve the run this node is part of to Foxglove, from inside it: the live view of a run
    with no bus to join (``inline``), and of any other run as well.

    Add it to a launch file (``catbus.recording.foxglove_bridge:LiveNode``, params ``port`` and
    ``host``) and open ``ws://HOST:PORT`` in Foxglove; run inline at ``--pace 1`` to watch in
    real time. Like the recorder it reads every topic's raw frames, in schedule order in
    ``stepped`` and ``inline``; it publishes nothing. Channels, scenes and times are those of
    ``catbus foxglove`` (see the module documentation): sim times in ``stepped`` and ``inline``.
    """

    inputs = [Input(EVERY_TOPIC, "all")]
    outputs = ()
    wants_raw = True
    period = None
    params = {
        "port": Param(int, DEFAULT_PORT, "WebSocket port (0: a free one)"),
        "host": Param(str, "127.0.0.1", "address to listen on"),
    }

    live: LiveServer | None = None

    def setup(self, params: dict[str, Any]) -> None:
        from catbus.recording.mcap_layout import launch_nodes
        from catbus.spec.imports import recorded_import_path

        info = self.run_info
        self.live = LiveServer(port=params["port"], host=params["host"],
                               nodes=launch_nodes(info), import_path=recorded_import_path(info),
                               say=lambda text: self.log.warning(text))
        self.live.sim_time = info.get("mode") in SIM_TIME_MODES
        self.log.info(f"serving run {info.get('name')} on {self.live.url} (open it in "
                      f"Foxglove: Open connection, Foxglove WebSocket)")

    def on_raw(self, topic: str, header: Any, payload: Any, buffers: Any) -> None:
        if topic == PROGRESS_TOPIC or self.live is None:
            return
        try:
            value = codec.decode_payload(payload, buffers)
        except codec.DecodeError:
            return
        self.live.publish(topic, value, header.sim_time, header.wall_time)

    def close(self) -> None:
        if self.live is not None:
            self.live.close()


def _has_node_fields(spec: Any) -> bool:
    nodes = getattr(spec, "nodes", None)
    return bool(nodes) and all(hasattr(n, "name") and hasattr(n, "class_path")
                               and hasattr(n, "params") for n in nodes)


def serve(*, bus: str | None = None, run: str | None = None, port: int = DEFAULT_PORT,
          host: str = "127.0.0.1", keys: Any = None) -> int:
    """``catbus foxglove``: serve the run until it ends (exit 0) or Ctrl-C/SIGTERM (130/143)."""
    from catbus.client import find_run

    found = find_run(bus, run)
    from catbus.security import load_option

    bridge = Bridge(found["registry"], port=port, host=host, run_folder=found.get("folder"),
                    keys=load_option(keys))
    stopped: list[int] = []

    def on_signal(signum: int, _: Any) -> None:
        stopped.append(signum)
        bridge.stop()

    previous = signal.signal(signal.SIGTERM, on_signal)
    try:
        reason = bridge.run()
    except KeyboardInterrupt:
        bridge.stop()
        bridge.close()
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    if stopped:
        return 128 + stopped[0]
    print(f"catbus foxglove: {reason}", file=sys.stderr, flush=True)
    return 0


__all__ = ["Bridge", "BridgeThread", "LiveNode", "LiveServer", "serve", "DEFAULT_PORT",
           "SIM_TIME_MODES"]
