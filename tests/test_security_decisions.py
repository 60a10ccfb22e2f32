"""What security decides, without a socket: the registry's permissions, the ZAP verdicts, what a
refused client is told, refusals said once, and the stand-ins of an unsecured run."""

from __future__ import annotations

import io
from pathlib import Path
from types import SimpleNamespace

import pytest
import zmq
from zmq.utils import z85

from catbus import security
from catbus.security import zap

pytestmark = pytest.mark.unit

LOCAL_KEY, PROBE_KEY, STRANGER = b"L" * 40, b"P" * 40, b"S" * 40
ALLOWED = {LOCAL_KEY: ("local", frozenset({"*"})),
           PROBE_KEY: ("hostb", frozenset({"probe", "robot"}))}


class Frame:
    """A received ``zmq.Frame`` as the registry reads it: bytes and the ZAP User-Id."""

    def __init__(self, data: bytes, user: bytes | None = None) -> None:
        self.bytes, self.user = data, user

    def get(self, name: str) -> str | None:
        assert name == "User-Id"
        return self.user.decode() if self.user is not None else None


def register(name: str, endpoint: str = "tcp://10.0.0.2:7000") -> SimpleNamespace:
    return SimpleNamespace(name=name, endpoint=endpoint)


# -- the registry ----------------------------------------------------------------------------------
def test_a_key_registers_only_the_names_the_allow_list_gives_it() -> None:
    permissions = security.Permissions(ALLOWED)
    assert permissions.sender([Frame(b"id-probe"), Frame(b"data", PROBE_KEY)]) == \
        (b"id-probe", b"data")
    assert permissions.user == PROBE_KEY
    assert permissions.register_problem(register("probe")) is None
    assert permissions.swap_problem("robot") is None
    reason = permissions.register_problem(register("env"))
    assert reason == ("client key PPPPPPPP... ('hostb' in allow.yaml) may register only probe, "
                      "robot, not 'env'; add the name to its entry with `catbus keys generate "
                      "DIR --node env=hostb`, or use that node's key")
    assert permissions.swap_problem("env") == ("client key PPPPPPPP... ('hostb') may not replace "
                                               "'env' (it may register only probe, robot)")
    assert permissions.refused == 2
    permissions.sender([Frame(b"id-local"), Frame(b"data", LOCAL_KEY)])
    assert permissions.register_problem(register("env", "tcp://10.0.0.1:7001")) is None
    # The graph announces the key each endpoint was registered with.
    graph = permissions.graph([{"endpoint": "tcp://10.0.0.2:7000", "standby": None},
                               {"endpoint": "tcp://10.0.0.1:7001",
                                "standby": "tcp://10.0.0.2:7000"},
                               {"endpoint": "tcp://10.0.0.3:7000"}])
    assert [(e["key"], e["standby_key"]) for e in graph] == \
        [(PROBE_KEY.decode(), ""), (LOCAL_KEY.decode(), PROBE_KEY.decode()), ("", "")]


def test_an_unknown_key_may_register_nothing() -> None:
    permissions = security.Permissions(ALLOWED)
    permissions.sender([Frame(b"id"), Frame(b"data", None)])
    assert permissions.user == b""
    assert "('?' in allow.yaml) may register only none, not 'probe'" in \
        permissions.register_problem(register("probe"))
    assert permissions.endpoint_keys == {}


def test_a_connection_keeps_the_key_it_first_spoke_with() -> None:
    permissions = security.Permissions(ALLOWED)
    permissions.sender([Frame(b"id"), Frame(b"data", PROBE_KEY)])
    with pytest.raises(ValueError):
        permissions.sender([Frame(b"id"), Frame(b"data", LOCAL_KEY)])
    with pytest.raises(ValueError):
        permissions.sender([Frame(b"just one frame", PROBE_KEY)])
    assert permissions.refused == 1


def test_an_open_registry_lets_everything_through() -> None:
    guard = security.OpenGuard("ipc:///tmp/x")
    assert not guard.secured and guard.refusals == 0 and guard.auth is security.NO_AUTH
    assert guard.sender([Frame(b"id"), Frame(b"data")]) == (b"id", b"data")
    with pytest.raises(ValueError):
        guard.sender([Frame(b"id")])
    entries = [{"endpoint": "ipc:///tmp/y"}]
    assert guard.register_problem(register("env")) is None and guard.swap_problem("env") is None
    assert guard.graph(entries) is entries and entries == [{"endpoint": "ipc:///tmp/y"}]
    guard.handshake_failed({"event": zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL, "value": 0})
    guard.close()


