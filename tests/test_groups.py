"""Node groups (``group:``, ``--group``; ``catbus.runtime.group``): several nodes of a stepped
run in one process, their messages to each other passed without a socket.

The process tests run real groups against real processes outside them: a grouped stepped run
records exactly what inline records, a failure inside a group is named, a stop closes every
member, and parallel runs keep a process per node. The unit tests check the launch file's
rules, the launcher's process plan and the control plane's view of a group's process.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import catbus
from catbus.control import NoticeKind, ProcessExited, ProcessStarted
from catbus.errors import ConfigError, NodeFailed
from catbus.recording.verify import first_difference
from catbus.wire import messages as msg
from tests.conftest import wait_until
from tests.control_sim import Sim

ROOT = Path(__file__).resolve().parent.parent
FLAT_EVADE = ROOT / "launch" / "flat_evade.yaml"
WORLD = {"world": ["env", "human", "recorder"]}


def pids(result: catbus.RunResult) -> dict[str, int]:
    return {name: info["pid"] for name, info in result.nodes.items()}


# -- processes ----------------------------------------------------------------------------------
@pytest.mark.timeout(120)
def test_a_grouped_stepped_run_records_exactly_what_inline_records(bus_sandbox,
                                                                  tmp_path: Path) -> None:
    inline, grouped = tmp_path / "inline.mcap", tmp_path / "grouped.mcap"
    catbus.run(FLAT_EVADE, mode="inline", seed=3, steps=200, record=inline)
    result = catbus.run(FLAT_EVADE, mode="stepped", seed=3, steps=200, record=grouped,
                        groups=WORLD)
    assert first_difference(inline, grouped) is None
    found = pids(result)
    assert found["env"] == found["human"] == found["recorder"] != found["robot"]
    assert all(node["dropped"] == 0 and node["malformed"] == 0
               for node in result.nodes.values())


@pytest.mark.timeout(120)
def test_catbus_launch_group_option_runs_a_group_from_the_command_line(bus_sandbox,
                                                                      tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "catbus", "launch", str(FLAT_EVADE), "--mode", "stepped",
         "--steps", "50", "--record", str(tmp_path / "run.mcap"), "--no-progress",
         "--group", "world=env,human"],
        capture_output=True, text=True, timeout=100, cwd=tmp_path)
    assert done.returncode == 0, done.stderr + done.stdout
    assert "ran its 50 steps" in done.stdout + done.stderr
    recording = catbus.Recording(tmp_path / "run.mcap")
    assert len(list(recording.messages("robot/action"))) == 51 and recording.complete


@pytest.mark.timeout(120)
def test_nodes_inside_and_outside_a_group_are_swapped_as_in_any_run(bus_sandbox,
                                                                     tmp_path: Path) -> None:
    """The robot (alone) and the human (in the group with env and the recorder) are swapped
    mid-run. The robot's replacement is answered by the group's members like by processes of
    their own; the human's runs in a process of its own, the group's members now reaching it
    over sockets, while the group goes on without it. The recording is inline's."""
    import yaml

    launch = yaml.safe_load(FLAT_EVADE.read_text())
    launch.update(pythonpath=[str(ROOT)], swap=[
        {"at": 1.0, "node": "robot", "params": {"safe_controller": "Unsafe"}},
        {"at": 1.5, "node": "human", "params": {"safe_controller": "SafeSet"}}])
    catbus.run(launch, mode="inline", steps=300, record=tmp_path / "inline.mcap",
               evaluate=False)
    result = catbus.run(launch, mode="stepped", steps=300, record=tmp_path / "grouped.mcap",
                        evaluate=False, groups=WORLD)
    assert [(s["node"], s["tick"], s["state"]) for s in result.swaps] == \
        [("robot", 100, "restored"), ("human", 150, "restored")]
    assert first_difference(tmp_path / "inline.mcap", tmp_path / "grouped.mcap") is None
    found = pids(result)
    assert found["env"] == found["recorder"] == result.swaps[1]["old"]["pid"] != found["human"]


@pytest.mark.timeout(120)
def test_catbus_verify_checks_a_grouping_against_inline(bus_sandbox, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "catbus", "verify", str(FLAT_EVADE), "--steps", "40",
         "--group", "world=env,human,recorder"],
        capture_output=True, text=True, timeout=100, cwd=tmp_path)
    assert done.returncode == 0, done.stderr + done.stdout
    assert done.stdout.startswith("identical: ")


def failing_group_launch() -> dict:
    return {"name": "failing-group", "mode": "stepped", "steps": 20, "nodes": {
        "talker": {"class": "tests.toy_nodes:Failing", "params": {"fail_at": 5},
                   "group": "g"},
        "listener": {"class": "tests.toy_nodes:Listener", "group": "g"},
        "outside": {"class": "tests.toy_nodes:Listener",
                    "remap": {"talker/out": "listener/count"}}}}


@pytest.mark.timeout(120)
def test_a_node_failing_in_a_group_fails_the_run_naming_it(bus_sandbox) -> None:
    with pytest.raises(NodeFailed) as failed:
        catbus.run(failing_group_launch())
    text = str(failed.value)
    assert "node talker failed" in text and "broke down after 5 steps" in text


