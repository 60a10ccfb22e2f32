"""The server side of CURVE: server sockets and the ZAP handler that admits clients.

ZAP is per ZeroMQ context, so each process that serves (the launcher's registry, every node's
publisher) has one :class:`Authenticator`, got with :func:`authenticator`. It admits CURVE
clients whose public key is on the allow-list and answers with that key as the ZAP User-Id, so
that the registry knows who sent each message. Handshakes that fail before ZAP (no keys, another
run's bus key) are reported by libzmq only to the server socket's monitor; the authenticator
watches those too. :data:`NO_AUTH` is its stand-in on an unsecured socket: it admits nothing
because it is asked nothing.
"""

from __future__ import annotations

import threading
import uuid
import weakref
from dataclasses import dataclass
from typing import Any, Mapping

import zmq
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils import z85
from zmq.utils.monitor import parse_monitor_message

from catbus.security.messages import say_once

#: Seconds a node's ZAP handler holds a handshake while it waits for the allow-list (the
#: registry's welcome), before it decides on what it has.
ALLOW_LIST_WAIT = 10
ZAP_DOMAIN = b"catbus"

_PROTOCOL_ERRORS = {
    getattr(zmq, "PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH", 0x11000003):
        "a peer without CURVE keys",
    getattr(zmq, "PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC", 0x11000001):
        "a CURVE handshake that does not decrypt (the peer has another bus.key, or a stale "
        "key for this node)",
}


def serve(sock: zmq.Socket, public: bytes, secret: bytes) -> None:
    """Make ``sock`` a CURVE server with this key pair, admitting only what the context's ZAP
    handler admits (call before it binds)."""
    sock.curve_server = True
    sock.curve_publickey = public
    sock.curve_secretkey = secret
    sock.zap_domain = ZAP_DOMAIN
    sock.setsockopt(zmq.ZAP_ENFORCE_DOMAIN, 1)   # no ZAP handler: nobody gets in


@dataclass(frozen=True)
class Verdict:
    """The answer to one ZAP request, and the line to say once when it is a refusal."""

    status: bytes            # ZAP status code: b"200" admitted, b"400" refused
    text: bytes
    user: str = ""           # an admitted connection's User-Id: its public key (Z85)
    said: tuple = ()         # (key, line) for :func:`say_once`; empty when nothing is said
    counted: bool = False    # a refusal of a peer (not of a malformed request)


def judge(msg: list[bytes], allowed: Mapping[bytes, str], label: str) -> Verdict | None:
    """The verdict on ZAP request ``msg`` (its frames after the delimiter's) for the handler
    named ``label``: CURVE only, keys of ``allowed`` only. None for a request too short to be
    answered (no request id)."""
    if len(msg) < 6:
        return Verdict(b"400", b"malformed ZAP request") if len(msg) >= 2 else None
    address, mechanism = msg[3].decode(errors="replace"), msg[5]
    if mechanism != b"CURVE" or len(msg) != 7 or len(msg[6]) != 32:
        return Verdict(b"400", b"CURVE required", counted=True, said=(
            (address, mechanism), f"catbus: security: {label} refused a connection from "
                                  f"{address}: mechanism {mechanism.decode(errors='replace')}, "
                                  f"CURVE required"))
    key = z85.encode(msg[6])
    if key not in allowed:
        return Verdict(b"400", b"key not on the allow-list", counted=True, said=(
            (address, key), f"catbus: security: {label} refused a connection from {address}: "
                            f"client key {key.decode()} is not on the allow-list"))
    return Verdict(b"200", b"OK", key.decode())


def handshake_refusal(label: str, where: str, event: Mapping[str, Any]) -> tuple[tuple, str]:
    """``(key, line)`` saying a handshake failed on server endpoint ``where`` before ZAP (a
    monitor event: ``HANDSHAKE_FAILED_PROTOCOL`` or ``_NO_DETAIL``)."""
    if event["event"] == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL:
        why = _PROTOCOL_ERRORS.get(event["value"], f"protocol error {event['value']:#x}")
    else:
        why = "a peer without this run's CURVE keys (its handshake failed)"
    return ((where, event["event"], event["value"]),
            f"catbus: security: {label} refused a connection on {where}: "
            f"{why} (libzmq does not say the peer's address for this kind)")