# -- ZAP -------------------------------------------------------------------------------------------
def zap_request(mechanism: bytes = b"CURVE", *credentials: bytes) -> list[bytes]:
    return [b"1.0", b"req-1", b"catbus", b"10.0.0.9", b"", mechanism, *credentials]


def test_zap_admits_allowed_curve_keys_with_the_key_as_user_id() -> None:
    raw = z85.decode(PROBE_KEY)
    allowed = {PROBE_KEY: "hostb"}
    verdict = zap.judge(zap_request(b"CURVE", raw), allowed, "the registry")
    assert (verdict.status, verdict.text, verdict.user, verdict.said, verdict.counted) == \
        (b"200", b"OK", PROBE_KEY.decode(), (), False)


def test_zap_refuses_strangers_and_other_mechanisms_saying_the_address() -> None:
    stranger = zap.judge(zap_request(b"CURVE", z85.decode(STRANGER)), {PROBE_KEY: "hostb"},
                         "the registry")
    assert (stranger.status, stranger.text, stranger.counted) == \
        (b"400", b"key not on the allow-list", True)
    assert stranger.said == ((("10.0.0.9", STRANGER)),
                             f"catbus: security: the registry refused a connection from "
                             f"10.0.0.9: client key {STRANGER.decode()} is not on the allow-list")
    plain = zap.judge(zap_request(b"NULL"), {}, "node talker's publisher")
    assert (plain.status, plain.text, plain.counted) == (b"400", b"CURVE required", True)
    assert plain.said[1] == ("catbus: security: node talker's publisher refused a connection "
                             "from 10.0.0.9: mechanism NULL, CURVE required")
    assert zap.judge(zap_request(b"CURVE", b"short"), {}, "x").text == b"CURVE required"
    malformed = zap.judge([b"1.0", b"req-1"], {}, "x")
    assert (malformed.status, malformed.text, malformed.said, malformed.counted) == \
        (b"400", b"malformed ZAP request", (), False)
    assert zap.judge([b"1.0"], {}, "x") is None


def test_a_handshake_failed_before_zap_names_the_endpoint() -> None:
    mismatch = {"event": zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL,
                "value": zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH}
    key, line = zap.handshake_refusal("the registry", "tcp://10.0.0.1:7700", mismatch)
    assert key == ("tcp://10.0.0.1:7700", mismatch["event"], mismatch["value"])
    assert line == ("catbus: security: the registry refused a connection on "
                    "tcp://10.0.0.1:7700: a peer without CURVE keys (libzmq does not say the "
                    "peer's address for this kind)")
    other = {"event": zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL, "value": 0x30000000}
    assert "protocol error 0x30000000" in zap.handshake_refusal("r", "e", other)[1]
    dropped = {"event": zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL, "value": 0}
    assert "a peer without this run's CURVE keys" in zap.handshake_refusal("r", "e", dropped)[1]


# -- a refused client ------------------------------------------------------------------------------
KEYS = security.Keys(folder=Path("/keys/clients/hostb"), public=PROBE_KEY, secret=b"s" * 40,
                     bus_public=b"B" * 40)
WHERE = "the run at tcp://10.0.0.1:7700"
AUTH, PROTOCOL, DROPPED = (zmq.EVENT_HANDSHAKE_FAILED_AUTH, zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL,
                           zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)
MISMATCH = zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH


def handshake(keys: security.Keys | None) -> security.Handshake:
    """A Handshake fed events by hand: made for an ipc endpoint, it opens no monitor (no socket
    is touched); the endpoint it names is then the TCP one."""
    client = security.client_for(keys, "tcp://10.0.0.1:7700")
    watched = security.Handshake(SimpleNamespace(), "ipc:///tmp/none", client)
    watched.endpoint = "tcp://10.0.0.1:7700"
    return watched


