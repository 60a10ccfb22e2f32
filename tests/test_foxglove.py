"""Foxglove: ``catbus export`` (JSON + JSON Schema copy of a recording, scene channels) and the
live WebSocket bridge (``catbus foxglove``), tested without a browser."""

from __future__ import annotations

import asyncio
import json
import math
import re
import socket
import struct
import textwrap
from pathlib import Path
from typing import Any

import pytest

import catbus
from catbus.cli.main import main as cli
from catbus.recording.export import export, from_json, infer_schema, to_json
from tests.conftest import ROOT, wait_until

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


class _Client:
    """What a Foxglove WebSocket client saw, kept as it goes so that a test that times out can
    say what came and what did not."""

    def __init__(self, topics: dict[str, int], subprotocols: list[str] | None = None) -> None:
        self.topics = topics                         # topic -> messages wanted
        self.subprotocols = subprotocols or SUBPROTOCOLS   # what the client offers
        self.subprotocol: str | None = None          # what the server chose
        self.times: dict[str, list[int]] = {}        # topic -> log times of the payloads
        self.connected = False
        self.advertised: list[str] = []              # every topic the server advertised
        self.channels: dict[int, dict] = {}          # subscription id -> advertised channel
        self.got: dict[str, tuple[dict, list[bytes]]] = {}   # topic -> (channel, payloads)
        self.status: list[str] = []                  # the server's status messages

    def done(self) -> bool:
        return all(len(self.got.get(t, ({}, []))[1]) >= n for t, n in self.topics.items())

    def describe(self) -> str:
        received = {t: len(self.got[t][1]) if t in self.got else "not subscribed"
                    for t in self.topics}
        return (f"wanted {self.topics}; connected: {self.connected}; advertised: "
                f"{self.advertised or 'nothing'}; message data received: {received}; status "
                f"messages: {self.status or 'none'}")


#: The status a foxglove-sdk server (up to at least 0.30.3) sends for a subscription to a
#: channel it advertised a moment before: ``ConnectedClient::advertise_channels`` sends the
#: advertisement, then adds the channel to the client's table; a subscription handled in between
#: is refused with this status and dropped. Only channels created while the client is connected
#: are affected (the bridge creates a channel at its topic's first message).
UNKNOWN_CHANNEL = re.compile(r"Unknown channel ID: (\d+)")


async def _subscribe_and_receive(url: str, client: _Client) -> None:
    """As the Foxglove app: connect with the Foxglove WebSocket subprotocol, subscribe to each
    of ``client.topics`` once it is advertised, and collect ``client.topics[topic]``
    message-data payloads of each in ``client.got``. Returns once they have all come.

    A subscription the server refused as :data:`UNKNOWN_CHANNEL` (its race, not the bridge's)
    is sent again, once per refusal."""
    import websockets

    async with websockets.connect(url, subprotocols=client.subprotocols, open_timeout=10,
                                  close_timeout=1) as ws:
        assert ws.subprotocol in client.subprotocols
        client.subprotocol = ws.subprotocol
        client.connected = True
        subscribed: dict[int, int] = {}     # channel id -> subscription id
        async for frame in ws:
            if isinstance(frame, str):
                op = json.loads(frame)
                if op.get("op") == "status":
                    client.status.append(f"{op.get('level')}: {op.get('message')}")
                    refused = UNKNOWN_CHANNEL.search(str(op.get("message")))
                    if refused and int(refused.group(1)) in subscribed:
                        channel_id = int(refused.group(1))
                        await ws.send(json.dumps({"op": "subscribe", "subscriptions": [
                            {"id": subscribed[channel_id], "channelId": channel_id}]}))
                for advertised in op.get("channels", []) if op.get("op") == "advertise" else ():
                    topic = advertised["topic"]
                    client.advertised.append(topic)
                    if topic in client.topics and topic not in client.got:
                        subscription = len(client.channels) + 1
                        client.channels[subscription] = advertised
                        client.got[topic] = (advertised, [])
                        subscribed[advertised["id"]] = subscription
                        await ws.send(json.dumps({"op": "subscribe", "subscriptions": [
                            {"id": subscription, "channelId": advertised["id"]}]}))
                continue
            # Binary opcode 1, message data: u32 subscription id, u64 log time, payload.
            if frame[0] == 1:
                subscription, log_time = struct.unpack_from("<IQ", frame, 1)
                topic = client.channels[subscription]["topic"]
                client.got[topic][1].append(bytes(frame[13:]))
                client.times.setdefault(topic, []).append(log_time)
                if client.done():
                    return
    raise AssertionError(f"the connection closed before the messages came: {client.describe()}")


