"""What a recording says about who sent what, and in which order, must not depend on arrival.

* ``catbus/stats`` -- every node's counters, sent as it leaves, after the last tick -- is written
  sorted by (tick, launch order, incarnation), whichever node left first. The real-process test
  forces the arrival order that used to put a later node's statistics first: the lingerer
  (listed first) waits in its last step until the leaver's process has exited, so the leaver's
  ``catbus/stats`` is at the recorder before the recorder can deliver the last tick.
* ``RecordedMessage.publisher`` is the node that sent the message, also on topics every node
  publishes (channels are kept per topic, publisher and incarnation); old recordings (channels
  per topic and incarnation) still read, and ``catbus verify`` still compares by topic.
* No module of ``catbus/recording`` reaches into another object's underscore names.

The recorder-level tests drive :class:`~catbus.recording.recorder.Recorder` directly, as the
runtime does (see ``tests/test_recording.py``), so they need no bus.
"""

from __future__ import annotations

import ast
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import catbus
from catbus.params import resolve
from catbus.recording.mcap_layout import MESSAGE_ENCODING, METADATA_NAME, PROFILE
from catbus.recording.reader import Recording
from catbus.recording.recorder import Recorder, launch_order, metadata_strings
from catbus.recording.verify import channel_sequences, first_difference
from catbus.wire import codec
from catbus.wire.protocol import LOG_TOPIC, SCORES_TOPIC, STATS_TOPIC

ROOT = Path(__file__).resolve().parents[1]
BASE_TICK_NS = 10_000_000
NODES = "tests.recording_order_nodes"
STEPS = 20


# -- helpers --------------------------------------------------------------------------------------
def launch_text(*names: str) -> str:
    return "nodes:\n" + "".join(f"  {name}: {{class: m:C}}\n" for name in names)


def start_recorder(path: Path, *names: str) -> Recorder:
    recorder = Recorder()
    recorder.bind("recorder", 0, None, {"launch": launch_text(*names), "mode": "stepped",
                                        "base_tick_ns": BASE_TICK_NS})
    recorder.setup(resolve(Recorder.params, {"path": str(path)}, where="test",
                           prefix="nodes.recorder.params"))
    return recorder


def send(recorder: Recorder, topic: str, value: Any, *, publisher: str, tick: int, seq: int = 0,
         incarnation: int = 1) -> None:
    """Feed one message as the runtime would."""
    header = codec.Header(publisher, seq, tick, tick * BASE_TICK_NS / 1e9, time.time(), None,
                          incarnation)
    frames = codec.encode_message(topic, header, value)
    _, _, payload = codec.open_envelope(frames[0])
    recorder.on_raw(topic, header, payload, frames[1:])


def stats_value(node: str, incarnation: int = 1, received: int = 0) -> dict[str, Any]:
    return {"node": node, "incarnation": incarnation, "stats": {"received": received}}


def stats_rows(path: Path) -> list[tuple[str, int, int | None, bytes]]:
    """(node, incarnation, tick, data) of every catbus/stats message, in file order, the node
    and incarnation as the message itself says."""
    return [(m.value["node"], m.value["incarnation"], m.tick, m.data)
            for m in Recording(path).messages(STATS_TOPIC)]


def assert_stats_publishers(path: Path) -> None:
    """Every catbus/stats message's publisher is the node (and process) it is from."""
    for message in Recording(path).messages(STATS_TOPIC):
        assert (message.publisher, message.incarnation) == (
            message.value["node"], message.value["incarnation"]), message


# -- catbus/stats in a fixed order ----------------------------------------------------------------
def order_launch(folder: Path, *, linger: bool) -> dict[str, Any]:
    """lingerer (listed first) and leaver, independent of each other; with ``linger`` the
    lingerer's last step waits until the leaver's process has exited."""
    pid_file = str(folder / "leaver.pid")
    return {"name": "stats-order", "pythonpath": [str(ROOT)], "nodes": {
        "lingerer": {"class": f"{NODES}:Lingerer",
                     "params": {"wait_for": pid_file if linger else ""}},
        "leaver": {"class": f"{NODES}:Leaver", "params": {"pid_file": pid_file}}}}


@pytest.mark.timeout(240)
def test_stats_are_recorded_in_launch_order_whoever_leaves_first(tmp_path: Path,
                                                                 bus_sandbox) -> None:
    """The leaver's statistics reach the recorder before the lingerer's last tick is complete
    (forced), or after it (as it mostly happens): the catbus/stats channel is the same, in
    launch order, and names the node that sent each; the data outside catbus/ equals inline's."""
    forced, free, inline = (tmp_path / name for name in ("forced.mcap", "free.mcap",
                                                          "inline.mcap"))
    catbus.run(order_launch(tmp_path, linger=True), mode="stepped", steps=STEPS, record=forced,
               evaluate=False)
    catbus.run(order_launch(tmp_path, linger=False), mode="stepped", steps=STEPS, record=free,
               evaluate=False)
    catbus.run(order_launch(tmp_path, linger=False), mode="inline", steps=STEPS, record=inline,
               evaluate=False)
    last = Recording(forced).metadata["last_tick"]
    rows = stats_rows(forced)
    assert [(publisher, tick) for publisher, _, tick, _ in rows] == [
        ("lingerer", last), ("leaver", last)]
    assert rows == stats_rows(free)                      # same content, same order
    assert_stats_publishers(forced)
    assert_stats_publishers(free)
    assert first_difference(forced, inline) is None      # the contract still holds
    assert first_difference(free, inline) is None
    for path in (forced, free, inline):   # every message's publisher is the node that sent it
        for message in Recording(path).messages():
            if message.topic in ("lingerer/out", "leaver/out"):
                assert message.publisher == message.topic.split("/")[0]


