"""``catbus node list`` and ``catbus node info NAME``: the nodes of a running run, as its
registry sees them (the parser is ``catbus node``'s, :mod:`catbus.cli.node`).

Both read the registry's ``graph`` (what every node of the run is told, plus each node's state,
tick and steps from its heartbeats), so they cost the run one answer and never slow a node;
``info`` also asks for the node's current parameters (``params?``, as ``catbus param get``).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from catbus.cli.common import print_json, say_run


def cmd_nodes(args: argparse.Namespace) -> int:
    """``list`` or ``info NAME`` (``info`` without a name: one line, exit 2)."""
    as_json = bool(getattr(args, "json", False))
    if args.target == "list":
        if args.node_name is not None:
            print(f"catbus: node list: unexpected argument {args.node_name!r}", file=sys.stderr)
            return 2
        return node_list(args.bus, run=args.run, keys=args.keys, as_json=as_json)
    if not args.node_name:
        print("catbus: node info: name the node, e.g. catbus node info robot (the names: "
              "catbus node list)", file=sys.stderr)
        return 2
    return node_info(args.node_name, args.bus, run=args.run, keys=args.keys, as_json=as_json)


def _graph(bus: str | None, run: str | None, keys: Any) -> tuple[dict[str, Any], str]:
    """The run's graph and its registry's address."""
    from catbus.client import find_run, query_graph

    found = find_run(bus, run)
    graph = query_graph(found["registry"], keys=keys)
    say_run(found, graph)
    return graph, found["registry"]


def current_params(registry: str, name: str, keys: Any) -> tuple[dict[str, Any] | None, str]:
    """Node ``name``'s current parameters as its run knows them (the launch file's, with every
    live change applied: ``catbus param get``), or None and why not."""
    from catbus.client import client_keys
    from catbus.client.params import get_params
    from catbus.errors import CatbusError

    try:
        return dict(get_params(registry, name, keys=client_keys(keys)).params), ""
    except CatbusError as exc:
        return None, str(exc)


def node_list(bus: str | None, run: str | None = None, keys: Any = None,
              as_json: bool = False) -> int:
    """Print the run's mode and each node's state, pid, host, period, tick and class (and what
    a swap or restart in progress waits for)."""
    graph, _ = _graph(bus, run, keys)
    if as_json:
        print_json({"run": graph.get("run"), "mode": graph.get("mode"),
                    "started": graph.get("started"), "nodes": graph["nodes"]})
        return 0
    print(f"mode {graph.get('mode')}, {'running' if graph.get('started') else 'starting'}")
    for node in graph["nodes"]:
        period = f"{node['period']:g} s" if node.get("period") else "reactive"
        print(f"{node['name']:<12} {node['state']:<10} pid {node['pid']:<8} {node['host']:<12} "
              f"{period:<10} tick {node['tick']:<8} {node['cls']}")
        if node.get("pending"):   # a swap or restart in progress, and what it waits for
            print(f"{'':<12} pending: {node['pending']}")
    return 0


def describe_node(graph: dict[str, Any], name: str) -> dict[str, Any]:
    """One node of ``graph`` (a :func:`~catbus.client.runs.query_graph` answer) as ``catbus
    node info`` shows it: its graph entry, the run's mode, and for each topic who is at the
    other end (``inputs``: ``{declared, topic, policy, publishers}``; ``outputs``:
    ``{declared, topic, readers}``).

    Raises:
        CatbusError: The run has no node ``name`` (the message lists the nodes).
    """
    from catbus.client import topics_of
    from catbus.errors import CatbusError

    entry = next((n for n in graph["nodes"] if n.get("name") == name), None)
    if entry is None:
        names = ", ".join(n.get("name", "?") for n in graph["nodes"]) or "none"
        raise CatbusError(f"node info: the run has no node {name!r} (nodes: {names})")
    topics = topics_of(graph)
    wildcard = {n["name"] for n in graph["nodes"] if any(row[1] == "*" for row in n["inputs"])}
    inputs = [{"declared": row[0], "topic": row[1], "policy": row[2] if len(row) > 2 else
               "latest", "publishers": topics.get(row[1], {}).get("publishers", [])
               if row[1] != "*" else sorted(topics)} for row in entry.get("inputs", [])]
    outputs = [{"declared": row[0], "topic": row[1],
                "readers": sorted(set(topics.get(row[1], {}).get("subscribers", [])) |
                                  (wildcard - {name}))}
               for row in entry.get("outputs", [])]
    info = {key: value for key, value in entry.items() if key not in ("inputs", "outputs")}
    info.update(mode=graph.get("mode"), run=graph.get("run"), started=graph.get("started"),
                inputs=inputs, outputs=outputs)
    return info


def node_info(name: str, bus: str | None, run: str | None = None, keys: Any = None,
              as_json: bool = False) -> int:
    """Print one node: class, process (pid, host, incarnation), state, mode, period, tick and
    steps, what it reads and from whom, what it publishes and who reads it, and its current
    parameters (:func:`current_params`)."""
    graph, registry = _graph(bus, run, keys)
    info = describe_node(graph, name)
    if "params" not in info:
        info["params"], why = current_params(registry, name, keys)
        if info["params"] is None:
            info["params_unavailable"] = why
    if as_json:
        print_json(info)
        return 0
    period = f"{info['period']:g} s" if info.get("period") else "none (reactive: on messages)"
    rows = [("class", info.get("cls") or "?"),
            ("state", info.get("state")),
            ("mode", f"{info.get('mode')} ({'running' if info.get('started') else 'starting'})"),
            ("process", f"pid {info.get('pid')} on {info.get('host') or '?'}, incarnation "
                        f"{info.get('incarnation')}"),
            ("endpoint", info.get("endpoint") or "-"),
            ("period", period),
            ("tick", f"{info.get('tick')} ({info.get('steps')} steps)")]
    if info.get("pending"):
        rows.append(("pending", info["pending"]))
    if info.get("standby"):
        rows.append(("standby", info["standby"]))
    print(f"node {name}" + (" (not registered yet: its process has not joined the run)"
                            if info.get("state") == "expected" else ""))
    for label, value in rows:
        print(f"  {label:<10} {value}")
    print("  inputs" + ("" if info["inputs"] else "     none"))
    for row in info["inputs"]:
        source = ", ".join(row["publishers"]) or "no publisher"
        print(f"    {row['topic']} ({row['policy']}) from {source}"
              + (f"  [declared {row['declared']}]" if row["declared"] != row["topic"] else ""))
    print("  outputs" + ("" if info["outputs"] else "    none"))
    for row in info["outputs"]:
        print(f"    {row['topic']} to {', '.join(row['readers']) or 'no reader'}"
              + (f"  [declared {row['declared']}]" if row["declared"] != row["topic"] else ""))
    params = info.get("params")
    if isinstance(params, dict):
        print("  parameters" + ("" if params else " none"))
        for key, value in _flat(params):
            print(f"    {key} = {value!r}")
    elif info.get("params_unavailable"):
        print(f"  parameters unknown: {info['params_unavailable']}")
    return 0


def _flat(values: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = []
    for key, value in values.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        rows.extend(_flat(value, dotted) if isinstance(value, dict) and value else
                    [(dotted, value)])
    return rows


__all__ = ["cmd_nodes", "node_list", "node_info", "describe_node"]
