"""The join probe: a registry of the kit's own that reads the node's ``register`` and refuses it.

What the node declares (its inputs, outputs and period) is what the kit's runs are built from,
so this comes first. Refusing it also shows whether the node exits with code 1 on ``reject``,
as it must. The probe publishes a ``run.json`` like a launcher does, so a node that finds its
run there (rather than by ``{bus}``) finds this one.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import zmq

from catbus.conformance.foreign import Foreign
from catbus.supervise.rundir import RunDir
from catbus.wire import messages as msg
from catbus.wire.protocol import TCP_ADDRESS

#: The reason the probe refuses the node with (the node prints it).
REJECT_REASON = ("catbus conformance refuses this registration on purpose, to see the node "
                 "exit with code 1")
#: Seconds a refused node gets to exit.
EXIT_WAIT = 10.0


@dataclass
class JoinRecord:
    """What the probe saw: the ``register`` (None if none came, or it was not one), what is
    wrong with it, and how the node took the refusal."""

    register: msg.Register | None = None
    problem: str | None = None
    exit_code: int | None = None
    stderr: str = ""


def endpoint_problem(endpoint: str) -> str | None:
    """Why nothing listens at a registered data endpoint, or None: the XPUB must be bound
    before the node registers (peers connect to it as soon as the graph names it)."""
    if endpoint.startswith("ipc://"):
        path = Path(endpoint[len("ipc://"):])
        if not path.exists():
            return f"nothing is bound at {endpoint} (bind the XPUB before registering)"
        return None
    match = TCP_ADDRESS.match(endpoint)
    if match is None:
        return (f"endpoint {endpoint!r} is not ipc://PATH or tcp://HOST:PORT (register the "
                "address ZeroMQ reports after binding, with its real port)")
    host = match["host"].strip("[]")
    try:
        with socket.create_connection((host, int(match["port"])), timeout=2.0):
            return None
    except OSError as exc:
        return f"nothing accepts connections at {endpoint} ({exc.strerror or exc})"


def probe(command: Sequence[str], name: str, folder: Path, timeout: float) -> JoinRecord:
    """Start the node against the kit's registry, read its ``register``, refuse it and see it
    exit."""
    record = JoinRecord()
    rundir = RunDir.create("conformance")
    ctx = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    router.linger = 0
    foreign = None
    try:
        bus = rundir.endpoint("registry")
        router.bind(bus)
        rundir.publish(bus, "conformance", mode="stepped")
        foreign = Foreign.start(command, bus, name, folder, "join")
        identity = _read_register(router, record, foreign, timeout)
        if identity is not None:
            router.send_multipart([identity, msg.encode(msg.Reject(reason=REJECT_REASON))])
            record.exit_code = foreign.wait(EXIT_WAIT)
        else:
            record.exit_code = foreign.poll()
    finally:
        if foreign is not None:
            foreign.kill()
            record.stderr = foreign.stderr_tail()
        router.close()
        ctx.term()
        rundir.remove()
    return record


def _read_register(router: zmq.Socket, record: JoinRecord, foreign: Foreign,
                   timeout: float) -> bytes | None:
    """Wait for the node's first control message that is not a ``graph?``; note what it is.
    Returns the sender's routing id (to refuse it), or None if nothing came."""
    until = time.monotonic() + timeout
    while time.monotonic() < until:
        if not router.poll(50):
            if foreign.poll() is not None:
                record.problem = (f"the node exited (code {foreign.poll()}) without "
                                  "registering")
                return None
            continue
        frames = router.recv_multipart()
        identity, data = frames[0], frames[-1]
        try:
            message = msg.decode(data)
        except msg.MalformedMessage as exc:
            record.problem = f"its first control message is malformed: {exc}"
            return identity
        if isinstance(message, msg.GraphQuery):
            continue
        if not isinstance(message, msg.Register):
            record.problem = f"its first control message is {message.OP!r}, not register"
            return identity
        record.register = message
        record.problem = msg.register_problem(message) or endpoint_problem(message.endpoint)
        return identity
    record.problem = (f"no register within {timeout:g} s (it must connect a DEALER to {{bus}} "
                      "and send register)")
    return None


__all__ = ["JoinRecord", "probe", "endpoint_problem", "REJECT_REASON", "EXIT_WAIT"]
