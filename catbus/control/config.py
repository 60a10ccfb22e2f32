"""What the control plane knows of a run before it starts: its nodes as the launch file gives
them, its mode and bounds, and its swap schedule. Plain values, built by the launcher (or
``catbus bus``, which has no launch file)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from catbus.wire.protocol import DEFAULT_DEADLINE


@dataclass(frozen=True)
class RestartPolicy:
    """What happens when a node's process fails (``restart``, ``max_restarts``,
    ``restart_backoff`` in a launch file): ``never`` fails the run; ``on-failure`` starts the
    node again, at most ``max_restarts`` times, ``backoff`` seconds later (doubled each time)."""

    policy: str = "never"
    max_restarts: int = 3
    backoff: float = 0.5

    @property
    def enabled(self) -> bool:
        return self.policy == "on-failure"

    def allows(self, done: int) -> bool:
        return self.enabled and done < self.max_restarts

    def delay(self, done: int) -> float:
        """Seconds before restart number ``done + 1`` (doubling each time)."""
        return self.backoff * 2 ** done


@dataclass(frozen=True)
class NodeConfig:
    """One node of the launch file: what the registry hands its processes, and who starts
    them (``local``: the host of the control plane; else the node's own host)."""

    params: dict = field(default_factory=dict)
    #: The values the launch file gives (a swap to another class keeps only these).
    given: dict = field(default_factory=dict)
    period: float | None = None
    inputs: list = field(default_factory=list)     # [[declared, topic, policy], ...]
    outputs: list = field(default_factory=list)    # [[declared, topic], ...]
    class_path: str = ""
    restart: RestartPolicy = RestartPolicy()
    local: bool = True


@dataclass(frozen=True)
class ScheduledSwap:
    """A swap of the launch file's ``swap:`` list: at ``tick`` (stepped) or ``at`` seconds of
    the run (parallel)."""

    node: str
    cls: str
    params: dict
    tick: int | None = None
    at: float | None = None


@dataclass
class RunConfig:
    """The run as the control plane sees it. ``expected`` None: an open bus (``catbus bus``)
    that admits any node and starts each as soon as it is connected."""

    mode: str = "parallel"
    seed: int = 0
    expected: dict[str, NodeConfig] | None = None
    run_info: dict = field(default_factory=dict)
    schedule: dict | None = None
    #: Parallel: seconds the run lasts after its start (None: until a node ends it).
    duration: float | None = None
    order: list[str] = field(default_factory=list)
    deadline: float = DEFAULT_DEADLINE
    #: A node whose link is down may take this long to come back (default: the deadline).
    rejoin_timeout: float | None = None
    start_delay: float = 0.05
    #: Parallel: once the run is over, seconds a node gets to say done (never more than the
    #: deadline; see :meth:`end_grace_s`).
    end_grace: float = 5.0
    #: Whether the host starts replacement processes (a launcher); else a tool's swap request
    #: is refused and the user starts the replacement with ``catbus node --replace``.
    can_spawn: bool = False
    swaps: list[ScheduledSwap] = field(default_factory=list)
    #: The graph's node entries as sent (a secured run adds each node's public key).
    graph_filter: Callable[[list[dict[str, Any]]], list[dict[str, Any]]] | None = None

    @property
    def rejoin_s(self) -> float:
        return self.rejoin_timeout if self.rejoin_timeout is not None else self.deadline

    @property
    def end_grace_s(self) -> float:
        return min(self.end_grace, self.deadline)


__all__ = ["RestartPolicy", "NodeConfig", "ScheduledSwap", "RunConfig"]
