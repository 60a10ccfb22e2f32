"""Live view of a running run in the Foxglove app: ``catbus foxglove`` and ``catbus launch --foxglove``.

The bridge joins a run like ``catbus topic echo`` does: it asks the registry for the graph (again
every :data:`~catbus.client.WATCH_EVERY` seconds, so nodes that join later are seen) and
connects one SUB socket, subscribed to every topic, straight to every publisher's endpoint. It
never registers, so it does not slow the run down or take part in its schedule.

It serves what it receives with the ``foxglove-sdk`` package (extra ``foxglove``):
``foxglove.start_server`` on ``ws://HOST:PORT`` (Foxglove's WebSocket protocol,
``foxglove.websocket.v1``), in its own ``foxglove.Context``. Each topic is a ``json`` channel,
created at the topic's first message, whose JSON Schema is inferred from that message; values are
converted exactly as ``catbus export`` does (:mod:`catbus.recording.export`: arrays as lists,
NaN/inf as ``"NaN"``/``"Infinity"``/``"-Infinity"``). Scene converters the node classes name
(``foxglove_scene``, e.g. flat_evade's) add ``foxglove.SceneUpdate`` channels. ``catbus/progress``
is not served. Log times are the messages' wall times (header ``wall_time``).

It ends when the run ends (its run folder is removed, or its registry stops answering for
:data:`~catbus.client.REGISTRY_SILENCE` s), on Ctrl-C, or when :meth:`Bridge.stop` is
called; then the WebSocket server is stopped.

``catbus launch --foxglove [PORT]`` runs the same bridge in a thread of the launcher process
(:class:`BridgeThread`), started once the registry is bound and stopped (joined) when the run
returns. Parameters for the scene come from the launch file there; ``catbus foxglove`` knows only
the node classes (from the graph), so their defaults are used.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import zmq

from catbus.errors import CatbusError
from catbus.recording.export import SchemaBuilder, message_json, scene_converters
from catbus.wire import codec
from catbus.wire import messages as msg
from catbus.wire.protocol import PROGRESS_TOPIC

DEFAULT_PORT = 8765
#: The most data messages one pass of :meth:`Bridge.run` handles before it looks at the registry
#: and the end of the run again.
RECEIVE_BATCH = 1000
#: How often (seconds) :meth:`Bridge.run` looks for the end of the run and whether to ask for the
#: graph again, whether or not messages are coming.
CHECK_EVERY = 0.05
#: The longest :meth:`Bridge.close` waits for the WebSocket server's port to be free again.
PORT_RELEASE_TIMEOUT = 5.0


def _import_foxglove() -> Any:
    try:
        import foxglove
    except ImportError:
        raise CatbusError("the Foxglove bridge needs the foxglove-sdk package: "
                          "pip install 'catbus[foxglove]'") from None
    return foxglove


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

        foxglove = _import_foxglove()
        self._foxglove = foxglove
        self.registry = registry
        self.keys = keys   # catbus.security.Keys of a secured TCP run, or None
        self.say = say or (lambda text: print(f"catbus foxglove: {text}", file=sys.stderr,
                                              flush=True))
        self.run_file = Path(run_folder) / RUN_FILE if run_folder else None
        self.watch_every, self.silence = WATCH_EVERY, REGISTRY_SILENCE
        self.import_path = list(import_path)
        self.context = foxglove.Context()
        self.server = foxglove.start_server(name="catbus", host=host, port=port,
                                            context=self.context)
        self.port: int = self.server.port
        self.host = host
        self._stop = threading.Event()
        self.channels: dict[str, Any] = {}
        self.scene_channels: dict[str, Any] = {}
        self.endpoints: set[str] = set()
        self.converters: list[Any] = []
        self._scene_classes: set[str] = set()
        self.nodes = dict(nodes) if nodes else None
        if self.nodes is not None:
            self.converters = scene_converters(self.nodes, import_path=self.import_path,
                                               warn=self.say)
            self._scene_classes = {str(n.get("class")) for n in self.nodes.values()}
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

    def stop(self) -> None:
        """Ask :meth:`run` to end (from any thread)."""
        self._stop.set()

    def run(self) -> str:
        """Serve until the run ends or :meth:`stop`; returns why it ended. Stops the server."""
        ctx = zmq.Context.instance()
        sub = ctx.socket(zmq.SUB)
        sub.setsockopt(zmq.LINGER, 0)
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        dealer = ctx.socket(zmq.DEALER)
        dealer.setsockopt(zmq.LINGER, 0)
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
        port is free again (or :data:`PORT_RELEASE_TIMEOUT` s have passed): a new bridge may
        listen on it at once."""
        server, self.server = self.server, None
        if server is None:
            return
        for channel in [*self.channels.values(), *self.scene_channels.values()]:
            try:
                channel.close()
            except Exception:
                pass
        server.stop()
        _wait_port_released(self.host, self.port, PORT_RELEASE_TIMEOUT)

    # -- internals ------------------------------------------------------------------------------
    def _on_graph(self, graph: Any, sub: zmq.Socket) -> None:
        for node in graph.nodes:
            endpoint = node.get("endpoint")
            if node.get("outputs") and endpoint and endpoint not in self.endpoints:
                self.endpoints.add(endpoint)
                self.publishers[str(node.get("name"))] = endpoint
                from catbus import security

                key = str(node.get("key") or "").encode() or None   # its XPUB's CURVE key
                security.dial(sub, endpoint, self.keys, key).close()
        if self.nodes is None:   # no launch file: scene converters from the graph's classes
            new = {n["name"]: {"class": n.get("cls")} for n in graph.nodes
                   if n.get("cls") and str(n.get("cls")) not in self._scene_classes}
            if new:
                self._scene_classes |= {str(n["class"]) for n in new.values()}
                everyone = {n["name"]: {"class": n.get("cls")} for n in graph.nodes}
                for name in new:
                    self.converters += scene_converters({name: everyone[name]},
                                                        import_path=self.import_path,
                                                        warn=self.say)

    def _on_frames(self, frames: list[Any]) -> None:
        try:
            topic, header, value = codec.decode_message(frames)
        except codec.DecodeError:
            return
        if topic == PROGRESS_TOPIC:
            return
        self.received += 1
        log_time = int(header.wall_time * 1e9) if header.wall_time else time.time_ns()
        data = message_json(value)
        channel = self.channels.get(topic)
        if channel is None:
            builder = SchemaBuilder()
            builder.add(data)
            channel = self._foxglove.Channel(topic, schema=builder.schema(topic),
                                             context=self.context)
            self.channels[topic] = channel
        channel.log(json.dumps(data, allow_nan=False).encode(), log_time=log_time)
        time_ns = int(round(header.sim_time * 1e9))
        for convert in self.converters:
            try:
                outputs = convert(topic, value, time_ns) or ()
            except Exception as exc:   # a broken scene must not end the bridge
                self.say(f"scene converter failed on {topic}: {type(exc).__name__}: {exc}")
                self.converters.remove(convert)
                break
            for scene_topic, fox in outputs:
                scene = self.scene_channels.get(scene_topic)
                if scene is None:
                    scene = _typed_channel(self._foxglove, fox, scene_topic, self.context)
                    self.scene_channels[scene_topic] = scene
                scene.log(fox, log_time=log_time)


