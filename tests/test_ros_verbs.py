"""The verbs a ROS 2 user reaches for: ``catbus topic pub``, ``topic echo --field``,
``node info``, ``catbus info RUN.mcap`` and ``catbus plot --topic --field``.

The pure parts (field paths, the publisher's checks, the control plane admitting a guest) are
``unit``; the rest runs real launches in the ``bus_sandbox`` as a user would type the commands,
synchronised on the run's answers and on process exits, never on sleeps; every process started
is stopped by its pid.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from catbus.cli.main import main
from catbus.cli.nodes import describe_node
from catbus.client.publish import GUEST_CLASS, as_arrays, guest_name, parse_value, \
    publish_problem
from catbus.control import MemberState, NoticeKind
from catbus.errors import CatbusError
from catbus.recording.fieldplot import pair_specs
from catbus.recording.fields import FieldError, format_field, get_field, numeric_leaves, \
    parse_field
from catbus.recording.reader import Recording
from catbus.wire import messages as msg
from catbus.wire.protocol import PROTOCOL_VERSION
from tests.conftest import ROOT, wait_until

START_LINE = re.compile(r"catbus: run (\S+) \(mode (\w+)\) on (\S+)")

LAUNCH = """\
name: verbs
mode: {mode}
duration: {duration}
pythonpath: [{root}]
record: {record}
nodes:
  talker:
    class: tests.toy_nodes:Talker
    period: 0.05
  col:
    class: tests.toy_nodes:Collector
    remap: {{"~/in": cmd/in}}
    params: {{path: {heard}}}
"""

SWAP_LAUNCH = """\
name: swapped
mode: inline
steps: 40
pythonpath: [{root}]
nodes:
  talker:
    class: tests.toy_nodes:Talker
    period: 0.1
swap:
  - {{at: 2.0, node: talker, params: {{gain: 3.0}}}}
