"""A node written from docs/protocol.md alone (``tests/raw_node.py``: pyzmq, msgpack and numpy, no
catbus) joins real runs.

* stepped: the raw node stands in for ``nodes.demo:Listener`` (``remote: true``, started here by
  pid against the run's bus, found through the run's ``run.json``); the recording equals the
  ``inline`` run of the same launch file with the catbus Listener, byte for byte -- in both launch
  orders (the raw node after its publisher, and before it) and with a period of two base ticks
  and an odd last tick (``through = t + k - 1``, capped);
* parallel, over TCP: the run completes, the raw node's topic is recorded, and the reactive
  nodes downstream of it finish (they need its final progress);
* a raw node announcing protocol 1 is refused with a reason naming both versions;
* the raw codec produces catbus's bytes, and the raw node never imports catbus: it runs under
  ``python -I`` with an import hook that refuses ``catbus``, and it checks ``sys.modules`` at exit.

Real processes and sockets, like tests/test_bus.py: bounded by ``pytest.mark.timeout``,
synchronised on events (a run folder appearing, processes exiting), and run in ``bus_sandbox``
(tests/conftest.py), which fails a test whose processes or run folders outlive it.
"""

from __future__ import annotations

import ast
import json
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
import zmq

import catbus
from catbus.supervise.registry import Registry
from catbus.supervise.rundir import RunDir, running_runs
from catbus.recording.verify import channel_sequences, first_difference
from catbus.wire import codec
from catbus.wire.protocol import PROTOCOL_VERSION
from tests import raw_node
from tests.conftest import ROOT, wait_until

pytestmark = pytest.mark.usefixtures("bus_sandbox")

RAW_NODE = ROOT / "tests" / "raw_node.py"
#: Runs tests/raw_node.py as ``__main__`` with every ``catbus`` import refused, and fails (exit
#: code 97) if a catbus module got loaded anyway.
NO_CATBUS = """\
import os, runpy, sys
class NoCatbus:
    def find_spec(self, name, path=None, target=None):
        if name == "catbus" or name.startswith("catbus."):
            raise ImportError("the raw node must not import " + name)
        return None
sys.meta_path.insert(0, NoCatbus())
script, sys.argv = sys.argv[1], sys.argv[1:]
try:
    runpy.run_path(script, run_name="__main__")
finally:
    loaded = sorted(m for m in sys.modules if m == "catbus" or m.startswith("catbus."))
    if loaded:
        print("raw node loaded catbus modules: %s" % loaded, file=sys.stderr, flush=True)
        os._exit(97)
"""
RUN_LIMIT = 40.0


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def launch_data(order: str = "talker_first", **top: Any) -> dict:
    """talker (0.05 s) -> listener (0.1 s: two base ticks; the raw node) -> relay (reactive,
    forwards the listener's messages, arrays included); the recorder reads everything."""
    talker = {"class": "nodes.demo:Talker", "period": 0.05, "params": {"noise": 0.3}}
    listener = {"class": "nodes.demo:Listener", "period": 0.1, "remote": True}
    relay = {"class": "tests.toy_nodes:Relay", "remap": {"~/in": "listener/mean"}}
    nodes = ({"talker": talker, "listener": listener} if order == "talker_first"
             else {"listener": listener, "talker": talker})
    return {"name": "rawnode", "seed": 5, **top, "nodes": {**nodes, "relay": relay}}


def without_remote(data: dict) -> dict:
    return {**data, "nodes": {name: {k: v for k, v in node.items() if k != "remote"}
                              for name, node in data["nodes"].items()}}


class Proc:
    """A subprocess whose output goes to files (a pipe could be held open by its children)."""

    def __init__(self, folder: Path, label: str, command: list[str]) -> None:
        self.out, self.err = folder / f"{label}.out", folder / f"{label}.err"
        with open(self.out, "w") as out, open(self.err, "w") as err:
            self.process = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=err,
                                            stdin=subprocess.DEVNULL)
        self.pid = self.process.pid

    def output(self) -> str:
        return f"stdout:\n{self.out.read_text()}\nstderr:\n{self.err.read_text()}"

    def wait(self, timeout: float = RUN_LIMIT) -> int:
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"pid {self.pid} still running after {timeout:g} s\n"
                                 f"{self.output()}") from None

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


@pytest.fixture
def procs() -> list[Proc]:
    """Processes a test started, killed by pid if the test did not see them end."""
    started: list[Proc] = []
    yield started
    for proc in started:
        proc.kill()


def start_launch(procs: list[Proc], folder: Path, data: dict, *args: str) -> Proc:
    launch_file = folder / "launch.yaml"
    launch_file.write_text(yaml.safe_dump(data, sort_keys=False))
    proc = Proc(folder, "launch", [sys.executable, "-m", "catbus", "launch", str(launch_file),
                                   "--no-progress", "--json", *args])
    procs.append(proc)
    return proc


