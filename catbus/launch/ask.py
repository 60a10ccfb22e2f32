"""One request to a run's registry from a tool's own socket, and its answer: ``graph?`` (``catbus
node list``, ``topic``...) and ``swap`` (``catbus swap``, ``RunHandle.swap``)."""

from __future__ import annotations

from typing import Any

import zmq

from catbus import security
from catbus.errors import CatbusError
from catbus.wire import messages as msg


def ask_registry(address: str, request: msg.Message, *, timeout: float, keys: Any = None,
                 silence: str = "") -> msg.Message | None:
    """Send ``request`` to the registry at ``address`` and return its answer, decoded (None if
    the answer is not a control message).

    Raises:
        CatbusError: No answer within ``timeout`` seconds (``silence``, if given, says why).
        catbus.security.Refused: The run is secured and refused this socket's keys.
    """
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    handshake = security.dial(sock, address, keys)   # keys: a secured run's client keys
    try:
        sock.send(msg.encode(request))
        if not security.wait(sock, handshake, timeout):   # a refused handshake: Refused
            raise CatbusError(silence or f"the registry at {address} did not answer within "
                                         f"{timeout:g} s")
        data = sock.recv()
    finally:
        handshake.close()
        sock.close()
    try:
        return msg.decode(data)
    except msg.MalformedMessage:
        return None


__all__ = ["ask_registry"]