def _wait_port_released(host: str, port: int, timeout: float) -> bool:
    """Wait until ``host:port`` can be bound again; False if it still cannot after ``timeout``.

    foxglove-sdk's ``WebSocketServer.stop()`` (0.30) returns once the connections' tasks have
    ended, but the task holding the listening socket only drops it a moment later, on the
    SDK's runtime (up to a few milliseconds, more on a loaded machine): until then connections
    to the port are still accepted, and a new server on it fails to bind. The SDK says nothing
    when the socket is gone, so the port is tried: a bind (``SO_REUSEADDR``, so that connections
    in TIME_WAIT do not count) fails while a socket listens on it."""
    import errno
    import socket

    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    except (OSError, IndexError):
        return False
    deadline = time.monotonic() + timeout
    while True:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
                return True
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    return False
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.002)


def _typed_channel(foxglove: Any, message: Any, topic: str, context: Any) -> Any:
    """The SDK's typed channel for a ``foxglove.messages`` object (``SceneUpdate`` ->
    ``SceneUpdateChannel``)."""
    import foxglove.channels as channels

    cls = getattr(channels, f"{type(message).__name__}Channel")
    return cls(topic, context=context)


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


__all__ = ["Bridge", "BridgeThread", "serve", "DEFAULT_PORT"]
