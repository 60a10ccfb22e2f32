"""Admission alone (catbus.runtime.inbox.admission): which data messages a node accepts, and
the counts of those it refuses -- owners, process incarnations, sequence numbers, floors after a
restart, the schedule's last tick."""

from __future__ import annotations

import pytest

from catbus.runtime.inbox.admission import Admission

pytestmark = pytest.mark.unit


def admission(completed: dict[str, int] | None = None) -> Admission:
    """An Admission whose peers have completed what ``completed`` says (-1 for the others)."""
    known = completed or {}
    return Admission(lambda publisher: known.get(publisher, -1))


def admit_all(gate: Admission, seqs: list[int], topic: str = "p/t", publisher: str = "p",
              incarnation: int = 1) -> list[bool]:
    """Each seq at the tick of the same number."""
    return [gate.admit(topic, publisher, seq, seq, incarnation) for seq in seqs]


def counts(gate: Admission) -> tuple[int, int, int, int]:
    return gate.received, gate.dropped, gate.duplicates, gate.malformed


def test_a_stream_in_order_is_admitted_and_counted() -> None:
    gate = admission()
    assert admit_all(gate, [0, 1, 2]) == [True, True, True]
    assert counts(gate) == (3, 0, 0, 0)


def test_a_topic_with_an_owner_is_taken_from_it_only() -> None:
    gate = admission()
    gate.owners = {"robot/action": "robot"}
    assert not gate.admit("robot/action", "rogue", 0, 0, 1)
    assert gate.admit("robot/action", "robot", 0, 0, 1)
    assert gate.admit("unowned/topic", "anyone", 0, 0, 1)   # a topic the graph does not name
    assert counts(gate) == (2, 0, 0, 1)


def test_numbers_had_already_are_duplicates_not_losses() -> None:
    gate = admission()
    assert admit_all(gate, [0, 1, 2, 1, 2, 0]) == [True] * 3 + [False] * 3
    assert counts(gate) == (3, 0, 3, 0)


def test_each_topic_of_a_publisher_has_its_own_sequence() -> None:
    gate = admission()
    assert admit_all(gate, [0, 1], topic="p/a") == [True, True]
    assert admit_all(gate, [0, 1], topic="p/b") == [True, True]
    assert counts(gate) == (4, 0, 0, 0)


def test_a_gap_counts_the_messages_lost() -> None:
    gate = admission()
    assert admit_all(gate, [0, 1, 5, 6, 8]) == [True] * 5
    assert counts(gate) == (5, 4, 0, 0)


def test_a_bad_seq_that_the_stream_contradicts_is_one_malformed_message() -> None:
    """100, 1000000, 101: one message with a bad seq, not 999898 losses."""
    gate = admission()
    assert admit_all(gate, [99, 100, 1_000_000, 101, 102]) == [True] * 5
    assert counts(gate) == (5, 0, 0, 1)
    assert gate.last_seq[("p", "p/t")] == 102 and not gate.seq_jumps


def test_a_jump_the_stream_confirms_stays_a_loss() -> None:
    gate = admission()
    assert admit_all(gate, [0, 10, 11, 1]) == [True, True, True, False]
    assert counts(gate) == (3, 9, 1, 0)


def test_a_jump_is_taken_back_only_by_the_very_next_message() -> None:
    gate = admission()
    assert admit_all(gate, [0, 10, 10, 1]) == [True, True, False, False]
    assert counts(gate) == (2, 9, 2, 0)


def test_an_older_process_is_late_and_a_newer_one_takes_over_the_numbers() -> None:
    gate = admission()
    assert admit_all(gate, [0, 1, 2], incarnation=2) == [True] * 3
    assert admit_all(gate, [3], incarnation=1) == [False]           # the replaced process
    assert admit_all(gate, [0, 1], incarnation=3) == [True, True]   # numbers from 0 again
    assert admit_all(gate, [2], incarnation=2) == [False]
    assert counts(gate) == (5, 0, 2, 0)
    assert gate.process_of == {"p": 3}


def test_a_restarted_process_is_not_heard_for_what_its_predecessor_completed() -> None:
    completed = {"p": -1}
    gate = admission(completed)
    assert admit_all(gate, [0, 1, 2, 3], incarnation=1) == [True] * 4
    completed["p"] = 3
    # The restart steps ticks 2.. again: 2 and 3 are what the reader had from the old process.
    assert [gate.admit("p/t", "p", seq, tick, 2) for seq, tick in [(0, 2), (1, 3), (2, 4)]] \
        == [False, False, True]
    assert gate.floors == {"p": 3}
    assert counts(gate) == (5, 0, 2, 0), "the numbers skipped by the floor are not losses"


def test_the_first_process_heard_of_sets_no_floor() -> None:
    gate = admission({"p": 7})
    assert gate.admit("p/t", "p", 0, 3, 4)
    assert gate.floors == {}


def test_a_tick_past_the_last_one_is_refused() -> None:
    gate = admission()
    gate.last_tick = 10
    assert gate.admit("p/t", "p", 0, 10, 1)
    assert not gate.admit("p/t", "p", 1, 11, 1)
    assert counts(gate) == (1, 0, 0, 1)
    assert gate.admit("p/t", "p", 2, 10, 1), "the refused message still used a number"
    assert gate.dropped == 1
