"""The outcome of a run, and the summary table people read at its end."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from catbus.control import describe, splice_line
from catbus.spec.launchfile import LaunchSpec


def merge_reported(by_node: Mapping[str, Mapping[str, Any]]) -> dict[str, Any] | None:
    """The scores nodes reported (``Node.report``), ``{node: {key: value}}`` in launch order, as
    one dict: a key only one node reported keeps its name; a key several nodes reported is
    ``<node>.<key>`` for each of them (``env.x``, ``robot.x``). None if no node reported any."""
    counts: dict[str, int] = {}
    for scores in by_node.values():
        for key in scores:
            counts[key] = counts.get(key, 0) + 1
    merged = {(f"{node}.{key}" if counts[key] > 1 else key): value
              for node, scores in by_node.items() for key, value in scores.items()}
    return merged or None


class Summary(dict):
    """:attr:`RunResult.summary`: a plain dict, also callable for code written when ``summary``
    was a method (``result.summary()`` returns the same dict, with a DeprecationWarning)."""

    __slots__ = ()

    def __call__(self) -> "Summary":
        warnings.warn("RunResult.summary is an attribute now: use result.summary, not "
                      "result.summary()", DeprecationWarning, stacklevel=2)
        return self


@dataclass
class RunResult:
    """What ``catbus.run`` returns: per-node statistics, the recording and its scores."""

    spec: LaunchSpec
    nodes: dict[str, dict[str, Any]]
    wall_time: float
    end_reason: str | None = None
    interrupted: bool = False
    #: The signal that interrupted the run (SIGINT for Ctrl-C, SIGTERM), for the exit code.
    signal: int | None = None
    failures: list = field(default_factory=list)
    #: The scores nodes reported (``Node.report``; a key two nodes report is prefixed with each
    #: node's name), merged with the recording's evaluator's, whose keys win; None if neither.
    scores: dict[str, Any] | None = None
    #: What the registry refused: malformed control messages, and on a keyed bus the
    #: connections, keys and names its security refused (counted and dropped).
    registry_malformed: int = 0
    #: Every hot swap and restart of the run, in order: ``{node, kind ("swap" | "restart"),
    #: tick, old, new ({incarnation, pid, host, class}), state ("restored" | "fresh"), gap
    #: (parallel: seconds without the node's messages; None in stepped/inline), at}``; and the
    #: swaps that failed (the old process went on): ``{node, message}``.
    swaps: list = field(default_factory=list)
    swap_failures: list = field(default_factory=list)
    #: Nodes that went on mid-episode without their state (a restart, or a swap whose old
    #: process died first): ``{node, tick, kind, state}``. A run with any is not one unbroken
    #: episode, and :attr:`scores` says so (``spliced``).
    spliced: list = field(default_factory=list)
    #: Which node ended the episode, at which tick: ``{node, tick}``; None when no node did (the
    #: run's length ran out, it was interrupted, or a node failed). :attr:`end_reason` says why
    #: in every case.
    ended_by: dict | None = None

    def __post_init__(self) -> None:
        if self.spliced:
            self.scores = dict(self.scores or {}, spliced=self.splice_note)

    @property
    def splice_note(self) -> str | None:
        """``env restarted fresh at tick 2140; ...``, or None for an unbroken episode."""
        return "; ".join(splice_line(entry) for entry in self.spliced) or None

    @property
    def malformed(self) -> dict[str, Any]:
        """Every refused or malformed input of the run, counted and dropped: ``total``,
        ``registry`` (control messages the registry refused) and ``nodes`` (``{node: count}``,
        each node's ``malformed``: data frames, progress, control messages, and what the
        recorder refused; its ``malformed_by`` in :attr:`nodes` says which)."""
        nodes = {name: int(stats.get("malformed", 0) or 0) for name, stats in self.nodes.items()}
        return {"total": self.registry_malformed + sum(nodes.values()),
                "registry": self.registry_malformed, "nodes": nodes}

    @property
    def record(self) -> Path | None:
        return self.spec.record

    @property
    def mode(self) -> str:
        return self.spec.mode

    @property
    def summary(self) -> "Summary":
        """The run as plain data (what ``catbus launch --json`` prints): name, mode, seed,
        ``wall_time_s``, ``end_reason``, ``interrupted``, per-node ``nodes`` statistics,
        ``record`` (a path string or None), ``scores`` and ``malformed`` (every refused or
        malformed input, see :attr:`malformed`). A new dict on every access.

        An attribute since 0.2; calling it (``result.summary()``, the old method) still works
        and warns (DeprecationWarning)."""
        return Summary(name=self.spec.name, mode=self.spec.mode, seed=self.spec.seed,
                       wall_time_s=round(self.wall_time, 3), end_reason=self.end_reason,
                       interrupted=self.interrupted, nodes=self.nodes,
                       record=str(self.record) if self.record else None, scores=self.scores,
                       malformed=self.malformed, swaps=self.swaps,
                       swap_failures=self.swap_failures, spliced=self.spliced,
                       ended_by=self.ended_by)

    def table(self) -> str:
        """Per node: steps, period, step-time percentiles, waiting, messages, losses.

        ``period``: in parallel mode the achieved wall-clock period; in stepped and inline mode
        the *sim* period (``sim period``: the node's period in simulated time, ``reactive`` for
        a node without one), with the wall time per step beside it (``wall/step``)."""
        simulated = self.spec.mode in ("stepped", "inline")
        header = ("node", "steps", "sim period" if simulated else "period",
                  *(("wall/step",) if simulated else ()), "p50 ms", "p99 ms", "wait s", "in",
                  "out", "drops", "skipped")
        rows = [header]
        for name, stats in self.nodes.items():
            steps = stats.get("steps", 0)
            # Achieved period: from the node's first step to its last, so start-up is excluded.
            period = stats.get("active_s", 0.0) / (steps - 1) if steps > 1 else 0.0
            wall = f"{period * 1e3:.2f} ms" if period else "-"
            if simulated:
                sim = self._sim_period(name)
                periods: tuple[str, ...] = (
                    "reactive" if sim is None else f"{sim * 1e3:.2f} ms", wall)
            else:
                periods = (wall,)
            rows.append((name, str(steps), *periods,
                         f"{stats.get('p50_ms', 0):.3f}", f"{stats.get('p99_ms', 0):.3f}",
                         f"{stats.get('wait_s', 0):.2f}", str(stats.get("received", "-")),
                         str(stats.get("sent", "-")),
                         str(stats.get("dropped", 0) + stats.get("malformed", 0)),
                         str(stats.get("overruns", 0))))
        widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
        lines = ["  ".join(cell.rjust(w) if i else cell.ljust(w)
                           for i, (cell, w) in enumerate(zip(row, widths))) for row in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        title = (f"run {self.spec.name}: mode {self.spec.mode}, seed {self.spec.seed}, "
                 f"{self.wall_time:.2f} s wall")
        if self.end_reason:
            title += f", ended: {self.end_reason}"

        if self.interrupted:
            title += ", interrupted"
        lines.extend(describe(record) for record in self.swaps)
        lines.extend(f"swap of {failure['node']} failed: {failure['message']}"
                     for failure in self.swap_failures)
        if self.spliced:
            lines.append(f"spliced: {self.splice_note} (the scores are of a spliced episode)")
        refused = self.malformed
        if refused["total"]:
            parts = ([f"registry {refused['registry']}"] if refused["registry"] else []) + \
                [f"{name} {count}" for name, count in refused["nodes"].items() if count]
            lines.append(f"malformed input counted and dropped: {refused['total']} "
                         f"({', '.join(parts)})")
        return "\n".join([title, *lines])

    def _sim_period(self, name: str) -> float | None:
        try:
            return self.spec.node(name).period
        except Exception:   # not in the launch (ConfigError): no period to show
            return None

