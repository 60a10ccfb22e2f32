"""Who sent a message is the transport's word, not the header's; an end of the episode must be
one that can be true; the recorder writes only what it accepts.

With real processes, a member of a stepped flat_evade run -- the robot itself, its publishing
socket patched to send what a node in another language with the robot's key could
(``tests/hardening_nodes.py:ForgingRobot``) -- sends:

1. the human's actions under the human's name: refused where they arrive (the recorder, the
   only node that reads anything but the robot's own topics on its socket), counted against the
   robot, never recorded; the env never sees them;
2. an end of the episode at tick 5, at tick 40: refused and counted by every node that reads its
   progress; the run goes on to its last step;
3. a copy of its action with sequence number 10**6: the recorder counts one bad number and does
   not write it.

In each case the recording equals the inline run's on every channel but ``catbus/`` and nothing
is counted as lost. The same rules without processes are the ``unit`` tests below them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgpack
import pytest
import yaml

import catbus
from catbus.api.result import RunResult
from catbus.recording.reader import Recording
from catbus.recording.verify import channel_sequences
from catbus.runtime.inbox import Frames, Inbox, InputBinding
from catbus.runtime.inbox.progress import end_problem
from catbus.wire import codec
from tests.conftest import ROOT

FLAT_EVADE = ROOT / "launch" / "flat_evade.yaml"
STEPS = 100
AT = 40


def forging_launch(forge: str) -> dict[str, Any]:
    """flat_evade (seed 3, STEPS steps) whose robot forges ``forge`` from tick AT."""
    data = yaml.safe_load(FLAT_EVADE.read_text())
    for key in ("record", "pythonpath"):
        data.pop(key, None)
    data.update(name=f"forge-{forge or 'none'}".replace("_", "-"), steps=STEPS, seed=3)
    robot = data["nodes"]["robot"]
    robot["class"] = "tests.hardening_nodes:ForgingRobot"
    robot.setdefault("params", {}).update(forge=forge, at=AT)
    return data


@pytest.fixture(scope="module")
def inline_reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list]:
    path = tmp_path_factory.mktemp("inline") / "inline.mcap"
    catbus.run(forging_launch(""), mode="inline", record=path, evaluate=False)
    sequences = channel_sequences(path)
    assert {"env/state", "robot/action", "human/action"} <= set(sequences)
    return sequences


def run_forged(forge: str, tmp_path: Path) -> tuple[RunResult, Path]:
    record = tmp_path / f"{forge}.mcap"
    result = catbus.run(forging_launch(forge), mode="stepped", record=record, evaluate=False,
                        deadline=20.0)
    return result, record


def from_robot(stats: dict) -> int:
    """What a node counted against the robot (its statistics' ``malformed_from``: by the
    neighbour whose socket the refused message came in on)."""
    return stats.get("malformed_from", {}).get("robot", 0)


def assert_untouched(result: RunResult, record: Path, inline_reference: dict) -> None:
    """The run went to its last step, nothing was lost, and the recording is inline's."""
    assert not result.failures, result.failures
    assert result.nodes["env"]["tick"] == STEPS, result.nodes["env"]
    assert all(stats.get("dropped", 0) == 0 for stats in result.nodes.values()), result.nodes
    assert channel_sequences(record) == inline_reference, "the recording differs from inline"
    end = Recording(record).end_metadata
    assert end["drops"] == 0, end


@pytest.mark.timeout(120)
@pytest.mark.usefixtures("bus_sandbox")
def test_a_member_forging_another_nodes_topic_is_refused_where_it_arrives(
        inline_reference: dict, tmp_path: Path) -> None:
    """Case 1: the robot sends human/action under the human's name every tick from AT (a later
    incarnation, sequence numbers a million ahead). The env subscribes to human/action only on
    the human's socket, so it never receives them; the recorder, which reads everything on the
    robot's socket, refuses each and counts it against the robot."""
    result, record = run_forged("human_action", tmp_path)
    forged = STEPS - AT + 1
    recorder = result.nodes["recorder"]
    assert recorder["malformed"] >= forged and from_robot(recorder) >= forged, recorder
    assert result.nodes["env"]["malformed"] == 0, result.nodes["env"]
    assert_untouched(result, record, inline_reference)
    human = [m for m in Recording(record).messages("human/action")]
    assert {m.publisher for m in human} == {"human"} and len(human) == STEPS + 1


