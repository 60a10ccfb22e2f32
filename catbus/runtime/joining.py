"""How a node process joins its run's data plane: it applies the registry's graph (connect to
every neighbour, and to both processes of one being swapped), subscribes, waits until every
neighbour has seen its hello (and, joining a run that is going on, answered it), says ``ready``
and waits for ``start`` (``docs/protocol.md``, "Connecting: subscriptions and the hello
barrier"). What it waits for is its heartbeat's state, so a process that never gets ready is
named with the neighbour it waits for.
"""

from __future__ import annotations

from typing import Any

from catbus import security
from catbus.runtime.inbox import ALL
from catbus.runtime.lockstep import compute_peers
from catbus.wire import messages as msg

#: A :class:`catbus.runtime.link.ProcessLink` (named loosely: the link module uses this one).
Link = Any


def apply_graph(link: Link, graph: msg.Graph) -> None:
    """The registry's graph: who the neighbours are, where they publish, who owns each
    topic."""
    link.graph_nodes = graph.nodes
    security.learn(link.data.curve, graph.nodes)   # publishers' CURVE keys
    inputs = link.inbox.inputs if link.inbox is not None else []
    link.peers = compute_peers(link.name, inputs, graph.nodes)
    neighbours = link.peers.neighbours
    # One socket per neighbour, connected to its endpoint -- and, while it is being replaced,
    # to its other process's too (``standby``): both are that node, so that the switch loses
    # nothing. An endpoint gone from the graph (a process replaced, or restarted elsewhere) is
    # let go, and so is the socket of a node no longer a neighbour.
    endpoints = {name: [link.peers.endpoints[name]] for name in neighbours}
    for entry in graph.nodes:
        if entry.get("standby") and entry.get("name") in neighbours:
            endpoints[entry["name"]].append(entry["standby"])
    add = link.inbox.add_frames if link.inbox is not None else None
    link.data.follow(endpoints, link.peers.sources, add)
    # Who publishes each topic of the run (data from anyone else is refused), and every topic
    # of the run (a subscription to none of them is counted as refused).
    owners = {row[1]: entry["name"] for entry in graph.nodes
              for row in entry.get("outputs", ())}
    link.data.gate.know_topics([*owners, *(row[1] for entry in graph.nodes
                                      for row in entry.get("inputs", ()))])
    if link.inbox is not None:
        link.inbox.owners = owners
        # In a stepped run, a node without a period cannot end the episode: an end in its
        # progress is refused (catbus.runtime.inbox.progress.end_problem).
        link.inbox.reactive = [entry["name"] for entry in graph.nodes
                               if entry.get("period") is None]
    link.graph_complete = graph.complete


def join(link: Link) -> None:
    """Subscribe, connect to every neighbour the graph names, say ``ready`` once each has seen
    our hello, and wait for ``start``."""
    subscribe_inputs(link)
    ready_sent = False
    while link.started is None:
        link.stats.state = waiting_for(link, ready_sent)
        link.service(100)
        ready_sent = ready_sent or say_ready_if_due(link)


def subscribe_inputs(link: Link) -> None:
    """Subscribe to the node's inputs (every topic, for a reader of everything): the first step
    of :func:`join` (a group process joins its nodes together, :mod:`catbus.runtime.group`)."""
    inbox = link.inbox
    assert inbox is not None
    link.data.subscribe([b.topic for b in inbox.inputs if b.topic != ALL],
                        everything=inbox.wildcard)


def say_ready_if_due(link: Link) -> bool:
    """Say ``ready`` if the graph is complete, every neighbour has seen our hello and (joining
    a run going on) answered it; whether it was said."""
    if link.graph_complete and link.peers.neighbours <= link.data.gate.hellos \
            and heard_enough(link):
        link.send(msg.Ready())
        return True
    return False


def unanswered(link: Link) -> set[str]:
    """The neighbours that have not yet answered our hello (see :func:`heard_enough`): whose
    answer -- a progress saying how far it has heard from us -- has not come. Not any progress
    of theirs: one sent before they saw our hello (a recorder catching up sends one every few
    ticks) says nothing of what they have from our predecessor, and a restarted process that
    went on without it would start past ticks that neighbour lacks (``stepped.first_tick``)."""
    heard = link.inbox.heard
    name = link.name
    return {peer for peer in link.peers.neighbours if name not in heard.get(peer, ())}


def heard_enough(link: Link) -> bool:
    """A process joining a run going on (hot swap, restart) is ready once every neighbour has
    sent it something: each answers our hello with its progress (and what it retains), so from
    then on nothing it sends is lost to us, and we know how far it has heard from us
    (``heard``). At the start of a run there is nothing to wait for."""
    return not link.joining or not unanswered(link)


def waiting_for(link: Link, ready_sent: bool) -> str:
    """What :func:`join` waits for, naming the neighbours: heartbeats carry it to the registry
    as the node's activity, so that a replacement that never gets ready (a hot swap, a
    restart) fails naming the neighbour it waits for, and ``catbus node list`` shows it."""
    prefix = "joining: " if link.joining else ""
    if not link.graph_complete:
        return prefix + "waiting for the graph"
    if not ready_sent:
        missing = link.peers.neighbours - link.data.gate.hellos
        if missing:
            return f"{prefix}waiting for the hellos of {', '.join(sorted(missing))}"
        left = unanswered(link) if link.joining else None
        if left:
            return f"{prefix}waiting for hello answers from {', '.join(sorted(left))}"
    # A swap's replacement starts with the registry's takeover, everyone else with start.
    return prefix + ("waiting for the takeover" if link.joining == "swap"
                     else "waiting for the start")


__all__ = ["apply_graph", "join", "subscribe_inputs", "say_ready_if_due", "heard_enough",
           "waiting_for", "unanswered"]
