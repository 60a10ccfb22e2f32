"""One bad frame, one frozen process or one bad argument is
counted and refused, never a crash, a hang or a silent wrong result.

* Section 6, bad frames: a member of a stepped flat_evade run (``tests/hardening_nodes.py:Rogue``)
  sends one bad frame at tick 40 -- progress with a string or infinite ``through``, headers with
  ``sim_time`` inf/NaN/1e11, a negative tick, tick 2**62 on robot's action topic, a ``seq`` jump
  of a million, a valid header with an undecodable payload. The run completes, its recording of
  every other node's topics equals the inline run's, and a counter shows the frame. Control
  messages with bad values are refused by a node's control link and by the registry.
* Section 7: those counters reach ``RunResult.summary`` / ``catbus launch --json`` and the
  recording's ``catbus/`` bookkeeping.
* Section 8: ``catbus launch`` refuses bad arguments in one line, exit 2, before it starts
  anything.
* Section 3: a parallel node frozen (SIGSTOP) for 15 s, longer than the registry timeout, goes on
  after SIGCONT and the run completes, reporting the outage.

Real processes and sockets (bus_sandbox checks that none outlive a test), every test bounded.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import msgpack
import pytest
import yaml
import zmq

import catbus
from catbus.supervise.registry import Registry
from catbus.api.result import RunResult
from catbus.supervise.rundir import RunDir
from catbus.recording.reader import Recording
from catbus.recording.verify import channel_sequences
from catbus.runtime.controllink import ControlLink
from catbus.runtime.inbox import Inbox
from catbus.wire import codec
from catbus.wire import messages as msg
from tests.conftest import ROOT, pack_control, wait_until

FLAT_EVADE = ROOT / "launch" / "flat_evade.yaml"
STEPS = 100
AT = 40


def attacked_launch(attack: str, name: str | None = None) -> dict[str, Any]:
    """flat_evade (seed 3, STEPS steps) plus the Rogue, which sends ``attack`` at tick AT."""
    data = yaml.safe_load(FLAT_EVADE.read_text())
    for key in ("record", "pythonpath"):
        data.pop(key, None)
    data.update(name=name or f"hard-{attack or 'none'}"[:40].replace("_", "-"), steps=STEPS,
                seed=3)
    data["nodes"]["rogue"] = {"class": "tests.hardening_nodes:Rogue",
                              "params": {"attack": attack, "at": AT}}
    return data


def others(path: Path) -> dict[str, list]:
    """The recording's channels outside ``catbus/`` but the Rogue's own."""
    sequences = channel_sequences(path)
    sequences.pop("rogue/out", None)
    return sequences


@pytest.fixture(scope="module")
def inline_reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list]:
    path = tmp_path_factory.mktemp("inline") / "inline.mcap"
    catbus.run(attacked_launch(""), mode="inline", record=path, evaluate=False)
    sequences = others(path)
    assert {"env/state", "robot/action", "human/action"} <= set(sequences)
    return sequences


def run_attacked(attack: str, tmp_path: Path) -> tuple[RunResult, Path]:
    record = tmp_path / f"{attack}.mcap"
    result = catbus.run(attacked_launch(attack), mode="stepped", record=record, evaluate=False,
                        deadline=20.0)
    return result, record


# ------------------------------------------------------------------------------------------------
# section 6: one bad frame in a running stepped run
# ------------------------------------------------------------------------------------------------
#: attack -> the node whose ``malformed`` must count it (who subscribed to that topic on the
#: Rogue's socket: env reads only its progress there, the recorder everything).
FRAME_ATTACKS = {
    "progress_string_through": "env",
    "progress_inf_through": "env",
    "progress_bool_final_int": "env",
    "progress_bad_counts": "env",
    "progress_bad_heard": "env",
    "progress_end_float": "env",
    "progress_for_robot": "env",
    "sim_time_inf": "recorder",
    "sim_time_nan": "recorder",
    "sim_time_1e11": "recorder",
    "negative_tick": "recorder",
    "huge_tick": "recorder",
    "wrong_publisher": "recorder",
    "forged_publisher": "recorder",
}


@pytest.mark.timeout(90)
@pytest.mark.usefixtures("bus_sandbox")
@pytest.mark.parametrize("attack, counter", sorted(FRAME_ATTACKS.items()))
def test_one_bad_frame_is_counted_and_the_run_equals_inline(
        attack: str, counter: str, inline_reference: dict, tmp_path: Path) -> None:
    result, record = run_attacked(attack, tmp_path)
    assert result.nodes[counter]["malformed"] >= 1, (attack, result.nodes[counter])
    if "malformed_from" in result.nodes[counter]:   # by sender: the rogue's socket
        assert result.nodes[counter]["malformed_from"].get("rogue", 0) >= 1, result.nodes
    assert result.summary["malformed"]["total"] >= 1
    assert others(record) == inline_reference, f"{attack}: the recording differs from inline"
    assert all(stats.get("dropped", 0) == 0 for stats in result.nodes.values()), result.nodes


@pytest.mark.timeout(90)
@pytest.mark.usefixtures("bus_sandbox")
def test_progress_whose_name_is_not_its_publisher_is_refused(
        inline_reference: dict, tmp_path: Path) -> None:
    """An integer end_tick for robot, in a progress message the Rogue sent: before, it ended env
    (and so the run) at tick 40 without a word."""
    result, record = run_attacked("progress_int_end", tmp_path)
    assert result.nodes["env"]["malformed"] >= 1
    assert others(record) == inline_reference


@pytest.mark.timeout(90)
@pytest.mark.usefixtures("bus_sandbox")
def test_a_tick_past_the_last_one_does_not_hold_an_input(
        inline_reference: dict, tmp_path: Path) -> None:
    """Tick 10**9 (within the header's range) on the rogue's topic: at the head of the
    recorder's queue (delivered in tick order) it held back every later message."""
    result, record = run_attacked("future_tick", tmp_path)
    assert result.nodes["recorder"]["malformed"] >= 1
    assert others(record) == inline_reference
    rogue = [m.value["n"] for m in Recording(record).messages("rogue/out")]
    assert rogue == list(range(1, len(rogue) + 1)) and len(rogue) >= STEPS


@pytest.mark.timeout(90)
@pytest.mark.usefixtures("bus_sandbox")
def test_a_valid_header_with_an_undecodable_payload_never_reaches_the_file(
        inline_reference: dict, tmp_path: Path) -> None:
    result, record = run_attacked("bad_payload", tmp_path)
    recording = Recording(record)
    messages = list(recording.messages())          # raised for the whole file before
    assert recording.undecodable == 0
    assert others(record) == inline_reference
    assert recording.end_metadata["malformed"] == 1
    drops = [m.value for m in messages if m.topic == "catbus/drops"]
    assert drops and drops[-1]["malformed"] == 1
    rogue = [m.value for m in messages if m.topic == "rogue/out"]
    assert [v["n"] for v in rogue] == list(range(1, len(rogue) + 1)), "a rogue/out message lost"
    assert recording.end_metadata["drops"] == 0


@pytest.mark.timeout(90)
@pytest.mark.usefixtures("bus_sandbox")
def test_a_sequence_jump_of_a_million_does_not_count_a_million_drops(
        inline_reference: dict, tmp_path: Path) -> None:
    result, record = run_attacked("seq_jump", tmp_path)
    recorder = result.nodes["recorder"]
    assert recorder["dropped"] < 10 and recorder["malformed"] >= 1, recorder
    recording = Recording(record)
    assert recording.end_metadata["drops"] < 10, recording.end_metadata
    assert others(record) == inline_reference


def test_recorder_takes_back_a_contradicted_seq_jump(tmp_path: Path) -> None:
    """The recorder's own count (its ``catbus/drops``), fed directly: 0..4, 10**6, 5, 6, 9 and
    10 (which does not decode). 10**6 is one bad number, never written; 7 and 8 are lost, and
    9 is written once 10 says so."""
    from catbus.recording.recorder import Recorder

    recorder = Recorder()
    recorder.bind("recorder", 0, None, {"mode": "parallel"})
    recorder.setup({"path": str(tmp_path / "r.mcap")})
    payload = msgpack.packb({"n": 1})
    for seq in [0, 1, 2, 3, 4, 10 ** 6, 5, 6, 9]:
        recorder.on_raw("a/b", codec.Header("a", seq, seq, 0.0, 0.0), payload, [])
    recorder.on_raw("a/b", codec.Header("a", 10, 10, 0.0, 0.0), b"\xc1", [])
    recorder.close()
    end = Recording(tmp_path / "r.mcap").end_metadata
    assert (end["drops"], end["bad_seq"], end["malformed"], end["messages"]) == (2, 1, 1, 8)
    written = [m.sequence for m in Recording(tmp_path / "r.mcap").messages("a/b")]
    assert written == [0, 1, 2, 3, 4, 5, 6, 9]


@pytest.mark.parametrize("fields", [
    ["pub", 1, 0, 0, float("inf"), 0.0, None], ["pub", 1, 0, 0, float("nan"), 0.0, None],
    ["pub", 1, 0, 0, 1e11, 0.0, None], ["pub", 1, 0, 0, 0.0, float("-inf"), None],
    ["pub", 1, 0, 0, 10 ** 19, 0.0, None], ["pub", 1, 0, 2 ** 62, 0.0, 0.0, None],
    ["pub", 1, 0, -2, 0.0, 0.0, None], ["pub", 1, -1, 0, 0.0, 0.0, None],
    ["pub", 1, 2 ** 53, 0, 0.0, 0.0, None], ["pub", -1, 0, 0, 0.0, 0.0, None],
    ["pub", 1, 0, 0, 0.0, 0.0, -2], ["pub", 1, 0, 0, 0.0, 0.0, 2 ** 60],
    ["pub", 1, 0, 0, 0.0, 0.0, True], ["", 1, 0, 0, 0.0, 0.0, None]])
def test_header_values_out_of_range_are_refused(fields: list) -> None:
    data = msgpack.packb([3, *fields])
    with pytest.raises(codec.DecodeError):
        codec.Header.unpack(data)
    with pytest.raises(codec.DecodeError):   # the slow path (one extra field) agrees
        codec.Header.unpack(msgpack.packb([3, *fields, "extra"]))


def test_header_values_at_their_limits_are_accepted() -> None:
    for fields in (["p", 0, 0, -1, 0.0, 0.0, -1], ["p", 2 ** 53 - 1, 2 ** 53 - 1, 2 ** 53 - 1,
                                                     -1.7e10, 1.7e10, 2 ** 53 - 1],
                   ["p", 1, 0, 0, 3, 4, None]):
        header = codec.Header.unpack(msgpack.packb([3, *fields]))
        assert header.publisher == "p"


# -- control messages with bad values --------------------------------------------------------------
BAD_TO_NODE = [
    pack_control("start", delay=-1.0), pack_control("start", delay=float("inf")),
    pack_control("start", delay=float("nan")), pack_control("start", delay=1e9),
    pack_control("end", tick=-5), pack_control("end", tick=2 ** 62),
    pack_control("end", tick=True), pack_control("hb", tick=-9),
    pack_control("welcome", mode="stepped", seed=0, period=float("nan")),
    pack_control("welcome", mode="stepped", seed=0, duration=-1.0),
]
BAD_TO_REGISTRY = [
    pack_control("hb", tick=2 ** 62, steps=0, state=""), pack_control("hb", tick=0, steps=-1),
    pack_control("hb", tick=0.5), pack_control("done", code=2 ** 40),
    pack_control("done", end_tick=-7),
    pack_control("register", name="x", endpoint="ipc://x", period=float("inf")),
    pack_control("register", name="y", endpoint="ipc://y", pid=-1),
]


@pytest.mark.timeout(30)
def test_control_link_counts_and_drops_bad_values() -> None:
    ctx = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    port = router.bind_to_random_port("tcp://127.0.0.1")
    link = ControlLink(ctx, f"tcp://127.0.0.1:{port}")
    try:
        link.send(msg.Ready())
        identity, _ = router.recv_multipart()
        for data in BAD_TO_NODE:
            router.send_multipart([identity, data])
        router.send_multipart([identity, pack_control("start", delay=0.05)])
        got: list = []
        wait_until(lambda: got.extend(link.receive_nowait()) or got, 10,
                   what="the good message")
        assert got == [msg.Start(delay=0.05)]
        assert link.malformed == len(BAD_TO_NODE)
    finally:
        link.close()
        router.close()
        ctx.term()


@pytest.mark.timeout(30)
def test_registry_counts_and_drops_bad_values() -> None:
    rundir = RunDir.create("ctlvalues")
    ctx = zmq.Context()
    registry = Registry(ctx, rundir.endpoint("registry"))
    dealer = ctx.socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    try:
        dealer.connect(registry.endpoint)
        for data in BAD_TO_REGISTRY:
            dealer.send(data)
        dealer.send(pack_control("graph?"))
        replies: list[dict] = []

        def answered() -> bool:
            registry.poll(20)
            while dealer.poll(0):
                replies.append(msgpack.unpackb(dealer.recv()))
            return bool(replies) and replies[-1]["op"] == "graph"

        wait_until(answered, 10, interval=0, what="the registry's graph")
        assert registry.malformed == len(BAD_TO_REGISTRY)
        assert replies[-1]["nodes"] == []
    finally:
        dealer.close()
        registry.close()
        ctx.term()
        rundir.remove()


# ------------------------------------------------------------------------------------------------
# section 7: every counter in the summary, --json and the recording
# ------------------------------------------------------------------------------------------------
def test_summary_and_table_show_every_malformed_count() -> None:
    from catbus.spec.launchfile import build_launch

    spec = build_launch({"name": "s", "nodes": {"a": {"class": "tests.toy_nodes:Talker"}}})
    result = RunResult(spec, {"a": {"steps": 3, "malformed": 2,
                                    "malformed_by": {"data": 1, "control": 1}}}, 1.0,
                       registry_malformed=4)
    summary = json.loads(json.dumps(result.summary, default=str))
    assert summary["malformed"] == {"total": 6, "registry": 4, "nodes": {"a": 2}}
    assert "malformed input counted and dropped: 6 (registry 4, a 2)" in result.table()


def test_node_stats_count_control_and_data_plane_refusals() -> None:
    from types import SimpleNamespace

    from catbus.runtime.stats import NodeStats, add_link_counts

    inbox = Inbox([], {})
    inbox.malformed = 2
    stats = NodeStats().to_dict(0, inbox, node_malformed=1)
    add_link_counts(stats, SimpleNamespace(malformed=4), SimpleNamespace(malformed=8))
    assert stats["malformed"] >= 15
    by = stats["malformed_by"]
    assert {key: by[key] for key in ("data", "node", "control", "dataplane")} == \
        {"data": 2, "node": 1, "control": 4, "dataplane": 8}
    assert stats["malformed"] == sum(by.values())


@pytest.mark.timeout(120)
@pytest.mark.usefixtures("bus_sandbox")
def test_launch_json_reports_malformed_input(tmp_path: Path) -> None:
    launch = tmp_path / "attacked.yaml"
    launch.write_text(yaml.safe_dump(attacked_launch("sim_time_inf", name="json-attack")))
    done = subprocess.run(
        [sys.executable, "-m", "catbus", "launch", str(launch), "--mode", "stepped", "--json",
         "--no-progress", "--record", str(tmp_path / "a.mcap")],
        cwd=ROOT, capture_output=True, text=True, timeout=100, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["malformed"]["total"] >= 1
    assert summary["malformed"]["nodes"]["recorder"] >= 1
    assert summary["nodes"]["recorder"]["malformed_by"]["data"] >= 1
    # the recording says it too
    assert Recording(tmp_path / "a.mcap").end_metadata["malformed_frames"] >= 1


@pytest.mark.timeout(90)
@pytest.mark.usefixtures("bus_sandbox")
def test_registry_malformed_count_reaches_the_result(tmp_path: Path) -> None:
    result, _ = run_attacked("control_bad_hb", tmp_path)
    assert result.registry_malformed == 1
    assert result.summary["malformed"]["registry"] == 1


def test_a_file_with_an_undecodable_message_is_still_readable(tmp_path: Path) -> None:
    """A file written otherwise (an older recorder wrote such messages): the reader skips and
    counts the bad message, or keeps it without a value, or raises when asked to."""
    from mcap.writer import Writer

    from catbus.errors import CatbusError
    from catbus.recording.mcap_layout import MESSAGE_ENCODING

    path = tmp_path / "old.mcap"
    with open(path, "wb") as handle:
        writer = Writer(handle)
        writer.start()
        channel = writer.register_channel("a/b", MESSAGE_ENCODING, 0)
        for seq, payload in enumerate([msgpack.packb(1), b"\xc1", msgpack.packb(3)]):
            writer.add_message(channel, log_time=seq, publish_time=seq, sequence=seq,
                               data=codec.record_bytes(payload, []))
        writer.finish()
    recording = Recording(path)
    with pytest.warns(UserWarning, match="cannot be decoded"):
        assert [m.value for m in recording.messages()] == [1, 3]
    assert recording.undecodable == 1
    with pytest.warns(UserWarning):
        assert [m.value for m in Recording(path).messages(errors="keep")] == [1, None, 3]
    with pytest.raises(CatbusError, match="cannot be decoded"):
        list(Recording(path).messages(errors="raise"))


# ------------------------------------------------------------------------------------------------
# section 8: launch-time checks of every argument
# ------------------------------------------------------------------------------------------------
@pytest.mark.timeout(60)
@pytest.mark.parametrize("args, field", [
    (["--record", "/proc/nope/x.mcap"], "--record"),
    (["--record", "/"], "--record"),
    (["--deadline", "0"], "--deadline"),
    (["--deadline", "-1"], "--deadline"),
    (["--deadline", "nan"], "--deadline"),
    (["--remote-timeout", "0"], "--remote-timeout"),
    (["--seed", str(2 ** 64)], "--seed"),
    (["--foxglove", "70000"], "--foxglove"),
    (["--steps", "-1"], "--steps"),
    (["--duration", "0"], "--duration"),
    (["--max-steps", "0"], "--max-steps"),
    (["--steps", str(10 ** 23)], "--steps"),             # crashed with an OverflowError
    (["--duration", "1e300"], "--duration"),
])
def test_bad_launch_arguments_are_one_line_before_anything_starts(
        args: list[str], field: str, bus_sandbox: Any) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "catbus", "launch", str(FLAT_EVADE), "--mode", "stepped",
         "--no-progress", *args], cwd=ROOT, capture_output=True, text=True, timeout=50,
        stdin=subprocess.DEVNULL)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1 and field in lines[0] and "Traceback" not in done.stderr, lines
    assert args[1] in lines[0] or args[1] in ("nan", "1e300"), lines
    assert not bus_sandbox.run_folders(), "a run folder was made for a refused launch"


