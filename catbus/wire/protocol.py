"""Every name, number and version of the catbus protocol, defined once.

A node written in another language needs exactly what is here (and ``docs/protocol.md``, which
explains it); so does every module of catbus that speaks the protocol. Nothing here opens a socket.

Two versions travel on the wire:

* :data:`HEADER_VERSION`, the first field of every data message's header, so a receiver can drop
  a message of a layout it does not know without guessing at its fields;
* :data:`PROTOCOL_VERSION`, sent by a node in ``register``: the registry refuses a node that
  speaks another version, naming both, instead of letting it fail later on a message it
  misreads.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Final

#: The protocol as a whole (control and data plane). 2: process identity (``incarnation``),
#: ``protocol`` in ``register``, typed messages. 3: a data message's topic, header and payload
#: travel in one frame (the envelope, see catbus.wire.codec). 4: a running node can be replaced
#: (hot swap, restart): ``register.replace``, retire/handover/takeover, publishers re-send what
#: they retain when a neighbour (re)subscribes, ``heard`` in progress.
PROTOCOL_VERSION: Final = 4
#: Data message header layout: ``[HEADER_VERSION, publisher, incarnation, seq, tick, sim_time,
#: wall_time, through]``; 3 since it travels in the envelope.
HEADER_VERSION: Final = 3
#: Number of fields of a version-:data:`HEADER_VERSION` header.
HEADER_FIELDS: Final = 8

# -- topics ----------------------------------------------------------------------------------------
#: An input on this topic receives every topic on the bus (the recorder).
EVERY_TOPIC: Final = "*"
#: Topics under this prefix are the framework's own; user topics may not use it.
RESERVED_PREFIX: Final = "catbus/"
#: "I have sent everything I will send for ticks <= through" (see docs/protocol.md).
PROGRESS_TOPIC: Final = "catbus/progress"
#: ``catbus/hello/<name>``: subscribed last by node <name>; a publisher that sees it knows it
#: has every subscription of that node.
HELLO_PREFIX: Final = "catbus/hello/"
#: The recorder's loss summary, written once at the end of a recording.
DROPS_TOPIC: Final = "catbus/drops"
#: A node's reported scores (``Node.report``), ``{"node": name, "scores": {key: value}}``: the
#: node's whole score set so far, published after a step that changed it; only the recorder
#: reads it.
SCORES_TOPIC: Final = "catbus/scores"
#: A node's log record (``self.log``), in Foxglove's ``foxglove.Log`` shape: ``{timestamp:
#: {sec, nsec}, level (1 DEBUG .. 5 FATAL), message, name (the node), file, line}``, at the
#: node's current tick; only the recorder reads it.
LOG_TOPIC: Final = "catbus/log"
#: A node was replaced (hot swap) or restarted, published by the new process after its first
#: step: ``{node, kind ("swap" | "restart"), tick, sim_time, old: {incarnation, pid, host,
#: class}, new: {...}, params, state ("restored" | "fresh"), gap}`` (``gap``: parallel mode,
#: seconds between the old process's last message and the new one's first; None in stepped).
SWAP_TOPIC: Final = "catbus/swap"
#: A node's parameters changed live (``catbus param set``), published by the node before the
#: outputs of the step they first apply to: ``{node, tick, changed, params}``; only the
#: recorder reads it (``catbus play`` applies it again at the same tick).
PARAMS_TOPIC: Final = "catbus/params"
#: A node's counters of refused and lost input, published once as it leaves (before its final
#: progress), so the recording has every node's: ``{node, incarnation, stats: {malformed,
#: malformed_by, dropped, duplicates, received}}``; only the recorder reads it.
STATS_TOPIC: Final = "catbus/stats"
#: A recorded parallel run's step log (``catbus reproduce``, docs/reproduce.md): each periodic
#: node's steps, in batches, ``{node, topics: [input topic, ...], steps: [[cycle, t, duration,
#: [[publisher, incarnation, seq, taken] | nil per topic]], ...]}``; only the recorder reads it.
STEPS_TOPIC: Final = "catbus/steps"
#: The byte after every topic name in a topic frame, so prefix matching is exact.
TOPIC_TERMINATOR: Final = b"\0"

# -- modes and input policies ------------------------------------------------------------------
MODES: Final = ("parallel", "stepped", "inline")
#: ``latest``: a step sees the newest message (or None); ``all``: the list of every message
#: since the previous step.
POLICIES: Final = ("latest", "all")

# -- control plane -----------------------------------------------------------------------------
#: Seconds between heartbeats, both ways.
HEARTBEAT_INTERVAL: Final = 0.5
#: Seconds a node waits for a silent registry before it gives up and exits.
DEFAULT_REGISTRY_TIMEOUT: Final = 10.0
#: Seconds the registry waits for a silent node before it fails the run (``--deadline``).
DEFAULT_DEADLINE: Final = 30.0
#: A node's heartbeat ``state`` once it has left its run loop and runs ``close()``.
CLOSING_STATE: Final = "closing"
#: A node's heartbeat ``state`` while its step waits, alive, for a decision from outside the graph
#: (``catbus.gym``: the trainer's action). The registry's stall check and the launcher's end
#: grace leave such a node alone: the wait is the controller's pace, not a stuck run; the
#: heartbeat deadline still applies.
AWAITING_CONTROLLER_STATE: Final = "awaiting its controller"
#: Stepped mode: how many ticks a publisher may run ahead of its slowest subscriber.
WINDOW: Final = 8
#: Restart policies of a node (``restart:`` in a launch file).
RESTART_POLICIES: Final = ("never", "on-failure")


class Op:
    """The ``op`` of every control message (one msgpack map per ZeroMQ message)."""

    # node -> registry
    REGISTER: Final = "register"
    READY: Final = "ready"
    HEARTBEAT: Final = "hb"          # both ways
    DONE: Final = "done"
    ERROR: Final = "error"
    # registry -> node
    WELCOME: Final = "welcome"
    REJECT: Final = "reject"
    GRAPH: Final = "graph"
    START: Final = "start"
    END: Final = "end"
    STOP: Final = "stop"
    # hot swap and restart (docs/protocol.md, "Replacing a running node")
    RETIRE: Final = "retire"        # registry -> old process: hand over after this step
    HANDOVER: Final = "handover"    # old process -> registry: where it stopped, its state
    TAKEOVER: Final = "takeover"    # registry -> new process: go on from there
    RESUME: Final = "resume"        # registry -> old process: the replacement failed, go on
    SWAPPED: Final = "swapped"      # new process -> registry: its first step is done
    REJOINED: Final = "rejoined"    # registry -> node: your link was down this long, and is back
    # node -> registry: the node's state at a tick (``checkpoint: N``); registry -> a restarted
    # process of it: the latest one, to go on from (docs/protocol.md, "Checkpoints")
    CHECKPOINT: Final = "checkpoint"
    # tool -> registry (answered with GRAPH)
    GRAPH_QUERY: Final = "graph?"
    # tool -> registry: replace a node (answered with SWAP_REPLY once it is done or refused)
    SWAP: Final = "swap"
    SWAP_REPLY: Final = "swap-reply"
    # live parameters (docs/protocol.md, "Live parameters"): tool -> registry, answered with
    # PARAMS_REPLY; registry -> node PARAMS, node -> registry PARAMS_APPLIED
    PARAMS_GET: Final = "params?"
    PARAMS_SET: Final = "params-set"
    PARAMS_REPLY: Final = "params-reply"
    PARAMS: Final = "params"
    PARAMS_APPLIED: Final = "params-applied"


# -- message extension types inside payloads -----------------------------------------------------
EXT_NDARRAY: Final = 1          # [descr, shape, buffer index]; bytes in their own frame
EXT_NPSCALAR: Final = 2         # [descr, raw bytes]
EXT_NDARRAY_INLINE: Final = 3   # [descr, shape, raw bytes]; inside the payload
#: Arrays up to this many bytes travel inside the payload (extension type 3).
INLINE_MAX_BYTES: Final = 1024

# -- addresses -----------------------------------------------------------------------------------
#: ``tcp://HOST:PORT`` with HOST a name, an IPv4 address, ``*`` or a bracketed IPv6 address.
TCP_ADDRESS: Final = re.compile(r"tcp://(?P<host>[^\s/:\[\]]+|\[[0-9A-Fa-f:.%\w]+\]):(?P<port>\d+)\Z")


def bus_address_problem(address: str) -> str | None:
    """Why ``address`` is not a bus (registry) address, or None. A bus is ``ipc://PATH`` or
    ``tcp://HOST:PORT`` with a port in 1..65535; an IPv6 HOST is an address in brackets."""
    if not isinstance(address, str):
        return f"a bus address must be text, got {address!r}"
    if address.startswith("ipc://"):
        return None if len(address) > len("ipc://") else "ipc:// needs a path"
    match = TCP_ADDRESS.match(address)
    if match is None:
        if address.startswith("tcp://") and address[len("tcp://"):].count(":") > 1 \
                and "[" not in address:
            host, _, port = address[len("tcp://"):].rpartition(":")
            return (f"an IPv6 address goes in brackets: tcp://[{host}]:{port} (tcp://HOST:PORT "
                    f"with HOST a name, an IPv4 address or [IPv6 address])")
        return "expected tcp://HOST:PORT (e.g. tcp://10.0.0.1:7700, tcp://[::1]:7700) or ipc://PATH"
    host = match["host"]
    if host.startswith("["):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            return f"{host} is not an IPv6 address (brackets hold one, e.g. [fd00::1])"
    if not 0 < int(match["port"]) < 65536:
        return f"port {match['port']} is out of range 1-65535"
    return None


def hello_topic(name: str) -> str:
    """The hello topic node ``name`` subscribes to last."""
    return HELLO_PREFIX + name


__all__ = [
    "PROTOCOL_VERSION", "HEADER_VERSION", "HEADER_FIELDS", "EVERY_TOPIC", "RESERVED_PREFIX",
    "PROGRESS_TOPIC", "HELLO_PREFIX", "DROPS_TOPIC", "SWAP_TOPIC", "STATS_TOPIC", "STEPS_TOPIC", "PARAMS_TOPIC", "RESTART_POLICIES", "TOPIC_TERMINATOR", "MODES", "POLICIES",
    "HEARTBEAT_INTERVAL", "DEFAULT_REGISTRY_TIMEOUT", "DEFAULT_DEADLINE", "CLOSING_STATE", "AWAITING_CONTROLLER_STATE",
    "WINDOW", "Op", "EXT_NDARRAY", "EXT_NPSCALAR", "EXT_NDARRAY_INLINE", "INLINE_MAX_BYTES",
    "TCP_ADDRESS", "bus_address_problem", "hello_topic",
]
