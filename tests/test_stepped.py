"""Stepped and inline modes: the schedule (docs/design.md), the determinism contract, failures."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import msgpack
import pytest
import zmq

import catbus
from catbus.wire import codec
from catbus.runtime.dataplane import PROGRESS_FRAME
from catbus.wire.protocol import HELLO_PREFIX
from catbus.errors import ConfigError, NodeFailed
from catbus.supervise.rundir import RunDir, running_runs
from catbus.recording.reader import Recording
from catbus.recording.verify import first_difference
from tests.conftest import pack_control, wait_until

FLAT_EVADE = Path(__file__).resolve().parent.parent / "launch" / "flat_evade.yaml"


def witness_graph(steps: int = 6) -> dict:
    """a, b, c with periods of 1, 2 and 3 base ticks (0.1 s), each watching the other two."""
    def node(period: float, left: str, right: str) -> dict:
        return {"class": "tests.schedule_nodes:Witness", "period": period,
                "remap": {"~/left": left, "~/right": right}}

    return {"name": "witness", "steps": steps, "seed": 0, "nodes": {
        "a": node(0.1, "b/out", "c/out"),
        "b": node(0.2, "a/out", "c/out"),
        "c": node(0.3, "a/out", "b/out")}}


# By hand, from the rules: at tick t a node sees the newest message from tick <= t of publishers
# listed before it, and from tick <= t - 1 of those after it. a is due every tick, b every 2nd,
# c every 3rd; "n" counts a node's own steps. Rows: (tick, n, left, right).
EXPECTED = {
    "a/out": [(0, 0, None, None), (1, 1, 0, 0), (2, 2, 0, 0), (3, 3, 1, 0), (4, 4, 1, 1),
              (5, 5, 2, 1), (6, 6, 2, 1)],
    "b/out": [(0, 0, 0, None), (2, 1, 2, 0), (4, 2, 4, 1), (6, 3, 6, 1)],
    "c/out": [(0, 0, 0, 0), (3, 1, 3, 1), (6, 2, 6, 3)],
}


def observed(path: Path) -> dict[str, list[tuple]]:
    rows: dict[str, list[tuple]] = {}
    for message in Recording(path).messages():
        if not message.topic.startswith("catbus/"):
            v = message.value
            rows.setdefault(message.topic, []).append((message.tick, v["n"], v["left"],
                                                       v["right"]))
    return rows


@pytest.mark.timeout(60)
@pytest.mark.parametrize("mode", ["inline", "stepped"])
def test_multi_rate_schedule_matches_hand_computed_table(mode: str, tmp_path: Path) -> None:
    record = tmp_path / f"{mode}.mcap"
    catbus.run(witness_graph(), mode=mode, record=record)
    assert observed(record) == EXPECTED


@pytest.mark.timeout(120)
def test_flat_evade_inline_and_stepped_recordings_are_identical(tmp_path: Path) -> None:
    inline, stepped = tmp_path / "inline.mcap", tmp_path / "stepped.mcap"
    catbus.run(FLAT_EVADE, mode="inline", seed=3, steps=200, record=inline)
    result = catbus.run(FLAT_EVADE, mode="stepped", seed=3, steps=200, record=stepped)
    assert first_difference(inline, stepped) is None
    channels = {m.topic for m in Recording(stepped).messages(decode=False)}
    assert {"env/state", "robot/sensors", "human/sensors", "robot/action",
            "human/action"} <= channels
    # Nothing lost or dropped between processes.
    assert all(stats.get("dropped", 0) == 0 and stats.get("malformed", 0) == 0
               for stats in result.nodes.values())


@pytest.mark.timeout(120)
def test_repeated_stepped_runs_are_identical(tmp_path: Path) -> None:
    first, second = tmp_path / "1.mcap", tmp_path / "2.mcap"
    for path in (first, second):
        catbus.run(FLAT_EVADE, mode="stepped", seed=5, steps=120, record=path)
    assert first_difference(first, second) is None


@pytest.mark.timeout(60)
def test_a_different_seed_gives_a_different_recording(tmp_path: Path) -> None:
    """Guards the equality tests above against comparing recordings that cannot differ."""
    one, two = tmp_path / "1.mcap", tmp_path / "2.mcap"
    catbus.run(FLAT_EVADE, mode="inline", seed=1, steps=50, record=one)
    catbus.run(FLAT_EVADE, mode="inline", seed=2, steps=50, record=two)
    assert first_difference(one, two) is not None


@pytest.mark.timeout(60)
@pytest.mark.parametrize("mode", ["inline", "stepped"])
def test_end_of_episode_stops_every_node_at_the_same_tick(mode: str, tmp_path: Path) -> None:
    launch = {"name": "ending", "steps": 50, "nodes": {
        "talker": {"class": "tests.toy_nodes:Talker", "params": {"stop_after": 7}},
        "listener": {"class": "tests.toy_nodes:Listener"}}}
    record = tmp_path / "end.mcap"
    result = catbus.run(launch, mode=mode, record=record)
    assert result.end_reason == "talker said 7 things"
    ticks = {}
    for message in Recording(record).messages():
        if not message.topic.startswith("catbus/"):
            ticks.setdefault(message.topic, []).append(message.tick)
    assert ticks["talker/out"] == list(range(7))
    assert ticks["listener/count"] == list(range(7))


@pytest.mark.timeout(60)
@pytest.mark.parametrize("mode", ["inline", "stepped"])
def test_a_crashing_node_stops_the_run_with_its_name_and_traceback(mode: str) -> None:
    launch = {"name": "crash", "steps": 20, "nodes": {
        "bad": {"class": "tests.schedule_nodes:Crasher", "params": {"crash_at": 3}},
        "listener": {"class": "tests.toy_nodes:Listener",
                     "remap": {"talker/out": "bad/out"}}}}
    with pytest.raises(NodeFailed) as failure:
        catbus.run(launch, mode=mode)
    text = str(failure.value)
    assert "bad" in text and "deliberate failure at step 3" in text
    assert "Traceback" in text


@pytest.mark.timeout(60)
def test_a_node_stuck_in_a_step_is_reported_by_name_after_the_deadline() -> None:
    launch = {"name": "stall", "steps": 20, "nodes": {
        "stuck": {"class": "tests.schedule_nodes:Staller", "params": {"stall_at": 2}},
        "listener": {"class": "tests.toy_nodes:Listener",
                     "remap": {"talker/out": "stuck/out"}}}}
    with pytest.raises(NodeFailed) as failure:
        catbus.run(launch, mode="stepped", deadline=2.0)
    text = str(failure.value)
    assert "node stuck failed" in text and "no heartbeat for 2 s" in text


@pytest.mark.timeout(30)
def test_a_period_too_fine_for_the_base_tick_is_refused_before_anything_starts() -> None:
    launch = {"name": "fine", "steps": 5, "nodes": {
        "fast": {"class": "tests.toy_nodes:Talker", "period": 0.001},
        "slow": {"class": "tests.toy_nodes:Listener", "period": 1.5}}}
    with pytest.raises(ConfigError) as error:
        catbus.run(launch, mode="stepped")
    assert "slow (period 1.5 s = 1500 ticks)" in str(error.value)
    assert "base tick is 0.001 s" in str(error.value)


class MuteNode(threading.Thread):
    """A node written without catbus, on plain ZeroMQ and msgpack as the README's wire format
    describes it, with one bug: it joins, heartbeats and never publishes anything, not even
    progress. It joins the run named ``run`` as the remote node ``mute`` and connects to every
    node the graph lists, so that they all start."""

    def __init__(self, run: str) -> None:
        super().__init__(daemon=True)
        self.run_name = run
        self.finished = threading.Event()
        self.stop_reason: str | None = None

    def run(self) -> None:
        ctx = zmq.Context()
        rundir = RunDir.create("mute")
        sockets = [ctx.socket(kind) for kind in (zmq.XPUB, zmq.SUB, zmq.DEALER)]
        xpub, sub, dealer = sockets
        try:
            for sock in sockets:
                sock.setsockopt(zmq.LINGER, 0)
            endpoint = rundir.endpoint("mute")
            xpub.bind(endpoint)
            registry = wait_until(self._registry_endpoint, 20, what="the run to be published")
            dealer.connect(registry)
            dealer.send(pack_control(
                "register", name="mute", pid=os.getpid(), host="test", cls="raw zmq",
                endpoint=endpoint, period=0.1, inputs=[], outputs=[["out", "mute/out"]]))
            for prefix in (PROGRESS_FRAME, codec.topic_frame(HELLO_PREFIX + "mute")):
                sub.setsockopt(zmq.SUBSCRIBE, prefix)
            while not self.finished.is_set():
                if not dealer.poll(200):
                    dealer.send(pack_control("hb", tick=-1, steps=0, state="muted"))
                    continue
                message = msgpack.unpackb(dealer.recv())
                if message["op"] == "graph":
                    for node in message["nodes"]:
                        if node["name"] != "mute":
                            sub.connect(node["endpoint"])
                    dealer.send(pack_control("ready"))
                elif message["op"] == "hb":
                    dealer.send(pack_control("hb", tick=-1, steps=0, state="muted"))
                elif message["op"] == "stop":
                    self.stop_reason = message.get("reason")
                    dealer.send(pack_control("done", code=1, stats={}))
                    return
        finally:
            for sock in sockets:
                sock.close(0)
            ctx.term()
            rundir.remove()

    def _registry_endpoint(self) -> str | None:
        return next((info["registry"] for info in running_runs()
                     if info.get("name") == self.run_name), None)


@pytest.mark.timeout(60)
def test_a_stepped_run_in_which_no_node_can_step_fails_naming_the_silent_publisher() -> None:
    """Every node alive and heartbeating, none able to step: without a stall check the run
    would wait for ever. It fails after the deadline, naming the node the others wait for."""
    name = f"mute-{os.getpid()}"
    launch = {"name": name, "steps": 20, "nodes": {
        "mute": {"class": "tests.toy_nodes:Talker", "remote": True},
        "listener": {"class": "tests.toy_nodes:Listener",
                     "remap": {"talker/out": "mute/out"}}}}
    mute = MuteNode(name)
    mute.start()
    try:
        with pytest.raises(NodeFailed) as failure:
            catbus.run(launch, mode="stepped", deadline=2.0, remote_timeout=30)
    finally:
        mute.finished.set()
        mute.join(10)
    text = str(failure.value)
    assert "node mute failed: stepped run stalled" in text, text
    assert "listener: tick -1, waiting for tick 0" in text, text
    assert not mute.is_alive()
