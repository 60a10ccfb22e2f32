"""What a multi-process run returns: its :class:`~catbus.api.result.RunResult` (or the
:class:`~catbus.errors.NodeFailed` carrying it), built from the control plane's state and how the
launcher's processes ended. Every run says why it ended (``end_reason`` is never None).
"""

from __future__ import annotations

import signal
from typing import Any

from catbus.api.result import RunResult, merge_reported
from catbus.errors import NodeFailed
from catbus.spec.launchfile import length_reason


def run_result(spec: Any, registry: Any, children: Any, wall: float, *, failures: list,
               interrupted: bool, signum: int | None) -> RunResult:
    """The result of a run that is over; raises NodeFailed (with the result) if a node failed.
    ``children`` are the launcher's processes: a node whose process this host ran gets its
    ``returncode`` (negative: killed by that signal, e.g. -9 when the shutdown ladder had to use
    SIGKILL)."""
    state = registry.state
    nodes = {}
    for member in state.members.values():
        nodes[member.name] = dict(member.stats, state=member.state.value, pid=member.pid,
                                  host=member.host)
        if member.pid in children.processes:
            nodes[member.name]["returncode"] = children.returncode(member.pid)
    scores = merge_reported({m.name: m.scores for m in state.members.values()})
    ended_by = {"node": state.ended_by, "tick": state.end_tick} if state.ended_by else None
    records = dict(swaps=[*state.swaps, *state.rejoins], swap_failures=state.swap_failures,
                   spliced=state.spliced, registry_malformed=registry.refused, scores=scores,
                   ended_by=ended_by)
    if failures:
        name, message, detail = failures[0]
        raise NodeFailed(f"node {name} failed: {message}" + (f"\n{detail}" if detail else ""),
                         result=RunResult(spec, nodes, wall,
                                          state.end_reason or f"node {name} failed",
                                          failures=failures, **records))
    end_reason = state.end_reason
    if end_reason is None:
        end_reason = f"interrupted ({signal_label(signum)})" if interrupted \
            else length_reason(spec)
    return RunResult(spec, nodes, wall, end_reason, interrupted=interrupted, signal=signum,
                     **records)


def signal_label(signum: int | None) -> str:
    """How the user stopped a run, in words: Ctrl-C, SIGTERM, or a stop asked by code."""
    if signum is None:   # Launcher.request_stop: no signal came
        return "stop requested"
    return "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
