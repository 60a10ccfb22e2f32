"""What the control plane asks its host to do: send a message, start or kill a process, tell
the user. The plane only returns these; the registry (sockets) and the launcher (processes) carry
them out, in order."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from catbus.control.kinds import NoticeKind
from catbus.wire import messages as msg


@dataclass(frozen=True)
class Send:
    """Send ``message`` to the process with routing id ``identity``."""

    identity: bytes
    message: msg.Message


@dataclass(frozen=True)
class StartProcess:
    """Start a process of node ``node`` running ``cls`` that registers with ``replace`` (a
    swap's replacement) or ``restart``; ``params`` are a swap's overrides, for the host to check
    before it starts anything (a refused start is reported back as ``ProcessRefused``)."""

    node: str
    cls: str
    restart: bool = False
    params: dict = field(default_factory=dict)


@dataclass(frozen=True)
class KillProcess:
    """Kill process ``pid`` of ``node`` (one of the host's: it is stuck or lost, and its restart
    policy starts another)."""

    node: str
    pid: int


@dataclass(frozen=True)
class Notice:
    """Something the host must know or say (see :class:`~catbus.control.kinds.NoticeKind`)."""

    kind: NoticeKind
    node: str = ""
    message: str = ""
    detail: str = ""


Instruction = Send | StartProcess | KillProcess | Notice


class Outbox:
    """The instructions one event produces, in order."""

    def __init__(self) -> None:
        self.items: list[Instruction] = []

    def send(self, identity: bytes | None, message: msg.Message) -> None:
        if identity is not None:   # a name with no process right now has nobody to tell
            self.items.append(Send(identity, message))

    def notify(self, kind: NoticeKind, node: str = "", message: str = "",
               detail: str = "") -> None:
        self.items.append(Notice(kind, node, message, detail))

    def start(self, node: str, cls: str, *, restart: bool = False,
              params: dict[str, Any] | None = None) -> None:
        self.items.append(StartProcess(node, cls, restart, dict(params or {})))

    def kill(self, node: str, pid: int) -> None:
        self.items.append(KillProcess(node, pid))


__all__ = ["Send", "StartProcess", "KillProcess", "Notice", "Instruction", "Outbox"]