def start_raw(procs: list[Proc], folder: Path, *args: str, label: str = "raw") -> Proc:
    """tests/raw_node.py under ``python -I`` with catbus imports refused."""
    proc = Proc(folder, label, [sys.executable, "-I", "-c", NO_CATBUS, str(RAW_NODE), *args])
    procs.append(proc)
    return proc


def wait_for_run(launch: Proc) -> dict:
    """The launcher's run.json (its registry is bound by then)."""
    def published() -> dict | None:
        assert launch.process.poll() is None, f"the launcher exited early\n{launch.output()}"
        return next((r for r in running_runs() if r["pid"] == launch.pid), None)

    return wait_until(published, 20, interval=0.02, what="the run's run.json")


def summary(launch: Proc) -> dict:
    return json.loads(launch.out.read_text())


# ------------------------------------------------------------------------------------------------
# stepped: the recording equals inline's
# ------------------------------------------------------------------------------------------------
@pytest.mark.timeout(90)
@pytest.mark.parametrize("order", ["talker_first", "listener_first"])
def test_raw_node_in_a_stepped_run_records_what_inline_records(
        tmp_path: Path, procs: list[Proc], order: str) -> None:
    # 1.05 s of 0.05 s ticks: ticks 0..21 (``steps`` would count periods of whichever node is
    # first). The listener (2 ticks) steps at 0, 2, ..., 20 and its last step must announce
    # through 21 (t + k - 1, capped), or the recorder waits for tick 21 forever.
    data = launch_data(order, duration=1.05)
    stepped = tmp_path / "stepped.mcap"
    # --deadline 10: a raw node that gets the lockstep wrong stalls the run; fail it soon.
    launch = start_launch(procs, tmp_path, data, "--mode", "stepped", "--record", str(stepped),
                          "--deadline", "10")
    run = wait_for_run(launch)
    raw = start_raw(procs, tmp_path, "--name", "listener")    # finds the run through run.json
    assert raw.wait() == 0, raw.output()
    assert launch.wait() == 0, launch.output()

    nodes = summary(launch)["nodes"]
    listener = nodes["listener"]
    assert listener["state"] == "done" and listener["pid"] == raw.pid, nodes
    assert listener["steps"] == 11 and listener["tick"] == 20, listener
    # Listed after the talker it sees the talker's tick t at tick t, so it publishes at every
    # step; listed before, it sees tick t - 1: nothing at tick 0, so no data (only progress).
    ticks = list(range(0, 21, 2)) if order == "talker_first" else list(range(2, 21, 2))
    # It may leave before the talker's last messages (ticks it never reads) arrive.
    assert listener["sent"] == len(ticks) and 20 <= listener["received"] <= 22, listener
    for name, stats in nodes.items():
        assert stats["dropped"] == 0 and stats["malformed"] == 0, (name, stats)
    assert nodes["relay"]["received"] == nodes["relay"]["sent"] == len(ticks), nodes["relay"]
    assert not Path(run["folder"]).exists(), "the run folder outlived the run"

    inline = tmp_path / "inline.mcap"
    catbus.run(without_remote(data), mode="inline", record=inline, evaluate=False)
    difference = first_difference(inline, stepped)
    assert difference is None, f"the raw node's run differs from inline: {difference}"
    sequences = channel_sequences(stepped)
    assert [tick for tick, _ in sequences["listener/mean"]] == ticks
    assert len(sequences["talker/chatter"]) == 22 and len(sequences["relay/out"]) == len(ticks)


# ------------------------------------------------------------------------------------------------
# parallel, over TCP
# ------------------------------------------------------------------------------------------------
@pytest.mark.timeout(90)
def test_raw_node_in_a_parallel_run_over_tcp(tmp_path: Path, procs: list[Proc]) -> None:
    bus = f"tcp://127.0.0.1:{free_port()}"
    record = tmp_path / "parallel.mcap"
    launch = start_launch(procs, tmp_path, launch_data(duration=1.0, bus=bus),
                          "--mode", "parallel", "--record", str(record))
    wait_for_run(launch)
    raw = start_raw(procs, tmp_path, "--name", "listener", "--bus", bus)
    assert raw.wait() == 0, raw.output()
    assert launch.wait() == 0, launch.output()

    nodes = summary(launch)["nodes"]
    listener = nodes["listener"]
    assert listener["state"] == "done" and listener["pid"] == raw.pid, nodes
    # 1 s at 0.1 s: cycles 0..10 (a slow machine may skip some, counted as overruns).
    assert listener["steps"] + listener["overruns"] in (10, 11), listener
    for name, stats in nodes.items():
        assert stats["state"] == "done", (name, stats)
        assert stats["dropped"] == 0 and stats["malformed"] == 0, (name, stats)
    sequences = channel_sequences(record)
    heard = sequences["listener/mean"]
    assert len(heard) == listener["sent"] >= 5, (len(heard), listener)
    # What the relay forwarded is what the raw node published, byte for byte.
    assert [d for _, d in sequences["relay/out"]] == [d for _, d in heard]


