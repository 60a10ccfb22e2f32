"""Starts a run's node processes, supervises them, and stops every one of them.

The launcher hosts the registry, starts each local node as ``python -P -m catbus node ...`` (the
``catbus node`` a user types on another host for a remote node), and watches three things: registry events
(errors with tracebacks, missed heartbeats), child exit codes, and Ctrl-C or SIGTERM; in parallel
mode also the end of the run: a node not done :data:`END_GRACE` seconds after it (stuck in a
step, or waiting for one that is) fails the run, named. At the end -- normal, failed or
interrupted -- every child is stopped: a ``stop`` message first, then SIGINT, SIGTERM and
SIGKILL, each with a deadline. The interrupting signal is kept (``RunResult.signal``) for the
exit code: 128 + the signal, 130 for Ctrl-C, 143 for SIGTERM. Children are in their own session
so that Ctrl-C reaches only the launcher, which then stops them all gracefully (each runs its
``close()``, so the recorder finishes its file), and they get SIGTERM from the kernel if the launcher itself dies
(PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any, Sequence

import zmq

from catbus import security
from catbus.control import (KillProcess, Notice, NoticeKind, ProcessExited, ProcessRefused,
                            ProcessStarted, StartProcess)
from catbus.control.instructions import Instruction
from catbus.errors import ConfigError, RunTimeout
from catbus.spec.imports import node_process_command
from catbus.spec.launchfile import LaunchSpec
from catbus.spec.nodespec import NodeSpec
from catbus.supervise.children import Children
from catbus.supervise.outcome import run_result, signal_label
from catbus.supervise.progressbar import RunProgress
from catbus.supervise.registry import Registry
from catbus.wire.sockets import bind_problem
from catbus.supervise.respawn import replacement_command, replacement_problem, run_config
from catbus.api.result import RunResult
from catbus.runtime.hostaddr import machine_addresses
from catbus.supervise.remote import announce_remote, open_bus_problem, startup_message
from catbus.supervise.rundir import RunDir, claim_record, stderr_line
from catbus.spec.runinfo import build_run_info, parallel_duration, schedule_for

#: Parallel mode: seconds every node gets, once the run is over (its duration has passed, or
#: the episode ended), to report that it is done; a node still running then is stuck and the
#: launcher fails the run naming it, then stops everyone. Never more than ``--deadline``, the
#: bound on how long a stuck node is waited for in every mode. A node already in close() (a
#: recorder finishing its file) is bound by the heartbeat deadline only.
END_GRACE = 5.0


def node_command(spec: NodeSpec, bus: str, import_path: Sequence[os.PathLike | str] = (),
                 keys: os.PathLike | str | None = None,
                 group: Sequence[NodeSpec] = ()) -> list[str]:
    """The command line of a local node process (the same CLI a remote node uses):
    ``python -P -m catbus node CLASS --name NAME --bus ADDR --path DIR ...``.

    ``-P`` (an equivalent on Python 3.10, :func:`~catbus.spec.imports.python_command`): the
    current folder is not searched before catbus is imported, so a folder named ``catbus`` there
    cannot shadow it; the run's import path (:attr:`LaunchSpec.import_path`) is passed as
    ``--path`` options, so the node imports its class from exactly the folders the launcher did.
    """
    extra = ["--keys", os.fspath(keys)] if keys else []
    for other in group:   # the rest of its group, in the same process (``--with``)
        extra += ["--with", f"{other.name}={other.class_path}"]
    return node_process_command(spec.class_path, spec.name, bus, import_path, extra)


def local_processes(spec: LaunchSpec) -> list[list[NodeSpec]]:
    """The processes a launcher starts, each as its nodes in launch order: one per node, but
    one per group in stepped mode (``group:``; parallel runs each node at its own period in its
    own process, and inline has one process anyway)."""
    processes: list[list[NodeSpec]] = []
    groups: dict[str, list[NodeSpec]] = {}
    for node in spec.nodes:
        if node.remote:
            continue
        if node.group is None or spec.mode != "stepped":
            processes.append([node])
        elif node.group in groups:
            groups[node.group].append(node)
        else:
            groups[node.group] = [node]
            processes.append(groups[node.group])
    return processes


class Launcher:
    """One multi-process run (``parallel`` or ``stepped``)."""

    def __init__(self, spec: LaunchSpec, *, progress: bool | None = None, deadline: float = 30.0,
                 remote_timeout: float = 120.0, startup_timeout: float = 60.0,
                 announce: bool = False, log_level: str | None = None,
                 announce_remote: bool = True, rejoin_timeout: float | None = None,
                 data_ports: tuple[int, int] | None = None, insecure: bool = False) -> None:
        self.spec = spec
        #: Accept an open (keyless) TCP bus on an address other hosts reach (``--insecure``);
        #: without it such a bus is refused (:func:`open_bus_problem`).
        self.insecure = insecure
        #: ``--data-ports``: the printed commands of remote nodes carry it too.
        self.data_ports = data_ports
        #: Print on stderr the ``catbus node`` command of each remote node before waiting for
        #: them (off for a remote node the caller starts itself: ``catbus.gym``).
        self.announce_remote = announce_remote
        #: ``catbus launch``: say on stderr which run this is (name, mode, bus) once it is bound,
        #: and that a finished recording is overwritten. Off for the Python API.
        self.announce = announce
        self.schedule = schedule_for(spec)
        #: ``log_level`` (default WARNING, the Python API's) reaches every node process, also
        #: remote ones, in ``run_info["log_level"]``.
        self.run_info = build_run_info(spec, self.schedule, log_level)
        #: CURVE keys (catbus.security) on a TCP bus; the folder the local nodes get (--keys).
        self.keys = security.host_keys(spec.keys, spec.bus, str(spec.path or "<launch>"))
        self.node_keys = self.keys.folder if self.keys else None
        if self.keys:
            self.run_info["security"] = security.run_info(self.keys)
        self.deadline = deadline
        #: A node whose link is down may take this long to come back (``--rejoin-timeout``;
        #: default: the deadline). Nodes get it too: they wait as long for the registry.
        self.rejoin_timeout = rejoin_timeout if rejoin_timeout is not None else deadline
        self.run_info["rejoin_timeout"] = self.rejoin_timeout
        self.remote_timeout = remote_timeout
        self.startup_timeout = startup_timeout
        self.show_progress = progress
        #: Every process this launcher started (a node's first, a swap's or a restart's); the
        #: control plane knows which of them owns a name. ``--data-ports``: where they bind.
        self.children = Children(data_ports)
        self.failures: list[tuple[str, str, str]] = []
        self.interrupted = False
        #: The signal that interrupted the run (SIGINT: Ctrl-C, SIGTERM), or None.
        self.signal: int | None = None
        #: The registry's address (``ipc://...`` or ``tcp://HOST:PORT``) once it is bound, for
        #: ``catbus.start`` handles and tools; ``bus_ready`` is set then (from another thread:
        #: ``launcher.bus_ready.wait(timeout)``). ``registry`` is the live Registry object.
        self.bus: str | None = None
        self.bus_ready = threading.Event()
        self.registry: Registry | None = None

    def run(self) -> RunResult:
        spec = self.spec
        rundir = RunDir.create(spec.name)
        ctx = zmq.Context()
        bind = rundir.endpoint("registry") if spec.bus == "ipc" else spec.bus
        try:
            registry = Registry(ctx, bind, run_config(
                spec, self.schedule, self.run_info, duration=parallel_duration(spec),
                deadline=self.deadline, rejoin_timeout=self.rejoin_timeout,
                end_grace=END_GRACE), keys=self.keys)
        except zmq.ZMQError as exc:
            # A bus address that is not on this machine, or a port in use: the user's mistake,
            # told in one line naming what failed (it was a ZeroMQ traceback that left the run
            # folder behind).
            ctx.destroy(linger=0)
            rundir.remove()
            raise ConfigError(str(spec.path or "command line"), "bus",
                              f"the registry cannot bind {bind}: "
                              f"{bind_problem(bind, exc, machine_addresses())}") from None
        refusal = None if self.insecure else open_bus_problem(
            registry.endpoint, self.keys,
            accept="--insecure" if self.announce else "insecure=True")   # the CLI's or the API's
        if refusal is not None:
            # Checked on the address bound (a name resolved, * made 0.0.0.0); nothing started.
            registry.close()
            ctx.term()
            rundir.remove()
            raise ConfigError(str(spec.path or "command line"), "bus", refusal)
        published = rundir.publish(registry.endpoint, spec.name, mode=spec.mode,
                                   record=spec.record)
        try:
            # After publishing: of two runs started together on one file, the later refuses.
            claim_record(spec.record, own=published, where=str(spec.path or "command line"),
                         say=stderr_line if self.announce else None)
        except ConfigError:
            registry.close()
            ctx.term()
            rundir.remove()
            raise
        #: The run's name among the live runs (``--run``; ``demo``, or ``demo-2`` beside it).
        self.run_id = published["id"]
        if self.announce:
            stderr_line(f"catbus: run {self.run_id} (mode {spec.mode}) on {registry.endpoint}")
        security.announce(registry.endpoint, self.keys, spec.keys)   # open TCP bus: a warning
        self.registry, self.bus = registry, registry.endpoint
        self.bus_ready.set()
        if self.announce_remote:
            announce_remote(spec, registry.endpoint, self.keys, self.remote_timeout,
                            self.data_ports)
        # SIGTERM (kill, timeout, systemd, a CI runner) stops the run like Ctrl-C does. Left at its
        # default it killed the launcher outright: no stop for the children (they only had their
        # parent-death signal), no summary, and the run folder left behind. signal.signal works
        # on the main thread only: a run in a background thread (``catbus.start``) leaves the
        # process's handlers alone and is stopped with :meth:`request_stop`.
        on_main_thread = threading.current_thread() is threading.main_thread()
        previous_handlers = {sig: signal.signal(sig, self._on_sigint)
                             for sig in (signal.SIGINT, signal.SIGTERM)} if on_main_thread else {}
        began = time.monotonic()
        try:
            for first, *others in local_processes(spec):
                self._start(registry, [first.name, *(other.name for other in others)],
                            node_command(first, registry.endpoint, spec.import_path,
                                         self.node_keys, others))
            self._supervise(registry)
        finally:
            self._stop_children(registry)
            for sig, handler in previous_handlers.items():
                signal.signal(sig, handler)
            registry.close()
            ctx.term()
            rundir.remove()
        return self._result(registry, time.monotonic() - began)

    # -- children -------------------------------------------------------------------------------
    def _start(self, registry: Registry, names: Sequence[str], command: list[str]) -> None:
        """Start a process of the nodes ``names`` (one, or a group) and tell the control
        plane its pid."""
        process = self.children.start(command)
        for name in names:
            self._carry_out(registry, registry.handle(ProcessStarted(name, process.pid,
                                                                     time.monotonic())))

    def _on_sigint(self, signum: int, frame: Any) -> None:
        self.interrupted = True
        if self.signal is None:
            self.signal = signum

    def request_stop(self) -> None:
        """Stop the run as Ctrl-C does, from any thread: every node is stopped in order (the
        recorder last, so the recording is kept) and :meth:`run` returns a result with
        ``interrupted=True`` (``signal`` None). Returns at once; harmless after the end."""
        self.interrupted = True

    def _supervise(self, registry: Registry) -> None:
        spec = self.spec
        remote = [n.name for n in spec.nodes if n.remote]
        limit = self.remote_timeout if remote else self.startup_timeout
        started_by = time.monotonic() + limit
        progress = RunProgress(self.schedule, parallel_duration(spec), enabled=self.show_progress)
        try:
            while True:
                self._carry_out(registry, registry.poll(50))
                self._check_children(registry)
                if self.failures:
                    self._notices_only(registry.stop(f"node {self.failures[0][0]} failed"))
                    return
                if self.interrupted:
                    self._notices_only(registry.stop(
                        f"interrupted ({signal_label(self.signal)})"))
                    return
                if not registry.started and time.monotonic() > started_by:
                    raise RunTimeout(startup_message(spec, registry.state, registry.endpoint,
                                                     self.keys, limit, self.data_ports))
                if registry.state.is_over():
                    return
                progress.update(registry)
        finally:
            progress.close()

    def _carry_out(self, registry: Registry, instructions: list[Instruction]) -> None:
        """Do what the control plane asks of this host: start or kill a process, tell the
        user, note a failure."""
        for instruction in instructions:
            if isinstance(instruction, StartProcess):
                self._start_replacement(registry, instruction)
            elif isinstance(instruction, KillProcess):
                self.children.kill(instruction.pid)
            elif isinstance(instruction, Notice):
                self._notice(instruction)

    def _start_replacement(self, registry: Registry, order: StartProcess) -> None:
        """A swap's replacement (checked against the launch file first: one that cannot work
        starts nothing) or a restart's new process."""
        if not order.restart:
            problem = replacement_problem(self.spec, order.node, order.cls, order.params)
            if problem is not None:
                self._carry_out(registry, registry.handle(
                    ProcessRefused(order.node, problem, time.monotonic())))
                return
        self._start(registry, [order.node], replacement_command(
            order.cls, order.node, registry.endpoint, self.spec.import_path, self.node_keys,
            restart=order.restart))

    def _notice(self, notice: Notice) -> None:
        kind = notice.kind
        if kind is NoticeKind.FAILED:
            self.failures.append((notice.node, notice.message, notice.detail))
        elif kind is NoticeKind.SWAP_FAILED:
            stderr_line(f"catbus: swap of {notice.node} failed: {notice.message}")
        elif kind in (NoticeKind.LOST, NoticeKind.BACK, NoticeKind.SWAPPED,
                      NoticeKind.RESTARTING):
            stderr_line(f"catbus: {notice.message}")
        elif kind is NoticeKind.SPLICED:
            stderr_line(f"catbus: spliced episode: {notice.message} (its scores say so)")

    def _notices_only(self, instructions: list[Instruction]) -> None:
        """While stopping: what the plane says is still said; nothing new is started."""
        for instruction in instructions:
            if isinstance(instruction, Notice):
                self._notice(instruction)

    def _check_children(self, registry: Registry, *, stopping: bool = False) -> None:
        """Tell the control plane of every process of ours that exited (what it meant -- a
        node's failure, a swap's replacement gone, an old process leaving, a crash after it
        said done -- is its call). ``stopping``: the run is over, nothing is started again."""
        carry_out = self._notices_only if stopping else \
            (lambda instructions: self._carry_out(registry, instructions))
        for pid, how, signum in self.children.exited():
            owner = next((m for m in registry.members.values() if m.pid == pid), None)
            if owner is not None and not owner.state.finished:
                # Give a dying node's last control messages (its traceback) a moment to arrive.
                carry_out(registry.poll(200))
            carry_out(registry.handle(
                ProcessExited(pid, how, time.monotonic(), time.time(), signum)))

    def _stop_children(self, registry: Registry) -> None:
        """Stop every child: a ``stop`` message, then the signal ladder (what the nodes say
        meanwhile is still read: the recorder's last word, a traceback)."""
        if not self.children.processes:
            return
        self._notices_only(registry.stop("the run is over"))

        def waiting() -> None:   # the nodes' last words, and how their processes end
            self._notices_only(registry.poll(20))
            self._check_children(registry, stopping=True)

        self.children.stop_all(waiting)
        self._check_children(registry, stopping=True)

    def _result(self, registry: Registry, wall: float) -> RunResult:
        return run_result(self.spec, registry, self.children, wall, failures=self.failures,
                          interrupted=self.interrupted, signum=self.signal)


def launch(spec: LaunchSpec, **options: Any) -> RunResult:
    """Run a ``parallel`` or ``stepped`` launch spec; raises NodeFailed if a node failed."""
    if spec.mode == "inline":
        raise ConfigError(str(spec.path or ""), "mode", "use catbus.supervise.inline for inline runs")
    return Launcher(spec, **options).run()


__all__ = ["launch", "Launcher", "node_command"]