@pytest.mark.timeout(120)
def test_stopping_a_grouped_run_closes_every_member(bus_sandbox, tmp_path: Path) -> None:
    """Stop a grouped run mid-way: every member's close() runs (the Collector in the group
    writes what it heard), and the run says it was interrupted."""
    heard = tmp_path / "heard.json"
    launch = {"name": "stop-group", "mode": "stepped", "pace": 20.0, "steps": 100000, "nodes": {
        "talker": {"class": "tests.toy_nodes:Talker", "group": "g"},
        "collector": {"class": "tests.toy_nodes:Collector", "group": "g",
                      "params": {"path": str(heard)}, "remap": {"~/in": "talker/out"}},
        "listener": {"class": "tests.toy_nodes:Listener"}}}
    with catbus.start(launch) as run:
        assert run.wait_until_started(timeout=60), "the run did not start"
        collector = run._launcher.registry.members["collector"]
        wait_until(lambda: collector.tick >= 3, 30, what="the collector's third tick")
        run.stop()
        result = run.wait(timeout=60)
    assert result.interrupted
    assert len(json.loads(heard.read_text())) >= 3   # written in close()
    found = pids(result)
    assert found["talker"] == found["collector"] != found["listener"]


@pytest.mark.timeout(120)
def test_parallel_mode_runs_each_grouped_node_in_its_own_process(bus_sandbox) -> None:
    launch = failing_group_launch()
    launch["nodes"]["talker"] = {"class": "tests.toy_nodes:Talker", "group": "g"}
    result = catbus.run(launch, mode="parallel", duration=0.3)
    found = pids(result)
    assert len(set(found.values())) == 3


# -- rules (no process) ---------------------------------------------------------------------------
@pytest.mark.unit
def test_group_keys_and_the_group_option_make_the_groups() -> None:
    launch = failing_group_launch()
    spec = catbus.load(launch)
    assert spec.groups == {"g": ["talker", "listener"]}
    spec = catbus.load(launch, groups=["h=listener,outside"])
    assert spec.groups == {"g": ["talker"], "h": ["listener", "outside"]}
    assert catbus.load(launch, groups={"h": ["talker"]}).groups["h"] == ["talker"]
    assert spec.document["nodes"]["outside"]["group"] == "h"   # the recording's launch text


@pytest.mark.unit
@pytest.mark.parametrize("change, option, field, words", [
    ({"remote": True}, None, "nodes.talker.group", "remote"),
    ({"restart": "on-failure"}, None, "nodes.talker.restart", "cannot be restarted yet"),
    ({}, "g=nobody", "--group", "no node named 'nobody'"),
    ({}, "g=", "--group", "expected NAME=NODE,NODE"),
    ({}, "a b=talker", "--group", "group name"),
    ({"group": "with space"}, None, "nodes.talker.group", "group name"),
])
def test_group_mistakes_name_the_field_and_the_fix(change, option, field, words) -> None:
    launch = failing_group_launch()
    launch["nodes"]["talker"].update(change)
    with pytest.raises(ConfigError) as error:
        catbus.load(launch, groups=[option] if option else ())
    assert error.value.field == field and words in error.value.message


@pytest.mark.unit
def test_the_launcher_starts_one_process_per_group_in_stepped_mode_only() -> None:
    from catbus.supervise.launcher import local_processes, node_command

    launch = failing_group_launch()
    plan = [[node.name for node in process]
            for process in local_processes(catbus.load(launch))]
    assert plan == [["talker", "listener"], ["outside"]]
    parallel = catbus.load(launch, mode="parallel")
    assert [[node.name for node in p] for p in local_processes(parallel)] == \
        [["talker"], ["listener"], ["outside"]]
    remote = catbus.load(launch, remote=["outside"])
    assert len(local_processes(remote)) == 1
    first, *others = local_processes(catbus.load(launch))[0]
    command = node_command(first, "ipc:///tmp/x", group=others)
    assert command[command.index("--with") + 1] == "listener=tests.toy_nodes:Listener"


@pytest.mark.unit
def test_a_silent_group_names_every_node_of_its_process() -> None:
    """A step stuck in a group silences all its nodes at once: the failure says which nodes
    share the process, since which one is stuck cannot be told from outside."""
    sim = Sim(nodes=("env", "robot", "recorder"))
    env = sim.process("env")
    procs = [env, sim.process("robot", pid=env.pid), sim.process("recorder")]   # env + robot
    for proc in procs:
        sim.register(proc)
    for proc in procs:
        sim.send(proc, msg.Ready())
    sim.advance(31.0)
    failed = {n.node: n.message for n in sim.noticed(NoticeKind.FAILED)}
    assert "its process also runs robot (a node group)" in failed["env"]


@pytest.mark.unit
def test_a_group_process_that_exits_early_fails_each_of_its_nodes() -> None:
    sim = Sim()
    sim.feed(ProcessStarted("env", 4242, sim.now))
    sim.feed(ProcessStarted("robot", 4242, sim.now))
    sim.feed(ProcessExited(4242, "exited with code 1", sim.now, sim.now, None))
    assert sorted(n.node for n in sim.noticed(NoticeKind.FAILED)) == ["env", "robot"]
