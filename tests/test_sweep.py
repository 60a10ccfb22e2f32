"""``catbus sweep`` and ``catbus.sweep``: the grid, the rows, failing and dying episodes, resume,
Ctrl-C, fresh workers, and the parsing of ``--seeds`` and ``--set``.

Episodes run real worker processes (and, in stepped mode, node processes); the ``bus_sandbox``
fixture checks that none is left behind and no run folder either. The nodes are
tests/sweep_nodes.py: ``Scored`` reports ``score = 10 * seed + gain`` and fails on demand for one
seed.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import catbus
from catbus.errors import ConfigError
from catbus.sweep import grid as g
from catbus.sweep import stats
from catbus.sweep.results import ResultsWriter, read_rows
from tests.conftest import wait_until

ROOT = Path(__file__).resolve().parent.parent


#: The episode timeout of sweeps with a hanging episode: the hang waits it out, and every other
#: episode of the sweep must finish within it on a loaded CI machine (a stepped episode starts
#: processes: ~1.5 s quiet, several seconds under load), so it is generous: over 5x the quiet
#: time (it was 15 s, which three tests each waited out in full: 21 s of CI).
HANG_TIMEOUT = 8

def launch(cls: str = "Scored", steps: int = 5, **params) -> dict:
    return {"name": "sw", "steps": steps, "pythonpath": [str(ROOT)],
            "nodes": {"env": {"class": f"tests.sweep_nodes:{cls}", "params": params}}}


def launch_file(tmp_path: Path, cls: str = "Scored", with_listener: bool = False, **params) -> Path:
    doc = launch(cls, **params)
    if with_listener:
        doc["nodes"]["listener"] = {"class": "tests.sweep_nodes:Listener"}
    path = tmp_path / "sw.yaml"
    path.write_text(json.dumps(doc))   # JSON is YAML
    return path


def brief(rows) -> list[tuple]:
    return [(r["setting"], r["env.gain"], r["seed"], r["status"], r.get("score")) for r in rows]


# -- parsing (no processes) ---------------------------------------------------------------------
@pytest.mark.unit
def test_seeds_are_half_open_ranges_or_lists():
    assert g.parse_seeds("0:4") == [0, 1, 2, 3]
    assert g.parse_seeds("3,7,9") == [3, 7, 9]
    assert g.parse_seeds("5") == [5]
    assert g.parse_seeds(":3") == [0, 1, 2]
    assert g.parse_seeds("0:10:5") == [0, 5]
    for bad in ("a:b", "3:3", "1,x", "-1,2", "1:2:3:4"):
        with pytest.raises(ConfigError, match="--seeds"):
            g.parse_seeds(bad)


@pytest.mark.unit
def test_set_value_lists_split_on_top_level_commas_and_read_yaml_flow():
    assert g.parse_set("robot.safe_controller=SafeSet,Unsafe") == (
        "robot.safe_controller", ["SafeSet", "Unsafe"])
    assert g.parse_set("robot.feedback.u_max=[100,100],[200,200]") == (
        "robot.feedback.u_max", [[100, 100], [200, 200]])
    assert g.parse_set("env.gain=1, 2.5 ,true") == ("env.gain", [1, 2.5, True])
    assert g.parse_set("env.cfg={a: 1, b: [2,3]},'x,y'") == ("env.cfg", [{"a": 1, "b": [2, 3]},
                                                                         "x,y"])
    assert g.parse_set("env.gain=3") == ("env.gain", [3])
    for bad in ("gain=1", "env.gain", "env.=1"):
        with pytest.raises(ConfigError, match="--set"):
            g.parse_set(bad)
    with pytest.raises(ConfigError, match="given twice"):
        g.parse_sets(["env.gain=1", "env.gain=2"])


@pytest.mark.unit
def test_cli_parser_takes_the_sweep_options():
    from catbus.cli.main import build_parser

    args = build_parser().parse_args(["sweep", "f.yaml", "--seeds", "0:3", "--set",
                                      "robot.u=[1,2],[3,4]", "--set", "env.g=1,2", "--jobs", "2",
                                      "--episode-timeout", "5", "--fresh", "--resume",
                                      "--out", "r.csv"])
    assert (args.seeds, args.grid, args.jobs, args.mode) == ("0:3", ["robot.u=[1,2],[3,4]",
                                                                     "env.g=1,2"], 2, "inline")
    assert (args.episode_timeout, args.fresh, args.resume, args.out) == (5.0, True, True, "r.csv")
    settings = g.settings_of(g.parse_sets(args.grid))
    assert settings == [{"robot.u": [1, 2], "env.g": 1}, {"robot.u": [1, 2], "env.g": 2},
                        {"robot.u": [3, 4], "env.g": 1}, {"robot.u": [3, 4], "env.g": 2}]
    # One folder name per setting (a recording goes to record/<slug>/seed-<n>.mcap): list values
    # flattened to characters safe in a path, keys without their node name, joined by "__".
    assert g.unique_slugs(settings) == ["u=_1_2__g=1", "u=_1_2__g=2", "u=_3_4__g=1",
                                        "u=_3_4__g=2"]
    assert g.unique_slugs([{"a.x": "p/q"}, {"a.x": "p q"}]) == ["x=p_q", "x=p_q-2"]


@pytest.mark.unit
def test_summary_statistics_use_the_t_table():
    d = stats.describe([1.0, 2.0, 3.0, 4.0])
    assert d["mean"] == 2.5 and d["std"] == pytest.approx(1.2909944)
    assert d["ci_hi"] - d["mean"] == pytest.approx(3.182 * 1.2909944 / 2)
    assert stats.t_critical(29) == 2.045 and stats.t_critical(35) == 2.042
    assert stats.t_critical(500) == 1.96
    assert stats.describe([5.0])["n"] == 1


def test_csv_columns_grow_when_a_later_row_brings_a_score(tmp_path):
    writer = ResultsWriter(tmp_path / "r.csv", ["env.gain"])
    writer.add({"setting": "a", "env.gain": 1, "seed": 0, "status": "failed", "error": "x"})
    writer.add({"setting": "a", "env.gain": 1, "seed": 1, "status": "ok", "score": 3.0})
    with open(tmp_path / "r.csv") as f:   # before finish(): already complete
        rows = list(csv.DictReader(f))
    assert [r["score"] for r in rows] == ["", "3.0"] and rows[0]["error"] == "x"
    writer.finish()
    assert [r["seed"] for r in read_rows(tmp_path / "r.csv")] == [0, 1]


# -- real sweeps ---------------------------------------------------------------------------------
pytestmark_real = pytest.mark.usefixtures("bus_sandbox")


@pytest.mark.timeout(120)
@pytest.mark.usefixtures("bus_sandbox")
def test_small_grid_gives_exact_rows(tmp_path):
    rows = catbus.sweep(launch(), seeds=range(3), grid={"env.gain": [1, 2.5]}, jobs=2,
                        out=tmp_path / "r.csv")
    assert brief(rows) == [("gain=1", 1, 0, "ok", 1.0), ("gain=1", 1, 1, "ok", 11.0),
                           ("gain=1", 1, 2, "ok", 21.0), ("gain=2.5", 2.5, 0, "ok", 2.5),
                           ("gain=2.5", 2.5, 1, "ok", 12.5), ("gain=2.5", 2.5, 2, "ok", 22.5)]
    assert all(r["steps"] == 6 and r["exit_code"] == 0 and r["error"] is None
               and r["dropped"] == 0 for r in rows)
    assert len({r["worker_pid"] for r in rows}) <= 2   # workers are reused
    with open(tmp_path / "r.csv") as f:
        table = list(csv.DictReader(f))
    assert [(r["setting"], r["seed"], r["score"]) for r in table] == [
        (r["setting"], str(r["seed"]), str(r["score"])) for r in rows]
    assert len((tmp_path / "r.jsonl").read_text().splitlines()) == 6


@pytest.mark.timeout(120)
@pytest.mark.usefixtures("bus_sandbox")
@pytest.mark.parametrize("mode", ["inline", "stepped"])
@pytest.mark.parametrize("fail, code, error", [
    ("raise", 1, "RuntimeError: boom at seed 1"),
    ("hang", 124, "timeout"),
    ("segv", 139, "worker died: SIGSEGV"),
    ("cstring", 139, "worker died: SIGSEGV"),
    ("exit", 3, "worker exited with code 3"),
])
def test_a_failing_episode_is_a_failed_row_and_the_sweep_goes_on(fail, code, error, mode):
    if mode == "stepped" and fail in ("segv", "cstring", "exit"):
        code, error = 1, "node env failed"   # the node process died; the launcher reports it
    rows = catbus.sweep(launch(fail=fail, fail_seed=1), seeds=range(3), jobs=1, mode=mode,
                        episode_timeout=HANG_TIMEOUT if fail == "hang" else None)
    assert [(r["seed"], r["status"]) for r in rows] == [(0, "ok"), (1, "failed"), (2, "ok")]
    assert rows[1]["exit_code"] == code and error in rows[1]["error"]
    assert "score" not in rows[1] and [rows[0]["score"], rows[2]["score"]] == [1.0, 21.0]


@pytest.mark.timeout(120)
@pytest.mark.usefixtures("bus_sandbox")
def test_a_stuck_stepped_episode_is_killed_with_its_node_processes(tmp_path):
    rows = catbus.sweep(launch(fail="hang", fail_seed=0), seeds=[0, 1], jobs=1, mode="stepped",
                        episode_timeout=HANG_TIMEOUT)
    assert [(r["seed"], r["status"], r["exit_code"]) for r in rows] == [(0, "failed", 124),
                                                                        (1, "ok", 0)]
    assert rows[0]["worker_pid"] != rows[1]["worker_pid"]   # a new worker after the kill
    # bus_sandbox: no node process and no run folder is left


@pytest.mark.timeout(120)
@pytest.mark.usefixtures("bus_sandbox")
def test_a_node_class_that_asks_for_its_own_process_gets_a_fresh_worker_each_episode():
    own = catbus.sweep(launch("OwnProcess"), seeds=range(3), jobs=1)
    shared = catbus.sweep(launch(), seeds=range(3), jobs=1)
    assert [r["status"] for r in own + shared] == ["ok"] * 6
    assert len({r["worker_pid"] for r in own}) == 3
    assert len({r["worker_pid"] for r in shared}) == 1
    fresh = catbus.sweep(launch(), seeds=range(2), jobs=1, fresh=True)
    assert len({r["worker_pid"] for r in fresh}) == 2


def cli(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "catbus", *args], capture_output=True,
                          text=True, timeout=120, **kwargs)


@pytest.mark.timeout(180)
@pytest.mark.usefixtures("bus_sandbox")
def test_cli_sweep_resume_runs_only_the_missing_rows(tmp_path):
    file, out = launch_file(tmp_path), tmp_path / "out" / "r.csv"
    first = cli("sweep", str(file), "--seeds", "0:2", "--set", "env.gain=1,2", "--out", str(out),
                "--jobs", "2")
    assert first.returncode == 0, first.stderr
    assert "gain=1" in first.stdout and "95% CI" in first.stdout
    before = {(r["setting"], r["seed"]): r["worker_pid"] for r in read_rows(out)}
    second = cli("sweep", str(file), "--seeds", "0:3", "--set", "env.gain=1,2", "--out",
                 str(out), "--jobs", "2", "--resume")
    assert second.returncode == 0, second.stderr
    rows = read_rows(out)
    assert len(rows) == 6
    assert {(r["setting"], r["seed"]): r["worker_pid"] for r in rows if r["seed"] < 2} == before
    with open(out) as f:
        table = list(csv.DictReader(f))
    assert [(r["setting"], r["seed"], r["score"]) for r in table] == [
        ("gain=1", "0", "1.0"), ("gain=1", "1", "11.0"), ("gain=1", "2", "21.0"),
        ("gain=2", "0", "2.0"), ("gain=2", "1", "12.0"), ("gain=2", "2", "22.0")]
    bad = cli("sweep", str(file), "--set", "env.nope=1")
    assert bad.returncode == 2 and "nope" in bad.stderr


@pytest.mark.timeout(180)
@pytest.mark.usefixtures("bus_sandbox")
def test_cli_failed_episodes_exit_1_and_records_are_unique(tmp_path):
    file = launch_file(tmp_path, fail="raise", fail_seed=1)
    done = cli("sweep", str(file), "--seeds", "0,1", "--set", "env.gain=1,2", "--record",
               str(tmp_path / "rec"), "--out", str(tmp_path / "r.csv"), "--mode", "stepped")
    assert done.returncode == 1, done.stderr
    assert "failed: gain=1 seed 1" in done.stdout
    rows = read_rows(tmp_path / "r.csv")
    assert sorted(r["record"] for r in rows) == sorted(
        str(tmp_path / "rec" / s / f"seed-{n}.mcap") for s in ("gain=1", "gain=2") for n in (0, 1))
    assert all(Path(r["record"]).is_file() for r in rows if r["status"] == "ok")


@pytest.mark.timeout(180)
@pytest.mark.usefixtures("bus_sandbox")
def test_ctrl_c_stops_every_worker_keeps_finished_rows_and_exits_130(tmp_path):
    file = launch_file(tmp_path, with_listener=True, fail="hang", fail_seed=2)
    out = tmp_path / "r.csv"
    proc = subprocess.Popen([sys.executable, "-m", "catbus", "sweep", str(file), "--seeds",
                             "0:4", "--mode", "stepped", "--jobs", "1", "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: len(read_rows(out)) == 2, 90, what="two finished rows")
        # the hanging episode is running: its worker and node processes are alive
        from catbus.sweep.workers import children_of

        wait_until(lambda: any(children_of(w) for w in children_of(proc.pid)), 30,
                   what="the stuck episode's node processes")
        os.kill(proc.pid, signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, stderr
    assert [(r["seed"], r["status"]) for r in read_rows(out)] == [(0, "ok"), (1, "ok")]
    with open(out) as f:
        assert [r["seed"] for r in csv.DictReader(f)] == ["0", "1"]
    # bus_sandbox: no worker, node process or run folder is left


@pytest.mark.timeout(120)
@pytest.mark.usefixtures("bus_sandbox")
def test_bench_sweep_quick_prints_its_table():
    """Smoke test of bench/sweep.py (in the style of tests/test_bench_smoke.py: that it runs and
    prints its table; never a timing)."""
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "sweep.py"), "--quick"], cwd=ROOT,
                          capture_output=True, text=True, timeout=100)
    assert done.returncode == 0, done.stderr
    for word in ("metric", "catbus", "baseline", "ratio", "target", "result",
                 "2 jobs vs 1 job", "sweep vs Pool(2).map", "targets:"):
        assert word in done.stdout, (word, done.stdout)


# -- boolean scores, one-line errors, float words, --jobs ----------------------------------------
def trial_launch(steps: int = 2) -> dict:
    return {"name": "trial", "steps": steps, "pythonpath": [str(ROOT)],
            "nodes": {"env": {"class": "tests.sweep_rate_nodes:Trial"}}}


@pytest.mark.unit
def test_boolean_scores_are_rates_with_a_wilson_interval():
    rows = [{"setting": "a", "status": "ok", "success": seed % 5 != 0, "distance": float(seed)}
            for seed in range(10)]
    rows.append({"setting": "a", "status": "failed", "success": None})
    rows += [{"setting": "b", "status": "ok", "success": True} for _ in range(10)]
    summary = stats.summarize(rows, ["success", "distance"])
    rate = summary[0]["scores"]["success"]
    assert (rate["kind"], rate["n"], rate["successes"], rate["rate"]) == ("rate", 10, 8, 0.8)
    # Wilson 95%: 8/10 -> [0.490, 0.943] (the normal approximation would give [0.552, 1.048]).
    assert (rate["ci_lo"], rate["ci_hi"]) == (pytest.approx(0.4902, abs=1e-4),
                                              pytest.approx(0.9433, abs=1e-4))
    assert summary[0]["scores"]["distance"]["kind"] == "mean"
    every = summary[1]["scores"]["success"]     # 10/10: not a certainty
    assert every["rate"] == 1.0 and every["ci_lo"] == pytest.approx(0.7225, abs=1e-4)
    assert stats.wilson(0, 10) == (0.0, pytest.approx(0.2775, abs=1e-4))
    table = stats.format_summary(summary)
    lines = [" ".join(line.split()) for line in table.splitlines()]
    assert "a 11 1 success 0.8 (8/10 true) [0.4902, 0.9433]" in lines
    assert "b 10 0 success 1 (10/10 true) [0.7225, 1]" in lines


@pytest.mark.unit
def test_float_parameters_take_inf_and_nan_as_text():
    """``float("inf")`` is a common default; YAML reads ``inf`` as a string, so the command line
    (``--set agent.threshold=inf``) and the launch file give it as a word."""
    spec = catbus.load(trial_launch(), overrides=["env.threshold=-inf"])
    assert spec.node("env").params["threshold"] == -math.inf    # checked and read at load
    from catbus.params import Param

    threshold = Param(float, float("inf"))
    for text, value in (("inf", math.inf), ("-inf", -math.inf), ("+Infinity", math.inf),
                        (".inf", math.inf), ("-.inf", -math.inf), ("NaN", math.nan)):
        got = threshold.validate(text, "threshold", "test")
        assert got == value or (math.isnan(value) and math.isnan(got)), text
    with pytest.raises(ConfigError, match="must be a number, got 'infinite'"):
        threshold.validate("infinite", "threshold", "test")
    assert g.parse_set("env.threshold=inf,-inf,1") == ("env.threshold", ["inf", "-inf", 1])


@pytest.mark.unit
def test_jobs_0_is_one_line_and_exit_2(capsys):
    from catbus.cli.main import main

    assert main(["sweep", "no-such-launch.yaml", "--jobs", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["catbus: command line: --jobs: must be at least 1 worker process, got 0"]
    with pytest.raises(ConfigError, match="jobs: must be a whole number"):
        catbus.sweep("no-such-launch.yaml", jobs=0)


@pytest.mark.timeout(120)
@pytest.mark.usefixtures("bus_sandbox")
def test_rates_and_infinite_settings_in_a_real_sweep(tmp_path):
    rows = catbus.sweep(trial_launch(), seeds=range(6), grid={"env.threshold": ["inf", 2.5]},
                        jobs=2, out=tmp_path / "r.csv")
    assert [r["threshold"] for r in rows] == ["inf"] * 6 + ["2.5"] * 6
    assert all(isinstance(r["success"], bool) for r in rows)
    summary = stats.summarize(rows, ["success", "distance"])
    assert [e["setting"] for e in summary] == ["threshold=inf", "threshold=2.5"]
    rate = summary[0]["scores"]["success"]
    assert (rate["successes"], rate["n"]) == (4, 6)      # seeds 0 and 3 fail
    written = {(r["setting"], r["seed"]): r["success"] for r in read_rows(tmp_path / "r.csv")}
    assert written[("threshold=inf", 0)] is False and written[("threshold=2.5", 1)] is True


@pytest.mark.timeout(120)
@pytest.mark.usefixtures("bus_sandbox")
def test_a_failed_rows_error_is_one_line_and_its_traceback_a_file(tmp_path):
    out = tmp_path / "runs" / "r.csv"
    rows = catbus.sweep(launch(fail="raise", fail_seed=1), seeds=range(3), jobs=1, out=out)
    failed = rows[1]
    assert failed["error"] == "node env failed in step: RuntimeError: boom at seed 1"
    log = Path(failed["error_log"])
    assert log == tmp_path / "runs" / "r.logs" / "default" / "seed-1.log"
    text = log.read_text()
    assert text.startswith(failed["error"]) and "Traceback" in text and "sweep_nodes.py" in text
    assert rows[0]["error_log"] is None and rows[0]["error"] is None
    with open(out) as f:
        table = list(csv.DictReader(f))
    assert table[1]["error"] == failed["error"] and table[1]["error_log"] == str(log)
    assert [p.name for p in sorted((tmp_path / "runs").iterdir())] == ["r.csv", "r.jsonl",
                                                                       "r.logs"]
    # Without --out or --record the file goes to a temporary folder of its own, kept.
    again = catbus.sweep(launch(fail="raise", fail_seed=0), seeds=[0], jobs=1)
    kept = Path(again[0]["error_log"])
    assert "\n" not in again[0]["error"] and "Traceback" in kept.read_text()
    shutil.rmtree(kept.parent.parent)
