"""The inbox as the runtime uses it (catbus.runtime.inbox.Inbox): frames in, inputs out.

Each part has its own tests beside this file, driven without frames: admission
(tests/test_inbox_admission.py), peers' progress (tests/test_inbox_progress.py) and buffers
(tests/test_inbox_buffers.py). Here: the facade that composes them, fed real frames -- malformed
frames and progress counted, never raised; selection by tick; progress carried by data; a
restarted publisher; the counters and containers the runtime reads.
"""

from __future__ import annotations

import msgpack
import pytest

from catbus.runtime.inbox import Inbox, InputBinding, LocalMessage, Shared
from catbus.wire import codec
from tests.test_codec import GOOD_HEADER, HEADER, MALFORMED, env

pytestmark = pytest.mark.unit


def frames(publisher: str, topic: str, seq: int, tick: int, value: object,
           through: int | None = None, incarnation: int = 1) -> list:
    header = codec.Header(publisher, seq, tick, tick * 0.1, 0.0, through, incarnation)
    return codec.encode_message(topic, header, value)


def progress(name: str, through: int, end: int | None = None, final: bool = False,
             publisher: str | None = None) -> list[bytes]:
    """A ``catbus/progress`` message of ``name`` (sent by ``publisher``, by default itself)."""
    header = codec.Header(publisher or name, 0, through, 0.0, 0.0).pack()
    return [codec.envelope(codec.topic_frame("catbus/progress"), header,
                           msgpack.packb([name, through, through, end, final, {}]))]


# -- malformed frames and progress ------------------------------------------------------------
@pytest.mark.parametrize("label, frames, early", MALFORMED, ids=[m[0] for m in MALFORMED])
@pytest.mark.parametrize("policy", ["latest", "all"])
def test_inbox_counts_malformed_frames_without_raising(label: str, frames: list, early: bool,
                                                       policy: str) -> None:
    inbox = Inbox([InputBinding("x", "t/x", policy)], {"pub": 0})
    # The good message comes first, with an earlier sequence number than the bad one's (a
    # message with a number the inbox has had is a copy, dropped unread).
    earlier = codec.Header("pub", HEADER.seq - 1, 3, 0.25, 1234.5, None, 2)
    good = codec.encode_message("t/x", earlier, {"n": 1})
    assert inbox.add_frames(good) is not None
    kept = inbox.add_frames(frames)
    assert (kept is None) == early
    assert inbox.malformed == (1 if early else 0)
    # Payload problems show when the node would see the message (decoding is lazy): the bad
    # message is counted and skipped, the input keeps the last good message.
    inputs = inbox.take_latest()
    assert inbox.malformed == 1
    assert inputs["x"] == ({"n": 1} if policy == "latest" else [{"n": 1}])
    assert inbox.take_latest()["x"] == ({"n": 1} if policy == "latest" else [])
    assert inbox.malformed == 1, "a bad message must be counted once"


@pytest.mark.parametrize("payload", [b"\xc1", msgpack.packb([1, 2]), msgpack.packb(
    ["peer", 0, "three", None, False, {}]), msgpack.packb(["peer", 0, 3, "end", 0, {}])[:-2]])
def test_inbox_counts_malformed_progress(payload: bytes) -> None:
    inbox = Inbox([InputBinding("x", "t/x")], {})
    progress = env(codec.topic_frame("catbus/progress"), GOOD_HEADER, payload)
    assert inbox.add_frames(progress) is None
    assert inbox.malformed == 1


def test_inbox_progress_validation_and_heard() -> None:
    """Each element of a progress payload, good and bad, without a bus."""
    progress = codec.topic_frame("catbus/progress")

    def frames(fields: list, publisher: str = "p") -> list[bytes]:
        return [codec.envelope(progress, codec.Header(publisher, 0, 0, 0.0, 0.0).pack(),
                               msgpack.packb(fields))]

    bad = [["p", 0, "3", None, False, {}], ["p", 0, float("inf"), None, False, {}],
           ["p", 0, 2 ** 62, None, False, {}], ["p", 0, True, None, False, {}],
           ["p", -2, 3, None, False, {}], ["", 0, 3, None, False, {}],
           [7, 0, 3, None, False, {}], ["p", 0, 3, "5", False, {}], ["p", 0, 3, 5.0, False, {}],
           ["p", 0, 3, -2, False, {}], ["p", 0, 3, None, 1, {}], ["p", 0, 3, None, False, []],
           ["p", 0, 3, None, False, {"t": -1}], ["p", 0, 3, None, False, {"t": 1.5}],
           ["p", 0, 3, None, False, {}, {"q": "x"}], ["p", 0, 3, None, False, {}, [1]],
           ["p", 0, 3, None, False, {}, {"": 1}], ["p", 0, 3, None, False]]
    inbox = Inbox([InputBinding("x", "t/x")], {"p": 0})
    for fields in bad:
        assert inbox.add_frames(frames(fields)) is None
    assert inbox.malformed == len(bad)
    assert inbox.progress == {} and inbox.end is None and inbox.heard == {}
    inbox.add_frames(frames(["p", 4, 4, None, False, {"t": 2}, {"q": 3, "r": -1}]))
    inbox.add_frames(frames(["p", 5, 6, 9, True, {"t": 3}, None, "later field"]))
    assert inbox.malformed == len(bad)
    assert inbox.through("p") == 6 and inbox.end == 9 and inbox.all_final(["p"])
    assert inbox.heard == {"p": {"q": 3, "r": -1}}


