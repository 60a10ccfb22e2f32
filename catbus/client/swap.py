"""Asking a running run to swap one of its nodes (``catbus swap``, :meth:`RunHandle.swap`).

The client's side of a ``swap`` request, on one socket to the run's registry:

1. ``graph?`` first: no answer within :data:`GRAPH_TIMEOUT` seconds means no run is there
   (:class:`RunGone`). With ``wait``, a run that has not started yet (``graph.started`` false)
   is asked again every :data:`START_POLL` seconds until it has, up to ``timeout``
   (:class:`~catbus.errors.RunTimeout` if it does not).
2. ``swap`` {node, cls, params}; ``cls`` empty: the registry takes the node's class from the
   launch file.
3. While the swap goes on, the registry sends ``hb`` every ``HEARTBEAT_INTERVAL``, then one
   ``swap-reply``. The client waits up to ``timeout`` in all. Once a heartbeat has come,
   :data:`SWAP_SILENCE` seconds without one mean the run is gone (its launcher died):
   :class:`RunGone`. A registry that sends no heartbeats (older catbus) is waited for up to
   ``timeout``.

A refusal because the run has not started yet is a :class:`SwapFailed` with ``not_started``;
with ``wait`` it sends the client back to step 1. See :mod:`catbus.control.swaps` for what happens
in the run meanwhile.
"""

from __future__ import annotations

import time
from typing import Any, Mapping

from catbus.errors import CatbusError, RunTimeout
from catbus.client.ask import RegistryLink, Silent
from catbus.wire import messages as msg
from catbus.wire.protocol import HEARTBEAT_INTERVAL

#: Seconds a swap may take by default: the replacement's start (Python and its imports) plus one
#: step, with room for a loaded machine.
SWAP_TIMEOUT = 60.0
#: Seconds without a heartbeat, once one came, after which the run is taken for gone.
SWAP_SILENCE = max(3 * HEARTBEAT_INTERVAL, 3.0)
#: Seconds a registry has to answer ``graph?`` before the run is taken for absent (as ``catbus
#: node list``).
GRAPH_TIMEOUT = 3.0
#: Seconds between two ``graph?`` while waiting for a run to start.
START_POLL = 0.2
#: What a registry says when asked to swap before its run started.
NOT_STARTED = "has not started yet"


class SwapFailed(CatbusError):
    """The run refused the swap, or the replacement failed; the old process goes on.
    ``not_started``: refused because the run has not started yet (``wait`` waits for it)."""

    exit_code = 1

    def __init__(self, message: str, not_started: bool = False) -> None:
        super().__init__(message)
        self.not_started = not_started


class RunGone(CatbusError):
    """No run answers at the address, or the run stopped answering (its launcher is gone)."""

    exit_code = 2



def long_answer(link: RegistryLink, timeout: float, *, silence: str, gone: str,
                late: str) -> msg.Message | None:
    """The answer to a request the registry works on for a while (a swap, a live parameter
    change), heartbeats meanwhile (:meth:`RegistryLink.wait_answer`); a run that went silent
    raises :class:`RunGone`, one that did not finish in time CatbusError, in these words."""
    try:
        return link.wait_answer(timeout=timeout, quiet=SWAP_SILENCE, silence=silence,
                                gone=gone, late=late)
    except Silent as exc:
        raise (RunGone(str(exc)) if exc.gone else CatbusError(str(exc))) from None

def run_graph(link: RegistryLink, timeout: float = GRAPH_TIMEOUT,
              gone: str | None = None) -> msg.Graph:
    """The run's :class:`~catbus.wire.messages.Graph` (``run``, ``mode``, ``started``,
    ``nodes``), asked over ``link``.

    Raises:
        RunGone: No answer within ``timeout`` (``gone``, if given, says why).
        CatbusError: Something answered that is not a catbus registry.
    """
    try:
        graph = link.ask(msg.GraphQuery(), timeout=timeout)
    except CatbusError:
        raise RunGone(gone or f"no catbus run answers at {link.address} (no answer within "
                              f"{timeout:g} s; is the run still going?)") from None
    if not isinstance(graph, msg.Graph):
        raise CatbusError(f"{link.address} is not a catbus registry")
    return graph


def ask_graph(bus: str, keys: Any = None, timeout: float = GRAPH_TIMEOUT) -> msg.Graph:
    """:func:`run_graph` on a socket of its own."""
    with RegistryLink(bus, keys) as link:
        return run_graph(link, timeout)


def _wait_started(link: RegistryLink, node: str, deadline: float, timeout: float) -> None:
    """Ask for the graph until the run has started (up to ``deadline``, ``time.monotonic()``;
    ``timeout``: the seconds that stand for, for the message)."""
    gone = (f"the run at {link.address} stopped answering while the swap of {node} waited for "
            f"it to start (its launcher is gone?)")
    while not run_graph(link, gone=gone).started:
        if time.monotonic() >= deadline:
            raise RunTimeout(f"the run at {link.address} did not start within {timeout:g} s; "
                             f"the swap of {node} was not asked for")
        time.sleep(min(START_POLL, max(0.0, deadline - time.monotonic())))


def request_swap(bus: str, node: str, cls: str = "", params: Mapping[str, Any] | None = None,
                 timeout: float = SWAP_TIMEOUT, keys: Any = None,
                 wait: bool = False) -> msg.SwapReply:
    """Ask the registry at ``bus`` to replace ``node`` by a process of ``cls`` (empty: the
    launch file's class) with ``params`` overrides, and wait for the outcome.

    ``wait``: if the run has not started yet, wait for it to start (up to ``timeout``
    seconds), then ask (and the swap then has ``timeout`` seconds of its own); without it, such
    a run refuses (:class:`SwapFailed` with ``not_started``).

    Returns the registry's :class:`~catbus.wire.messages.SwapReply` when the swap is done.

    Raises:
        SwapFailed: The swap was refused or failed (the message says why).
        RunGone: No run answers at ``bus`` within :data:`GRAPH_TIMEOUT` seconds, or it stopped
            answering during the swap (no heartbeat for :data:`SWAP_SILENCE` seconds after one
            came).
        RunTimeout: With ``wait``: the run did not start within ``timeout``.
        CatbusError: The swap was not done within ``timeout``.
    """
    request = msg.SwapRequest(node=node, cls=cls or "", params=dict(params or {}))
    start_deadline = time.monotonic() + timeout
    with RegistryLink(bus, keys) as link:
        started = run_graph(link).started
        while True:
            if wait and not started:
                _wait_started(link, node, start_deadline, timeout)
            link.send(request)
            reply = long_answer(
                link, timeout,
                silence=f"no answer from the run at {bus} within {timeout:g} s about the "
                        f"swap of {node} (is the run still going?)",
                gone=f"the run at {bus} stopped answering during the swap of {node} (its "
                     f"launcher is gone?)",
                late=f"the swap of {node} was not done within {timeout:g} s (the run at "
                     f"{bus} is still at it)")
            if not isinstance(reply, msg.SwapReply):
                raise CatbusError(f"{bus} did not answer a swap request as a catbus registry "
                                  f"does (another catbus version?)")
            if reply.ok:
                return reply
            not_started = NOT_STARTED in reply.message
            if not (wait and not_started and time.monotonic() < start_deadline):
                raise SwapFailed(reply.message, not_started=not_started)
            started = False   # the graph said started, the registry not yet: wait again
            time.sleep(START_POLL)


__all__ = ["request_swap", "ask_graph", "run_graph", "SwapFailed", "RunGone", "long_answer",
           "SWAP_TIMEOUT", "SWAP_SILENCE", "GRAPH_TIMEOUT"]
