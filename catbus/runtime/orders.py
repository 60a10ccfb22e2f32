"""What a node process does with each control message of its registry: one small handler per
message type, looked up in a table (``docs/protocol.md``, "Control messages"). The state they
set is the link's (:class:`catbus.runtime.link.ProcessLink`): when the run starts, the end of
the episode, a retire or takeover of a hot swap, the registry's refusals."""

from __future__ import annotations

import time
from typing import Any, Callable

from catbus.errors import CatbusError
from catbus.runtime.joining import apply_graph
from catbus.wire import messages as msg

#: A :class:`catbus.runtime.link.ProcessLink` (named loosely: the link module uses this one).
Link = Any


class Stopped(Exception):
    """The registry said stop (Ctrl-C, another node failed, or the end of the run)."""


def _start(link: Link, message: msg.Start) -> None:
    link.started = time.monotonic() + message.delay - message.elapsed
    link.start_tick, link.start_elapsed = message.tick, message.elapsed


def _retire(link: Link, message: msg.Retire) -> None:
    link.retire_requested = True


def _takeover(link: Link, message: msg.Takeover) -> None:
    link.takeover = message
    link.started = time.monotonic() - message.elapsed   # the run's own start


def _resume(link: Link, message: msg.Resume) -> None:
    # The swap failed: go on, and do not hand over later for a retire it had asked.
    link.retired = link.retire_requested = False
    if message.reason and link.on_swap_failed is not None and link.started is not None:
        link.on_swap_failed(message.reason)


def _heartbeat(link: Link, message: msg.Heartbeat) -> None:
    link.registry_refused = message.refused


def _rejoined(link: Link, message: msg.Rejoined) -> None:
    # The registry saw this process's link go down and come back (only the registry can tell a
    # link that was down from a long step): the recording says so.
    if link.on_rejoin is not None and link.started is not None:
        link.on_rejoin(message.away)


def _checkpoint(link: Link, message: msg.Checkpoint) -> None:
    # A restarted process of a node with checkpoints: one the registry kept, to go on from.
    if link.checkpoints is not None:
        link.checkpoints.received.append(message)


def _params(link: Link, message: msg.ParamsChange) -> None:
    # A live parameter change (catbus param set): checked now, applied before the next step.
    if link.live_params is None:
        link.send(msg.ParamsApplied(id=message.id, ok=False, message="the node is not set up "
                                                                      "yet; try again once it "
                                                                      "runs"))
    else:
        link.live_params.order(message)


def _end(link: Link, message: msg.End) -> None:
    tick = message.tick
    link.end_tick = tick if link.end_tick is None else min(link.end_tick, tick)


def _stop(link: Link, message: msg.Stop) -> None:
    link.stop_reason = message.reason or None
    raise Stopped()


def _reject(link: Link, message: msg.Reject) -> None:
    raise CatbusError(f"the registry refused node {link.name}: {message.reason}")


HANDLERS: dict[type, Callable[[Link, Any], None]] = {
    msg.Graph: apply_graph, msg.Start: _start, msg.Retire: _retire, msg.Takeover: _takeover,
    msg.Resume: _resume, msg.Heartbeat: _heartbeat, msg.Rejoined: _rejoined, msg.End: _end,
    msg.Stop: _stop, msg.Reject: _reject, msg.Checkpoint: _checkpoint, msg.ParamsChange: _params}


def obey(link: Link, message: msg.Message) -> None:
    """Act on one control message (others -- a node's own kinds sent back by mistake -- are
    ignored)."""
    handler = HANDLERS.get(type(message))
    if handler is not None:
        handler(link, message)


__all__ = ["obey", "Stopped", "HANDLERS"]