def _receive(url: str, topics: dict[str, int], bridge: Any, timeout: float,
             publishers: Any = None, subprotocols: list[str] | None = None) -> _Client:
    """Run a :class:`_Client` on ``url`` until it has ``topics``; fail after ``timeout`` seconds
    saying what the client and the bridge got (``publishers()``: who publishes in the run)."""
    client = _Client(topics, subprotocols)
    try:
        asyncio.run(asyncio.wait_for(_subscribe_and_receive(url, client), timeout))
    except asyncio.TimeoutError:
        expected = sorted(publishers()) if publishers is not None else "?"
        pytest.fail(f"no complete answer from the bridge within {timeout:g} s: "
                    f"{client.describe()}; the bridge received "
                    f"{getattr(bridge, 'received', '?')} messages "
                    f"(channels {sorted(bridge.channels)}, scene channels "
                    f"{sorted(bridge.scene_channels)}) from the publishers "
                    f"{sorted(getattr(bridge, 'publishers', ()))}, the run's publishers being "
                    f"{expected}, after {getattr(bridge, 'graphs', '?')} graph replies")
    return client


@pytest.mark.timeout(120)
def test_live_bridge_serves_a_running_run_over_websocket(tmp_path: Path) -> None:
    pytest.importorskip("foxglove")
    pytest.importorskip("websockets")
    from catbus.client import query_graph
    from catbus.recording.foxglove_bridge import Bridge, BridgeThread

    port = _free_port()
    # A run far longer than the test (stopped below): a loaded machine must not end it before
    # the bridge has served what the test waits for.
    with catbus.start(ROOT / "launch" / "flat_evade.yaml", mode="parallel",
                      steps=100_000, record=False) as run:
        bridge = BridgeThread(lambda: Bridge(run.bus, port=port, host="127.0.0.1"))
        try:
            assert bridge.ready.wait(30) and bridge.error is None, bridge.error
            assert bridge.bridge is not None and bridge.bridge.port == port

            def publishers() -> list[str]:
                return [n["name"] for n in query_graph(run.bus)["nodes"] if n.get("outputs")]

            # Every publisher's topics, not only env's: the bridge must connect to each node,
            # whenever it registered (also once the others' messages flow).
            client = _receive(f"ws://127.0.0.1:{port}",
                              {"env/state": 3, "scene": 1, "robot/action": 1,
                               "human/action": 1}, bridge.bridge, 60, publishers)
            channel, payloads = client.got["env/state"]
            assert channel["encoding"] == "json" and channel["schemaEncoding"] == "jsonschema"
            schema = json.loads(channel["schema"])
            for payload in payloads:
                value = json.loads(payload)
                jsonschema.validate(value, schema)
                assert len(value["robot"]["pos"]) == 2
            # The scene channel of flat_evade, with Foxglove's own SceneUpdate schema.
            scene, _ = client.got["scene"]
            assert (scene["schemaName"], scene["encoding"]) == ("foxglove.SceneUpdate",
                                                                "protobuf")
            assert set(bridge.bridge.publishers) == {"env", "robot", "human"}
        finally:
            run.stop()
            bridge.stop()
        run.wait(60)
    assert not bridge._thread.is_alive()
    with pytest.raises(OSError):    # the WebSocket server is gone
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


@pytest.mark.timeout(60)
def test_a_closed_bridge_has_freed_its_port() -> None:
    """foxglove-sdk's server.stop() returns before its listening socket is gone (see
    ``_wait_port_released``); Bridge.close() returns after, so the port refuses connections and
    the next bridge (the next ``catbus launch --foxglove``) can listen on it at once."""
    pytest.importorskip("foxglove")
    from catbus.recording.foxglove_bridge import Bridge

    port = _free_port()
    for _ in range(20):
        bridge = Bridge("ipc:///nonexistent/registry.sock", port=port, host="127.0.0.1")
        assert bridge.port == port
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        bridge.close()
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()