def test_a_progress_message_speaks_only_for_its_publisher() -> None:
    inbox = Inbox([InputBinding("x", "t/x")], {"robot": 0, "rogue": 1})
    inbox.add_frames(progress("robot", 3, end=4, publisher="rogue"))
    assert inbox.malformed == 1 and inbox.end_tick() is None and inbox.through("robot") == -1


def test_the_inbox_keeps_the_earliest_announced_end() -> None:
    inbox = Inbox([InputBinding("x", "x")], {"a": 0, "b": 1})

    def progress(name: str, end: int | None) -> list[bytes]:
        header = codec.Header(name, 0, 0, 0.0, 0.0).pack()   # a progress speaks for its sender
        return [codec.envelope(codec.topic_frame("catbus/progress"), header,
                               msgpack.packb([name, 3, 3, end, False, {}]))]

    assert inbox.end_tick() is None
    inbox.add_frames(progress("a", None))
    assert inbox.end_tick() is None
    inbox.add_frames(progress("a", 9))
    inbox.add_frames(progress("b", 12))
    assert inbox.end_tick() == 9
    inbox.add_frames(progress("b", 4))
    assert inbox.end_tick() == 4


# -- selection and progress carried by data ---------------------------------------------------
def test_inputs_are_selected_by_tick_not_by_arrival() -> None:
    inbox = Inbox([InputBinding("~/in", "env/state"), InputBinding("~/log", "env/log", "all")],
                  {"env": 0, "agent": 1})
    for tick in range(4):   # env runs ahead of the reader: ticks 0..3 arrive at once
        inbox.add_frames(frames("env", "env/state", tick, tick, {"tick": tick}))
        inbox.add_frames(frames("env", "env/log", tick, tick, tick))
    assert inbox.take_by_tick({"env/state": 1, "env/log": 1}) == {"~/in": {"tick": 1},
                                                                  "~/log": [0, 1]}
    assert inbox.take_by_tick({"env/state": 1, "env/log": 1}) == {"~/in": {"tick": 1},
                                                                  "~/log": []}
    assert inbox.take_by_tick({"env/state": 3, "env/log": 3}) == {"~/in": {"tick": 3},
                                                                  "~/log": [2, 3]}


def test_progress_carried_by_data_counts_once_every_topic_carried_it() -> None:
    inbox = Inbox([InputBinding("a", "env/a"), InputBinding("b", "env/b")], {"env": 0})
    inbox.set_sources({"env": {"env/a", "env/b"}})
    inbox.add_frames(frames("env", "env/a", 0, 0, 1, through=0))
    assert inbox.through("env") == -1
    inbox.add_frames(frames("env", "env/b", 0, 0, 1, through=0))
    assert inbox.through("env") == 0


def test_a_refused_message_still_carries_its_progress() -> None:
    """A copy sent again after a hello is dropped, but its ``through`` is still true."""
    inbox = Inbox([InputBinding("a", "env/a")], {"env": 0})
    inbox.set_sources({"env": {"env/a"}})
    assert inbox.add_frames(frames("env", "env/a", 0, 0, 1)) is not None
    assert inbox.add_frames(frames("env", "env/a", 0, 0, 1, through=0)) is None
    assert inbox.duplicates == 1 and inbox.through("env") == 0


