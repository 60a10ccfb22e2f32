"""The public surface of ``catbus``: what ``__all__`` promises, the signatures people call, and
``catbus.start`` handles on real runs (processes, sockets, recordings).

Run tests use the ``bus_sandbox`` leak check (no process, no run folder left behind) and wait on
events (the handle's), never on sleeps.
"""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import catbus
from tests.conftest import alive, wait_until

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "launch" / "demo.yaml"
TOY = "tests.toy_nodes"

EXPECTED_ALL = ["Node", "Input", "Param", "run", "start", "load", "RunResult", "RunHandle",
                "Recording", "sweep", "CatbusError", "ConfigError", "NodeFailed", "RunTimeout",
                "__version__"]
RUN_PARAMETERS = ["launch", "mode", "seed", "steps", "duration", "max_steps", "overrides",
                  "record", "remote", "bus", "remote_timeout", "progress", "deadline", "evaluate",
                  "log_level", "pace", "rejoin_timeout", "insecure", "args", "groups"]


def talker_launch(**top) -> dict:
    """A one-node dict launch: a toy talker at 100 Hz."""
    return {"name": "solo", **top, "nodes": {"talker": {"class": f"{TOY}:Talker",
                                                        "period": 0.01}}}


# -- the surface --------------------------------------------------------------------------------
@pytest.mark.timeout(10)
def test_all_is_the_public_surface_and_every_name_resolves():
    assert catbus.__all__ == EXPECTED_ALL
    for name in catbus.__all__:
        assert getattr(catbus, name) is not None, name
    from catbus.errors import CatbusError, ConfigError, NodeFailed, RunTimeout
    from catbus.api.run import load, run, start
    from catbus.api.handle import RunHandle
    from catbus.api.result import RunResult
    from catbus.node import Input, Node
    from catbus.params import Param
    from catbus.recording import Recording

    assert (catbus.Node, catbus.Input, catbus.Param) == (Node, Input, Param)
    assert (catbus.run, catbus.start, catbus.load) == (run, start, load)
    assert (catbus.RunResult, catbus.RunHandle, catbus.Recording) == (RunResult, RunHandle,
                                                                       Recording)
    assert (catbus.CatbusError, catbus.ConfigError, catbus.NodeFailed, catbus.RunTimeout) == (
        CatbusError, ConfigError, NodeFailed, RunTimeout)
    assert all(issubclass(e, catbus.CatbusError) for e in (ConfigError, NodeFailed, RunTimeout))
    assert isinstance(catbus.__version__, str)
    assert set(catbus.__all__) <= set(dir(catbus))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        catbus.nope   # noqa: B018


@pytest.mark.timeout(10)
def test_star_import_gives_exactly_all():
    namespace: dict = {}
    exec("from catbus import *", namespace)
    assert sorted(k for k in namespace if k != "__builtins__") == sorted(EXPECTED_ALL)


@pytest.mark.timeout(10)
def test_testing_module_is_reachable_from_the_package():
    from catbus.testing import NodeHarness

    assert catbus.testing.NodeHarness is NodeHarness


