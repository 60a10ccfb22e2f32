"""Peers' progress alone (catbus.runtime.inbox.progress): completed-through per publisher from
the ``through`` its data carries on every topic read from it and from its ``catbus/progress``
messages, its end of the episode, its final word, what it has heard."""

from __future__ import annotations

import msgpack
import pytest

from catbus.runtime.inbox.progress import PeersProgress, progress_problem

pytestmark = pytest.mark.unit


def payload(name: str, through: int, end: int | None = None, final: bool = False,
            heard: dict | None = None) -> bytes:
    return msgpack.packb([name, through, through, end, final, {}, heard])


def test_data_counts_once_every_topic_read_from_the_publisher_carried_the_tick() -> None:
    peers = PeersProgress()
    peers.set_sources({"env": {"env/a", "env/b"}})
    seen = peers.advances
    peers.carry("env", "env/a", 4)
    assert peers.through("env") == -1 and peers.advances == seen
    peers.carry("env", "env/b", 2)
    assert peers.through("env") == 2 and peers.advances == seen + 1
    peers.carry("env", "env/b", 6)
    assert peers.through("env") == 4
    before = peers.advances
    peers.carry("env", "env/b", 5)   # older than what the topics carried: nothing changes
    peers.carry("env", "env/a", 3)
    assert peers.through("env") == 4 and peers.advances == before


def test_data_carried_before_the_sources_are_known_counts_then() -> None:
    peers = PeersProgress()
    peers.carry("env", "env/a", 3)
    peers.carry("robot", "robot/x", 9)
    assert peers.progress == {}
    peers.set_sources({"env": {"env/a"}, "robot": set()})
    assert peers.through("env") == 3 and peers.through("robot") == -1


def test_a_topic_not_read_from_the_publisher_does_not_count() -> None:
    peers = PeersProgress()
    peers.set_sources({"env": ["env/a"]})
    peers.carry("env", "env/other", 7)
    assert peers.through("env") == -1


def test_progress_messages_raise_through_and_never_lower_it() -> None:
    peers = PeersProgress()
    peers.add_progress(payload("env", 5), "env")
    peers.add_progress(payload("env", 3), "env")
    assert peers.through("env") == 5 and peers.advances == 2
    peers.set_sources({"env": {"env/a"}})
    peers.carry("env", "env/a", 4)   # behind what the progress said
    assert peers.through("env") == 5


def test_the_end_is_the_earliest_any_peer_announced() -> None:
    peers = PeersProgress()
    assert peers.end_tick() is None
    peers.add_progress(payload("a", 1, end=9), "a")
    peers.add_progress(payload("b", 1, end=12), "b")
    peers.add_progress(payload("b", 2), "b")   # no end: the one known stays
    assert peers.end_tick() == 9 and peers.progress["b"].end == 12
    peers.add_progress(payload("b", 3, end=4), "b")
    assert peers.end == 4 and peers.progress["b"].end == 4


def test_final_is_a_last_word_of_every_peer_asked_about() -> None:
    peers = PeersProgress()
    peers.add_progress(payload("a", 3, final=True), "a")
    peers.add_progress(payload("b", 3), "b")
    assert peers.all_final(["a"]) and not peers.all_final(["a", "b"])
    assert not peers.all_final(["a", "never heard of"]) and peers.all_final([])
    peers.add_progress(payload("a", 4, final=False), "a")
    assert peers.all_final(["a"]), "a final word is not taken back"


def test_heard_is_replaced_by_each_message_that_has_it() -> None:
    peers = PeersProgress()
    peers.add_progress(payload("a", 3, heard={"b": 2}), "a")
    peers.add_progress(payload("a", 4), "a")   # nil: what was heard stays
    assert peers.heard == {"a": {"b": 2}}
    peers.add_progress(payload("a", 5, heard={"c": 1}), "a")
    assert peers.heard == {"a": {"c": 1}}


def test_a_refused_progress_changes_nothing_and_says_why() -> None:
    peers = PeersProgress()
    peers.add_progress(b"\xc1", "a")
    peers.add_progress(payload("robot", 3, end=4), "rogue")
    peers.add_progress(msgpack.packb(["a", 0, 2 ** 62, None, False, {}]), "a")
    assert peers.malformed == 3
    assert peers.refused_progress == "through is not an int in [-1, 2**53)"
    assert peers.progress == {} and peers.end is None and peers.advances == 0


@pytest.mark.parametrize("fields, problem", [
    (["a", 0, 3, None, False, {}], None),
    (["a", -1, -1, -1, True, {"t": 0}, {"b": -1}, "later"], None),
    ({"a": 1}, "not a list of at least 6 elements"),
    (["a", 0, 3, None, False], "not a list of at least 6 elements"),
    (["", 0, 3, None, False, {}], "name is not a non-empty string"),
    (["a", 0.0, 3, None, False, {}], "tick is not an int in [-1, 2**53)"),
    (["a", 0, True, None, False, {}], "through is not an int in [-1, 2**53)"),
    (["a", 0, 3, -2, False, {}], "end_tick is not nil or an int in [-1, 2**53)"),
    (["a", 0, 3, None, 0, {}], "final is not a bool"),
    (["a", 0, 3, None, False, {"t": -1}], "counts is not a map of topic to int in [0, 2**53)"),
    (["a", 0, 3, None, False, {}, {"": 1}],
     "heard is not nil or a map of node name to int in [-1, 2**53)"),
])
def test_progress_problem_names_the_first_bad_element(fields: object,
                                                      problem: str | None) -> None:
    assert progress_problem(fields) == problem