# -- restarts and copies ----------------------------------------------------------------------
def test_a_restarted_publisher_is_heard_after_what_its_predecessor_completed() -> None:
    inbox = Inbox([InputBinding("s", "env/s")], {"env": 0})
    for tick in range(3):
        inbox.add_frames(frames("env", "env/s", tick, tick, tick))
    inbox.add_frames(progress("env", 2))
    inbox.add_frames(frames("env", "env/s", 0, 1, 1, incarnation=1))   # the old one, late: a copy
    # The new process numbers from 0 again and steps ticks 2 and 3; tick 2 the old one had done.
    assert inbox.add_frames(frames("env", "env/s", 0, 2, "again", incarnation=2)) is None
    assert inbox.add_frames(frames("env", "env/s", 1, 3, 3, incarnation=2)) is not None
    assert inbox.add_frames(frames("env", "env/s", 9, 1, "old", incarnation=1)) is None
    assert inbox.take_by_tick({"env/s": 3}) == {"s": 3}
    assert (inbox.received, inbox.duplicates, inbox.dropped) == (4, 3, 0)


def test_hello_topics_and_topics_not_read_are_not_delivered() -> None:
    inbox = Inbox([InputBinding("s", "env/s")], {"env": 0})
    assert inbox.add_frames(frames("env", "catbus/hello/env", 0, 0, {})) is None
    assert inbox.add_frames(frames("env", "env/other", 0, 0, 1)) is None
    assert inbox.received == 1 and inbox.malformed == 0   # counted, not an error


def test_a_topic_is_taken_only_from_its_owner_and_not_past_the_last_tick() -> None:
    inbox = Inbox([InputBinding("a", "robot/action")], {"robot": 0, "rogue": 1})
    inbox.owners = {"robot/action": "robot"}
    inbox.last_tick = 9
    assert inbox.admission.owners == {"robot/action": "robot"} and inbox.admission.last_tick == 9
    assert inbox.add_frames(frames("rogue", "robot/action", 0, 1, "forged")) is None
    assert inbox.add_frames(frames("robot", "robot/action", 0, 10 ** 9, "late")) is None
    assert inbox.add_frames(frames("robot", "robot/action", 1, 1, "ok")) is not None
    assert inbox.malformed == 2 and inbox.take_by_tick({"robot/action": 9}) == {"a": "ok"}


def test_a_reactive_reader_gets_messages_in_schedule_order() -> None:
    inbox = Inbox([InputBinding("a", "a/x"), InputBinding("b", "b/x")], {"a": 0, "b": 1},
                  reactive=True)
    raw = inbox.raw
    inbox.add_frames(frames("b", "b/x", 0, 0, "b0"))
    inbox.add_frames(frames("a", "a/x", 0, 1, "a1"))
    inbox.add_frames(frames("a", "a/x", 1, 0, "a0"))
    assert [m.value for m in inbox.take_raw_through(0)] == ["a0", "b0"]
    assert inbox.raw is raw and [m.value for m in inbox.take_raw_all()] == ["a1"]
    assert inbox.raw is raw and not raw


def test_in_process_messages_are_admitted_like_frames() -> None:
    inbox = Inbox([InputBinding("s", "env/s")], {"env": 0})
    shared = Shared({"v": 1}, readers=1)
    inbox.add_local(LocalMessage("env/s", "env", 0, 0, 0.0, 0.0, shared))
    inbox.add_local(LocalMessage("env/s", "env", 0, 0, 0.0, 0.0, shared))   # a copy
    assert inbox.take_latest() == {"s": {"v": 1}}
    assert (inbox.received, inbox.duplicates) == (1, 1)


# -- what the runtime reads -------------------------------------------------------------------
def test_malformed_is_one_count_over_every_part_and_callers_add_to_it() -> None:
    inbox = Inbox([InputBinding("x", "t/x")], {"p": 0})
    inbox.owners = {"t/x": "p"}
    inbox.add_frames([b"not a message"])                      # the facade: no envelope
    inbox.add_frames(frames("q", "t/x", 0, 0, 1))             # admission: not the owner
    inbox.add_frames(env(codec.topic_frame("catbus/progress"), GOOD_HEADER, b"\xc1"))  # progress
    assert inbox.malformed == 3
    inbox.malformed += 1                                      # the driver: a payload it read
    assert inbox.malformed == 4
    stats_view = (inbox.unreadable, inbox.admission.malformed, inbox.peers.malformed)
    assert stats_view == (2, 1, 1)


def test_the_runtime_binds_the_parts_containers_once() -> None:
    inbox = Inbox([InputBinding("x", "t/x")], {"p": 0})
    progress_before, heard_before = inbox.progress, inbox.heard
    inbox.add_frames(progress("p", 3))
    inbox.set_sources({"p": {"t/x"}})
    assert inbox.progress is progress_before and inbox.heard is heard_before
    assert inbox.progress["p"].through == 3 and inbox.advances == 2
    assert inbox.declared_of == {"t/x": "x"} and set(inbox.by_topic) == {"t/x"}
    assert not inbox.wildcard and not inbox.in_order