class Authenticator(ThreadAuthenticator):
    """The ZAP handler of one ZeroMQ context: CURVE only, keys of :attr:`allowed` only; the
    User-Id of an admitted connection is its public key (Z85). Also watches the monitors of the
    context's server sockets for handshakes that never reached ZAP (no keys, a wrong bus key),
    since libzmq reports those only there. One per context: :func:`authenticator`."""

    def __init__(self, context: zmq.Context, label: str) -> None:
        super().__init__(context)
        self.label = label
        #: public key (z85 bytes) -> client name
        self.allowed: dict[bytes, str] = {}
        self.refused = 0
        self._monitors: list[tuple[str, str]] = []   # (inproc address, endpoint label)
        self._watch_stop = threading.Event()
        self._watcher: threading.Thread | None = None
        #: Set once the allow-list is known (a node learns it from the registry's welcome; a
        #: peer's handshake that comes first waits for it rather than being refused).
        self.ready = threading.Event()

    def allow(self, keys: Mapping[bytes, str], complete: bool = True) -> None:
        """Admit ``keys`` too; ``complete``: the allow-list is known, stop holding handshakes."""
        self.allowed = {**self.allowed, **keys}
        if complete:
            self.ready.set()

    async def handle_zap_message(self, msg: list[bytes]) -> None:
        import asyncio

        for _ in range(ALLOW_LIST_WAIT * 20):
            if self.ready.is_set() or self._watch_stop.is_set():   # stop(): no more waiting
                break
            await asyncio.sleep(0.05)
        verdict = judge(msg, self.allowed, self.label)
        if verdict is None:
            return
        if verdict.counted:
            self.refused += 1
        if verdict.said:
            say_once(*verdict.said)
        self._send_zap_reply(msg[1], verdict.status, verdict.text, verdict.user)

    def watch(self, sock: zmq.Socket, endpoint: str) -> None:
        """Report failed handshakes on server socket ``sock`` (call before it binds)."""
        address = f"inproc://catbus-monitor-{uuid.uuid4().hex}"
        sock.monitor(address, zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL |
                     zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)
        self._monitors.append((address, endpoint))
        if self._watcher is None:
            self._watcher = threading.Thread(target=self._watch, name="catbus-security-watch",
                                             daemon=True)
            self._watcher.start()

    def _watch(self) -> None:
        sockets: dict[zmq.Socket, str] = {}
        poller = zmq.Poller()
        try:
            while not self._watch_stop.is_set():
                while len(sockets) < len(self._monitors):
                    address, endpoint = self._monitors[len(sockets)]
                    pair = self.context.socket(zmq.PAIR)
                    pair.linger = 0
                    pair.connect(address)
                    sockets[pair] = endpoint
                    poller.register(pair, zmq.POLLIN)
                for pair, _ in poller.poll(100):
                    try:
                        event = parse_monitor_message(pair.recv_multipart(zmq.NOBLOCK))
                    except (zmq.ZMQError, ValueError):
                        continue
                    if event["event"] == zmq.EVENT_MONITOR_STOPPED:
                        continue
                    self.handshake_failed(sockets[pair], event)
        except zmq.ZMQError:   # the context was terminated: the process is ending
            pass
        finally:
            for pair in sockets:
                try:
                    pair.close(0)
                except zmq.ZMQError:
                    pass

    def handshake_failed(self, where: str, event: dict) -> None:
        """Count and say (once) a failed handshake on server endpoint ``where`` (a monitor
        event: ``HANDSHAKE_FAILED_PROTOCOL`` or ``_NO_DETAIL``). Called by :meth:`watch`'s
        thread, or by the owner of a socket whose monitor it reads itself (the registry's,
        :class:`catbus.supervise.linkwatch.LinkWatch`: a socket has one monitor)."""
        self.refused += 1
        say_once(*handshake_refusal(self.label, where, event))

    def stop(self) -> None:
        self._watch_stop.set()
        if self._watcher is not None and self._watcher is not threading.current_thread():
            self._watcher.join(timeout=2)
        super().stop()


class NoAuthenticator:
    """The ZAP handler of an unsecured socket: nothing to admit, watch or stop, nothing
    refused. Lets the code that serves a socket treat both kinds alike."""

    label = ""
    refused = 0
    allowed: Mapping[bytes, str] = {}

    def allow(self, keys: Mapping[bytes, str], complete: bool = True) -> None:
        """Nothing to admit: an unsecured socket admits anyone."""

    def watch(self, sock: zmq.Socket, endpoint: str) -> None:
        """Nothing to watch: an unsecured socket refuses no handshake."""

    def handshake_failed(self, where: str, event: dict) -> None:
        """Not a refusal: an unsecured socket has no keys to check."""

    def stop(self) -> None:
        """Nothing runs."""


#: The one :class:`NoAuthenticator` (it holds no state).
NO_AUTH = NoAuthenticator()

_authenticators: "weakref.WeakKeyDictionary[zmq.Context, Authenticator]" = \
    weakref.WeakKeyDictionary()
_auth_lock = threading.Lock()


def authenticator(ctx: zmq.Context, label: str) -> Authenticator:
    """The context's ZAP handler, started on first use (ZAP is per context)."""
    with _auth_lock:
        auth = _authenticators.get(ctx)
        if auth is None or not auth.is_alive():
            auth = _authenticators[ctx] = Authenticator(ctx, label)
            auth.start()
        return auth


__all__ = ["Authenticator", "NoAuthenticator", "NO_AUTH", "authenticator", "serve", "judge",
           "Verdict", "handshake_refusal", "ZAP_DOMAIN", "ALLOW_LIST_WAIT"]