# ------------------------------------------------------------------------------------------------
# section 3: a frozen node outlives the registry timeout
# ------------------------------------------------------------------------------------------------
def _children_named(name: str) -> list[int]:
    me, found = os.getpid(), []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as stat:
                text = stat.read().decode(errors="replace")
            with open(f"/proc/{entry}/cmdline", "rb") as cmd:
                argv = cmd.read().split(b"\0")
        except OSError:
            continue
        if int(text[text.rfind(")") + 2:].split()[1]) == me and name.encode() in argv:
            found.append(int(entry))
    return found


@pytest.mark.timeout(30)
def test_silence_is_judged_after_reading_what_is_queued() -> None:
    """The mechanism of the freeze below, deterministically: the registry's heartbeats are
    waiting on the socket while the clock says 11 s since the last one was read (the process
    was frozen); silent_for() reads them before it answers."""
    ctx = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    port = router.bind_to_random_port("tcp://127.0.0.1")
    link = ControlLink(ctx, f"tcp://127.0.0.1:{port}")
    try:
        link.send(msg.Ready())
        identity, _ = router.recv_multipart()
        router.send_multipart([identity, msg.encode(msg.Heartbeat())])
        router.send_multipart([identity, msg.encode(msg.End(tick=5))])
        assert link.socket.poll(10_000), "the heartbeat never arrived"
        link.last_heard = link.last_looked = time.monotonic() - 11.0
        assert link.silent_for() < 1.0
        assert link.receive_nowait() == [msg.Heartbeat(), msg.End(tick=5)], \
            "messages read while judging the silence must still be handled, in order"
        link.last_heard = time.monotonic() - 11.0   # nothing queued now: silence is silence
        assert link.silent_for() > 10.0
    finally:
        link.close()
        router.close()
        ctx.term()


