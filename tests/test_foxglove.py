"""Foxglove: ``catbus export`` (JSON + JSON Schema copy of a recording, scene channels) and the
live WebSocket bridge (``catbus foxglove``), tested without a browser."""

from __future__ import annotations

import asyncio
import json
import math
import socket
import struct
import textwrap
from pathlib import Path
from typing import Any

import pytest

import catbus
from catbus.cli.main import main as cli
from catbus.recording.export import export, from_json, infer_schema, to_json
from tests.conftest import ROOT

jsonschema = pytest.importorskip("jsonschema")

NAN_NODES = '''
import math
import numpy as np
from catbus.node import Node


class Odd(Node):
    """Publishes NaN and infinities, in a scalar, a list and an array."""
    outputs = ["~/odd"]
    period = 0.01

    def setup(self, params):
        self.n = 0

    def step(self, t, inputs):
        self.n += 1
        return {"~/odd": {"n": self.n, "x": math.nan if self.n % 2 else 1.5,
                          "pair": [math.inf, -math.inf],
                          "array": np.array([[1.0, np.nan], [np.inf, 2.0]]),
                          "ints": np.arange(3), "flag": True, "label": "odd"}}
'''


def _read_export(path: Path) -> tuple[dict[str, Any], list[tuple[Any, Any, Any]]]:
    from mcap.reader import make_reader

    with open(path, "rb") as handle:
        reader = make_reader(handle)
        summary = reader.get_summary()
        messages = list(reader.iter_messages(log_time_order=False))
        metadata = {m.name: dict(m.metadata) for m in reader.iter_metadata()}
    assert summary is not None
    return {"summary": summary, "metadata": metadata}, messages


def _check_json_channels(messages: list[tuple[Any, Any, Any]]) -> dict[str, list[Any]]:
    """Every JSON message parses and validates against its channel's schema."""
    by_topic: dict[str, list[Any]] = {}
    validators: dict[int, Any] = {}
    for schema, channel, message in messages:
        if channel.message_encoding != "json":
            continue
        assert schema.encoding == "jsonschema"
        if channel.id not in validators:
            document = json.loads(schema.data)
            jsonschema.Draft202012Validator.check_schema(document)
            validators[channel.id] = jsonschema.Draft202012Validator(document)
        value = json.loads(message.data)   # strict JSON: no NaN/Infinity literals
        validators[channel.id].validate(value)
        by_topic.setdefault(channel.topic, []).append(value)
    return by_topic


@pytest.mark.timeout(120)
def test_export_of_a_flat_evade_run_is_json_with_schemas_and_a_scene(tmp_path: Path) -> None:
    record = tmp_path / "run.mcap"
    catbus.run(ROOT / "launch" / "flat_evade.yaml", mode="inline", steps=20, record=record)
    view = tmp_path / "view.mcap"
    assert cli(["export", str(record), "-o", str(view)]) == 0

    info, messages = _read_export(view)
    original = catbus.Recording(record)
    by_topic = _check_json_channels(messages)
    assert set(by_topic) == set(original.topics())
    # Times, order and values survive; arrays are nested lists.
    originals = list(original.messages())
    json_messages = [(c, m) for _, c, m in messages if c.message_encoding == "json"]
    assert len(json_messages) == len(originals)
    for (channel, message), source in zip(json_messages, originals):
        assert (channel.topic, message.log_time, message.sequence) == \
               (source.topic, source.log_time_ns, source.sequence)
        assert message.publish_time == round(source.sim_time * 1e9)
    state = by_topic["env/state"][0]
    assert state["robot"]["pos"] == original_first(original, "env/state")["robot"]["pos"].tolist()
    # Metadata copied record for record, value for value.
    assert info["metadata"]["catbus"]["seed"] == "0"
    assert info["metadata"]["catbus"]["launch"] == original.all_metadata["catbus"]["launch"]
    # The scene: Foxglove's own SceneUpdate schema (protobuf, from foxglove-sdk).
    scene = [(s, c, m) for s, c, m in messages if c.topic == "scene"]
    assert scene, "no scene channel"
    schema, channel, _ = scene[0]
    assert (schema.name, schema.encoding, channel.message_encoding) == \
           ("foxglove.SceneUpdate", "protobuf", "protobuf")
    assert len(scene) == len(by_topic["env/state"]) + len(by_topic["robot/action"]) + \
        len(by_topic["human/action"])   # bodies + d_min ring per state, a plan per action
    assert all(b"robot/d_min" in m.data for _, _, m in scene[::3])


def original_first(recording: Any, topic: str) -> Any:
    return next(iter(recording.messages([topic]))).value


