"""Requests to a run's registry from a tool's own socket, and their answers: ``graph?`` (``catbus
node list``, ``topic``...) and ``swap`` (``catbus swap``, ``RunHandle.swap``).

:func:`ask_registry` is one request and its one answer. :class:`RegistryLink` keeps one socket
for several requests in a row (``catbus swap --wait`` polls the graph, then asks for the swap)
and can wait for an answer that takes long: while it works on a ``swap``, the registry sends the
requester a ``hb`` every ``HEARTBEAT_INTERVAL`` (:meth:`RegistryLink.wait_answer`).
"""

from __future__ import annotations

import time
from typing import Any

import zmq

from catbus import security
from catbus.errors import CatbusError
from catbus.wire import messages as msg
from catbus.wire.sockets import dual_stack


class Silent(CatbusError):
    """Nothing came from the registry in time (callers say why in their own words).
    ``gone``: heartbeats had come, then stopped (:meth:`RegistryLink.wait_answer`)."""

    def __init__(self, message: str, gone: bool = False) -> None:
        super().__init__(message)
        self.gone = gone


class RegistryLink:
    """One DEALER socket to the registry at ``address`` (``keys``: a secured run's client keys).
    Answers come in the order of the requests; close it when done."""

    def __init__(self, address: str, keys: Any = None) -> None:
        self.address = address
        self.socket = zmq.Context.instance().socket(zmq.DEALER)
        self.socket.setsockopt(zmq.LINGER, 0)
        dual_stack(self.socket)   # a bus at an IPv6 address, as well as IPv4
        self.handshake = security.dial(self.socket, address, keys)

    def send(self, request: msg.Message, timeout: float = 10.0) -> None:
        """Send ``request``, waiting up to ``timeout`` seconds for a connection: a DEALER whose
        CURVE handshake the registry refused has none and would block in ``send`` for ever.
        Raises the refusal (:class:`catbus.security.Refused`) or :class:`Silent`."""
        data = msg.encode(request)
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.socket.send(data, zmq.NOBLOCK)
                return
            except zmq.Again:
                pass
            self.handshake.check()   # refused: raises, saying why
            if time.monotonic() > deadline:
                raise Silent(f"no connection to the registry at {self.address} within "
                             f"{timeout:g} s")
            self.socket.poll(100, zmq.POLLOUT)

    def receive(self, timeout: float) -> msg.Message | None:
        """The next message within ``timeout`` seconds, decoded (None: not a control message).

        Raises:
            Silent: Nothing came.
            catbus.security.Refused: The run is secured and refused this socket's keys.
        """
        if not security.wait(self.socket, self.handshake, max(0.0, timeout)):
            raise Silent(f"the registry at {self.address} did not answer within {timeout:g} s")
        try:
            return msg.decode(self.socket.recv())
        except msg.MalformedMessage:
            return None

    def ask(self, request: msg.Message, *, timeout: float, silence: str = ""
            ) -> msg.Message | None:
        """Send ``request`` and return its answer (heartbeats are skipped).

        Raises:
            CatbusError: No answer within ``timeout`` seconds (``silence``, if given, says why).
        """
        self.send(request)
        deadline = time.monotonic() + timeout
        while True:
            try:
                answer = self.receive(deadline - time.monotonic())
            except Silent:
                raise CatbusError(silence or f"the registry at {self.address} did not answer "
                                             f"within {timeout:g} s") from None
            if not isinstance(answer, msg.Heartbeat):
                return answer

    def wait_answer(self, *, timeout: float, quiet: float, silence: str, gone: str,
                    late: str = "") -> msg.Message | None:
        """Wait for the answer to a request sent, which the registry keeps alive with
        heartbeats: the first message that is not a ``hb`` (None: not a control message).

        The wait lasts up to ``timeout`` seconds in all. Once a heartbeat has come, ``quiet``
        seconds without one mean the registry is gone; before the first (a registry that sends
        none), only ``timeout`` ends the wait.

        Raises:
            Silent: ``silence``: no heartbeat and no answer within ``timeout``; ``gone``: no
                heartbeat for ``quiet`` seconds after one came; ``late`` (default ``silence``):
                heartbeats came, but no answer within ``timeout``.
        """
        start = time.monotonic()
        deadline = start + timeout
        heard: float | None = None   # when the last heartbeat came
        while True:
            now = time.monotonic()
            until = deadline if heard is None else min(deadline, heard + quiet)
            try:
                answer = self.receive(until - now)
            except Silent:
                if heard is None:
                    raise Silent(silence) from None
                if time.monotonic() - heard >= quiet:
                    raise Silent(gone, gone=True) from None
                raise Silent(late or silence) from None
            if isinstance(answer, msg.Heartbeat):
                heard = time.monotonic()
                continue
            return answer

    def close(self) -> None:
        self.handshake.close()
        self.socket.close()

    def __enter__(self) -> "RegistryLink":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


def ask_registry(address: str, request: msg.Message, *, timeout: float, keys: Any = None,
                 silence: str = "") -> msg.Message | None:
    """Send ``request`` to the registry at ``address`` and return its answer, decoded (None if
    the answer is not a control message).

    Raises:
        CatbusError: No answer within ``timeout`` seconds (``silence``, if given, says why).
        catbus.security.Refused: The run is secured and refused this socket's keys.
    """
    with RegistryLink(address, keys) as link:
        return link.ask(request, timeout=timeout, silence=silence)


__all__ = ["ask_registry", "RegistryLink", "Silent"]
