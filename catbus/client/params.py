"""Asking a running run for a node's parameters, or to change them live (``catbus param get|set``).

One socket to the run's registry: ``params?`` is answered at once from what the registry knows;
``params-set`` is answered once the node's process has applied the change before its next step
(or refused it), and meanwhile the registry sends the requester a ``hb`` every
``HEARTBEAT_INTERVAL`` (so a run that dies is told from a node that steps slowly: a paced or
stuck stepped run may take long to reach its next tick).
"""

from __future__ import annotations

from typing import Any, Mapping

from catbus.client.ask import RegistryLink
from catbus.client.swap import long_answer, run_graph
from catbus.errors import CatbusError
from catbus.wire import messages as msg

#: Seconds a change may take by default to reach the node's next step.
PARAMS_TIMEOUT = 30.0


class ParamsRefused(CatbusError):
    """The run or the node refused the change (or the query); the message says why."""

    exit_code = 1


def get_params(bus: str, node: str, keys: Any = None) -> msg.ParamsReply:
    """Node ``node``'s current parameters, as its run knows them (the launch file's, with every
    live change applied).

    Raises:
        ParamsRefused: No such node (the message lists the run's nodes).
        RunGone: No run answers at ``bus``.
    """
    with RegistryLink(bus, keys) as link:
        run_graph(link)   # no run there: RunGone, in the words every tool uses
        reply = link.ask(msg.ParamsQuery(node=node), timeout=5.0,
                         silence=f"the run at {bus} did not answer a parameter query (a catbus "
                                 f"run from before live parameters?)")
    return _checked(reply, bus)


def set_params(bus: str, node: str, changes: Mapping[str, Any], *, keys: Any = None,
               timeout: float = PARAMS_TIMEOUT) -> msg.ParamsReply:
    """Change node ``node``'s parameters live (``changes`` nested like ``params``) and wait
    until it applied them: the reply has the ``tick`` they first applied to, the values that
    ``changed`` and the node's whole ``params``.

    Raises:
        ParamsRefused: Refused (no ``on_params``, a wrong value, the run not in a state to...).
        RunGone: No run answers at ``bus``, or it stopped answering meanwhile.
        CatbusError: Not applied within ``timeout`` seconds.
    """
    with RegistryLink(bus, keys) as link:
        run_graph(link)
        link.send(msg.ParamsRequest(node=node, changes=dict(changes)))
        reply = long_answer(
            link, timeout,
            silence=f"no answer from the run at {bus} within {timeout:g} s about the "
                    f"parameters of {node} (a catbus run from before live parameters?)",
            gone=f"the run at {bus} stopped answering while {node} was changing its "
                 f"parameters (its launcher is gone?)",
            late=f"{node} did not reach its next step within {timeout:g} s to apply the "
                 f"change (the run at {bus} is still at it)")
    return _checked(reply, bus)


def _checked(reply: msg.Message | None, bus: str) -> msg.ParamsReply:
    if not isinstance(reply, msg.ParamsReply):
        raise CatbusError(f"{bus} did not answer as a catbus registry with live parameters "
                          f"does (another catbus version?)")
    if not reply.ok:
        raise ParamsRefused(reply.message)
    return reply


__all__ = ["get_params", "set_params", "ParamsRefused", "PARAMS_TIMEOUT"]