@pytest.mark.timeout(20)
def test_stats_written_at_close_sorted_whatever_the_arrival(tmp_path: Path) -> None:
    """Sorted by tick, then launch order, then incarnation; a node the launch does not list
    comes after the listed ones (by name). Any arrival order gives the same bytes in order."""
    messages = [
        ("b", 1, 9), ("a", 1, 9), ("c", 1, 9), ("a", 2, 7), ("zz", 1, 9), ("b", 2, 9),
        ("extra", 1, 9),
    ]
    rows = []
    for name, arrival in (("one", messages), ("two", list(reversed(messages)))):
        path = tmp_path / f"{name}.mcap"
        recorder = start_recorder(path, "c", "a", "b")
        send(recorder, "a/x", 1, publisher="a", tick=0)
        for node, incarnation, tick in arrival:
            send(recorder, STATS_TOPIC, stats_value(node, incarnation), publisher=node,
                 tick=tick, incarnation=incarnation)
        recorder.close()
        rows.append(stats_rows(path))
        assert_stats_publishers(path)
        assert recorder.messages_written == Recording(path).end_metadata["messages"] == 8
    assert [(publisher, incarnation, tick) for publisher, incarnation, tick, _ in rows[0]] == [
        ("a", 2, 7), ("c", 1, 9), ("a", 1, 9), ("b", 1, 9), ("b", 2, 9), ("extra", 1, 9),
        ("zz", 1, 9)]
    assert rows[0] == rows[1]


@pytest.mark.timeout(20)
def test_stats_come_after_the_run_and_before_the_drop_report(tmp_path: Path) -> None:
    """Held back, not lost: counted as received (no drop), written after the run's messages."""
    path = tmp_path / "run.mcap"
    recorder = start_recorder(path, "a", "b")
    send(recorder, STATS_TOPIC, stats_value("b"), publisher="b", tick=1)
    send(recorder, "a/x", 1, publisher="a", tick=1)
    send(recorder, STATS_TOPIC, stats_value("a"), publisher="a", tick=1)
    recorder.close()
    recording = Recording(path)
    assert [(m.topic, m.publisher) for m in recording.messages()] == [
        ("a/x", "a"), (STATS_TOPIC, "a"), (STATS_TOPIC, "b"), ("catbus/drops", None)]
    [drops] = recording.messages("catbus/drops")
    assert drops.value["total"] == 0
    assert {(s["publisher"], s["topic"]) for s in drops.value["streams"]} == {
        ("a", "a/x"), ("a", STATS_TOPIC), ("b", STATS_TOPIC)}


def test_launch_order_reads_the_launch_document() -> None:
    assert launch_order({"launch": launch_text("env", "robot", "recorder")}) == {
        "env": 0, "robot": 1, "recorder": 2}
    assert launch_order({"launch": {"nodes": {"b": {}, "a": {}}}}) == {"b": 0, "a": 1}
    assert launch_order({}) == {} and launch_order({"launch": "nodes: [a, b"}) == {}


# -- publisher of every message -------------------------------------------------------------------
@pytest.mark.timeout(20)
def test_every_message_names_the_node_that_sent_it(tmp_path: Path) -> None:
    """Shared catbus/ topics get a channel per publisher (and incarnation), so the robot's
    statistics, scores and log records do not read as the env's."""
    path = tmp_path / "run.mcap"
    recorder = start_recorder(path, "env", "robot")
    for tick in range(2):
        for node in ("env", "robot"):
            send(recorder, f"{node}/out", tick, publisher=node, tick=tick, seq=tick)
            send(recorder, SCORES_TOPIC, {"node": node, "scores": {"t": tick}}, publisher=node,
                 tick=tick, seq=tick)
            send(recorder, LOG_TOPIC, {"name": node, "message": f"tick {tick}"},
                 publisher=node, tick=tick, seq=tick)
    send(recorder, SCORES_TOPIC, {"node": "robot", "scores": {"t": 2}}, publisher="robot",
         tick=2, incarnation=2)                       # the robot's next process (a swap)
    for node, incarnation in (("env", 1), ("robot", 2)):
        send(recorder, STATS_TOPIC, stats_value(node, incarnation), publisher=node, tick=2,
             incarnation=incarnation)
    recorder.close()
    recording = Recording(path)
    for message in recording.messages():
        if message.topic == "catbus/drops":
            continue
        value = message.value
        sender = value["name"] if message.topic == LOG_TOPIC else (
            value["node"] if isinstance(value, dict) else message.topic.split("/")[0])
        assert message.publisher == sender, message
    assert [(m.publisher, m.incarnation) for m in recording.messages(SCORES_TOPIC)] == [
        ("env", 1), ("robot", 1), ("env", 1), ("robot", 1), ("robot", 2)]
    assert recording.topics() == ["env/out", SCORES_TOPIC, LOG_TOPIC, "robot/out",
                                  STATS_TOPIC, "catbus/drops"]


