"""Floods cost the flooder, not the node: what one connection may subscribe, how large a frame
may be, how many elements a payload may decode to (docs/design.md, "Floods and bad input").

The flood test measures the target node's memory (psutil) while another process -- 16 XSUB
sockets, 2 million distinct subscriptions in 10 s -- floods its publishing socket, on ipc and on
TCP: memory is bounded, the node keeps stepping, its honest subscriber loses nothing, and the
flooder is cut, counted and named by its address. No timing is asserted.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from typing import Any

import msgpack
import psutil
import pytest

import catbus
from catbus.client import query_graph
from catbus.runtime import floodguard
from catbus.runtime.floodguard import FloodGuard
from catbus.wire import codec, limits
from tests.conftest import ROOT, wait_until

#: The flooder: SOCKETS XSUB sockets sending TOTAL distinct subscriptions over SECONDS (no
#: faster; slower if it cannot -- being cut and reconnecting costs it too), then keeping its
#: sockets (a libzmq socket reconnects, and sends all it subscribed again) for HOLD seconds.
#: Prints how many it sent.
FLOODER = """
import sys, time, zmq
endpoint, total, sockets, seconds, hold = sys.argv[1], *map(float, sys.argv[2:])
ctx = zmq.Context()
socks = []
for _ in range(int(sockets)):
    s = ctx.socket(zmq.XSUB); s.setsockopt(zmq.LINGER, 0); s.setsockopt(zmq.SNDHWM, 0)
    s.connect(endpoint); socks.append(s)