@pytest.mark.timeout(60)
def test_bridge_connects_to_a_publisher_that_registers_while_messages_flow() -> None:
    """The graph is asked for again while messages keep coming. A bridge that asked only when
    its SUB was idle never asked again once the first publisher's messages flowed, so a node
    that registered a moment after the bridge's last graph was never served: the live test
    above failed or passed with how node start-up fell between two graph queries."""
    pytest.importorskip("foxglove")
    pytest.importorskip("websockets")
    import tempfile
    import threading
    import time

    import zmq

    from catbus.recording.foxglove_bridge import Bridge, BridgeThread
    from catbus.wire import codec
    from catbus.wire import messages as msg

    folder = Path(tempfile.mkdtemp(prefix="cbfox-"))   # short: ipc paths are limited
    ctx = zmq.Context.instance()
    registry, pub_a, pub_b = ctx.socket(zmq.ROUTER), ctx.socket(zmq.PUB), ctx.socket(zmq.PUB)
    for sock, name in ((registry, "registry"), (pub_a, "a"), (pub_b, "b")):
        sock.setsockopt(zmq.LINGER, 0)
        sock.bind(f"ipc://{folder}/{name}.sock")

    def node(name: str) -> dict[str, Any]:
        return {"name": name, "endpoint": f"ipc://{folder}/{name}.sock",
                "outputs": [["~/out", f"{name}/out"]], "inputs": [], "cls": None}

    stop = threading.Event()
    answers: list[list[str]] = []

    def fake_run() -> None:
        """A registry whose first graph lists only ``a`` (``b`` registers just after it), and
        ``a`` and ``b`` publishing every 2 ms, as a running run's nodes do."""
        seq = 0
        while not stop.is_set():
            while registry.poll(0):
                identity, _query = registry.recv_multipart()
                nodes = [node("a")] + ([node("b")] if answers else [])
                answers.append([n["name"] for n in nodes])
                registry.send_multipart([identity, msg.encode(msg.Graph(
                    nodes=nodes, complete=True, mode="parallel", started=True, run="fake"))])
            for name, pub in (("a", pub_a), ("b", pub_b)):
                header = codec.Header(name, seq, seq, seq * 0.002, time.time())
                pub.send_multipart(codec.encode_message(f"{name}/out", header, {"n": seq}))
            seq += 1
            stop.wait(0.002)

    runner = threading.Thread(target=fake_run, daemon=True)
    runner.start()
    bridge = BridgeThread(lambda: Bridge(f"ipc://{folder}/registry.sock", port=0,
                                         host="127.0.0.1"))
    try:
        assert bridge.ready.wait(30) and bridge.error is None, bridge.error
        served = bridge.bridge
        assert served is not None
        _receive(f"ws://127.0.0.1:{served.port}", {"a/out": 3, "b/out": 3}, served, 20,
                 lambda: ["a", "b"])
        assert answers[0] == ["a"] and served.publishers.keys() == {"a", "b"}
    finally:
        bridge.stop()
        stop.set()
        runner.join(10)
        for sock in (registry, pub_a, pub_b):
            sock.close()
        for leftover in folder.iterdir():
            leftover.unlink()
        folder.rmdir()
    assert not bridge._thread.is_alive()


# -- both subprotocols, foxglove.Log, sim time -----------------------------------------------
LEGACY = ["foxglove.websocket.v1"]     # older Foxglove Studio, Lichtblick before its update
SDK = ["foxglove.sdk.v1"]              # the SDK's own server, current Foxglove


@pytest.mark.unit
def test_the_front_renames_the_older_subprotocol_both_ways() -> None:
    from catbus.recording.foxglove_front import (offered_subprotocols, rewrite_request,
                                                 rewrite_response)

    legacy = (b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
              b"sec-websocket-protocol: foxglove.websocket.v1\r\nSec-WebSocket-Key: k")
    forwarded, renamed = rewrite_request(legacy)
    assert renamed and offered_subprotocols(forwarded) == ["foxglove.sdk.v1"]
    assert forwarded.endswith(b"Sec-WebSocket-Key: k") and b"Host: x" in forwarded
    answer = b"HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Protocol: foxglove.sdk.v1"
    assert offered_subprotocols(rewrite_response(answer)) == ["foxglove.websocket.v1"]
    # A client that offers the SDK's name (alone or with the old one) is not touched.
    both = b"GET / HTTP/1.1\r\nSec-WebSocket-Protocol: foxglove.websocket.v1, foxglove.sdk.v1"
    assert rewrite_request(both) == (both, False)
    split = b"GET / HTTP/1.1\r\nSec-WebSocket-Protocol: a\r\nSec-WebSocket-Protocol: b"
    assert offered_subprotocols(split) == ["a", "b"] and rewrite_request(split) == (split, False)


def _log_launch(steps: int = 100_000) -> dict[str, Any]:
    """tests/log_nodes.py: a talker (period 0.01 s, logs at INFO each step) and a listener."""
    return {"name": "foxlog", "steps": steps, "pythonpath": [str(ROOT)],
            "nodes": {"talker": {"class": "tests.log_nodes:Talker"},
                      "listener": {"class": "tests.log_nodes:Listener"}}}