"""


# -- field paths ----------------------------------------------------------------------------------
@pytest.mark.unit
def test_a_field_path_reads_keys_and_indexes_and_says_what_is_missing():
    assert parse_field("a.b[0]") == ("a", "b", 0)
    assert parse_field("control[1][-1]") == ("control", 1, -1)
    assert parse_field('[2]["my key"]') == (2, "my key")
    assert format_field(parse_field("robot.pos[0]")) == "robot.pos[0]"
    for bad in ("", "a..b", ".a", "a[0]b", "a[x]", "a b"):
        with pytest.raises(FieldError):
            parse_field(bad)
    message = {"robot": {"pos": np.array([1.0, 2.0])}, "n": 3}
    assert get_field(message, parse_field("robot.pos[1]")) == 2.0
    with pytest.raises(FieldError, match=r"no field 'vel' in robot: it is a map with keys: pos"):
        get_field(message, parse_field("robot.vel"))
    with pytest.raises(FieldError, match=r"no element \[5\] in robot.pos: it has 2"):
        get_field(message, parse_field("robot.pos[5]"))


@pytest.mark.unit
def test_numeric_leaves_give_one_line_per_element_and_leave_text_out():
    assert list(numeric_leaves(np.float32(2.5))) == [("", 2.5)]
    assert list(numeric_leaves(np.array([[1], [2]]))) == [("[0][0]", 1.0), ("[1][0]", 2.0)]
    assert list(numeric_leaves({"a": [1, True], "s": "x", "z": None})) == [
        (".a[0]", 1.0), (".a[1]", 1.0)]


@pytest.mark.unit
def test_plot_pairs_one_field_per_topic_or_one_for_all():
    assert pair_specs(["a", "b"], ["x", "y[0]"]) == [("a", "x"), ("b", "y[0]")]
    assert pair_specs(["a", "b"], ["x"]) == [("a", "x"), ("b", "x")]
    assert pair_specs(["a"], []) == [("a", None)]
    with pytest.raises(CatbusError, match="one --field per --topic"):
        pair_specs(["a", "b", "c"], ["x", "y"])
    with pytest.raises(CatbusError, match="--field needs --topic"):
        pair_specs([], ["x"])


# -- topic pub: what it sends and where it may -----------------------------------------------------
@pytest.mark.unit
def test_pub_values_are_yaml_flow_and_lists_become_arrays_only_when_asked():
    assert parse_value("{control: [[1.0], [0.0]]}") == {"control": [[1.0], [0.0]]}
    arrays = parse_value("{control: [[1.0], [0.0]], name: x, ragged: [[1], [2, 3]]}", numpy=True)
    assert arrays["control"].dtype == np.float64 and arrays["control"].shape == (2, 1)
    assert arrays["name"] == "x" and isinstance(arrays["ragged"], list)
    assert isinstance(as_arrays([1, "a"]), list)
    with pytest.raises(CatbusError, match="is not YAML"):
        parse_value("{a: [1,")
    assert guest_name("robot/control") == "pub_robot_control"
    assert guest_name("a/b", ["pub_a_b", "pub_a_b_2"]) == "pub_a_b_3"


@pytest.mark.unit
def test_pub_is_refused_in_stepped_runs_and_on_a_published_topic():
    graph = {"mode": "parallel", "nodes": [
        {"name": "env", "cls": "env:Env", "state": "running", "outputs": [["~/o", "env/obs"]]},
        {"name": "pub_cmd", "cls": GUEST_CLASS, "state": "done", "outputs": [["~/out", "cmd"]]}]}
    assert publish_problem(graph, "robot/control") is None
    assert publish_problem(graph, "cmd") is None, "an earlier topic pub that left"
    assert "published by env" in publish_problem(graph, "env/obs")
    assert "reserved" in publish_problem(graph, "catbus/x")
    assert "the run is stepped: only a parallel run" in publish_problem(
        dict(graph, mode="stepped"), "robot/control")


def _guest(sim, topic: str = "cmd/in"):
    proc = sim.process(guest_name(topic))
    sim.send(proc, msg.Register(name=proc.name, endpoint="ipc://pub", pid=proc.pid, host="h",
                                cls=GUEST_CLASS, period=0.1, outputs=[["~/out", topic]],
                                protocol=PROTOCOL_VERSION))
    return proc


@pytest.mark.unit
def test_the_control_plane_admits_a_guest_publisher_only_in_a_parallel_run():
    from tests.control_sim import Sim

    sim = Sim(mode="parallel", duration=100.0)
    sim.start_run()
    sim.advance(4.0)
    guest = _guest(sim)
    assert guest.last(msg.Welcome).duration == 100.0
    sim.send(guest, msg.Ready())
    start = guest.last(msg.Start)   # at once, on the run's clock: 4 s gone (less its delay)
    assert start is not None and start.elapsed == pytest.approx(4.0 - 0.05)
    assert sim.state.members[guest.name].state is MemberState.RUNNING
    taken = _guest(sim, "robot/action")
    assert "robot/action is published by robot" in taken.last(msg.Reject).reason

    # a guest killed (its link gone for good) leaves the run; the run does not fail
    sim.link_closed(guest)
    sim.advance(sim.config.rejoin_s + 2.0)
    assert sim.state.members[guest.name].state is MemberState.FAILED
    said = [n.kind for n in sim.notices if n.node == guest.name]
    assert NoticeKind.FAILED not in said and said[-1] is NoticeKind.LOST, said

    stepped = Sim(mode="stepped")
    stepped.start_run()
    refused = _guest(stepped)
    assert "this run is stepped: only a parallel run" in refused.last(msg.Reject).reason
    assert refused.name not in stepped.state.members


@pytest.mark.unit
def test_node_info_names_who_is_at_the_other_end_of_each_topic():
    graph = {"mode": "parallel", "run": "r", "started": True, "nodes": [
        {"name": "env", "cls": "e:E", "inputs": [["~/a", "robot/action", "latest"]],
         "outputs": [["~/o", "env/obs"]], "pid": 1, "endpoint": "ipc://e"},
        {"name": "robot", "cls": "r:R", "inputs": [["~/o", "env/obs", "all"]],
         "outputs": [["~/a", "robot/action"]], "pid": 2, "endpoint": "ipc://r"},
        {"name": "recorder", "cls": "c:R", "inputs": [["*", "*", "all"]], "outputs": []}]}
    info = describe_node(graph, "env")
    assert info["inputs"] == [{"declared": "~/a", "topic": "robot/action", "policy": "latest",
                               "publishers": ["robot"]}]
    assert info["outputs"] == [{"declared": "~/o", "topic": "env/obs",
                                "readers": ["recorder", "robot"]}]
    assert info["pid"] == 1 and info["mode"] == "parallel"
    with pytest.raises(CatbusError, match=r"no node 'nobody' \(nodes: env, robot, recorder\)"):
        describe_node(graph, "nobody")


@pytest.mark.unit
@pytest.mark.parametrize("argv, said", [
    (["topic", "pub", "cmd/in"], "give the message"),
    (["topic", "hz", "x", "--field", "a"], "--field is echo's"),
    (["topic", "echo", "x", "--field", "a..b"], "cannot read it at"),
    (["topic", "echo", "x", "extra"], "only pub takes a value"),
    (["node", "info"], "name the node"),
    (["node", "a:B", "stray", "--name", "x"], "unexpected argument 'stray'"),
    (["plot", "x.mcap", "--field", "a"], "--field needs --topic"),
    (["info", "/nonexistent/x.mcap"], "no such recording"),
])
def test_usage_mistakes_are_one_line_and_exit_2(argv, said, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert said in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err


# -- against real runs ----------------------------------------------------------------------------
def catbus(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "catbus", *args], cwd=ROOT, text=True,
                          capture_output=True, stdin=subprocess.DEVNULL, timeout=timeout)


class Launched:
    """``catbus launch`` in the background, its stderr in a file."""

    def __init__(self, folder: Path, *args: str) -> None:
        self.err = folder / "launch.err"
        with open(self.err, "w") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "catbus", "launch", *args, "--no-progress"], cwd=ROOT,
                text=True, stdout=subprocess.DEVNULL, stderr=err, stdin=subprocess.DEVNULL)

    def bus(self) -> str:
        def said():
            assert self.process.poll() is None, self.err.read_text()
            return START_LINE.search(self.err.read_text())
        return wait_until(said, 60, interval=0.05, what="the start line")[3]

    def interrupt(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(timeout=10)


@pytest.fixture
def launched(tmp_path: Path):
    started: list[Launched] = []

    def launch(*args: str) -> Launched:
        started.append(Launched(tmp_path, *args))
        return started[-1]

    yield launch
    for run in started:
        run.interrupt()


def _launch_file(tmp_path: Path, mode: str, duration: float = 600) -> tuple[Path, Path, Path]:
    record, heard = tmp_path / "run.mcap", tmp_path / "heard.json"
    path = tmp_path / "verbs.yaml"
    path.write_text(LAUNCH.format(mode=mode, duration=duration, root=ROOT, record=record,
                                  heard=heard))
    return path, record, heard


def _running(bus: str) -> None:
    def started():
        listed = catbus("node", "list", "--bus", bus, "--json")
        return listed.returncode == 0 and json.loads(listed.stdout)["started"]
    wait_until(started, 60, interval=0.1, what="the run to start")


@pytest.mark.usefixtures("bus_sandbox")
@pytest.mark.timeout(240)
def test_a_parallel_run_seen_and_fed_as_a_ros_user_would(tmp_path: Path, launched):
    launch_file, record, heard = _launch_file(tmp_path, "parallel")
    run = launched(str(launch_file))
    bus = run.bus()
    _running(bus)

    # node info: class, process, period, who reads its topic, its parameters
    info = catbus("node", "info", "talker", "--bus", bus, "--json")
    assert info.returncode == 0, info.stderr
    talker = json.loads(info.stdout)
    assert talker["cls"] == "tests.toy_nodes:Talker" and talker["period"] == 0.05
    assert talker["pid"] > 0 and talker["incarnation"] == 1 and talker["state"] == "running"
    assert talker["outputs"][0]["topic"] == "talker/out"
    assert "recorder" in talker["outputs"][0]["readers"]
    assert talker["params"]["gain"] == 1.0
    text = catbus("node", "info", "col", "--bus", bus)
    assert "cmd/in (all) from no publisher" in text.stdout, text.stdout

    # echo --field: only that field; a field that is not there: one line, exit 2
    echo = catbus("topic", "echo", "talker/out", "--field", "n", "-n", "2", "--bus", bus,
                  "--json")
    assert echo.returncode == 0, echo.stderr
    echoed = [json.loads(line) for line in echo.stdout.splitlines()]
    assert len(echoed) == 2 and all(isinstance(e["value"], int) for e in echoed)
    missing = catbus("topic", "echo", "talker/out", "--field", "nope", "--bus", bus)
    assert missing.returncode == 2 and "no field 'nope' in the message" in missing.stderr
    assert "Traceback" not in missing.stderr

    # pub: on a topic nobody publishes, N messages, then it leaves; a published one: refused
    pub = catbus("topic", "pub", "cmd/in", "{a: [1.0, 2.0], b: x}", "--rate", "20", "-n", "3",
                 "--bus", bus)
    assert pub.returncode == 0, pub.stderr
    assert "published 3 message(s) on cmd/in" in pub.stderr
    taken = catbus("topic", "pub", "talker/out", "{n: 1}", "--bus", bus)
    assert taken.returncode == 2
    assert "talker/out is published by talker" in taken.stderr.splitlines()[-1]
    # without --count it publishes until the run ends
    endless = subprocess.Popen([sys.executable, "-m", "catbus", "topic", "pub", "other/in", "7",
                                "--rate", "50", "--bus", bus], cwd=ROOT, text=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        def publishing():
            listed = json.loads(catbus("node", "list", "--bus", bus, "--json").stdout)
            return any(n["name"] == "pub_other_in" and n["state"] == "running" and n["steps"]
                       for n in listed["nodes"])
        wait_until(publishing, 60, interval=0.1, what="the second publisher to run")
        assert run.interrupt() == 130
        assert endless.wait(timeout=60) == 0, endless.stderr.read()
    finally:
        if endless.poll() is None:
            endless.kill()
            endless.wait(timeout=10)
        endless.stderr.close()
    assert json.loads(heard.read_text()) == [{"a": [1.0, 2.0], "b": "x"}] * 3

    # info: the recording, guests included
    summary = catbus("info", str(record), "--json")
    assert summary.returncode == 0, summary.stderr
    data = json.loads(summary.stdout)
    assert data["mode"] == "parallel" and data["seed"] == 0 and data["run"] == "verbs"
    assert data["topics"]["cmd/in"]["messages"] == 3
    assert data["topics"]["cmd/in"]["publishers"] == ["pub_cmd_in"]
    assert data["nodes"]["talker"]["class"] == "tests.toy_nodes:Talker"
    assert data["nodes"]["pub_cmd_in"]["launched"] is False
    assert data["duration_wall_s"] > 0 and data["drops"]["total"] == 0
    # on the run's clock: published after the echoed message, timed after it (no clock of its
    # own starting at 0; the slack is for the start message's trip, not a timing bound)
    first = next(iter(Recording(record).messages(["cmd/in"])))
    assert first.sim_time >= echoed[-1]["t"] - 0.5, (first.sim_time, echoed)
    # plot: any field, no plotter needed; an array is one line per element
    out = tmp_path / "fields.png"
    plot = catbus("plot", str(record), "--topic", "talker/out", "--field", "x", "--topic",
                  "cmd/in", "--field", "a", "-o", str(out))
    assert plot.returncode == 0 and out.stat().st_size > 0, plot.stderr


@pytest.mark.usefixtures("bus_sandbox")
@pytest.mark.timeout(180)
def test_a_stepped_run_refuses_topic_pub_with_the_reason(tmp_path: Path, launched):
    launch_file, _, _ = _launch_file(tmp_path, "stepped")
    run = launched(str(launch_file), "--remote", "col")   # waits for col: the run stays put
    bus = run.bus()
    pub = catbus("topic", "pub", "cmd/in", "{a: 1}", "--bus", bus)
    assert pub.returncode == 2
    last = pub.stderr.strip().splitlines()[-1]
    assert "the run is stepped: only a parallel run takes a publisher" in last, pub.stderr
    info = catbus("node", "info", "talker", "--bus", bus)
    assert info.returncode == 0 and "mode       stepped" in info.stdout, info.stdout
    assert run.interrupt() in (0, 1, 2, 130)


@pytest.mark.usefixtures("bus_sandbox")
@pytest.mark.timeout(180)
def test_info_and_field_plots_of_a_recording_with_a_swap(tmp_path: Path):
    path = tmp_path / "swap.yaml"
    path.write_text(SWAP_LAUNCH.format(root=ROOT))
    record = tmp_path / "swap.mcap"
    ran = catbus("launch", str(path), "--record", str(record), "--no-progress", timeout=120)
    assert ran.returncode == 0, ran.stderr

    data = json.loads(catbus("info", str(record), "--json").stdout)
    assert data["mode"] == "inline" and data["duration_sim_s"] == pytest.approx(4.0)
    assert data["last_tick"] == 40 and data["end_reason"].startswith("reached the schedule's")
    assert data["topics"]["talker/out"]["messages"] == 41
    assert data["topics"]["talker/out"]["hz_sim"] == pytest.approx(10.0)
    assert data["nodes"]["talker"]["incarnations"] == [1, 2]
    assert [s["node"] for s in data["swaps"]] == ["talker"] and data["restarts"] == []
    text = catbus("info", str(record))
    assert text.returncode == 0 and "swaps:     1" in text.stdout, text.stdout
    assert "talker swapped tests.toy_nodes:Talker -> tests.toy_nodes:Talker" in text.stdout

    out = tmp_path / "x.png"
    plot = catbus("plot", str(record), "--topic", "talker/out", "--field", "x", "-o", str(out))
    assert plot.returncode == 0 and out.stat().st_size > 0, plot.stderr
    nope = catbus("plot", str(record), "--topic", "talker/out", "--field", "nope")
    assert nope.returncode == 2 and "no field 'nope' in the message" in nope.stderr
    plain = catbus("plot", str(record))   # no plotter named: the way to a field plot is said
    assert plain.returncode == 2 and "--topic T --field F" in plain.stderr
