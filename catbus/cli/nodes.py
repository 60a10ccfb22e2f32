"""``catbus node list``: the nodes of a running run, as its registry sees them (the parser is
``catbus node``'s, :mod:`catbus.cli.node`)."""

from __future__ import annotations

from typing import Any

from catbus.cli.common import say_run


def node_list(bus: str | None, run: str | None = None, keys: Any = None) -> int:
    """Print the run's mode and each node's state, pid, host, period, tick and class (and what
    a swap or restart in progress waits for)."""
    from catbus.client import find_run, query_graph

    found = find_run(bus, run)
    graph = query_graph(found["registry"], keys=keys)
    say_run(found, graph)
    print(f"mode {graph.get('mode')}, {'running' if graph.get('started') else 'starting'}")
    for node in graph["nodes"]:
        period = f"{node['period']:g} s" if node.get("period") else "reactive"
        print(f"{node['name']:<12} {node['state']:<10} pid {node['pid']:<8} {node['host']:<12} "
              f"{period:<10} tick {node['tick']:<8} {node['cls']}")
        if node.get("pending"):   # a swap or restart in progress, and what it waits for
            print(f"{'':<12} pending: {node['pending']}")
    return 0
