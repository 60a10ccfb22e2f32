"""The run's membership: each node name (a :class:`Member`) and the processes that own or want
it (:class:`Process`). A member has at most one current process; during a swap a second one
(the replacement, later the old one) is known beside it but owns nothing."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from catbus.control.config import NodeConfig
from catbus.control.kinds import MemberState
from catbus.wire import messages as msg


@dataclass
class Process:
    """One process of a node's name, as it registered."""

    name: str
    identity: bytes
    incarnation: int
    pid: int = 0
    host: str = ""
    cls: str = ""
    endpoint: str = ""
    last_seen: float = 0.0
    registered_at: float = 0.0
    #: It said ``ready`` (connected, every neighbour answered its hello).
    ready: bool = False
    #: Its last heartbeat's ``state`` (what it is doing or waiting for).
    activity: str = ""

    @classmethod
    def from_register(cls, identity: bytes, message: msg.Register, incarnation: int,
                      now: float) -> "Process":
        return cls(message.name, identity, incarnation, message.pid, message.host, message.cls,
                   message.endpoint, last_seen=now, registered_at=now)

    def describe(self) -> dict[str, Any]:
        """``{incarnation, pid, host, class}``: how records and the recording name it."""
        return {"incarnation": self.incarnation, "pid": self.pid, "host": self.host,
                "class": self.cls}


@dataclass
class Member:
    """A node of the run as the control plane knows it."""

    name: str
    config: NodeConfig | None = None
    state: MemberState = MemberState.EXPECTED
    process: Process | None = None
    period: float | None = None
    inputs: list = field(default_factory=list)     # [[declared, topic, policy], ...]
    outputs: list = field(default_factory=list)    # [[declared, topic], ...]
    tick: int = -1
    steps: int = 0
    activity: str = ""
    stats: dict = field(default_factory=dict)
    code: int | None = None
    scores: dict = field(default_factory=dict)
    #: The highest incarnation handed out for this name (a new process gets the next one).
    issued: int = 0
    #: Restarts done (its restart policy bounds them).
    restarts: int = 0
    #: Monotonic time the current process's link closed (None: up), and whether the loss has
    #: been reported (it stayed silent past ``LOST_AFTER``).
    link_down_since: float | None = None
    lost: bool = False
    #: Monotonic time its link last came back (None: it never went down): a node back after the
    #: end of a parallel run gets the end grace from then to finish.
    link_back_at: float | None = None
    #: When the current process was last heard (monotonic).
    last_seen: float = 0.0
    #: Wall time its failed process was found gone (a restart's parallel gap starts then).
    failed_at: float = 0.0

    @property
    def identity(self) -> bytes | None:
        return self.process.identity if self.process is not None else None

    @property
    def pid(self) -> int:
        return self.process.pid if self.process is not None else 0

    @property
    def host(self) -> str:
        return self.process.host if self.process is not None else ""

    @property
    def endpoint(self) -> str:
        return self.process.endpoint if self.process is not None else ""

    @property
    def cls(self) -> str:
        return self.process.cls if self.process is not None else ""

    @property
    def incarnation(self) -> int:
        return self.process.incarnation if self.process is not None else 0

    def reads(self) -> set[str]:
        return {row[1] for row in self.inputs}

    def publishes(self) -> set[str]:
        return {row[1] for row in self.outputs}

    def graph_entry(self, standby: str = "", pending: str = "") -> dict[str, Any]:
        """The node in the ``graph`` message. ``standby``: the endpoint of its other process
        while it is being swapped (peers stay connected to both); ``pending``: a replacement
        in progress, in words (``catbus node list`` shows it)."""
        return {"name": self.name, "incarnation": self.incarnation, "endpoint": self.endpoint,
                "inputs": self.inputs, "outputs": self.outputs, "period": self.period,
                "pid": self.pid, "host": self.host, "cls": self.cls, "state": self.state.value,
                "tick": self.tick, "steps": self.steps, "standby": standby, "pending": pending}


__all__ = ["Process", "Member"]
