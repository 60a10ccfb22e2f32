"""``catbus export FILE.mcap -o view.mcap``: a copy of a recording that Foxglove can show.

Foxglove reads ``json``, ``protobuf``, ``flatbuffer``, ``ros1`` and ``cdr`` messages, not
``catbus-msgpack``. The export decodes every message and writes it again as JSON:

- one channel per topic, ``message_encoding`` ``json``, with a ``jsonschema`` schema (named after
  the topic) *inferred over all the channel's messages*: the union of the types seen at each place
  (integer and number merge into number; different kinds become a list of types, or ``anyOf``
  when objects or arrays are among them). Object properties are listed, none is ``required``;
- numpy arrays become (nested) lists of numbers, numpy scalars plain numbers, ``bytes`` base64
  strings, tuples lists; a payload that is not a mapping is wrapped as ``{"value": ...}``
  (Foxglove, and its SDK, want object messages);
- **NaN and infinities** are written as the strings ``"NaN"``, ``"Infinity"`` and
  ``"-Infinity"`` (the convention of protobuf's JSON mapping, which Foxglove also uses): JSON has
  no such numbers, and ``null`` would lose which one it was. Where one was seen, the schema allows
  ``["number", "string"]`` at that place. :func:`from_json` turns them back into floats;
- ``catbus/log`` (the nodes' log records, already in Foxglove's ``Log`` shape) gets the schema
  name ``foxglove.Log`` (:data:`FOXGLOVE_LOG_SCHEMA`), so Foxglove's Log panel shows it;
- ``log_time``, ``publish_time`` and ``sequence`` are kept; every metadata record is copied;
- scenes: a node class of the run may name a scene converter (class attribute
  ``foxglove_scene = "module:Factory"``, e.g. ``FlatEvadeEnv``). It is built with the node's name
  and the run's nodes (``{name: {"class", "params", ...}}`` from the launch file), called with
  every message ``(topic, value, time_ns)`` and returns ``[(topic, foxglove message), ...]``
  using Foxglove's own schemas (``foxglove.messages``, e.g. ``SceneUpdate``). Those channels are
  written with Foxglove's published ``protobuf`` schemas from the ``foxglove-sdk`` package
  (extra ``foxglove``); without it the scene channels are left out, with a note.

The live bridge (:mod:`catbus.recording.foxglove_bridge`) uses the same conversion.
"""

from __future__ import annotations

import base64
import math
import os
import sys
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from catbus.errors import CatbusError
from catbus.recording.mcap_layout import MESSAGE_ENCODING
from catbus.recording.mcap_layout import launch_nodes
from catbus.recording.reader import Recording
from catbus.wire.protocol import LOG_TOPIC

#: How NaN and the infinities are written (JSON has no such numbers).
NONFINITE = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}
_NONFINITE_VALUES = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
#: The ``catbus/log`` channel's schema: Foxglove's ``foxglove.Log`` as JSON (foxglove-sdk ships
#: it only as protobuf), so Foxglove's Log panel lists the nodes' log records.
FOXGLOVE_LOG_SCHEMA: dict[str, Any] = {
    "$schema": JSON_SCHEMA_DIALECT, "title": "foxglove.Log",
    "description": "A log message", "type": "object",
    "properties": {
        "timestamp": {"type": "object", "title": "time", "description": "Timestamp of log message",
                      "properties": {"sec": {"type": "integer", "minimum": 0},
                                     "nsec": {"type": "integer", "minimum": 0,
                                              "maximum": 999999999}}},
        "level": {"title": "foxglove.LogLevel", "description": "Log level",
                  "oneOf": [{"title": t, "const": n} for n, t in enumerate(
                      ("UNKNOWN", "DEBUG", "INFO", "WARNING", "ERROR", "FATAL"))]},
        "message": {"type": "string", "description": "Log message"},
        "name": {"type": "string", "description": "Process or node name"},
        "file": {"type": "string", "description": "Filename"},
        "line": {"type": "integer", "minimum": 0, "description": "Line number in the file"},
    },
}
#: Class attribute a node class sets to name its scene converter (``"module:Factory"``).
SCENE_ATTRIBUTE = "foxglove_scene"


# -- values -------------------------------------------------------------------------------------
def _nonfinite(x: float) -> str:
    return "NaN" if x != x else ("Infinity" if x > 0 else "-Infinity")


def _float(x: float) -> float | str:
    return x if math.isfinite(x) else _nonfinite(x)


def _fix_floats(value: Any) -> Any:
    if isinstance(value, float):
        return _float(value)
    if isinstance(value, list):
        return [_fix_floats(v) for v in value]
    return value


def to_json(value: Any) -> Any:
    """``value`` as plain JSON data: arrays as nested lists, NaN/inf as strings (see above)."""
    if value is None or isinstance(value, (bool, str, int)):
        return value
    if isinstance(value, float):
        return _float(value)
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "fc" and value.size and not np.isfinite(value).all():
            return _fix_floats(_complex_free(value).tolist())
        if value.dtype.kind in "biuf":
            return value.tolist()
        return to_json(_complex_free(value).tolist())
    if isinstance(value, np.generic):
        return to_json(value.item())
    if isinstance(value, Mapping):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, complex):
        return {"real": _float(value.real), "imag": _float(value.imag)}
    return str(value)