# ------------------------------------------------------------------------------------------------
# joining: the protocol version check
# ------------------------------------------------------------------------------------------------
@pytest.mark.timeout(30)
def test_raw_node_speaking_protocol_1_is_refused_naming_both_versions(
        tmp_path: Path, procs: list[Proc]) -> None:
    rundir = RunDir.create("oldraw")
    ctx = zmq.Context()
    registry = Registry(ctx, rundir.endpoint("registry"))
    try:
        rundir.publish(registry.endpoint, "oldraw")
        raw = start_raw(procs, tmp_path, "--name", "listener", "--bus", registry.endpoint,
                        "--protocol", "1")

        def exited() -> bool:
            registry.poll(20)
            return raw.process.poll() is not None

        wait_until(exited, 20, interval=0, what="the refused raw node to exit")
        assert raw.process.returncode == 1, raw.output()
        error = raw.err.read_text()
        assert "refused" in error and "version 1" in error and \
            f"version {PROTOCOL_VERSION}" in error, error
        assert "listener" not in registry.members, "a refused node became a member"
    finally:
        registry.close()
        ctx.term()
        rundir.remove()


# ------------------------------------------------------------------------------------------------
# the raw node's codec and imports
# ------------------------------------------------------------------------------------------------
VALUES = [
    {"heard": 3, "mean": np.arange(4.0) / 3},                        # inline array (type 3)
    {"big": np.arange(300, dtype=np.float64).reshape(3, 100)},       # buffer frame (type 1)
    [np.float64(1.5), np.int32(-7), np.bool_(True), np.str_("")],    # scalars (type 2)
    (1, "two", None, True, 2.5, b"bytes", {"nested": (np.zeros((2, 0)), np.ones(2, "<c16"))}),
    np.zeros(3, dtype=[("x", "<f4"), ("n", "<i2", (2,))]),           # structured
    np.arange(12).reshape(3, 4)[:, ::2],                             # not C-contiguous
    [np.arange(200.0), np.arange(129.0), np.float32(3.25)],          # two buffers + a scalar
]


@pytest.mark.parametrize("value", VALUES, ids=range(len(VALUES)))
def test_raw_codec_encodes_exactly_like_catbus(value: Any) -> None:
    payload, buffers = raw_node.encode_payload(value)
    expected, expected_buffers = codec.encode_payload(value)
    assert payload == expected
    assert [bytes(b) for b in buffers] == [bytes(b) for b in expected_buffers]
    assert codec.record_bytes(payload, buffers) == codec.record_bytes(expected, expected_buffers)
    # ... and reads what catbus writes.
    decoded = raw_node.decode_payload(expected, [bytes(b) for b in expected_buffers])
    reference = codec.decode_payload(expected, [bytes(b) for b in expected_buffers])
    assert repr(decoded) == repr(reference)


def test_raw_headers_read_like_catbus_headers() -> None:
    header = codec.Header.unpack(raw_node.pack_header("listener", 3, 7, 20, 2.0, 21))
    assert (header.publisher, header.incarnation, header.seq, header.tick, header.sim_time,
            header.through) == ("listener", 3, 7, 20, 2.0, 21)
    packed = codec.Header("env", 4, 5, 0.05, 123.0, None, 2).pack()
    assert raw_node.unpack_header(packed) == ["env", 2, 4, 5, 0.05, 123.0, None]
    assert raw_node.unpack_header(b"\x93\x01\x02\x03") is None   # another header version


def test_raw_envelopes_are_catbus_envelopes() -> None:
    header, payload = raw_node.pack_header("env", 1, 0, 0, 0.0, None), b"\x81\xa1x\x01"
    frame = raw_node.envelope("env/state", header, payload)
    assert frame == codec.envelope(codec.topic_frame("env/state"), header, payload)
    topic, got_header, got_payload = codec.open_envelope(frame)
    assert (topic, got_header, bytes(got_payload)) == ("env/state", header, payload)
    assert raw_node.open_envelope(frame) == ("env/state", header, payload)
    assert raw_node.open_envelope(b"env/state\0\x00\x09short") is None


def test_raw_node_source_does_not_import_catbus() -> None:
    tree = ast.parse(RAW_NODE.read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not {m for m in imported if m == "catbus" or m.startswith("catbus.")}, imported
    assert {m.split(".")[0] for m in imported} <= {
        "__future__", "argparse", "json", "os", "signal", "socket", "sys", "tempfile", "time",
        "pathlib", "typing", "traceback", "msgpack", "numpy", "zmq"}, imported
