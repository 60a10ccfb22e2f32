"""Buffers alone (catbus.runtime.inbox.buffers): admitted messages per input and which of them
a step gets -- ``latest`` and ``all`` policies, selection by tick, in-order delivery for reactive
readers, what a process taking over skips (``resume_after``), undecodable payloads."""

from __future__ import annotations

from typing import Any

import pytest

from catbus.runtime.inbox.buffers import (ALL, Buffers, InputBinding, LocalMessage, Received,
                                          Shared)
from catbus.wire import codec

pytestmark = pytest.mark.unit


def message(topic: str, value: Any, tick: int = 0, seq: int = 0,
            publisher: str = "p") -> Received:
    payload, buffers = codec.encode_payload(value)
    return Received(topic, codec.Header(publisher, seq, tick, 0.0, 0.0), payload, list(buffers))


def undecodable(topic: str, tick: int = 0) -> Received:
    return Received(topic, codec.Header("p", 0, tick, 0.0, 0.0), b"\xc1", [])


def put(buffers: Buffers, received: Received) -> bool:
    header = received.header
    return buffers.file(received, received.topic, header.publisher, header.seq, header.tick)


def latest_and_all() -> Buffers:
    return Buffers([InputBinding("now", "t/x"), InputBinding("log", "t/y", "all")], {"p": 0})


def test_latest_is_the_newest_and_stays_until_a_newer_one() -> None:
    buffers = latest_and_all()
    assert buffers.take_latest() == {"now": None, "log": []}
    for n in range(3):
        put(buffers, message("t/x", n, seq=n))
    assert buffers.take_latest()["now"] == 2
    assert buffers.take_latest()["now"] == 2


def test_all_is_everything_since_the_last_step() -> None:
    buffers = latest_and_all()
    for n in range(3):
        put(buffers, message("t/y", n, seq=n))
    assert buffers.take_latest()["log"] == [0, 1, 2]
    assert buffers.take_latest()["log"] == []
    put(buffers, message("t/y", 3, seq=3))
    assert buffers.take_latest()["log"] == [3]


def test_by_tick_shows_what_the_limit_allows_and_keeps_the_rest() -> None:
    buffers = latest_and_all()
    for tick in range(4):
        put(buffers, message("t/x", tick, tick=tick))
        put(buffers, message("t/y", tick, tick=tick))
    assert buffers.take_by_tick({"t/x": 1, "t/y": 0}) == {"now": 1, "log": [0]}
    assert buffers.take_by_tick({}) == {"now": 1, "log": []}, "an input without a limit waits"
    assert buffers.take_by_tick({"t/x": 3, "t/y": 3}) == {"now": 3, "log": [1, 2, 3]}


def test_inputs_come_in_declaration_order_under_their_declared_names() -> None:
    buffers = Buffers([InputBinding("b", "t/b"), InputBinding("a", "t/a"),
                       InputBinding("again", "t/a", "all")], {})
    put(buffers, message("t/a", 1))
    assert list(buffers.take_latest().items()) == [("b", None), ("a", 1), ("again", [1])]
    assert buffers.declared_of == {"t/b": "b", "t/a": "a"}
    assert buffers.topic_of("again") == "t/a"


def test_a_topic_no_input_reads_is_not_filed() -> None:
    buffers = latest_and_all()
    assert not put(buffers, message("t/other", 1))
    assert all(not queue for queue in buffers.queues.values())


def test_an_undecodable_latest_shows_the_newest_good_one_and_counts_once() -> None:
    buffers = latest_and_all()
    put(buffers, message("t/x", "good"))
    assert buffers.take_latest()["now"] == "good"
    put(buffers, message("t/x", "newer", seq=1))
    put(buffers, undecodable("t/x"))
    assert buffers.take_latest()["now"] == "newer" and buffers.malformed == 1
    put(buffers, undecodable("t/x"))
    assert buffers.take_latest()["now"] == "newer" and buffers.malformed == 2
    assert buffers.take_latest()["now"] == "newer" and buffers.malformed == 2