def test_a_client_without_keys_is_told_the_run_is_secured() -> None:
    assert security.client_for(KEYS, "ipc:///tmp/run") is security.PLAIN
    for event, value in ((PROTOCOL, MISMATCH), (DROPPED, 0)):
        watched = handshake(None)
        watched.on_event(event, value)
        assert watched.problem() == (f"{WHERE} is secured with CURVE keys: give --keys DIR (a "
                                     f"client folder from `catbus keys generate`)")
    watched = handshake(None)
    watched.on_event(AUTH, 0)
    assert watched.problem().startswith(f"{WHERE} refused this host's key: client key ? is not")


def test_a_client_with_keys_is_told_which_key_or_folder_is_wrong() -> None:
    refused = handshake(KEYS)
    refused.on_event(AUTH, 0)
    assert refused.problem() == (
        f"{WHERE} refused this host's key (/keys/clients/hostb): client key PPPPPPPP... is not "
        f"on its allow-list (add it with `catbus keys generate DIR --node NAME=CLIENT` on the "
        f"run's host and copy clients/CLIENT here)")
    with pytest.raises(security.Refused, match="is not on its allow-list") as raised:
        refused.check()
    assert raised.value.exit_code == 1
    open_run = handshake(KEYS)
    open_run.on_event(PROTOCOL, MISMATCH)
    assert open_run.problem() == (f"{WHERE} is not secured, and this command has --keys: drop "
                                  f"--keys, or secure the run (security: {{keys: DIR}})")
    # A wrong bus key looks like a dropped handshake: once may be chance, twice is the answer.
    wrong = handshake(KEYS)
    wrong.on_event(DROPPED, 0)
    assert wrong.problem() is None
    wrong.check()
    wrong.on_event(PROTOCOL, zmq.PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC)
    assert wrong.problem() == (f"the CURVE handshake with {WHERE} failed: either this host's "
                               f"bus.key (/keys/clients/hostb) is not that run's bus key, or the "
                               f"run is not secured (then drop --keys)")
    ok = handshake(KEYS)
    ok.on_event(zmq.EVENT_HANDSHAKE_SUCCEEDED, 0)
    assert ok.ok and ok.problem() is None


# -- a node's data plane without keys --------------------------------------------------------------
def test_an_open_session_connects_plainly_and_ignores_keys() -> None:
    connected = []
    sock = SimpleNamespace(connect=connected.append)
    session = security.OpenSession()
    security.learn(session, [{"endpoint": "tcp://a:1", "key": "k" * 40}])
    security.trust(session, {"security": {"clients": ["k" * 40]}})
    security.connect(sock, "tcp://a:1", session)
    security.close(session)
    assert connected == ["tcp://a:1"] and session.auth.refused == 0


def test_a_keyed_session_connects_only_to_publishers_with_a_key(capsys) -> None:
    allowed = []
    auth = SimpleNamespace(allow=lambda keys, complete=True: allowed.append(keys))
    session = security.Session(KEYS, auth)
    session.learn([{"endpoint": "tcp://a:1", "key": "A" * 40, "standby": "tcp://b:1",
                    "standby_key": "B" * 40}, {"endpoint": "tcp://c:1", "key": ""}])
    assert session.peer_keys == {"tcp://a:1": "A" * 40, "tcp://b:1": "B" * 40}
    session.trust({"security": {"clients": ["C" * 40, "short", 7]}})
    session.trust(None)
    assert allowed == [{b"C" * 40: "client"}, {}]
    connected = []
    sock = SimpleNamespace(connect=connected.append, curve_serverkey=None)
    session.connect(sock, "tcp://a:1")
    assert connected == ["tcp://a:1"] and sock.curve_serverkey == b"A" * 40
    session.connect(sock, "tcp://c:1")
    assert connected == ["tcp://a:1"]
    assert "not connecting to tcp://c:1: the registry gave no key for it" in \
        capsys.readouterr().err


# -- saying refusals once --------------------------------------------------------------------------
def test_refusals_are_said_once_each_and_then_no_more() -> None:
    out = io.StringIO()
    once = security.messages.Once(limit=2, stream=out)
    for key in ("a", "a", "b", "c", "d", "b"):
        once.say(key, f"line {key}")
    assert out.getvalue().splitlines() == [
        "line a", "line b", "catbus: security: 2 refusals said; more are refused without a word"]