per = int(total // sockets); start = time.monotonic(); sent = 0
for i in range(per):
    for k, s in enumerate(socks):
        s.send(b"\\x01flood/%d/%d\\x00" % (k, i))
    sent += len(socks)
    now = time.monotonic()
    if now > start + 2 * seconds:
        break
    due = start + seconds * i / per
    if i % 1000 == 0 and now < due:
        time.sleep(due - now)
print("sent", sent, flush=True)
time.sleep(hold)
"""
TOTAL, SOCKETS, SECONDS = 800_000, 16, 4.0
GROWTH_MB = 100


def counter_launch() -> dict:
    return {"name": "flood-limits", "pythonpath": [str(ROOT)],
            "nodes": {"source": {"class": "tests.swap_nodes:Counter"},
                      "sink": {"class": "tests.swap_nodes:Echo",
                               "remap": {"~/in": "source/count"}}}}


def node(bus: str, name: str) -> dict:
    return next(n for n in query_graph(bus, timeout=20)["nodes"] if n["name"] == name)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.timeout(150)
@pytest.mark.parametrize("transport", ["ipc", "tcp"])
def test_a_subscription_flood_costs_the_flooder_not_the_node(
        transport: str, bus_sandbox: Any, capfd: pytest.CaptureFixture) -> None:
    bus = f"tcp://127.0.0.1:{free_port()}" if transport == "tcp" else None
    with catbus.start(counter_launch(), mode="parallel", duration=90.0, evaluate=False,
                      **({"bus": bus} if bus else {})) as run:
        assert run.wait_until_started(30)
        source = node(run.bus, "source")
        target = psutil.Process(source["pid"])
        before = target.memory_info().rss / 2 ** 20
        peak = [before]
        flooder = subprocess.Popen(
            [sys.executable, "-c", FLOODER, source["endpoint"], str(TOTAL), str(SOCKETS),
             str(SECONDS), "2"], stdout=subprocess.PIPE, text=True)
        try:
            while flooder.poll() is None:
                peak[0] = max(peak[0], target.memory_info().rss / 2 ** 20)
                time.sleep(0.05)
        finally:
            if flooder.poll() is None:
                flooder.kill()
            sent = flooder.communicate(timeout=30)[0]
        assert flooder.returncode == 0 and sent.startswith("sent "), "the flooder failed"
        sent = int(sent.split()[1])
        steps = node(run.bus, "source")["steps"]
        # Still stepping once it is over, and a subscriber from elsewhere is served.
        wait_until(lambda: node(run.bus, "source")["steps"] > steps + 50, 30,
                   what="the source to keep stepping")
        if transport == "ipc":   # on TCP the flooder's host (this one) is barred for a while
            late_subscriber_receives(source["endpoint"])
        run.stop()
        result = run.wait(60)
    assert result.interrupted and not result.failures, result.failures
    grown = peak[0] - before
    with capfd.disabled():   # the measurement, for the reader of the log (-s)
        print(f"\n{transport}: source RSS {before:.0f} MB before, peak {peak[0]:.0f} MB "
              f"(+{grown:.0f} MB) under {sent} subscriptions from {SOCKETS} connections (and "
              f"what they sent again as they reconnected); {result.nodes['source']['steps']} "
              f"steps, refused {result.nodes['source']['malformed_by']['subscriptions']}")
    assert sent >= 100_000, f"the flood was not one: {sent} subscriptions sent"
    assert grown <= GROWTH_MB, f"the flooded node grew by {grown:.0f} MB"
    stats = result.nodes["source"]
    assert stats["steps"] > 300 and stats["malformed_by"]["subscriptions"] > 0, stats
    assert result.nodes["sink"]["dropped"] == 0, result.nodes["sink"]
    address = f"pid {flooder.pid}" if transport == "ipc" else "127.0.0.1"
    said = capfd.readouterr().err
    assert f"node source: cut a connection from {address} to its publisher" in said, said


def late_subscriber_receives(endpoint: str) -> None:
    import zmq

    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    try:
        sub.setsockopt(zmq.LINGER, 0)
        sub.setsockopt(zmq.SUBSCRIBE, codec.topic_frame("source/count"))
        sub.connect(endpoint)
        assert sub.poll(20_000), "a subscriber connecting after the flood got nothing"
        topic, _header, _value = codec.decode_message(sub.recv_multipart())
        assert topic == "source/count"
    finally:
        sub.close()
        ctx.term()


# ------------------------------------------------------------------------------------------------
# the guard's rules, without ZeroMQ sockets
# ------------------------------------------------------------------------------------------------
class Subscription:
    """What the guard reads of a subscription message: its connection's descriptor and peer."""

    def __init__(self, fd: int, peer: str = "10.0.0.9") -> None:
        self.fd, self.peer = fd, peer

    def get(self, option: Any) -> Any:
        return self.peer if option == "Peer-Address" else self.fd


@pytest.fixture
def accepted() -> Any:
    """A connected pair of sockets, the first standing for a connection the guard's socket
    accepted (its local address is the guard's endpoint's: the pair's empty name)."""
    mine, theirs = socket.socketpair()
    yield mine, theirs
    mine.close()
    theirs.close()


@pytest.mark.unit
def test_a_connection_within_its_budget_is_left_alone(accepted: Any) -> None:
    mine, _ = accepted
    guard = FloodGuard("n", "ipc://")
    guard.know_topics(3)
    assert all(guard.admit(Subscription(mine.fileno()), outside=False) for _ in range(200))
    assert all(guard.admit(Subscription(mine.fileno()), outside=True)
               for _ in range(floodguard.OUTSIDE_PER_PEER))
    assert guard.cut == 0 and not guard.barred


@pytest.mark.unit
@pytest.mark.parametrize("outside, count", [
    (True, floodguard.OUTSIDE_PER_PEER + 1),          # topics the run does not have
    (False, floodguard.SUBSCRIPTIONS_PER_PEER + 1),   # more than any honest peer sends
])
def test_a_connection_over_its_budget_is_cut_counted_and_barred(
        accepted: Any, outside: bool, count: int, capfd: pytest.CaptureFixture) -> None:
    mine, theirs = accepted
    name = f"n{count}"
    guard = FloodGuard(name, "ipc://")
    verdicts = [guard.admit(Subscription(mine.fileno()), outside) for _ in range(count)]
    assert verdicts == [True] * (count - 1) + [False]
    assert guard.cut == 1 and guard.cut_from == {"10.0.0.9": 1} and "10.0.0.9" in guard.barred
    assert theirs.recv(1) == b"", "the peer's end must see the connection closed"
    said = capfd.readouterr().err
    assert f"node {name}: cut a connection from 10.0.0.9 to its publisher" in said


@pytest.mark.unit
def test_the_budget_grows_with_the_run(accepted: Any) -> None:
    guard = FloodGuard("n", "ipc://")
    guard.know_topics(1000)
    mine, _ = accepted
    assert all(guard.admit(Subscription(mine.fileno()), outside=False) for _ in range(2000))


@pytest.mark.unit
def test_a_descriptor_that_is_not_an_accepted_connection_is_never_shut(accepted: Any) -> None:
    """The guard's socket is elsewhere (another endpoint): whatever the count, nothing of this
    process is shut down -- only connections accepted on the guard's own endpoint are."""
    mine, theirs = accepted
    guard = FloodGuard("n", "ipc:///somewhere/else.sock")
    for _ in range(floodguard.OUTSIDE_PER_PEER + 5):
        guard.admit(Subscription(mine.fileno()), outside=True)
    assert guard.cut == 0
    theirs.setblocking(False)
    with pytest.raises(BlockingIOError):
        theirs.recv(1)


@pytest.mark.unit
def test_a_subscription_without_a_connection_is_not_counted() -> None:
    guard = FloodGuard("n", "ipc://")
    assert all(guard.admit(Subscription(-1), outside=True) for _ in range(100))


@pytest.mark.unit
@pytest.mark.parametrize("address, said", [
    ("127.0.0.1", "127.0.0.1"), ("fd00::1", "fd00::1"), ("localhost:1000:1000:4242", "pid 4242"),
    (":0:0:7", "pid 7"), ("", "?")])
def test_peer_addresses_are_said_as_people_know_them(address: str, said: str) -> None:
    assert floodguard.peer_address(Subscription(3, address)) == said


# -- decoding limits --------------------------------------------------------------------------------
@pytest.mark.unit
@pytest.mark.parametrize("payload", [
    b"\xdd" + (10_000_000).to_bytes(4, "big") + b"\xc0" * 10_000_000,   # 10 MB array of nils
    b"\xdd" + (5_000_000).to_bytes(4, "big") + b"\x90" * 5_000_000,     # 5 M empty arrays
    msgpack.packb([[[]] * 600_000] * 2),                                # nested: 1.2 M in all
    b"\xdf" + (3_000_000).to_bytes(4, "big") + b"\x00\xc0" * 3_000_000,  # a map of 3 M entries
])
def test_a_payload_of_too_many_elements_is_refused_before_it_is_built(payload: bytes) -> None:
    with pytest.raises(codec.DecodeError, match="elements|exceeds"):
        codec.decode_payload(payload)


@pytest.mark.unit
def test_payloads_within_the_limits_decode_as_before() -> None:
    import numpy as np

    value = {"image": np.zeros((1000, 1000)), "blob": b"x" * 5_000_000,
             "points": [[float(i), 0.0] for i in range(100_000)]}
    decoded = codec.decode_payload(*codec.encode_payload(value))
    assert decoded["blob"] == value["blob"] and len(decoded["points"]) == 100_000
    assert decoded["image"].shape == (1000, 1000)
    big = msgpack.packb(list(range(codec.MAX_ELEMENTS - 1)))   # just under, in more bytes
    assert len(codec.decode_payload(big)) == codec.MAX_ELEMENTS - 1
    assert codec.decode_payload(msgpack.packb(list(range(10))), max_elements=50) is not None
    with pytest.raises(codec.DecodeError):
        codec.decode_payload(msgpack.packb(list(range(100))), max_elements=5)


@pytest.mark.unit
def test_limits_come_from_the_environment_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CATBUS_MAX_ELEMENTS", "1_000")
    assert limits.limit_from_environment("CATBUS_MAX_ELEMENTS", 5) == 1000
    monkeypatch.setenv("CATBUS_MAX_ELEMENTS", "0")
    with pytest.raises(ValueError, match="positive"):
        limits.limit_from_environment("CATBUS_MAX_ELEMENTS", 5)
    monkeypatch.delenv("CATBUS_MAX_ELEMENTS")
    assert limits.limit_from_environment("CATBUS_MAX_ELEMENTS", 5) == 5


@pytest.mark.unit
def test_progress_payloads_are_bounded_too() -> None:
    from catbus.runtime.inbox.progress import PeersProgress

    peers = PeersProgress()
    peers.add_progress(b"\x96" + b"\xdd" + (5_000_000).to_bytes(4, "big") + b"\x90" * 5_000_000)
    assert peers.malformed == 1


@pytest.mark.timeout(60)
def test_a_frame_larger_than_the_limit_costs_its_sender_its_link() -> None:
    """``ZMQ_MAXMSGSIZE`` on a data socket: libzmq closes a connection that sends a frame above
    it, before allocating the frame, and does not dial that publisher again (a protocol error);
    the node and its other neighbours' sockets go on."""
    import zmq

    from catbus.runtime.dataplane import DataPlane
    from catbus.runtime.subscribers import receive_from

    ctx = zmq.Context()
    plane = DataPlane(ctx, "me", "inproc://unused-flood-limits")
    publishers = [ctx.socket(zmq.PUB) for _ in range(2)]
    subscribers = []
    try:
        for pub in publishers:
            port = pub.bind_to_random_port("tcp://127.0.0.1")
            sub = plane._make_subscriber()
            sub.setsockopt(zmq.MAXMSGSIZE, 1000)   # this test's limit, not the default
            sub.setsockopt(zmq.SUBSCRIBE, b"")
            sub.connect(f"tcp://127.0.0.1:{port}")
            subscribers.append(sub)

        def both_hear() -> bool:
            for pub in publishers:
                pub.send(b"hello")
            return all(sub.poll(100) for sub in subscribers)

        wait_until(both_hear, 20, interval=0.1, what="both subscriptions")
        for sub in subscribers:
            while receive_from(sub, "x") is not None:
                pass
        publishers[0].send(b"x" * 5000)
        time.sleep(0.5)
        for pub in publishers:
            pub.send(b"small")
        frames = wait_until(lambda: receive_from(subscribers[1], "b"), 20, what="b's frame")
        assert frames == [b"small"] and frames.source == "b"
        time.sleep(0.5)
        assert receive_from(subscribers[0], "a") is None, "the oversized sender's link went on"
    finally:
        for sock in (*subscribers, *publishers):
            sock.close(0)
        plane.close()
        ctx.term()