@pytest.mark.timeout(120)
def test_nan_and_infinities_are_strings_the_schema_allows(tmp_path: Path) -> None:
    (tmp_path / "oddnodes.py").write_text(textwrap.dedent(NAN_NODES))
    record = tmp_path / "odd.mcap"
    catbus.run({"name": "odd", "pythonpath": [str(tmp_path)],
                "nodes": {"odd": {"class": "oddnodes:Odd"}}},
               mode="inline", steps=3, record=record)
    view = tmp_path / "odd-view.mcap"
    written = export(record, view)
    assert written["scene"] == {}
    _, messages = _read_export(view)
    odd = _check_json_channels(messages)["odd/odd"]
    assert odd[0]["x"] == "NaN" and odd[1]["x"] == 1.5
    assert odd[0]["pair"] == ["Infinity", "-Infinity"]
    assert odd[0]["array"] == [[1.0, "NaN"], ["Infinity", 2.0]]
    assert odd[0]["ints"] == [0, 1, 2] and odd[0]["flag"] is True
    schema = json.loads(next(s.data for s, c, _ in messages if c.topic == "odd/odd"))
    assert schema["properties"]["x"] == {"type": ["number", "string"]}
    assert schema["properties"]["ints"] == {"type": "array", "items": {"type": "integer"}}
    back = from_json(odd[0])
    assert math.isnan(back["x"]) and back["pair"] == [math.inf, -math.inf]


def test_schema_inference_unions_types() -> None:
    values = [to_json(v) for v in ({"a": 1, "b": [1, 2]}, {"a": 2.5, "b": [], "c": None},
                                   {"a": "x", "b": [{"k": 1}]})]
    schema = infer_schema(values, "t")
    assert schema["properties"]["a"] == {"type": ["number", "string"]}
    assert schema["properties"]["c"] == {"type": "null"}
    assert schema["properties"]["b"]["items"] == {"anyOf": [
        {"type": "object", "properties": {"k": {"type": "integer"}}}, {"type": "integer"}]}
    for value in values:
        jsonschema.validate(value, schema)


# -- live bridge ----------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


#: What the Foxglove app offers: the SDK's server (foxglove-sdk >= 0.30) answers with
#: ``foxglove.sdk.v1``, older servers with ``foxglove.websocket.v1``; the messages are the same.
SUBPROTOCOLS = ["foxglove.sdk.v1", "foxglove.websocket.v1"]


async def _subscribe_and_receive(url: str, topics: dict[str, int]
                                 ) -> dict[str, tuple[dict, list[bytes]]]:
    """As the Foxglove app: connect with the Foxglove WebSocket subprotocol, subscribe to each
    of ``topics`` once it is advertised, and collect ``topics[topic]`` message-data payloads of
    each: ``{topic: (advertised channel, [payload, ...])}``."""
    import websockets

    async with websockets.connect(url, subprotocols=SUBPROTOCOLS, open_timeout=10,
                                  close_timeout=1) as ws:
        assert ws.subprotocol in SUBPROTOCOLS
        channels: dict[int, dict] = {}      # subscription id -> advertised channel
        got: dict[str, tuple[dict, list[bytes]]] = {}
        async for frame in ws:
            if isinstance(frame, str):
                op = json.loads(frame)
                for advertised in op.get("channels", []) if op.get("op") == "advertise" else ():
                    if advertised["topic"] in topics and advertised["topic"] not in got:
                        subscription = len(channels) + 1
                        channels[subscription] = advertised
                        got[advertised["topic"]] = (advertised, [])
                        await ws.send(json.dumps({"op": "subscribe", "subscriptions": [
                            {"id": subscription, "channelId": advertised["id"]}]}))
                continue
            # Binary opcode 1, message data: u32 subscription id, u64 log time, payload.
            if frame[0] == 1:
                subscription, _log_time = struct.unpack_from("<IQ", frame, 1)
                topic = channels[subscription]["topic"]
                got[topic][1].append(bytes(frame[13:]))
                if set(got) == set(topics) and all(len(got[t][1]) >= n
                                                   for t, n in topics.items()):
                    return got
    raise AssertionError("the connection closed before the messages came")


@pytest.mark.timeout(120)
def test_live_bridge_serves_a_running_run_over_websocket(tmp_path: Path) -> None:
    pytest.importorskip("foxglove")
    pytest.importorskip("websockets")
    from catbus.recording.foxglove_bridge import Bridge, BridgeThread

    port = _free_port()
    # A run far longer than the test (stopped below): a loaded machine must not end it before
    # the bridge has served what the test waits for.
    with catbus.start(ROOT / "launch" / "flat_evade.yaml", mode="parallel",
                      steps=1_000_000, record=False) as run:
        bridge = BridgeThread(lambda: Bridge(run.bus, port=port, host="127.0.0.1"))
        try:
            assert bridge.ready.wait(30) and bridge.error is None, bridge.error
            assert bridge.bridge is not None and bridge.bridge.port == port
            got = asyncio.run(asyncio.wait_for(_subscribe_and_receive(
                f"ws://127.0.0.1:{port}", {"env/state": 3, "scene": 1}), 60))
            channel, payloads = got["env/state"]
            assert channel["encoding"] == "json" and channel["schemaEncoding"] == "jsonschema"
            schema = json.loads(channel["schema"])
            for payload in payloads:
                value = json.loads(payload)
                jsonschema.validate(value, schema)
                assert len(value["robot"]["pos"]) == 2
            # The scene channel of flat_evade, with Foxglove's own SceneUpdate schema.
            scene, _ = got["scene"]
            assert (scene["schemaName"], scene["encoding"]) == ("foxglove.SceneUpdate",
                                                                "protobuf")
        finally:
            run.stop()
            bridge.stop()
        run.wait(60)
    assert not bridge._thread.is_alive()
    with pytest.raises(OSError):    # the WebSocket server is gone
        socket.create_connection(("127.0.0.1", port), timeout=2).close()

