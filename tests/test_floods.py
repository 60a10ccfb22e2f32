"""Floods cost the flooder, not the run: a stranger who can reach a node's publishing socket or
the registry sends far more than any peer would. Memory and liveness are measured here, counts
asserted; no timing is."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import zmq

import catbus
from catbus.client import query_graph
from catbus.runtime import floodguard
from tests.conftest import wait_until

ROOT = Path(__file__).resolve().parent.parent
SUBSCRIPTIONS = 20_000


def counter_launch() -> dict:
    return {"name": "flooded", "pythonpath": [str(ROOT)],
            "nodes": {"source": {"class": "tests.swap_nodes:Counter"},
                      "sink": {"class": "tests.swap_nodes:Echo",
                               "remap": {"~/in": "source/count"}}}}


def node(bus: str, name: str) -> dict:
    return next(n for n in query_graph(bus)["nodes"] if n["name"] == name)


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


@pytest.mark.timeout(90)
def test_a_subscription_flood_is_cut_counted_and_named(bus_sandbox, capfd) -> None:
    """20 000 subscriptions to topics outside the run, then one honest one, on one connection
    straight to the source's publishing socket: the connection is cut after a few (the rest
    never reach the node), counted against its address (on ipc, its process) and named on
    stderr; the honest subscription, behind the flood on the same connection, is never
    served; the source keeps stepping. The large flood is tests/test_flood_limits.py's."""
    ctx = zmq.Context()
    flooder = ctx.socket(zmq.XSUB)
    flooder.setsockopt(zmq.LINGER, 0)
    flooder.setsockopt(zmq.SNDHWM, 0)   # queue them all here: none is dropped on the way
    with catbus.start(counter_launch(), mode="parallel", duration=30.0, evaluate=False) as run:
        assert run.wait_until_started(30)
        source = node(run.bus, "source")
        flooder.connect(source["endpoint"])
        for index in range(SUBSCRIPTIONS):
            flooder.send(b"\x01flood/%d\x00" % index)
        flooder.send(b"\x01source/count\x00")
        tick = node(run.bus, "source")["tick"]
        wait_until(lambda: node(run.bus, "source")["tick"] > tick + 100, 60,
                   what="the source to keep stepping")
        served = flooder.poll(0)
        run.stop()
        result = run.wait(60)
    flooder.close()
    ctx.term()
    assert result.interrupted and not result.failures
    assert not served, "a connection that flooded was still served"
    refused = result.nodes["source"]["malformed_by"]["subscriptions"]
    # Cut early: not every subscription was read (without the guard each is read and refused
    # once: exactly SUBSCRIPTIONS). The flooder reconnects and sends them all again, and each
    # attempt is cut after a few, so how many are refused in all depends on how long it tried.
    assert floodguard.OUTSIDE_PER_PEER < refused < SUBSCRIPTIONS, refused
    said = capfd.readouterr().err
    assert "node source: cut a connection from pid " in said, said


@pytest.mark.timeout(90)
def test_a_registry_flood_does_not_starve_the_run(bus_sandbox) -> None:
    """16 sockets pour garbage into the registry while a run goes on: the registry still sends
    heartbeats (no node gives it up for silent), still stops the run when asked, and counts the
    garbage it read."""
    ctx = zmq.Context()
    stop = threading.Event()
    sent = [0]

    def flood(address: str) -> None:
        sockets = [ctx.socket(zmq.DEALER) for _ in range(16)]
        for sock in sockets:
            sock.setsockopt(zmq.LINGER, 0)
            sock.connect(address)
        while not stop.is_set():
            for sock in sockets:
                try:
                    sock.send(b"\xc1garbage", zmq.NOBLOCK)
                    sent[0] += 1
                except zmq.Again:
                    pass
        for sock in sockets:
            sock.close()

    with catbus.start(counter_launch(), mode="parallel", duration=60.0, evaluate=False) as run:
        assert run.wait_until_started(30)
        thread = threading.Thread(target=flood, args=(run.bus,), daemon=True)
        thread.start()
        try:
            wait_until(lambda: sent[0] > 200_000, 60, what="200 000 garbage messages sent")
            # The nodes still hear the registry: their ticks keep coming in heartbeats, and
            # none has given up on it (the registry timeout is 10 s).
            tick = node(run.bus, "sink")["tick"]
            wait_until(lambda: node(run.bus, "sink")["tick"] > tick + 100, 60,
                       what="the sink to keep reporting")
            run.stop()
            result = run.wait(60)
        finally:
            stop.set()
            thread.join(10)
    ctx.term()
    assert result.interrupted and not result.failures
    assert 0 < result.registry_malformed <= sent[0]