@pytest.mark.timeout(30)
def test_import_catbus_is_light():
    code = ("import sys, catbus; heavy = [m for m in ('zmq', 'mcap', 'numpy', 'yaml', "
            "'msgpack') if m in sys.modules]; print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT)
    assert out.stdout.strip() == ""
    # Touching run/start (without running) does not need ZeroMQ either.
    code = ("import sys, catbus, inspect; inspect.signature(catbus.run); catbus.start; "
            "print('zmq' in sys.modules, 'mcap' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT)
    assert out.stdout.split() == ["False", "False"]


@pytest.mark.timeout(10)
@pytest.mark.parametrize("name", ["run", "start"])
def test_run_and_start_have_their_real_signature_and_docstring(name):
    function = getattr(catbus, name)
    parameters = inspect.signature(function).parameters
    assert list(parameters) == RUN_PARAMETERS
    assert parameters["launch"].kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in list(parameters.values())[1:])
    assert parameters["mode"].default is None and parameters["seed"].default is None
    assert parameters["deadline"].default == 30.0 and parameters["evaluate"].default is True
    doc = inspect.getdoc(function)
    for section in ("Args:", "Returns:", "Raises:", "ConfigError"):
        assert section in doc, (name, section)
    assert inspect.signature(catbus.start).return_annotation in ("RunHandle", catbus.RunHandle)
    assert inspect.signature(catbus.run).return_annotation in ("RunResult", catbus.RunResult)


# -- load -----------------------------------------------------------------------------------------
@pytest.mark.timeout(10)
def test_load_does_not_ignore_zeros():
    spec = catbus.load(talker_launch(seed=5, steps=10, mode="stepped"))
    assert (spec.seed, spec.steps) == (5, 10)
    again = catbus.load(spec, seed=0, steps=0)
    assert (again.seed, again.steps) == (0, 0)
    assert again.mode == "stepped"
    assert catbus.load(spec) is spec                      # nothing given: the same spec
    assert catbus.load(spec, seed=None, overrides={}) is spec
    from_dict = catbus.load(talker_launch(seed=5, steps=10), seed=0, steps=0)
    assert (from_dict.seed, from_dict.steps) == (0, 0)
    from_file = catbus.load(DEMO, seed=0, steps=0)
    assert (from_file.seed, from_file.steps, from_file.duration) == (0, 0, None)


@pytest.mark.timeout(10)
def test_load_record_false_turns_a_recording_off(tmp_path):
    spec = catbus.load(talker_launch(steps=3), record=tmp_path / "a.mcap")
    assert spec.record == tmp_path / "a.mcap"
    assert catbus.load(spec, record=False).record is None


@pytest.mark.timeout(10)
def test_load_overrides_on_a_spec():
    spec = catbus.load(talker_launch(steps=3))
    changed = catbus.load(spec, overrides={"talker.gain": 3.0})
    assert changed.node("talker").params["gain"] == 3.0
    with pytest.raises(catbus.ConfigError, match="talker.gian"):
        catbus.load(spec, overrides=["talker.gian=3"])


# -- RunResult.summary ----------------------------------------------------------------------------
@pytest.mark.timeout(30)
def test_summary_is_an_attribute_and_calling_it_still_works():
    result = catbus.run(talker_launch(steps=3), mode="inline")
    summary = result.summary
    assert isinstance(summary, dict)
    assert summary["name"] == "solo" and summary["mode"] == "inline"
    assert summary["interrupted"] is False and summary["record"] is None
    assert summary["nodes"]["talker"]["steps"] == 4
    json.dumps(summary, default=str)
    with pytest.warns(DeprecationWarning, match="summary is an attribute"):
        assert result.summary() == summary


# -- start: real runs -------------------------------------------------------------------------------
def _pids(result) -> list[int]:
    return [stats["pid"] for stats in result.nodes.values() if stats.get("pid")]


@pytest.mark.timeout(60)
def test_start_stepped_runs_to_the_end(bus_sandbox):
    handle = catbus.start(DEMO, mode="stepped", steps=20)
    assert isinstance(handle, catbus.RunHandle)
    assert (handle.name, handle.mode) == ("demo", "stepped")
    assert handle.bus is not None and handle.bus.startswith("ipc://")   # known at once
    result = handle.wait(timeout=50)
    assert handle.done and not handle.running
    assert not result.interrupted
    assert result.nodes["talker"]["steps"] == 21          # ticks 0..20
    assert result.nodes["listener"]["state"] == "done"
    assert handle.wait() is result                        # again: the same result
    assert handle.wait_until_started(timeout=0)
    handle.stop()                                         # after the end: nothing happens
    assert all(not alive(pid) for pid in _pids(result))


@pytest.mark.timeout(60)
def test_start_inline_runs_in_the_background():
    with catbus.start(DEMO, mode="inline", steps=20) as handle:
        assert handle.bus is None and handle.mode == "inline"
        result = handle.wait(timeout=50)
    assert handle.done
    assert result.nodes["talker"]["steps"] == 21 and not result.interrupted


@pytest.mark.timeout(60)
def test_stop_ends_a_long_parallel_run_gracefully(bus_sandbox, tmp_path):
    record = tmp_path / "stopped.mcap"
    before = threading.active_count()
    handle = catbus.start(DEMO, mode="parallel", duration=600, record=record)
    assert handle.running and not handle.done
    assert handle.wait_until_started(timeout=40), "the run did not start"
    # Let the talker get going (its heartbeats report its tick), so there is data to keep.
    talker = handle._launcher.registry.members["talker"]
    wait_until(lambda: talker.tick >= 3, 20, what="the talker's third tick")
    with pytest.raises(TimeoutError):
        handle.wait(timeout=0.01)                         # still going
    handle.stop()
    assert handle.stopping
    result = handle.wait(timeout=40)
    assert result.interrupted and result.signal is None
    assert handle.done
    assert set(result.nodes) == {"talker", "listener", "recorder"}
    for name, stats in result.nodes.items():
        assert stats["returncode"] is not None, name      # every process waited for ...
        assert not alive(stats["pid"]), name              # ... and gone
    assert result.scores is None                          # interrupted: not evaluated
    recording = catbus.Recording(record)                  # the recording is kept, finished
    assert recording.complete
    assert any(m.topic == "talker/chatter" for m in recording.messages())
    handle._thread.join(timeout=5)
    assert threading.active_count() == before


@pytest.mark.timeout(60)
def test_context_manager_stops_the_run(bus_sandbox):
    with catbus.start(talker_launch(), mode="parallel", duration=600) as handle:
        assert handle.wait_until_started(timeout=40)
        bus = handle.bus
        assert bus.startswith("ipc://")
    assert handle.done and not handle.running
    result = handle.wait(timeout=0)
    assert result.interrupted
    assert all(not alive(pid) for pid in _pids(result))
    assert "stopping" not in repr(handle) and "done" in repr(handle)


@pytest.mark.timeout(60)
def test_stop_before_the_run_started(bus_sandbox):
    handle = catbus.start(talker_launch(), mode="stepped", duration=600)
    handle.stop()
    result = handle.wait(timeout=40)
    assert result.interrupted
    assert all(not alive(pid) for pid in _pids(result))


@pytest.mark.timeout(30)
def test_bad_launch_raises_config_error_synchronously(bus_sandbox):
    threads = threading.active_count()
    with pytest.raises(catbus.ConfigError, match=r"talker\.gian: unknown parameter"):
        catbus.start(talker_launch(), overrides=["talker.gian=1"])
    with pytest.raises(catbus.ConfigError, match="no such launch file"):
        catbus.start(ROOT / "launch" / "no_such_file.yaml")
    with pytest.raises(catbus.ConfigError, match="mode"):
        catbus.start(talker_launch(), mode="sideways")
    # Checked only when the registry binds (in the run's thread), still raised by start():
    with pytest.raises(catbus.ConfigError, match="bus: the registry cannot bind"):
        catbus.start(talker_launch(), mode="stepped", steps=5, bus="tcp://192.0.2.1:7700")
    assert threading.active_count() == threads            # no run thread left behind


@pytest.mark.timeout(60)
def test_wait_reraises_a_node_failure(bus_sandbox):
    launch = {"name": "failing", "duration": 30, "nodes": {
        "talker": {"class": f"{TOY}:Talker", "period": 0.01},
        "bad": {"class": f"{TOY}:Failing", "period": 0.01, "params": {"fail_at": 3}}}}
    handle = catbus.start(launch, mode="stepped")
    with pytest.raises(catbus.NodeFailed, match="node bad failed") as failure:
        handle.wait(timeout=50)
    assert "broke down after 3 steps" in str(failure.value)
    assert failure.value.result is not None
    assert handle.done
    with pytest.raises(catbus.NodeFailed):               # every wait() tells it
        handle.wait()


@pytest.mark.timeout(60)
def test_stop_an_inline_run():
    steps = 1_000_000   # a minute or so unstopped
    with catbus.start(DEMO, mode="inline", steps=steps) as handle:
        assert handle.wait_until_started(timeout=30)
        handle.stop()
        result = handle.wait(timeout=50)
    assert result.interrupted and result.signal is None
    assert result.nodes["talker"]["steps"] < steps


@pytest.mark.timeout(30)
def test_launcher_off_the_main_thread_leaves_signal_handlers_alone(bus_sandbox):
    import signal

    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    # signal.signal off the main thread raises ValueError: the run would fail at once.
    with catbus.start(talker_launch(), mode="parallel", duration=600) as handle:
        assert handle.wait_until_started(timeout=25)
        assert {sig: signal.getsignal(sig) for sig in before} == before
    assert handle.wait(timeout=0).interrupted


@pytest.mark.timeout(30)
def test_stop_hands_the_inline_runner_its_event(monkeypatch):
    """The handle's side of stopping inline runs, with a stand-in runner that takes the stop
    event the way the inline runner is to (``run_inline(spec, ..., stop=event)``)."""
    from catbus.supervise import inline
    from catbus.api.result import RunResult

    seen = {}

    def runner(spec, *, stop=None, **options):
        seen["stop"] = stop
        assert stop.wait(timeout=20), "stop() did not set the event"
        return RunResult(spec, {}, 0.0, None, interrupted=True)

    monkeypatch.setattr(inline, "run_inline", runner)
    with catbus.start(DEMO, mode="inline", steps=5) as handle:
        assert handle.wait_until_started(timeout=5)
        assert not handle.done
    assert seen["stop"].is_set()
    assert handle.wait(timeout=0).interrupted


@pytest.mark.timeout(60)
def test_a_script_that_exits_without_waiting_stops_its_run(bus_sandbox):
    """At interpreter exit, runs still going are stopped as by stop(): the script ends in
    seconds, not at the run's end, and leaves no process behind (the sandbox checks)."""
    script = ("import catbus\n"
              f"handle = catbus.start({str(DEMO)!r}, mode='parallel', duration=600)\n"
              "assert handle.wait_until_started(timeout=40)\n"
              "print('started', flush=True)\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=45, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["started"]