def write_old_layout(path: Path, messages: list[tuple[str, str, int, int, bytes]]) -> None:
    """A recording as the recorder wrote it before: a channel per (topic, incarnation), named
    after the first node that published there."""
    from mcap.writer import Writer

    with open(path, "wb") as handle:
        writer = Writer(handle)
        writer.start(profile=PROFILE, library="catbus-recorder (old)")
        writer.add_metadata(METADATA_NAME, metadata_strings({"base_tick_ns": BASE_TICK_NS}))
        channels: dict[tuple[str, int], int] = {}
        for topic, publisher, incarnation, tick, data in messages:
            key = (topic, incarnation)
            if key not in channels:
                channels[key] = writer.register_channel(
                    topic=topic, message_encoding=MESSAGE_ENCODING, schema_id=0,
                    metadata={"publisher": publisher, "incarnation": str(incarnation)})
            writer.add_message(channel_id=channels[key], log_time=time.time_ns(),
                               publish_time=tick * BASE_TICK_NS, sequence=tick, data=data)
        writer.finish()


def record_bytes(value: Any) -> bytes:
    payload, buffers = codec.encode_payload(value)
    return codec.record_bytes(payload, buffers)


@pytest.mark.timeout(20)
def test_old_recordings_read_and_verify_by_topic(tmp_path: Path) -> None:
    """An old file reads as before (its channel's publisher); a topic two nodes publish is
    compared by topic, so old and new layouts of the same messages verify equal."""
    sent = [("shared/x", node, 1, tick, record_bytes({"node": node, "tick": tick}))
            for tick in range(3) for node in ("a", "b")]
    sent.append((STATS_TOPIC, "b", 1, 3, record_bytes(stats_value("b"))))
    old = tmp_path / "old.mcap"
    write_old_layout(old, sent)
    assert [m.publisher for m in Recording(old).messages("shared/x")] == ["a"] * 6   # as before

    new = tmp_path / "new.mcap"
    recorder = start_recorder(new, "a", "b")
    for topic, node, incarnation, tick, _ in sent:
        value = stats_value(node) if topic == STATS_TOPIC else {"node": node, "tick": tick}
        send(recorder, topic, value, publisher=node, tick=tick, seq=tick,
             incarnation=incarnation)
    recorder.close()
    assert [m.publisher for m in Recording(new).messages("shared/x")] == ["a", "b"] * 3
    assert channel_sequences(new) == channel_sequences(old) == {
        "shared/x": [(tick, data) for _, _, _, tick, data in sent[:-1]]}
    assert first_difference(old, new) is None


# -- no reaching into other objects' underscore names ----------------------------------------------
def test_recording_modules_use_only_public_names_of_other_objects() -> None:
    """``x._y`` only for ``self``/``cls``: what a module needs of another object is a public
    name of that object, documented where it is defined."""
    found = []
    for path in sorted((ROOT / "catbus" / "recording").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not (isinstance(node, ast.Attribute) and node.attr.startswith("_")):
                continue
            dunder = node.attr.startswith("__") and node.attr.endswith("__")
            own = isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")
            if not (dunder or own):
                found.append(f"{path.name}:{node.lineno}: .{node.attr}")
    assert found == []


@pytest.mark.timeout(20)
def test_stored_metadata_of_complete_and_cut_files(tmp_path: Path) -> None:
    path = tmp_path / "run.mcap"
    recorder = start_recorder(path, "a")
    send(recorder, "a/x", 1, publisher="a", tick=0)
    recorder.close()
    stored = Recording(path).stored_metadata()
    assert [name for name, _ in stored] == ["catbus", "catbus.end"]
    assert all(isinstance(v, str) for _, values in stored for v in values.values())
    cut = tmp_path / "cut.mcap"
    data = path.read_bytes()
    cut.write_bytes(data[:len(data) // 2])
    recording = Recording(cut)
    assert not recording.complete
    assert recording.stored_metadata()[0] == stored[0]


@pytest.mark.timeout(20)
def test_bridge_thread_says_when_it_is_stopping() -> None:
    """A launcher whose bus never gets ready: stop() ends the bridge's wait for it."""
    from catbus.recording.foxglove_bridge import BridgeThread

    launcher = SimpleNamespace(bus_ready=threading.Event(), bus=None)
    thread = BridgeThread.for_launcher(launcher, SimpleNamespace(nodes=[]))
    assert not thread.stopping
    thread.stop()
    assert thread.stopping and thread.ready.is_set() and thread.bridge is None
