"""Finding a live run and asking its registry who is in it.

A run on this machine is found through its run folder (see :mod:`catbus.supervise.rundir`): the
only live run, or the one ``run`` names (with several live runs and neither ``run`` nor ``bus``,
:func:`find_run` refuses to guess, so a tool never talks to the wrong run); ``bus`` names any
other, also one on another host. These functions return data and raise
:class:`~catbus.errors.CatbusError`; saying anything to the user is the caller's business.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

from catbus import security
from catbus.client.ask import ask_registry
from catbus.errors import CatbusError
from catbus.supervise.rundir import running_runs, select_run
from catbus.wire import messages as msg


def find_run(bus: str | None, run: str | None = None) -> dict[str, Any]:
    """``{"registry", "folder", "name", ...}`` of the run at ``bus`` (folder and name unknown:
    None), else of the run on this machine ``run`` names, else of the only one running.

    Raises:
        CatbusError: Both ``bus`` and ``run`` given; no such run; several runs and no choice.
    """
    if bus and run:
        raise CatbusError("give --run NAME (a run on this machine) or --bus ADDR, not both")
    if bus:
        return {"registry": bus, "folder": None, "name": None, "id": None}
    info = select_run(run)
    return dict(info, name=info["id"])


def find_registry(bus: str | None, run: str | None = None) -> str:
    """``bus`` if given, else the registry of the run ``run`` names, else of the only run."""
    return find_run(bus, run)["registry"]


def client_keys(keys: Any) -> security.Keys | None:
    """``keys`` as a socket needs them: a ``--keys`` folder is loaded; a
    :class:`catbus.security.Keys` (or None: an unsecured run) is used as it is."""
    return security.load_option(keys) if isinstance(keys, (str, Path)) else keys


def query_graph(bus: str | None, timeout: float = 3.0, run: str | None = None,
                keys: Any = None) -> dict[str, Any]:
    """Ask the registry who is in the run (the same ``graph`` nodes receive): ``{"op",
    "nodes", "mode", "started", "run"}``. ``keys``: a :class:`catbus.security.Keys`, or a
    ``--keys`` folder.

    Raises:
        CatbusError: No answer within ``timeout``, or the answer is not a registry's.
        catbus.security.Refused: The run is secured and refused these keys.
    """
    address = find_registry(bus, run)
    reply = ask_registry(address, msg.GraphQuery(), timeout=timeout, keys=client_keys(keys))
    if not isinstance(reply, msg.Graph):
        raise CatbusError(f"{address} is not a catbus registry")
    return {"op": reply.OP, "nodes": reply.nodes, "mode": reply.mode, "started": reply.started,
            "run": reply.run}


def topics_of(graph: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``{topic: {"publishers", "subscribers", "endpoints", "keys"}}`` of a :func:`query_graph`
    answer: who publishes each topic, where to connect to it (each publisher's endpoint and, in
    a secured run, its CURVE public key), and who reads it."""
    topics: dict[str, dict[str, Any]] = {}
    for node in graph["nodes"]:
        for _, topic in node["outputs"]:
            topics.setdefault(topic, {"publishers": [], "subscribers": [], "endpoints": [],
                                      "keys": []})
            topics[topic]["publishers"].append(node["name"])
            topics[topic]["endpoints"].append(node["endpoint"])
            topics[topic]["keys"].append(str(node.get("key") or ""))   # CURVE: its XPUB's key
    for node in graph["nodes"]:
        for _, topic, _ in node["inputs"]:
            if topic in topics:
                topics[topic]["subscribers"].append(node["name"])
    return topics


def live_runs() -> list[dict[str, Any]]:
    """Every live run on this machine, newest first: ``{"name"`` (what ``run`` takes),
    ``"pid", "started"`` (ISO 8601, local time, seconds), ``"mode", "bus", "folder",
    "launch_name", "record"}``."""
    return [{"name": r["id"], "pid": r.get("pid"),
             "started": datetime.datetime.fromtimestamp(float(r["started"])).isoformat(
                 timespec="seconds"),
             "mode": r.get("mode"), "bus": r.get("registry"), "folder": r["folder"],
             "launch_name": r.get("name"), "record": r.get("record")} for r in running_runs()]


__all__ = ["find_run", "find_registry", "client_keys", "query_graph", "topics_of", "live_runs"]