def _complex_free(array: np.ndarray) -> np.ndarray:
    if array.dtype.kind == "c":   # [..., 2]: real, imaginary
        return np.stack([array.real, array.imag], axis=-1)
    return array


def message_json(value: Any) -> dict[str, Any]:
    """A message as a JSON object (non-mappings wrapped as ``{"value": ...}``)."""
    data = to_json(value)
    return data if isinstance(data, dict) else {"value": data}


def from_json(value: Any) -> Any:
    """Undo the NaN/inf strings of :func:`to_json` (every ``"NaN"``, ``"Infinity"``,
    ``"-Infinity"`` string becomes a float; other strings stay)."""
    if isinstance(value, str):
        return _NONFINITE_VALUES.get(value, value)
    if isinstance(value, list):
        return [from_json(v) for v in value]
    if isinstance(value, dict):
        return {k: from_json(v) for k, v in value.items()}
    return value


# -- schemas ------------------------------------------------------------------------------------
class SchemaBuilder:
    """A JSON Schema inferred from JSON values, widened with each one :meth:`add` sees."""

    def __init__(self) -> None:
        self.root = _Node()

    def add(self, json_value: Any) -> None:
        self.root.add(json_value)

    def schema(self, title: str) -> dict[str, Any]:
        schema = {"$schema": JSON_SCHEMA_DIALECT, "title": title, **self.root.render()}
        if schema.get("type") != "object":     # messages are objects; keep the SDK happy
            schema["type"] = "object"
        return schema


class _Node:
    __slots__ = ("kinds", "props", "items")

    def __init__(self) -> None:
        self.kinds: set[str] = set()
        self.props: dict[str, _Node] = {}
        self.items: _Node | None = None

    def add(self, value: Any) -> None:
        if value is None:
            self.kinds.add("null")
        elif isinstance(value, bool):
            self.kinds.add("boolean")
        elif isinstance(value, int):
            self.kinds.add("integer")
        elif isinstance(value, float):
            self.kinds.add("number")
        elif isinstance(value, str):
            self.kinds.add("string")
        elif isinstance(value, dict):
            self.kinds.add("object")
            for key, item in value.items():
                self.props.setdefault(key, _Node()).add(item)
        elif isinstance(value, list):
            self.kinds.add("array")
            if self.items is None:
                self.items = _Node()
            for item in value:
                self.items.add(item)
        else:  # pragma: no cover - to_json gives only the above
            raise TypeError(f"not JSON data: {type(value).__name__}")

    def render(self) -> dict[str, Any]:
        kinds = set(self.kinds)
        if {"integer", "number"} <= kinds:
            kinds.discard("integer")
        order = ("object", "array", "number", "integer", "string", "boolean", "null")
        kinds_sorted = [k for k in order if k in kinds]
        if not kinds_sorted:
            return {}
        parts = []
        scalars = [k for k in kinds_sorted if k not in ("object", "array")]
        if "object" in kinds:
            parts.append({"type": "object",
                          "properties": {k: v.render() for k, v in self.props.items()}})
        if "array" in kinds:
            array: dict[str, Any] = {"type": "array"}
            if self.items is not None and self.items.kinds:
                array["items"] = self.items.render()
            parts.append(array)
        if scalars:
            parts.append({"type": scalars[0] if len(scalars) == 1 else scalars})
        return parts[0] if len(parts) == 1 else {"anyOf": parts}


def infer_schema(values: Iterable[Any], title: str) -> dict[str, Any]:
    """The JSON Schema of JSON ``values`` (already :func:`to_json`-converted)."""
    builder = SchemaBuilder()
    for value in values:
        builder.add(value)
    return builder.schema(title)


# -- scene converters ---------------------------------------------------------------------------
SceneFn = Callable[[str, Any, int], list]


def scene_converters(nodes: Mapping[str, Mapping[str, Any]], *, import_path: Iterable[Any] = (),
                     warn: Callable[[str], None] | None = None) -> list[SceneFn]:
    """Build the scene converters the run's node classes name (:data:`SCENE_ATTRIBUTE`).

    ``nodes``: ``{name: {"class": "module:Class", "params": {...}}}``. A class that cannot be
    imported, or a converter that cannot be built, is a note via ``warn`` and is skipped."""
    from catbus.recording.evaluate import load_function

    converters: list[SceneFn] = []
    path = list(import_path)
    for name, node in nodes.items():
        ref = node.get("class") if isinstance(node, Mapping) else None
        if not isinstance(ref, str) or ":" not in ref:
            continue
        try:
            cls = load_function(ref, path=path)
            factory_ref = getattr(cls, SCENE_ATTRIBUTE, None)
            if not factory_ref:
                continue
            factory = load_function(str(factory_ref), path=path)
            converters.append(factory(name, nodes))
        except Exception as exc:   # a scene is a bonus; never fail the export for it
            if warn is not None:
                warn(f"no scene from node {name} ({ref}): {type(exc).__name__}: {exc}")
    return converters