def _check_sim_time_and_log(client: _Client) -> None:
    """talker/out is stamped with its sim time (tick * 10 ms), whatever the wall clock says;
    catbus/log is a foxglove.Log channel whose messages validate against that schema."""
    from catbus.recording.export import FOXGLOVE_LOG_SCHEMA

    channel, payloads = client.got["talker/out"]
    ticks = [json.loads(p)["n"] for p in payloads]
    assert client.times["talker/out"] == [round(n * 0.01 * 1e9) for n in ticks]
    log, records = client.got["catbus/log"]
    assert (log["schemaName"], log["encoding"], log["schemaEncoding"]) == (
        "foxglove.Log", "json", "jsonschema")
    assert json.loads(log["schema"]) == FOXGLOVE_LOG_SCHEMA
    for record, log_time in zip(records, client.times["catbus/log"]):
        value = json.loads(record)
        jsonschema.validate(value, FOXGLOVE_LOG_SCHEMA)
        stamp = value["timestamp"]
        assert log_time == stamp["sec"] * 1_000_000_000 + stamp["nsec"]   # its own sim time


@pytest.mark.timeout(120)
@pytest.mark.usefixtures("bus_sandbox")
def test_clients_of_both_subprotocols_see_the_same_channels_in_sim_time() -> None:
    """A client offering only foxglove.websocket.v1 (which foxglove-sdk's server alone refuses
    with HTTP 400) and one offering only foxglove.sdk.v1 connect to the same port at the same
    time, each is answered with the name it asked for, and both get the same channels: the
    talker's data stamped with sim time, and the nodes' logs as foxglove.Log."""
    pytest.importorskip("foxglove")
    pytest.importorskip("websockets")
    from catbus.recording.foxglove_bridge import Bridge, BridgeThread

    with catbus.start(_log_launch(), mode="stepped", record=False, log_level="INFO") as run:
        bridge = BridgeThread(lambda: Bridge(run.bus, port=0, host="127.0.0.1"))
        try:
            assert bridge.ready.wait(30) and bridge.error is None, bridge.error
            served = bridge.bridge
            url = f"ws://127.0.0.1:{served.port}"
            wanted = {"talker/out": 3, "catbus/log": 3}
            clients = [_Client(dict(wanted), LEGACY), _Client(dict(wanted), SDK)]

            async def both() -> None:
                await asyncio.gather(*(_subscribe_and_receive(url, c) for c in clients))

            try:
                asyncio.run(asyncio.wait_for(both(), 60))
            except asyncio.TimeoutError:
                pytest.fail(f"no complete answer within 60 s: "
                            f"{[c.describe() for c in clients]}")
            legacy, sdk = clients
            assert (legacy.subprotocol, sdk.subprotocol) == ("foxglove.websocket.v1",
                                                             "foxglove.sdk.v1")
            assert served.mode == "stepped" and served.live.front.legacy_clients == 1
            for topic in wanted:   # the same channel (id, schema) of the same server
                assert legacy.got[topic][0] == sdk.got[topic][0]
            for client in clients:
                _check_sim_time_and_log(client)
        finally:
            run.stop()
            bridge.stop()
        run.wait(60)
    assert not bridge._thread.is_alive()


@pytest.mark.timeout(120)
def test_live_node_serves_an_inline_run_in_sim_time() -> None:
    """An inline run has no bus for ``catbus foxglove`` to join; the LiveNode in its launch
    serves it from inside, to a client of the older subprotocol too."""
    pytest.importorskip("foxglove")
    pytest.importorskip("websockets")

    port = _free_port()
    doc = _log_launch()
    doc["nodes"]["foxglove"] = {"class": "catbus.recording.foxglove_bridge:LiveNode",
                                "params": {"port": port}}
    # pace 1: the run goes on in real time (1000 s) until stopped below, so the client finds
    # it serving, however slow the machine.
    with catbus.start(doc, mode="inline", record=False, log_level="INFO", pace=1) as run:
        assert run.wait_until_started(timeout=30)

        class Seen:   # what _receive reports if nothing comes
            channels: dict = {}
            scene_channels: dict = {}

        def listening() -> bool:   # the node's setup() opens the port
            try:
                socket.create_connection(("127.0.0.1", port), timeout=2).close()
                return True
            except OSError:
                return False

        try:
            wait_until(listening, 30, what="the LiveNode listening")
            client = _receive(f"ws://127.0.0.1:{port}", {"talker/out": 3, "catbus/log": 3},
                              Seen, 60, subprotocols=LEGACY)
        finally:
            run.stop()
        run.wait(60)
    assert client.subprotocol == "foxglove.websocket.v1"
    _check_sim_time_and_log(client)
    with pytest.raises(OSError):   # the node's close() freed the port
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
