"""The client side of CURVE: a node's or a tool's DEALER and SUB sockets dialing a run.

:func:`dial` connects a socket and returns its :class:`Handshake`, which reads the socket's
monitor and says at once why a run refused it (rather than a silent wait for an answer that will
not come). What a client sets on its socket, and what a failed handshake means, depends on
whether it has keys: :class:`CurveClient` with keys, :class:`PlainClient` without.
"""

from __future__ import annotations

import time
import uuid

import zmq
from zmq.utils.monitor import parse_monitor_message

from catbus.errors import CatbusError
from catbus.security.keys import BUS_PUBLIC, Keys, for_bus, short

_MECHANISM_MISMATCH = getattr(zmq, "PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH", 0x11000003)


class Refused(CatbusError):
    """A handshake with a run was refused (key not allowed, keys missing, wrong bus key)."""

    exit_code = 1


class CurveClient:
    """A client socket with this host's keys: a CURVE client of the run's bus key (or of a
    publisher's key)."""

    def __init__(self, keys: Keys) -> None:
        self.keys = keys

    def secure(self, sock: zmq.Socket, server_key: bytes | None = None) -> None:
        """Make ``sock`` a CURVE client of ``server_key`` (the bus key by default)."""
        set_client_keys(sock, self.keys, server_key or self.keys.bus_public)

    def refused_key(self, where: str) -> str:
        """What to say when the run's ZAP handler refused this host's key."""
        return (f"{where} refused this host's key ({self.keys.folder}): client key "
                f"{short(self.keys.public)} is not on its allow-list (add it with `catbus keys "
                f"generate DIR --node NAME=CLIENT` on the run's host and copy clients/CLIENT "
                f"here)")

    def failed(self, where: str, event: int, value: int, failures: int) -> str | None:
        """Why the run refused a handshake that failed before ZAP (``failures`` so far), or None
        while one failure may still be chance."""
        if event == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL and value == _MECHANISM_MISMATCH:
            return (f"{where} is not secured, and this command has --keys: drop --keys, or "
                    f"secure the run (security: {{keys: DIR}})")
        if failures >= 2:   # libzmq says no more than this for a wrong server key or an open run
            return (f"the CURVE handshake with {where} failed: either this host's {BUS_PUBLIC} "
                    f"({self.keys.folder}) is not that run's bus key, or the run is not secured "
                    f"(then drop --keys)")
        return None


class PlainClient:
    """A client socket without keys: nothing to set; any failed handshake means the run is
    secured (a plain connection fails against a CURVE server as a mechanism mismatch or, as
    often, as a dropped handshake)."""

    keys = None

    def secure(self, sock: zmq.Socket, server_key: bytes | None = None) -> None:
        """Nothing to set: the socket speaks plain ZMTP."""

    def refused_key(self, where: str) -> str:
        """What to say when a ZAP handler refused this socket."""
        return (f"{where} refused this host's key: client key ? is not on its allow-list (add "
                f"it with `catbus keys generate DIR --node NAME=CLIENT` on the run's host and "
                f"copy clients/CLIENT here)")

    def failed(self, where: str, event: int, value: int, failures: int) -> str:
        """Why the run refused the handshake: it is secured and this socket has no keys."""
        return (f"{where} is secured with CURVE keys: give --keys DIR (a client folder from "
                f"`catbus keys generate`)")


#: The one :class:`PlainClient` (it holds no state).
PLAIN = PlainClient()


def client_for(keys: Keys | None, endpoint: str) -> CurveClient | PlainClient:
    """How a client socket to ``endpoint`` is secured: with ``keys`` over TCP, else plain."""
    keys = for_bus(keys, endpoint)
    return CurveClient(keys) if keys is not None else PLAIN


def set_client_keys(sock: zmq.Socket, keys: Keys, server_key: bytes | None = None) -> None:
    """This host's key pair on client socket ``sock``, and ``server_key`` if given (a SUB takes
    each publisher's key at its own connect)."""
    sock.curve_publickey = keys.public
    sock.curve_secretkey = keys.secret
    if server_key is not None:
        sock.curve_serverkey = server_key


class Handshake:
    """Watches the handshakes of one client socket: :meth:`problem` says why the run refused
    it (from the socket's monitor events), else None. Close it before the socket."""

    def __init__(self, sock: zmq.Socket, endpoint: str,
                 client: CurveClient | PlainClient = PLAIN) -> None:
        self.sock, self.endpoint, self.client = sock, endpoint, client
        #: This host's keys, None without.
        self.keys = client.keys
        self.ok = False
        #: Failed handshakes so far.
        self.failures = 0
        self._problem: str | None = None
        self._pair: zmq.Socket | None = None
        if endpoint.startswith("tcp://"):
            address = f"inproc://catbus-monitor-{uuid.uuid4().hex}"
            sock.monitor(address, zmq.EVENT_HANDSHAKE_SUCCEEDED |
                         zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL |
                         zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_HANDSHAKE_FAILED_AUTH)
            self._pair = sock.context.socket(zmq.PAIR)
            self._pair.linger = 0
            self._pair.connect(address)

    def problem(self) -> str | None:
        """Why the run refused this socket, once its monitor said so; None so far."""
        pair = self._pair
        while pair is not None and self._problem is None and not self.ok:
            try:
                event = parse_monitor_message(pair.recv_multipart(zmq.NOBLOCK))
            except (zmq.ZMQError, ValueError):   # zmq.Again: nothing new
                break
            self.on_event(event["event"], event["value"])
            if self._problem is not None:
                # No connection will come: a send must fail (zmq.Again), not block for ever
                # (a node's last messages on its way out).
                self.sock.setsockopt(zmq.SNDTIMEO, 0)
        return self._problem

    def on_event(self, event: int, value: int) -> None:
        """Take one monitor event of the socket into account."""
        where = f"the run at {self.endpoint}"
        if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
            self.ok = True
        elif event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
            self._problem = self.client.refused_key(where)
        else:
            self.failures += 1
            self._problem = self.client.failed(where, event, value, self.failures)

    def check(self) -> None:
        """Raise :class:`Refused` if the handshake was refused."""
        problem = self.problem()
        if problem is not None:
            raise Refused(problem)

    def close(self) -> None:
        """Stop watching (before the socket closes: its monitor goes with it)."""
        if self._pair is not None:
            try:
                self.sock.disable_monitor()
            except zmq.ZMQError:
                pass
            self._pair.close(0)
            self._pair = None


def dial(sock: zmq.Socket, endpoint: str, keys: Keys | None,
         server_key: bytes | None = None) -> Handshake:
    """Connect client socket ``sock`` (DEALER or SUB) to ``endpoint``: with CURVE when the run
    is keyed (the registry's bus key, or ``server_key``), watched either way over TCP."""
    client = client_for(keys, endpoint)
    client.secure(sock, server_key)
    handshake = Handshake(sock, endpoint, client)
    sock.connect(endpoint)
    return handshake


def wait(sock: zmq.Socket, handshake: Handshake, timeout: float) -> bool:
    """Poll ``sock`` for up to ``timeout`` seconds; raise :class:`Refused` as soon as its
    handshake is refused. True if a message is waiting."""
    end = time.monotonic() + timeout
    while True:
        if sock.poll(min(100, max(0, int((end - time.monotonic()) * 1000)))):
            return True
        handshake.check()
        if time.monotonic() >= end:
            return False


__all__ = ["Refused", "Handshake", "CurveClient", "PlainClient", "PLAIN", "client_for", "dial",
           "wait", "set_client_keys"]
