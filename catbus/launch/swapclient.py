"""Asking a running run to swap one of its nodes (``catbus swap``, :meth:`RunHandle.swap`).

The registry answers a ``swap`` request once the swap is done (the replacement has stepped) or
refused; see :mod:`catbus.launch.swaps` for what happens in between.
"""

from __future__ import annotations

from typing import Any, Mapping

from catbus.errors import CatbusError
from catbus.launch.ask import ask_registry
from catbus.wire import messages as msg

#: Seconds a swap may take by default: the replacement's start (Python and its imports) plus one
#: step, with room for a loaded machine.
SWAP_TIMEOUT = 60.0


class SwapFailed(CatbusError):
    """The run refused the swap, or the replacement failed; the old process goes on."""

    exit_code = 1


def request_swap(bus: str, node: str, cls: str = "", params: Mapping[str, Any] | None = None,
                 timeout: float = SWAP_TIMEOUT, keys: Any = None) -> msg.SwapReply:
    """Ask the registry at ``bus`` to replace ``node`` by a process of ``cls`` (empty: the same
    class) with ``params`` overrides, and wait for the outcome.

    Returns the registry's :class:`~catbus.wire.messages.SwapReply` when the swap is done.

    Raises:
        SwapFailed: The swap was refused or failed (the message says why).
        CatbusError: The registry did not answer within ``timeout``.
    """
    reply = ask_registry(
        bus, msg.SwapRequest(node=node, cls=cls or "", params=dict(params or {})),
        timeout=timeout, keys=keys,
        silence=f"no answer from the run at {bus} within {timeout:g} s about the swap of "
                f"{node} (is the run still going?)")
    if not isinstance(reply, msg.SwapReply):
        raise CatbusError(f"{bus} did not answer a swap request as a catbus registry does "
                          f"(another catbus version?)")
    if not reply.ok:
        raise SwapFailed(reply.message)
    return reply


__all__ = ["request_swap", "SwapFailed", "SWAP_TIMEOUT"]
