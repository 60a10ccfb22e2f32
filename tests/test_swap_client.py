"""The client's side of a swap (``catbus swap``, :func:`catbus.client.swap.request_swap`)
against a fake registry: a real ROUTER socket in a thread of the test, answering as the
contract says (``graph?`` -> ``graph``; ``swap`` -> ``hb`` every HEARTBEAT_INTERVAL, then one
``swap-reply``), or not: heartbeats then silence (its launcher died), no heartbeat at all (an
older registry), a run that has not started yet. And the command line's parsing (the class
after the options), which opens no socket.

Timings are never pass criteria: a test passes if the client returns (or raises the right
error) before the test's own timeout, which is well under the client's ``--timeout`` where that
matters.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

import pytest
import zmq

from catbus.cli.main import main, parse_args
from catbus.errors import CatbusError, RunTimeout
from catbus.client.swap import (SWAP_SILENCE, RunGone, SwapFailed, ask_graph,
                                      request_swap)
from catbus.wire import messages as msg
from catbus.wire.protocol import HEARTBEAT_INTERVAL

#: What a registry answers a swap asked for before its run started (catbus.control.orders).
NOT_STARTED = "the run has not started yet; swap once it runs"


class FakeRegistry:
    """A ROUTER bound at ``ipc://FOLDER/registry``, served by a thread: ``graph?`` is answered
    (``started``: a bool or a callable), a ``swap`` of a run not started is refused, any other
    ``swap`` gets ``beats`` heartbeats, one every HEARTBEAT_INTERVAL, and then, by ``swap``:
    ``reply`` a ``swap-reply`` (ok); ``die`` nothing ever again (the socket closes, as when the
    launcher is killed); ``mute`` neither heartbeats nor an answer (an older registry whose swap
    takes long)."""

    def __init__(self, folder: Path, *, swap: str = "reply", beats: int = 0,
                 started: bool | Callable[[], bool] = True) -> None:
        self.address = f"ipc://{folder}/registry"
        self.swap, self.beats, self._started = swap, beats, started
        self.graph_answers: list[bool] = []          # `started` of every graph sent
        self.swaps: list[tuple[msg.SwapRequest, bool]] = []   # each request, started then
        self.beats_sent = 0
        self._ctx = zmq.Context()
        self._sock = self._ctx.socket(zmq.ROUTER)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.bind(self.address)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="fake-registry", daemon=True)
        self._thread.start()

    def started(self) -> bool:
        return bool(self._started() if callable(self._started) else self._started)

    def _send(self, identity: bytes, message: msg.Message) -> None:
        self._sock.send_multipart([identity, msg.encode(message)])

    def _serve(self) -> None:
        pending: list | None = None   # [identity, node, heartbeats left, when the next is due]
        try:
            while not self._stop.is_set():
                if self._sock.poll(20):
                    identity, data = self._sock.recv_multipart()
                    request = msg.decode(data)
                    started = self.started()
                    if isinstance(request, msg.GraphQuery):
                        self.graph_answers.append(started)
                        self._send(identity, msg.Graph(nodes=[], mode="stepped",
                                                       started=started, run="fake"))
                    elif isinstance(request, msg.SwapRequest):
                        self.swaps.append((request, started))
                        if not started:
                            self._send(identity, msg.SwapReply(ok=False, message=NOT_STARTED))
                        elif self.swap != "mute":
                            pending = [identity, request.node, self.beats, time.monotonic()]
                if pending is not None and time.monotonic() >= pending[3]:
                    if pending[2] > 0:
                        self._send(pending[0], msg.Heartbeat())
                        self.beats_sent += 1
                        pending[2] -= 1
                        pending[3] += HEARTBEAT_INTERVAL
                    elif self.swap == "reply":
                        self._send(pending[0], msg.SwapReply(
                            ok=True, message=f"{pending[1]} swapped at tick 5 (state fresh)",
                            tick=5, state="fresh"))
                        pending = None
                    else:   # die: the launcher is gone, and its socket with it
                        return
        finally:
            self._sock.close()
            self._ctx.term()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)


@pytest.fixture
def fake_registry():
    """``fake_registry(**options)``: a :class:`FakeRegistry` in a short private folder; every
    one is stopped and the folder removed after the test."""
    folder = Path(tempfile.mkdtemp(prefix="cbsw", dir="/tmp"))
    fakes: list[FakeRegistry] = []

    def make(**options) -> FakeRegistry:
        fakes.append(FakeRegistry(folder, **options))
        return fakes[-1]

    make.folder = folder
    try:
        yield make
    finally:
        for fake in fakes:
            fake.close()
        shutil.rmtree(folder, ignore_errors=True)


# -- the heartbeat contract ------------------------------------------------------------------------
@pytest.mark.timeout(30)
def test_heartbeats_keep_the_client_waiting_until_the_reply(fake_registry):
    """Heartbeats for longer than the silence rule's window, then the reply: the swap is done.
    No class given: the request carries an empty one (the registry takes the launch file's)."""
    beats = int(SWAP_SILENCE / HEARTBEAT_INTERVAL) + 2
    fake = fake_registry(swap="reply", beats=beats)
    reply = request_swap(fake.address, "source", params={"offset": 7}, timeout=25)
    assert reply.ok and reply.tick == 5 and reply.state == "fresh"
    assert fake.beats_sent == beats
    [(request, started)] = fake.swaps
    assert started and request.node == "source" and request.cls == ""
    assert request.params == {"offset": 7}


@pytest.mark.timeout(25)
def test_heartbeats_then_silence_is_a_run_gone(fake_registry, capsys):
    """The launcher dies during the swap: a few heartbeat intervals of silence and the command
    says so in one line, exit 2 -- long before its own 60 s timeout."""
    fake = fake_registry(swap="die", beats=2)
    code = main(["swap", "source", "--bus", fake.address])
    err = capsys.readouterr().err
    assert code == 2, err
    assert (f"catbus: the run at {fake.address} stopped answering during the swap of source "
            f"(its launcher is gone?)") in err.splitlines()
    assert "Traceback" not in err
    assert fake.beats_sent == 2


@pytest.mark.timeout(25)
def test_heartbeats_then_silence_raises_run_gone_from_the_api(fake_registry):
    fake = fake_registry(swap="die", beats=3)
    with pytest.raises(RunGone, match="stopped answering during the swap of robot"):
        request_swap(fake.address, "robot", "pkg.mod:Other", timeout=60)
    [(request, _)] = fake.swaps
    assert request.cls == "pkg.mod:Other"


@pytest.mark.timeout(30)
def test_no_heartbeat_ever_waits_for_the_timeout(fake_registry):
    """An older registry sends no heartbeats: its silence is no sign of death, the client waits
    its whole timeout (longer than the silence rule's window) and says so."""
    fake = fake_registry(swap="mute")
    timeout = SWAP_SILENCE + 1.5
    with pytest.raises(CatbusError, match=r"no answer from the run at .* within") as raised:
        request_swap(fake.address, "source", timeout=timeout)
    assert not isinstance(raised.value, RunGone)   # the timeout ended it, not the silence rule
    assert len(fake.swaps) == 1 and fake.beats_sent == 0


# -- the run: its name, absent, not started --------------------------------------------------------
@pytest.mark.timeout(30)
def test_the_command_names_the_run_and_mode_from_the_registry(fake_registry, capsys):
    fake = fake_registry(swap="reply", beats=1)
    assert main(["swap", "source", "--bus", fake.address]) == 0
    out, err = capsys.readouterr()
    assert f"catbus: run fake (mode stepped) on {fake.address}" in err.splitlines()
    assert "swapped: source swapped at tick 5 (state fresh)" in out
    assert fake.swaps[0][0].cls == ""


@pytest.mark.timeout(20)
def test_no_run_at_the_address_is_one_line_within_seconds(fake_registry, capsys):
    address = f"ipc://{fake_registry.folder}/nothing"
    assert main(["swap", "source", "--bus", address, "--timeout", "60"]) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [f"catbus: no catbus run answers at {address} (no answer within "
                                f"3 s; is the run still going?)"]
    with pytest.raises(RunGone):
        ask_graph(address, timeout=0.5)


@pytest.mark.timeout(30)
def test_a_run_not_started_is_refused_without_wait(fake_registry, capsys):
    fake = fake_registry(started=False)
    assert main(["swap", "source", "--bus", fake.address]) == 1
    err = capsys.readouterr().err
    assert f"catbus: {NOT_STARTED} (or use --wait)" in err.splitlines()
    with pytest.raises(SwapFailed) as refused:
        request_swap(fake.address, "source", timeout=10)
    assert refused.value.not_started and str(refused.value) == NOT_STARTED


@pytest.mark.timeout(40)
def test_wait_waits_for_the_run_to_start_then_swaps(fake_registry, capsys):
    """--wait: the graph says not started, then started; only then is the swap asked for (the
    class given after the options)."""
    starts = time.monotonic() + 1.0
    fake = fake_registry(swap="reply", beats=2, started=lambda: time.monotonic() >= starts)
    code = main(["swap", "source", "--bus", fake.address, "--wait", "--timeout", "25",
                 "tests.swap_nodes:Other"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "swapped: source swapped" in out
    assert "waiting for it" in err
    assert fake.graph_answers[0] is False and fake.graph_answers[-1] is True
    assert [(r.cls, started) for r, started in fake.swaps] == [("tests.swap_nodes:Other", True)]


@pytest.mark.timeout(30)
def test_wait_gives_up_at_the_timeout_if_the_run_never_starts(fake_registry):
    fake = fake_registry(started=False)
    with pytest.raises(RunTimeout, match="did not start within 1.5 s"):
        request_swap(fake.address, "source", timeout=1.5, wait=True)
    assert fake.swaps == []


# -- the command line ------------------------------------------------------------------------------
@pytest.mark.unit
@pytest.mark.parametrize("argv", [
    ["swap", "robot", "--run", "X", "mypkg.agents:Other"],
    ["swap", "robot", "mypkg.agents:Other", "--run", "X"],
    ["swap", "--run", "X", "robot", "mypkg.agents:Other"],
    ["swap", "robot", "--param", "a=1", "--run", "X", "--wait", "mypkg.agents:Other"],
])
def test_the_class_is_taken_wherever_it_is_among_the_options(argv):
    args = parse_args(argv)
    assert (args.name, args.cls, args.run) == ("robot", "mypkg.agents:Other", "X")


@pytest.mark.unit
def test_no_class_is_an_empty_one_and_wait_is_off_by_default():
    args = parse_args(["swap", "robot", "--run", "X"])
    assert (args.name, args.cls, args.wait, args.timeout) == ("robot", "", False, 60.0)
    assert parse_args(["swap", "robot", "--wait"]).wait is True


@pytest.mark.unit
@pytest.mark.parametrize("argv, why", [
    (["swap", "robot", "a:A", "--run", "X", "b:B"], "one replacement class at most"),
    (["swap", "robot", "--run", "X", "a:A", "b:B"], "one replacement class at most"),
    (["swap", "robot", "--bogus"], "unrecognized arguments: --bogus"),
    (["run", "list", "extra"], "unrecognized arguments: extra"),
])
def test_what_is_left_over_is_still_refused(argv, why, capsys):
    with pytest.raises(SystemExit) as exited:
        parse_args(argv)
    assert exited.value.code == 2
    assert why in capsys.readouterr().err


@pytest.mark.unit
def test_swap_help_mentions_wait_and_the_class_after_options(capsys):
    with pytest.raises(SystemExit) as exited:
        parse_args(["swap", "--help"])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    assert "--wait" in text and "NAME [module:Class]" in text
    assert "after the options" in text