@pytest.mark.timeout(120)
@pytest.mark.usefixtures("bus_sandbox")
@pytest.mark.parametrize("forge", ["past_end", "past_end_through"])
def test_an_end_in_the_past_is_refused_and_the_run_goes_on(
        forge: str, inline_reference: dict, tmp_path: Path) -> None:
    """Case 2: at tick AT the robot announces the end of the episode at tick 5 (its through the
    tick before, or 5 as well). Before, that stopped a 1000-step run there, exit 0, nothing
    counted; now every node reading the robot's progress refuses and counts it."""
    result, record = run_forged(forge, tmp_path)
    for name in ("env", "recorder"):
        stats = result.nodes[name]
        assert stats["malformed"] >= 1 and from_robot(stats) >= 1, (name, stats)
    assert_untouched(result, record, inline_reference)


@pytest.mark.timeout(120)
@pytest.mark.usefixtures("bus_sandbox")
def test_a_copy_with_a_bad_sequence_number_is_counted_and_not_written(
        inline_reference: dict, tmp_path: Path) -> None:
    """Case 3: a valid robot/action with sequence number 10**6 (a copy of the robot's previous
    one). The recorder counted it as a bad number but had written it (1002 messages against
    inline's 1001); now it holds a message that jumps ahead until the stream's next one says
    whether it was real."""
    result, record = run_forged("seq_copy", tmp_path)
    end = Recording(record).end_metadata
    assert end["bad_seq"] == 1, end
    assert result.nodes["env"]["malformed"] >= 1   # env's own count of the contradicted jump
    assert_untouched(result, record, inline_reference)
    actions = list(Recording(record).messages("robot/action"))
    assert [m.sequence for m in actions] == list(range(STEPS + 1))


# ------------------------------------------------------------------------------------------------
# the same rules, without processes
# ------------------------------------------------------------------------------------------------
def _message(publisher: str, topic: str, seq: int, tick: int, value: Any = 1,
             through: int | None = None, incarnation: int = 1) -> list:
    header = codec.Header(publisher, seq, tick, tick * 0.01, 0.0, through, incarnation)
    return codec.encode_message(topic, header, value)


def _progress(name: str, tick: int, through: int, end: int | None, final: bool = False,
              publisher: str | None = None) -> list[bytes]:
    header = codec.Header(publisher or name, 0, tick, 0.0, 0.0).pack()
    return [codec.envelope(codec.topic_frame("catbus/progress"), header,
                           msgpack.packb([name, tick, through, end, final, {}]))]


def _inbox() -> Inbox:
    inbox = Inbox([InputBinding("h", "human/action"), InputBinding("r", "robot/action")],
                  {"env": 0, "robot": 1, "human": 2})
    inbox.owners = {"human/action": "human", "robot/action": "robot"}
    return inbox


@pytest.mark.unit
def test_a_header_naming_another_node_than_the_socket_is_refused_and_counted() -> None:
    inbox = _inbox()
    assert inbox.add_frames(_message("human", "human/action", 0, 0, "real"), "human") is not None
    forged = Frames(_message("human", "human/action", 10 ** 6, 1, "forged", incarnation=9),
                    "robot")
    assert inbox.add_frames(forged) is None
    assert inbox.forged == 1 and inbox.malformed == 1
    assert inbox.malformed_from == {"robot": 1}
    # The real stream is untouched: its process, its sequence, nothing counted lost.
    assert inbox.add_frames(_message("human", "human/action", 1, 1, "real"), "human") is not None
    assert (inbox.received, inbox.dropped, inbox.duplicates) == (2, 0, 0)
    assert inbox.admission.process_of["human"] == 1
    assert [m.value for _tick, m in inbox.buffers.queues["human/action"]] == ["real", "real"]


@pytest.mark.unit
def test_progress_from_another_socket_than_its_senders_is_refused() -> None:
    inbox = _inbox()
    inbox.add_frames(_progress("human", 3, 3, 5), "robot")
    assert inbox.end_tick() is None and inbox.through("human") == -1
    assert inbox.malformed_from == {"robot": 1}


@pytest.mark.unit
def test_the_socket_decides_even_when_the_owner_check_would_pass() -> None:
    """Without a source (inline, tests) the header is trusted as before: the owner check is
    all there is, and a forged name passes it -- which is why sockets name their sender."""
    inbox = _inbox()
    assert inbox.add_frames(_message("human", "human/action", 0, 0, "forged")) is not None
    assert inbox.add_frames(_message("human", "human/action", 1, 1), "robot") is None


