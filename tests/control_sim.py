"""A run's control plane driven by hand, event by event, with no process and no socket: the
fixture of ``tests/test_control_plane.py`` and its property test.

:class:`Sim` plays the host (the clock, the launcher's processes) and every node process: it
feeds the plane the messages a process would send and keeps what the plane sends back, per
process, so that a test reads like the protocol: ``sim.say("robot", msg.Ready())``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from catbus.control import (ControlPlane, KillProcess, LinkClosed, NodeConfig, Notice,
                            NoticeKind, ProcessExited, ProcessRefused, ProcessStarted, Received,
                            RestartPolicy, RunConfig, ScheduledSwap, Send, StartProcess,
                            StopRun, Tick)
from catbus.wire import messages as msg
from catbus.wire.protocol import HEARTBEAT_INTERVAL, PROTOCOL_VERSION

#: env -> robot -> env (a sense-act loop) and a recorder reading everything.
GRAPH = {
    "env": ([["~/action", "robot/action", "latest"]], [["~/obs", "env/obs"]]),
    "robot": ([["~/obs", "env/obs", "latest"]], [["~/action", "robot/action"]]),
    "recorder": ([["*", "*", "all"]], []),
}


def node_config(name: str, *, restart: RestartPolicy | None = None, local: bool = True
                ) -> NodeConfig:
    inputs, outputs = GRAPH[name]
    return NodeConfig(params={"gain": 1}, given={}, period=None if name == "recorder" else 0.01,
                      inputs=inputs, outputs=outputs, class_path=f"nodes.{name}:Node",
                      restart=restart or RestartPolicy(), local=local)


@dataclass
class Proc:
    """One simulated node process: what it was told, in order."""

    name: str
    identity: bytes
    pid: int
    inbox: list[msg.Message] = field(default_factory=list)

    def got(self, kind: type) -> list[Any]:
        return [m for m in self.inbox if isinstance(m, kind)]

    def last(self, kind: type) -> Any:
        found = self.got(kind)
        return found[-1] if found else None


class Sim:
    """The plane, its clock, and simulated processes."""

    def __init__(self, *, mode: str = "stepped", nodes: tuple[str, ...] = ("env", "robot"),
                 restart: dict[str, RestartPolicy] | None = None, remote: tuple[str, ...] = (),
                 swaps: list[ScheduledSwap] | None = None, duration: float | None = None,
                 deadline: float = 30.0, rejoin_timeout: float | None = None,
                 can_spawn: bool = True) -> None:
        restart = restart or {}
        self.config = RunConfig(
            mode=mode, seed=1, expected={n: node_config(n, restart=restart.get(n),
                                                        local=n not in remote) for n in nodes},
            run_info={"name": "sim"}, order=list(nodes), deadline=deadline,
            rejoin_timeout=rejoin_timeout, can_spawn=can_spawn, swaps=list(swaps or []),
            duration=duration)
        self.plane = ControlPlane(self.config)
        self.state = self.plane.state
        self.now = 1000.0
        self.procs: dict[bytes, Proc] = {}
        self.next_pid = 100
        self.notices: list[Notice] = []
        self.starts: list[StartProcess] = []
        self.kills: list[KillProcess] = []
        self.tools: dict[bytes, list[msg.Message]] = {}

    # -- feeding the plane ---------------------------------------------------------------------
    def feed(self, event: Any) -> list[Any]:
        out = self.plane.handle(event) + self.plane.flush()
        for item in out:
            if isinstance(item, Send):
                if item.identity in self.procs:
                    self.procs[item.identity].inbox.append(item.message)
                else:
                    self.tools.setdefault(item.identity, []).append(item.message)
            elif isinstance(item, Notice):
                self.notices.append(item)
            elif isinstance(item, StartProcess):
                self.starts.append(item)
            elif isinstance(item, KillProcess):
                self.kills.append(item)
        return out

    def advance(self, seconds: float) -> None:
        """Let ``seconds`` pass, one heartbeat tick at a time (no process says anything)."""
        end = self.now + seconds
        while self.now < end:
            self.now = min(end, self.now + HEARTBEAT_INTERVAL)
            self.feed(Tick(self.now, self.now))

    def tick(self) -> None:
        self.feed(Tick(self.now, self.now))

    def process(self, name: str, *, pid: int | None = None) -> Proc:
        """A new process of ``name`` (not registered yet)."""
        if pid is None:
            pid = self.next_pid
            self.next_pid += 1
        proc = Proc(name, f"id-{name}-{pid}".encode(), pid)
        self.procs[proc.identity] = proc
        return proc

    def register(self, proc: Proc, **fields: Any) -> Proc:
        inputs, outputs = GRAPH[proc.name]
        fields.setdefault("cls", f"nodes.{proc.name}:Node")
        self.send(proc, msg.Register(name=proc.name, endpoint=f"ipc://{proc.name}-{proc.pid}",
                                     pid=proc.pid, host="here", inputs=inputs, outputs=outputs,
                                     protocol=PROTOCOL_VERSION, **fields))
        return proc

    def send(self, proc: Proc, message: msg.Message) -> list[Any]:
        return self.feed(Received(proc.identity, message, self.now, self.now))

    def ask(self, tool: bytes, message: msg.Message) -> list[msg.Message]:
        self.feed(Received(tool, message, self.now, self.now))
        return self.tools.get(tool, [])

    def spawned(self, name: str, *, restart: bool = False) -> Proc:
        """The host carries out the last StartProcess for ``name``: a process is started."""
        order = [s for s in self.starts if s.node == name and s.restart == restart][-1]
        proc = self.process(name)
        self.feed(ProcessStarted(order.node, proc.pid, self.now))
        return proc

    def exited(self, proc: Proc, how: str = "was killed by signal 9") -> None:
        self.feed(ProcessExited(proc.pid, how, self.now, self.now))

    def link_closed(self, proc: Proc) -> None:
        self.feed(LinkClosed(proc.identity, self.now))

    def refused(self, name: str, reason: str) -> None:
        self.feed(ProcessRefused(name, reason, self.now))

    def stop(self, reason: str = "interrupted") -> None:
        self.feed(StopRun(reason, self.now))

    # -- whole protocol steps ----------------------------------------------------------------
    def start_run(self) -> dict[str, Proc]:
        """Every node's first process started by the host, registered and ready."""
        procs = {}
        for name in self.config.order:
            proc = self.process(name)
            if self.config.expected[name].local:
                self.feed(ProcessStarted(name, proc.pid, self.now))
            procs[name] = self.register(proc)
        for proc in procs.values():
            self.send(proc, msg.Ready())
        assert self.state.started
        return procs

    def beat(self, proc: Proc, tick: int, state: str = "") -> None:
        self.send(proc, msg.Heartbeat(tick=tick, steps=tick + 1, state=state))

    def swap_in(self, name: str, requester: bytes = b"tool", **request: Any) -> Proc:
        """A tool asks for a swap of ``name``; the host starts the replacement, which
        registers (``replace``) and says ready. Returns the replacement."""
        self.ask(requester, msg.SwapRequest(node=name, **request))
        new = self.spawned(name)
        self.register(new, replace=True, cls=self.starts[-1].cls)
        self.send(new, msg.Ready())
        return new

    # -- reading ----------------------------------------------------------------------------------
    def noticed(self, kind: NoticeKind) -> list[Notice]:
        return [n for n in self.notices if n.kind is kind]

    def current(self, name: str) -> bytes | None:
        return self.state.members[name].identity

    def owners(self, name: str) -> list[bytes]:
        """Processes the plane treats as owning ``name`` (at most one, always)."""
        return [p.identity for p in self.state.processes.values()
                if self.state.member_of(p.identity) is not None and p.name == name]
