"""The Foxglove side of a live view: one ``foxglove-sdk`` server (in a ``foxglove.Context`` of its
own, behind :class:`~catbus.recording.foxglove_front.SubprotocolFront`) and the channels it
serves, made as messages arrive (:class:`LiveServer`). What feeds it -- a bridge joining a run
over the bus, or a node inside an inline run -- is :mod:`catbus.recording.foxglove_bridge`'s.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any, Callable, Mapping

from catbus.errors import CatbusError
from catbus.recording.export import (FOXGLOVE_LOG_SCHEMA, SchemaBuilder, message_json,
                                     scene_converters)
from catbus.wire.protocol import LOG_TOPIC

#: Modes whose time is simulated: the live channels' log times are the messages' sim times.
SIM_TIME_MODES = ("stepped", "inline")

DEFAULT_PORT = 8765


def import_foxglove() -> Any:
    try:
        import foxglove
    except ImportError:
        raise CatbusError("the Foxglove bridge needs the foxglove-sdk package: "
                          "pip install 'catbus[foxglove]'") from None
    return foxglove


class LiveServer:
    """Foxglove channels served on ``ws://HOST:PORT`` to clients of both subprotocols: the SDK's
    server on a loopback port, :class:`~catbus.recording.foxglove_front.SubprotocolFront` on the
    public one. :meth:`publish` serves one message of the run (see the module documentation for
    the channels and their times). ``nodes`` (``{name: {"class", "params"}}``) sets up the scene
    converters the node classes name."""

    def __init__(self, *, port: int = DEFAULT_PORT, host: str = "127.0.0.1",
                 nodes: Mapping[str, Mapping[str, Any]] | None = None, import_path: Any = (),
                 say: Callable[[str], None] | None = None) -> None:
        from catbus.recording.foxglove_front import SubprotocolFront

        foxglove = import_foxglove()
        self._foxglove = foxglove
        self.say = say or (lambda text: print(f"catbus foxglove: {text}", file=sys.stderr,
                                              flush=True))
        self.import_path = list(import_path)
        self.context = foxglove.Context()
        self.server = foxglove.start_server(name="catbus", host="127.0.0.1", port=0,
                                            context=self.context)
        try:
            self.front = SubprotocolFront(host, port, ("127.0.0.1", self.server.port))
        except OSError as exc:
            self.server.stop()
            raise CatbusError(f"cannot serve Foxglove on {host}:{port}: "
                              f"{exc.strerror or exc}") from None
        self.host = host
        self.port: int = self.front.port
        #: Serve sim times (stepped, inline) rather than wall times (parallel) as log times.
        self.sim_time = False
        self.channels: dict[str, Any] = {}
        self.scene_channels: dict[str, Any] = {}
        self.converters: list[Any] = []
        self._scene_classes: set[str] = set()
        if nodes:
            self.converters = scene_converters(nodes, import_path=self.import_path,
                                               warn=self.say)
            self._scene_classes = {str(n.get("class")) for n in nodes.values()}

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    def add_scenes(self, everyone: Mapping[str, Mapping[str, Any]]) -> None:
        """Scene converters for the nodes of ``everyone`` (``{name: {"class": ...}}``, the run's
        graph) whose classes have none yet: a bridge without the launch file learns the
        classes as nodes join."""
        for name, node in everyone.items():
            cls = node.get("class")
            if cls and str(cls) not in self._scene_classes:
                self._scene_classes.add(str(cls))
                self.converters += scene_converters({name: dict(node)},
                                                    import_path=self.import_path, warn=self.say)

    def publish(self, topic: str, value: Any, sim_time: float, wall_time: float | None) -> None:
        """Serve one message of the run on its channel (and its scene channels)."""
        time_ns = int(round(sim_time * 1e9))
        if self.sim_time:
            log_time = max(time_ns, 0)
        else:
            log_time = int(wall_time * 1e9) if wall_time else time.time_ns()
        data = message_json(value)
        channel = self.channels.get(topic)
        if channel is None:
            channel = self._channel(topic, data)
            self.channels[topic] = channel
        channel.log(json.dumps(data, allow_nan=False).encode(), log_time=log_time)
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
                    scene = typed_channel(self._foxglove, fox, scene_topic, self.context)
                    self.scene_channels[scene_topic] = scene
                scene.log(fox, log_time=log_time)

    def _channel(self, topic: str, first: Any) -> Any:
        """A topic's channel: ``catbus/log`` as ``foxglove.Log`` (the Log panel reads channels
        of that schema name), any other with the JSON Schema of its first message."""
        if topic == LOG_TOPIC:
            schema = self._foxglove.Schema(name=FOXGLOVE_LOG_SCHEMA["title"],
                                           encoding="jsonschema",
                                           data=json.dumps(FOXGLOVE_LOG_SCHEMA).encode())
            return self._foxglove.Channel(topic, schema=schema, message_encoding="json",
                                          context=self.context)
        builder = SchemaBuilder()
        builder.add(first)
        return self._foxglove.Channel(topic, schema=builder.schema(topic), context=self.context)

    def close(self) -> None:
        """Close the channels, free the port, stop the server (idempotent). When it returns the
        port refuses connections and a new server may listen on it at once."""
        server, self.server = self.server, None
        if server is None:
            return
        self.front.close()
        for channel in [*self.channels.values(), *self.scene_channels.values()]:
            try:
                channel.close()
            except Exception:
                pass
        server.stop()


def typed_channel(foxglove: Any, message: Any, topic: str, context: Any) -> Any:
    """The SDK's typed channel for a ``foxglove.messages`` object (``SceneUpdate`` ->
    ``SceneUpdateChannel``)."""
    import foxglove.channels as channels

    cls = getattr(channels, f"{type(message).__name__}Channel")
    return cls(topic, context=context)