@pytest.mark.unit
@pytest.mark.parametrize("end, through, final, completed, newest, may_end, refused", [
    (40, 40, False, 39, 40, True, False),     # the node that ends the episode, at its tick
    (40, 40, True, 39, 40, True, False),      # its final progress
    (40, 38, True, 38, 40, True, False),      # a final progress relaying an end it reached
    (5, 99, False, 98, 99, True, True),       # case 2: an end below its own through
    (5, 5, False, 98, 99, True, True),        # ... below what it had completed
    (5, 5, False, -1, 99, True, True),        # ... below the ticks of its data (parallel)
    (5, 5, True, 98, 99, True, True),         # a final word does not make the past true
    (50, 50, False, 49, 50, False, True),     # a node that cannot end it (stepped, reactive)
    (50, 49, True, 49, 50, False, False),     # ... may relay the end in its final progress
])
def test_end_problem(end: int, through: int, final: bool, completed: int, newest: int,
                     may_end: bool, refused: bool) -> None:
    assert (end_problem(end, through, final, completed, newest, may_end) is not None) == refused


@pytest.mark.unit
def test_an_end_in_the_past_is_refused_counted_and_changes_nothing() -> None:
    inbox = _inbox()
    inbox.set_sources({"robot": {"robot/action"}})
    for tick in range(10):
        inbox.add_frames(_message("robot", "robot/action", tick, tick, through=tick), "robot")
    assert inbox.through("robot") == 9
    inbox.add_frames(_progress("robot", 10, 10, 5), "robot")    # end below its own through
    inbox.add_frames(_progress("robot", 10, 5, 5), "robot")     # below what it had completed
    assert inbox.end_tick() is None and inbox.through("robot") == 9
    assert inbox.malformed == 2 and inbox.malformed_from == {"robot": 2}
    inbox.add_frames(_progress("robot", 12, 12, 12), "robot")   # a true end
    assert inbox.end_tick() == 12 and inbox.malformed == 2


@pytest.mark.unit
def test_in_a_stepped_run_a_node_without_a_period_cannot_end_the_episode() -> None:
    inbox = _inbox()
    inbox.reactive = ["recorder"]
    inbox.add_frames(_progress("recorder", 3, 3, 3), "recorder")   # parallel: it may
    assert inbox.end_tick() == 3
    stepped = _inbox()
    stepped.reactive = ["recorder"]
    stepped.last_tick = 100
    stepped.add_frames(_progress("recorder", 3, 3, 3), "recorder")
    assert stepped.end_tick() is None and stepped.malformed_from == {"recorder": 1}
    stepped.add_frames(_progress("recorder", 4, 3, 3, final=True), "recorder")   # a relay
    assert stepped.end_tick() == 3


@pytest.mark.timeout(30)
def test_a_publisher_does_not_relay_an_end_in_its_own_past() -> None:
    """What a sender does so that its readers' rule never refuses a true end: a node that ran
    ahead of the node that ended the episode (up to WINDOW ticks) leaves that end out of its
    final progress -- its readers learn it from the node that ended it, or from the registry --
    and keeps an end it has not passed."""
    import zmq

    from catbus.runtime.dataplane import DataPlane, receive_frames

    ctx = zmq.Context()
    plane = DataPlane(ctx, "ahead", "inproc://provenance-relay")
    receiver = ctx.socket(zmq.SUB)
    try:
        receiver.setsockopt(zmq.SUBSCRIBE, b"")
        receiver.setsockopt(zmq.RCVTIMEO, 5000)
        receiver.connect("inproc://provenance-relay")
        assert plane.pub.poll(5000)
        plane.gate.drain()

        def progress() -> list:
            frames = receive_frames(receiver, wait=True)
            topic, _header, payload = codec.open_envelope(frames[0])
            assert topic == "catbus/progress"
            return msgpack.unpackb(payload)

        plane.publish("ahead/x", 1, 48, 0.48, 48)
        receive_frames(receiver, wait=True)
        plane.publish_progress(48, 40, 40, True)     # the end (40) is in its past: left out
        assert progress()[2:5] == [40, None, True]
        plane.publish_progress(48, 48, 50, True)     # an end it has not passed: relayed
        assert progress()[2:5] == [48, 50, True]
    finally:
        receiver.close(0)
        plane.close()
        ctx.term()
