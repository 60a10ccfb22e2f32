"""The conformance kit (``catbus conformance -- COMMAND``) judges nodes in other languages right.

* ``tests/raw_node.py`` (pyzmq, msgpack and numpy, written from docs/protocol.md) passes every
  check, and so does a catbus node on the checks of one stepped run;
* deliberately broken foreign nodes (``tests/broken_nodes/``: raw_node with one thing wrong)
  fail the check that names their mistake, and the kit exits 1: an old protocol version, no
  final progress, no hello answers, ``through = t``;
* the verdicts themselves (pure functions of what the kit saw) and the report's exit code.

Real processes like tests/test_raw_node.py: the kit runs as ``python -m catbus conformance``
in ``bus_sandbox``, every test bounded by ``pytest.mark.timeout``; the kit itself waits on
events with bounds (docs/conformance.md), so nothing here sleeps or asserts a duration.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from catbus.conformance import CHECKS, Status, choose
from catbus.conformance.checks import Report, Run, failed, passed, runs_for
from catbus.conformance.foreign import fill
from catbus.conformance.judge import announced, judge, stats_problem
from catbus.conformance.observer import Observation, Seen
from catbus.conformance.probe import JoinRecord
from catbus.conformance.runs import Plan, RunRecord
from catbus.runtime.schedule import build_schedule
from catbus.wire import codec
from catbus.wire import messages as msg
from catbus.wire.protocol import PROTOCOL_VERSION
from tests.conftest import ROOT

RAW_NODE = ROOT / "tests" / "raw_node.py"
BROKEN = ROOT / "tests" / "broken_nodes"
NODE_ARGS = ["--name", "{name}", "--bus", "{bus}"]


def kit(tmp_path: Path, node: list[str], *options: str) -> tuple[int, dict[str, dict]]:
    """Run ``catbus conformance --json [options] -- node`` and return its exit code and the
    checks by id (a pipe is fine: the kit exits only once its runs and the node are over)."""
    done = subprocess.run([sys.executable, "-m", "catbus", "conformance", "--json",
                           "--keep", str(tmp_path / "kit"), *options, "--", *node],
                          cwd=ROOT, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    try:
        report = json.loads(done.stdout)
    except ValueError:
        raise AssertionError(f"no JSON report (exit {done.returncode})\n{done.stdout}\n"
                             f"{done.stderr}") from None
    return done.returncode, {check["id"]: check for check in report["checks"]}


# ------------------------------------------------------------------------------------------------
# real nodes
# ------------------------------------------------------------------------------------------------
@pytest.mark.timeout(600)
def test_raw_node_passes_every_check(bus_sandbox, tmp_path: Path) -> None:
    code, checks = kit(tmp_path, [sys.executable, str(RAW_NODE), *NODE_ARGS])
    failing = {k: v["reason"] for k, v in checks.items() if v["status"] != "PASS"}
    assert not failing and code == 0, failing
    assert list(checks) == [check.id for check in CHECKS]


@pytest.mark.timeout(300)
def test_a_catbus_node_passes_the_checks_of_a_stepped_run(bus_sandbox, tmp_path: Path) -> None:
    node = [sys.executable, "-m", "catbus", "node", "nodes.demo:Listener", *NODE_ARGS]
    code, checks = kit(tmp_path, node, "--only", "register,protocol,welcome,through,stats,done")
    assert code == 0, {k: v["reason"] for k, v in checks.items()}


@pytest.mark.timeout(120)
def test_an_old_protocol_version_fails_protocol_and_no_run_is_made(bus_sandbox,
                                                                  tmp_path: Path) -> None:
    old = str(PROTOCOL_VERSION - 1)
    code, checks = kit(tmp_path, [sys.executable, str(RAW_NODE), *NODE_ARGS, "--protocol", old],
                       "--only", "register,protocol,ready")
    assert code == 1
    assert checks["register"]["status"] == "PASS"
    assert checks["protocol"]["status"] == "FAIL"
    assert f"is {old}" in checks["protocol"]["reason"], checks["protocol"]
    assert checks["protocol"]["section"].endswith("#versions")
    assert checks["ready"]["status"] == "SKIP", checks["ready"]


@pytest.mark.timeout(400)
def test_a_node_without_final_progress_fails_final(bus_sandbox, tmp_path: Path) -> None:
    node = [sys.executable, str(BROKEN / "no_final_progress.py"), *NODE_ARGS]
    code, checks = kit(tmp_path, node, "--only", "final,stats", "--deadline", "5")
    assert code == 1
    assert checks["final"]["status"] == "FAIL"
    assert "final true" in checks["final"]["reason"], checks["final"]
    assert checks["stats"]["status"] == "PASS", checks["stats"]


@pytest.mark.timeout(300)
def test_a_node_that_answers_no_hello_fails_hellos(bus_sandbox, tmp_path: Path) -> None:
    node = [sys.executable, str(BROKEN / "no_hello_answers.py"), *NODE_ARGS]
    code, checks = kit(tmp_path, node, "--only", "hellos,stop")
    assert code == 1
    assert checks["hellos"]["status"] == "FAIL", checks["hellos"]
    assert checks["stop"]["status"] == "PASS", checks["stop"]


@pytest.mark.timeout(300)
def test_a_node_announcing_through_t_fails_through(bus_sandbox, tmp_path: Path) -> None:
    node = [sys.executable, str(BROKEN / "through_is_tick.py"), *NODE_ARGS]
    code, checks = kit(tmp_path, node, "--only", "through", "--deadline", "5")
    assert code == 1
    assert checks["through"]["status"] == "FAIL"
    assert "expected 2" in checks["through"]["reason"], checks["through"]


# ------------------------------------------------------------------------------------------------
# the verdicts, from made-up records
# ------------------------------------------------------------------------------------------------
def header(tick: int, through: int | None, publisher: str = "node", seq: int = 0) -> codec.Header:
    return codec.Header(publisher, seq, tick, tick * 1 / 20, 1.0, through, 1)   # num/den: 1/20


def progress(tick: int, through: int, final: bool = False, end: int | None = None) -> Seen:
    return Seen("catbus/progress", header(tick, None), ["node", tick, through, end, final, {}])


def register(**fields) -> msg.Register:
    values = dict(name="node", endpoint="ipc:///x", period=0.1, protocol=PROTOCOL_VERSION,
                  inputs=[["talker/chatter", "talker/chatter", "latest"]],
                  outputs=[["~/mean", "node/mean"]])
    return msg.Register(**{**values, **fields})


def stepped_record(messages: list[Seen], **fields) -> RunRecord:
    schedule = build_schedule([("feeder", 0.05), ("node", 0.15), ("reader", 0.05)],
                              steps=None, duration=0.95)
    record = RunRecord(Run.STEPPED, schedule=schedule, summary={"state": "done"}, exit_code=0,
                       observation=Observation(messages=messages, started=True), **fields)
    return record


PLAN = Plan("node", register())
CHECK = {check.id: check for check in CHECKS}


@pytest.mark.unit
def test_through_must_be_t_plus_k_minus_1_capped_at_the_last_tick() -> None:
    good = [Seen("kit/out0", header(t, min(t + 2, 19))) for t in range(0, 19, 3)]
    records = {Run.STEPPED: stepped_record(good)}
    assert judge(CHECK["through"], "node", None, PLAN, records).status is Status.PASS
    bad = good[:-1] + [Seen("kit/out0", header(18, 20))]   # past last_tick 19
    outcome = judge(CHECK["through"], "node", None, PLAN, {Run.STEPPED: stepped_record(bad)})
    assert outcome.status is Status.FAIL and "expected 19" in outcome.reason


@pytest.mark.unit
def test_welcome_wants_due_ticks_and_the_welcomes_topics() -> None:
    off_grid = [Seen("kit/out0", header(2, 4))]
    outcome = judge(CHECK["welcome"], "node", None, PLAN, {Run.STEPPED: stepped_record(off_grid)})
    assert outcome.status is Status.FAIL and "tick 2" in outcome.reason
    own_topic = [Seen("node/mean", header(0, 2))]
    outcome = judge(CHECK["welcome"], "node", None, PLAN,
                    {Run.STEPPED: stepped_record(own_topic)})
    assert outcome.status is Status.FAIL and "node/mean" in outcome.reason


@pytest.mark.unit
def test_final_progress_claims_what_was_completed_and_comes_last() -> None:
    seen = [Seen("kit/out0", header(0, 2)), progress(0, 2), progress(0, 2, final=True)]
    stop = RunRecord(Run.STOP, summary={"state": "done"}, exit_code=0,
                     observation=Observation(messages=seen, started=True))
    assert announced(stop.observation) == 2
    assert judge(CHECK["stop"], "node", None, PLAN, {Run.STOP: stop}).status is Status.PASS
    greedy = seen[:-1] + [progress(0, 19, final=True)]
    stop.observation = Observation(messages=greedy, started=True)
    outcome = judge(CHECK["stop"], "node", None, PLAN, {Run.STOP: stop})
    assert outcome.status is Status.FAIL and "final through 19" in outcome.reason
    stop.observation = Observation(messages=seen[:-1], started=True)
    outcome = judge(CHECK["stop"], "node", None, PLAN, {Run.STOP: stop})
    assert outcome.status is Status.FAIL and "final true" in outcome.reason


@pytest.mark.unit
def test_stats_payload_is_checked_key_by_key() -> None:
    counters = {"malformed": 0, "dropped": 0, "duplicates": 0, "received": 4}
    good = Seen("catbus/stats", header(18, None),
                {"node": "node", "incarnation": 1, "stats": counters})
    assert stats_problem(good, "node") is None
    missing = Seen("catbus/stats", header(18, None), {"node": "node", "incarnation": 1,
                                                     "stats": {"received": 4}})
    assert "malformed, dropped, duplicates" in stats_problem(missing, "node")
    carried = Seen("catbus/stats", header(18, 19), good.payload)
    assert "through 19" in stats_problem(carried, "node")


@pytest.mark.unit
def test_join_verdicts() -> None:
    join = JoinRecord(register=register(protocol=1), exit_code=0)
    assert judge(CHECK["register"], "node", join, None, {}).status is Status.PASS
    protocol = judge(CHECK["protocol"], "node", join, None, {})
    assert protocol.status is Status.FAIL and "counted as 1" in protocol.reason
    assert judge(CHECK["reject"], "node", join, None, {}).status is Status.FAIL
    skipped = judge(CHECK["ready"], "node", join, None, {})
    assert skipped.status is Status.SKIP and "protocol" in skipped.reason
    unnamed = JoinRecord(register=register(name="other"), exit_code=1)
    assert "'other'" in judge(CHECK["register"], "node", unnamed, None, {}).reason


@pytest.mark.unit
def test_choosing_checks_and_the_runs_they_need() -> None:
    assert runs_for(choose(["register"])) == [Run.JOIN]
    assert runs_for(choose(["stepped", "hellos"])) == [Run.JOIN, Run.STEPPED, Run.AGAIN,
                                                      Run.STOP]
    assert [c.id for c in choose(skip=["parallel", "end"])][-1] == "stepped"
    with pytest.raises(ValueError, match="unknown check 'nope'"):
        choose(["nope"])


@pytest.mark.unit
def test_the_report_passes_only_when_every_check_passes() -> None:
    one, two = CHECKS[:2]
    assert Report([passed(one, "ok"), passed(two, "ok")]).exit_code == 0
    report = Report([passed(one, "ok"), failed(two, "no")])
    assert report.exit_code == 1 and report.status(two.id) is Status.FAIL
    assert report.lines()[-1] == "1 of 2 checks passed"
    assert "docs/protocol.md#" in report.lines()[1]


@pytest.mark.unit
def test_the_command_template_fills_bus_and_name_only() -> None:
    assert fill(["./n", "--bus={bus}", "{name}", '{"a": 1}'], "ipc:///r.sock", "probe") == \
        ["./n", "--bus=ipc:///r.sock", "probe", '{"a": 1}']


@pytest.mark.unit
def test_the_command_line_lists_the_checks_and_wants_a_command(capsys) -> None:
    from catbus.cli.main import main

    assert main(["conformance", "--list"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in listed] == [check.id for check in CHECKS]
    assert all("docs/protocol.md#" in line for line in listed)
    assert main(["conformance", "--only", "nope", "--", "./node"]) == 2
    assert "unknown check 'nope'" in capsys.readouterr().err
    assert main(["conformance"]) == 2
    assert "after --" in capsys.readouterr().err