@pytest.mark.timeout(90)
@pytest.mark.usefixtures("bus_sandbox")
def test_a_parallel_node_frozen_longer_than_the_registry_timeout_goes_on(tmp_path) -> None:
    """SIGSTOP for 15 s (the registry timeout is 10 s), SIGCONT: the node neither dies of "the
    registry has been silent" nor is failed by the registry -- its link went down (the frozen
    process answers no ZeroMQ heartbeat) and came back within the rejoin timeout -- and the run
    completes, reporting the outage."""
    launch = yaml.safe_load(FLAT_EVADE.read_text())
    for key in ("record", "pythonpath", "steps"):
        launch.pop(key, None)
    launch.update(name="frozen", duration=20.0)
    record = tmp_path / "frozen.mcap"
    handle = catbus.start(launch, mode="parallel", record=record)
    pid = None
    try:
        assert handle.wait_until_started(30)
        pid = wait_until(lambda: (_children_named("robot") or [None])[0], 10,
                         what="the robot's process")
        os.kill(pid, signal.SIGSTOP)
        time.sleep(15.0)   # the freeze itself is what is tested: longer than the 10 s timeout
        os.kill(pid, signal.SIGCONT)
        pid = None
        result = handle.wait(60)
    finally:
        if pid is not None:
            os.kill(pid, signal.SIGCONT)
        if handle.running:
            handle.stop()
            handle.wait(30)
    assert not result.failures
    assert result.nodes["robot"]["state"] == "done", result.nodes["robot"]
    assert result.nodes["robot"]["returncode"] == 0
    assert [(r["node"], r["kind"]) for r in result.swaps] == [("robot", "rejoin")], result.swaps
    from catbus.recording.reader import Recording   # (the recording says so too)

    [event] = [m.value for m in Recording(record).messages("catbus/swap")]
    assert (event["node"], event["kind"]) == ("robot", "rejoin") and event["away_s"] > 0
