"""``one_per_process = True`` (a simulator that allows one simulation per process) in
``catbus.run`` and ``catbus.start``: the first inline run of the process runs here, every later
one in a fresh child process, with the same result, errors and stop as a run here."""

from __future__ import annotations

import os

import pytest

import catbus
from tests.conftest import ROOT

pytestmark = [pytest.mark.usefixtures("bus_sandbox"), pytest.mark.timeout(120)]


def one_sim(**params) -> dict:
    return {"name": "onesim", "steps": 4, "pythonpath": [str(ROOT)],
            "nodes": {"env": {"class": "tests.own_process_nodes:OneSim", "params": params}}}


def test_every_inline_run_after_the_first_gets_a_fresh_process(bus_sandbox, monkeypatch) -> None:
    import tests.own_process_nodes as sim
    from catbus.api import execute

    # As in a fresh process, whatever ran in this one before.
    monkeypatch.setattr(execute, "_simulated_here", set())
    monkeypatch.setattr(sim, "_simulated", [])
    first = catbus.run(one_sim(gain=2.0), mode="inline")
    second = catbus.run(one_sim(gain=3.0), mode="inline")
    third = catbus.run(one_sim(), mode="inline", steps=2)
    assert first.scores == {"pid": os.getpid(), "gain": 2.0}
    assert second.scores["gain"] == 3.0 and second.scores["pid"] != os.getpid()
    assert third.scores["pid"] not in (os.getpid(), second.scores["pid"])
    assert [r.end_reason for r in (first, second, third)] == ["ran its 4 steps"] * 2 + [
        "ran its 2 steps"]
    assert second.nodes["env"]["steps"] == 5 and second.spec.name == "onesim"
    assert not bus_sandbox.processes()     # each child ended with its run

    # Its errors come back as the same errors.
    with pytest.raises(catbus.NodeFailed, match="node env failed in step: ValueError: the "
                                                "simulation diverged"):
        catbus.run(one_sim(fail=True), mode="inline")
    # Stepped runs every node in a process of its own anyway.
    assert catbus.run(one_sim(), mode="stepped").scores["pid"] != os.getpid()

    # catbus.start: stop() ends the child's run between two steps, as it ends one here.
    with catbus.start(one_sim(), mode="inline", steps=10_000_000) as handle:
        assert handle.wait_until_started(timeout=30)
        handle.stop()
        stopped = handle.wait(timeout=60)
    assert stopped.interrupted and stopped.nodes["env"]["steps"] < 10_000_000