def test_an_undecodable_message_is_left_out_of_all() -> None:
    buffers = latest_and_all()
    put(buffers, message("t/y", 1))
    put(buffers, undecodable("t/y"))
    put(buffers, message("t/y", 2))
    assert buffers.take_latest()["log"] == [1, 2] and buffers.malformed == 1


def in_order(reactive: bool = True) -> Buffers:
    return Buffers([InputBinding("a", "a/x"), InputBinding("b", "b/x")], {"a": 0, "b": 1},
                   reactive=reactive)


def test_reactive_readers_get_every_message_in_schedule_order() -> None:
    buffers = in_order()
    raw = buffers.raw
    for topic, publisher, seq, tick in [("b/x", "b", 0, 0), ("a/x", "a", 0, 1),
                                        ("a/x", "a", 1, 0), ("b/x", "b", 1, 2)]:
        put(buffers, message(topic, f"{publisher}{tick}", tick, seq, publisher))
    assert not put(buffers, message("c/x", "unread"))
    assert [m.value for m in buffers.take_raw_through(1)] == ["a0", "b0", "a1"]
    assert buffers.take_raw_through(1) == []
    assert [m.value for m in buffers.take_raw_all()] == ["b2"]
    assert buffers.raw is raw and raw == [], "the runtime binds raw once"


def test_a_publisher_outside_the_launch_order_comes_after_those_in_it() -> None:
    buffers = Buffers([InputBinding("every", ALL)], {"a": 0})
    assert buffers.wildcard and buffers.in_order
    put(buffers, message("z/x", "stranger", 0, 0, "z"))
    put(buffers, message("a/x", "a", 0, 0, "a"))
    put(buffers, message("y/x", "other", 0, 0, "y"))
    assert [m.value for m in buffers.take_raw_through(0)] == ["a", "stranger", "other"]


def test_take_raw_all_is_arrival_order() -> None:
    buffers = in_order()
    put(buffers, message("b/x", "late tick", tick=5, publisher="b"))
    put(buffers, message("a/x", "early tick", tick=1, publisher="a"))
    assert [m.value for m in buffers.take_raw_all()] == ["late tick", "early tick"]


def test_resume_after_skips_what_the_previous_process_was_given() -> None:
    buffers = latest_and_all()
    for tick in range(4):
        put(buffers, message("t/x", tick, tick=tick))
        put(buffers, message("t/y", tick, tick=tick))
    buffers.resume_after({"t/x": 1, "t/y": 1}, raw_through=1)
    # Tick 1's value is current (the old process's next step would still show it) and the
    # ``all`` list starts after what the old process was given.
    assert buffers.take_by_tick({"t/x": 1, "t/y": 1}) == {"now": 1, "log": []}
    assert buffers.take_by_tick({"t/x": 2, "t/y": 2}) == {"now": 2, "log": [2]}


def test_resume_after_drops_in_order_messages_up_to_the_tick() -> None:
    buffers = in_order()
    raw = buffers.raw
    for tick in range(4):
        put(buffers, message("a/x", tick, tick=tick, seq=tick, publisher="a"))
    buffers.resume_after({}, raw_through=1)
    assert buffers.raw is raw and [m.value for m in buffers.take_raw_through(9)] == [2, 3]


def test_in_process_readers_never_share_a_mutable_value() -> None:
    shared = Shared({"list": [1]}, readers=2)
    first = LocalMessage("t/x", "p", 0, 0, 0.0, 0.0, shared)
    last = LocalMessage("t/x", "p", 0, 0, 0.0, 0.0, shared)
    mine = first.value
    mine["list"].append(2)
    assert last.value == {"list": [1]} and last.value is shared.value
    assert first.header == codec.Header("p", 0, 0, 0.0, 0.0)