def foxglove_schema_of(message: Any) -> tuple[str, str, bytes]:
    """(name, encoding, data) of a ``foxglove.messages`` object's published schema."""
    schema = type(message).get_schema()
    return schema.name, schema.encoding, bytes(schema.data)


# -- export -------------------------------------------------------------------------------------
def export(source: str | os.PathLike[str], out: str | os.PathLike[str], *, scene: bool = True,
           warn: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Write ``out``, a Foxglove-readable copy of the recording ``source`` (see the module doc).
    Returns ``{"channels": {topic: count}, "scene": [topics], "messages": total}``."""
    from mcap.writer import CompressionType, Writer

    say = warn or (lambda text: print(f"catbus export: {text}", file=sys.stderr))
    recording = Recording(source)
    out_path = Path(out)
    if out_path.resolve() == recording.path.resolve():
        raise CatbusError(f"{out}: the export would overwrite its own recording")
    if not recording.complete:
        say(f"{recording.path} was cut short (its writer did not finish); exporting what it holds")

    # Pass 1: the schema of every channel, over all its messages.
    builders: dict[str, SchemaBuilder] = {}
    for message in recording.messages():
        builders.setdefault(message.topic, SchemaBuilder()).add(message_json(message.value))

    converters: list[SceneFn] = []
    if scene:
        try:
            import foxglove.messages  # noqa: F401  (the published schemas)
        except ImportError:
            nodes = launch_nodes(recording.metadata)
            if any(isinstance(n.get("class"), str) for n in nodes.values()):
                say("no scene channels: they need the foxglove-sdk package "
                    "(pip install 'catbus[foxglove]')")
        else:
            from catbus.spec.imports import recorded_import_path

            converters = scene_converters(launch_nodes(recording.metadata),
                                          import_path=recorded_import_path(recording.metadata),
                                          warn=say)

    out_path.parent.mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}
    scene_counts: dict[str, int] = {}
    channel_ids: dict[str, int] = {}
    scene_ids: dict[str, int] = {}
    scene_seq: dict[str, int] = {}
    tmp = out_path.with_name(out_path.name + ".part")
    with open(tmp, "wb") as handle:
        writer = Writer(handle, compression=CompressionType.ZSTD)
        writer.start(profile="", library="catbus export")
        for name, values in recording.stored_metadata():
            writer.add_metadata(name, values)
        for topic, builder in builders.items():
            if topic == LOG_TOPIC:   # Foxglove's log panel reads channels of this schema
                schema_id = writer.register_schema(name=FOXGLOVE_LOG_SCHEMA["title"],
                                                   encoding="jsonschema",
                                                   data=_json_text(FOXGLOVE_LOG_SCHEMA).encode())
            else:
                schema_id = writer.register_schema(name=topic, encoding="jsonschema",
                                                   data=_json_text(builder.schema(topic)).encode())
            channel_ids[topic] = writer.register_channel(topic=topic, message_encoding="json",
                                                         schema_id=schema_id)
        import json as _json

        for message in recording.messages():
            if message.topic not in channel_ids:
                continue
            data = message_json(message.value)
            publish_time = int(round(message.sim_time * 1e9))
            writer.add_message(channel_id=channel_ids[message.topic],
                               log_time=message.log_time_ns, publish_time=publish_time,
                               sequence=message.sequence,
                               data=_json.dumps(data, allow_nan=False).encode())
            counts[message.topic] = counts.get(message.topic, 0) + 1
            for convert in converters:
                for topic, fox in convert(message.topic, message.value, publish_time) or ():
                    if topic not in scene_ids:
                        name, encoding, schema_data = foxglove_schema_of(fox)
                        schema_id = writer.register_schema(name=name, encoding=encoding,
                                                           data=schema_data)
                        scene_ids[topic] = writer.register_channel(
                            topic=topic, message_encoding=encoding, schema_id=schema_id)
                    scene_seq[topic] = scene_seq.get(topic, -1) + 1
                    writer.add_message(channel_id=scene_ids[topic],
                                       log_time=message.log_time_ns, publish_time=publish_time,
                                       sequence=scene_seq[topic], data=bytes(fox.encode()))
                    scene_counts[topic] = scene_counts.get(topic, 0) + 1
        writer.finish()
    tmp.replace(out_path)
    return {"channels": counts, "scene": scene_counts,
            "messages": sum(counts.values()) + sum(scene_counts.values())}


def _json_text(value: Any) -> str:
    import json

    return json.dumps(to_json(value), allow_nan=False)


__all__ = ["export", "to_json", "from_json", "message_json", "infer_schema", "SchemaBuilder",
           "scene_converters", "launch_nodes", "NONFINITE", "SCENE_ATTRIBUTE", "MESSAGE_ENCODING"]
