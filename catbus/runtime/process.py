"""Runs one node in its own process: join the run, set up, connect to peers, run, leave
(``docs/design.md``, "Processes").

The same code serves a node started by the launcher and one started by hand on another host with
``catbus node module:Class --name robot --bus tcp://...``: both register with the registry, get
their parameters and the run seed from it, connect peer to peer, and wait for ``start``. Then the
loop for the run's mode (:func:`catbus.runtime.loops.choose_loop`) steps the node through its
:class:`~catbus.runtime.driver.NodeDriver`; whatever ends it, ``close()`` runs, the node's last
progress and its ``done`` are sent.
"""

from __future__ import annotations

import os
import socket
import traceback
from typing import Any

import zmq

from catbus import security
from catbus.errors import CatbusError
from catbus.node import Node
from catbus.runtime import checkpoints, liveparams
from catbus.runtime.driver import NodeDriver
from catbus.runtime.inbox import InputBinding
from catbus.runtime.link import ProcessLink, RegistryLost, Stopped
from catbus.runtime.lockstep import final_through
from catbus.runtime.logs import CLI_DEFAULT_LEVEL, check_level, install_terminal, \
    uninstall_terminal
from catbus.runtime.loops import choose_loop
from catbus.runtime.signals import Interrupted, PendingSignal, signal_exit_code
from catbus.runtime.stats import NodeStats, add_link_counts
from catbus.runtime.takeover import record_event, take_over
from catbus.runtime.terms import RunTerms
from catbus.wire import messages as msg
from catbus.wire.protocol import DEFAULT_REGISTRY_TIMEOUT, PROTOCOL_VERSION, STATS_TOPIC


class NodeRuntime:
    """One node's life: register, set up, connect, run, report, close."""

    def __init__(self, node_class: type[Node], name: str, bus: str, *, class_path: str,
                 params: dict | None = None, inputs: list[InputBinding] | None = None,
                 outputs: list[tuple[str, str]] | None = None, period: float | None = None,
                 advertise: str | None = None,
                 registry_timeout: float = DEFAULT_REGISTRY_TIMEOUT,
                 log_level: str | None = None, replace: bool = False, keys: Any = None) -> None:
        self.node_class = node_class
        #: ``--keys``: a loaded :class:`catbus.security.Keys` (CURVE on a TCP bus), or None.
        self.keys = keys
        self.name = name
        self.bus = bus
        self.class_path = class_path
        self.given_params = params or {}
        self.inputs = inputs if inputs is not None else [
            InputBinding(i.topic, i.topic, i.policy) for i in node_class.declared_inputs()]
        self.outputs = outputs if outputs is not None else [(o, o) for o in node_class.outputs]
        self.period = period if period is not None else node_class.period
        self.advertise = advertise
        self.registry_timeout = registry_timeout
        #: ``catbus node --log-level``: overrides the run's level (``run_info["log_level"]``).
        self.log_level = log_level
        #: ``catbus node --replace``: take over from the running process of this name.
        self.replace = replace
        #: ``catbus node --restart``: the running process of this name died; take its place.
        self.restart = False
        #: ``--data-ports FIRST-LAST``: bind the data socket in this port range (TCP).
        self.data_ports: tuple[int, int] | None = None
        #: The launcher's pid for a node it started: if it changes, the launcher is gone.
        self.parent_pid: int | None = None
        self.link: ProcessLink | None = None
        self.driver: NodeDriver | None = None
        self.terms: RunTerms | None = None
        #: What the node was doing (an error report names it): startup, setup, connect, ...
        self.where = "startup"
        self.terminal: object | None = None   # install_terminal's token, once set up
        #: The other nodes of this process (:mod:`catbus.runtime.group`), which need no hello,
        #: and the endpoints of all of them (one set, shared: each adds its own), whose
        #: messages come without a socket.
        self.local_peers: frozenset[str] = frozenset()
        self.local_endpoints: set[str] = set()
        self._finishing = False
        #: A signal the handler raised, raised again by the link's I/O if code swallowed it.
        self.pending_signal = PendingSignal()

    # -- entry point ----------------------------------------------------------------------------
    def run(self) -> int:
        """Returns the process exit code: 0 on a clean end (the run's end, or the registry's
        stop), 1 if the node failed, 128 + the signal if one interrupted it (130: SIGINT, 143:
        SIGTERM)."""
        ctx = zmq.Context()
        code = 0
        try:
            self.open(ctx)
            self.link.connect_and_wait_start()
            self.begin()
            choose_loop(self.terms.mode, self.terms.periodic(self.name))(
                self.link, self.driver, self.terms)
        except BaseException as exc:
            code = self.exit_code(exc)
        finally:
            code = self.close(code)
            ctx.term()
        return code

    def open(self, ctx: zmq.Context) -> None:
        """Join the run and set the node up: everything before connecting to the peers."""
        link = self.link = ProcessLink(ctx, self.name, self.bus, advertise=self.advertise,
                                       registry_timeout=self.registry_timeout,
                                       parent_pid=self.parent_pid, keys=self.keys,
                                       data_ports=self.data_ports,
                                       pending_signal=self.pending_signal)
        if self.local_peers:
            self.local_endpoints.add(link.data.endpoint)
            link.data.local_endpoints = self.local_endpoints
            link.data.gate.hellos |= self.local_peers
        self.where = "startup"
        terms = self.terms = self._join(link)
        self.where = "setup"
        level = self._log_level(terms)
        # Undone at the end: a node run in a thread of a longer-lived process (catbus.gym's
        # stand-in) must not leave its handler behind, one per episode.
        self.terminal = install_terminal(level)
        self.driver.setup(terms.params, terms.seed, terms.run_info, log_level=level)
        checkpoints.prepare(link, self.driver, terms)
        liveparams.prepare(link, self.driver)
        self.where = "connect"
        driver = self.driver
        link.on_rejoin = lambda away: record_event(link, driver, "rejoin", away_s=round(away, 3))
        link.on_swap_failed = lambda reason: record_event(link, driver, "swap-failed",
                                                          reason=reason)

    def begin(self) -> None:
        """Connected and started: take over first if this process replaces another."""
        if self.terms.joining:
            self.where = "takeover"
            take_over(self.link, self.driver, self.terms, self.class_path)
        self.where = "step"

    def exit_code(self, exc: BaseException) -> int:
        """The exit code for what ended the node's run (reported to the registry if it is a
        failure); anything that is not a way a run ends is raised again."""
        if isinstance(exc, Stopped):
            return 0
        code = signal_exit_code(exc)
        if code is not None:
            return code
        if isinstance(exc, RegistryLost):
            print(f"catbus: node {self.name}: {exc}", flush=True)
            try:   # if the registry is in fact alive, the run fails naming this node
                self.link.send(msg.Error(where=self.where, message=str(exc), traceback=""))
            except zmq.ZMQError:
                pass
            return 1
        if isinstance(exc, Exception):
            self._report_error(self.where, exc)
            return 1
        raise exc

    def close(self, code: int) -> int:
        """The node's end, whatever ended it: ``close()``, its last words; the exit code."""
        try:
            if self.link is not None:
                code = self._finish(code)
        finally:
            if self.terminal is not None:
                uninstall_terminal(self.terminal)
                self.terminal = None
        return code

    def _log_level(self, terms: RunTerms) -> str:
        """This node's log level: ``--log-level``, else the run's, else INFO."""
        if self.log_level is not None:
            return check_level(self.log_level, "--log-level")
        try:
            return check_level(terms.run_info.get("log_level") or CLI_DEFAULT_LEVEL)
        except CatbusError:
            return CLI_DEFAULT_LEVEL   # a registry of another catbus version: never fatal

    def interrupt(self, signum: int, frame: Any) -> None:
        """The SIGINT/SIGTERM handler. Every signal raises until the node is finishing (not
        only the first one: if node code swallowed that one, the next signal of the launcher's
        SIGINT/SIGTERM ladder must still work). While finishing, close() runs undisturbed;
        SIGKILL remains the last resort."""
        if not self._finishing:
            self.pending_signal.note(signum)
            raise Interrupted(signum)

    # -- joining the run ------------------------------------------------------------------------
    def _join(self, link: ProcessLink) -> RunTerms:
        """Register, and build the driver from the registry's welcome."""
        link.control.send_first(msg.Register(
            name=self.name, endpoint=link.data.endpoint, pid=os.getpid(),
            host=socket.gethostname(), cls=self.class_path, period=self.period,
            inputs=[[b.declared, b.topic, b.policy] for b in self.inputs],
            outputs=[list(o) for o in self.outputs], params=self.given_params,
            protocol=PROTOCOL_VERSION, replace=self.replace, restart=self.restart),
            link.registry_timeout)
        welcome = link.control.wait_for(msg.Welcome, timeout=link.registry_timeout,
                                        handle=link.on_control, poll=link.poll)
        terms = RunTerms.from_welcome(welcome, params=self.given_params,
                                      inputs=self.inputs, outputs=self.outputs,
                                      declared_params=self.node_class.params)
        link.data.incarnation = terms.incarnation
        security.trust(link.data.curve, terms.run_info)   # the run's clients may subscribe
        link.data.gate.allow(topic for _, topic in terms.outputs)
        link.joining, link.retire_at = terms.joining, terms.retire_at
        rejoin = terms.run_info.get("rejoin_timeout")
        if isinstance(rejoin, (int, float)) and rejoin > link.registry_timeout:
            # The run waits this long for a node whose link is down; so does the node for it.
            link.registry_timeout = float(rejoin)
        self.driver = NodeDriver(self.node_class, self.name, inputs=terms.inputs,
                                 outputs=terms.outputs, period=terms.period, order=terms.order,
                                 publish=link.data.publish)
        link.attach(self.driver.inbox, self.driver.stats)
        return terms

    # -- leaving it -----------------------------------------------------------------------------
    def _report_error(self, where: str, exc: BaseException) -> None:
        text = traceback.format_exc()
        if self.link is None:   # its sockets could not be made: nobody else to tell
            print(f"catbus: node {self.name}: {type(exc).__name__}: {exc}", flush=True)
            return
        try:
            self.link.send(msg.Error(where=where, message=f"{type(exc).__name__}: {exc}",
                                     traceback=text))
        except zmq.ZMQError:
            pass
        if isinstance(exc, CatbusError):
            print(f"catbus: node {self.name}: {exc}", flush=True)

    def _finish(self, code: int) -> int:
        self._finishing = True   # from here on signals wait: close() must be allowed to finish
        self.pending_signal.clear()
        link, driver = self.link, self.driver
        if link.retired:
            return self._finish_retired(code)
        link.say_closing()
        if driver is not None:
            if hasattr(type(driver.node), "registry_refused"):   # the recorder: catbus.end
                driver.node.registry_refused = link.registry_refused
            try:
                driver.close()
            except Exception as exc:
                self._report_error("close", exc)
                code = 1
        stats = add_link_counts(driver.summary(link.data.sent) if driver is not None else
                                NodeStats().to_dict(link.data.sent), link.control, link.data,
                                link.inbox)
        scores = driver.scores if driver is not None else {}
        try:
            publish_stats(link, driver, stats)
            publish_final(link, driver)
            link.send(msg.Done(code=code, stats=stats, end=link.stop_reason,
                               end_tick=link.end_tick, scores=scores))
        except zmq.ZMQError:
            pass
        link.close()
        return code

    def _finish_retired(self, code: int) -> int:
        """The end of a process whose node a replacement took over: its ``close()`` runs, but
        it says nothing on the data plane (the node goes on, in the new process)."""
        link, driver = self.link, self.driver
        link.say_closing()
        try:
            driver.close()
        except Exception as exc:
            self._report_error("close", exc)
        try:
            link.send(msg.Done(code=code, stats=add_link_counts(
                driver.summary(link.data.sent), link.control, link.data, link.inbox),
                scores=driver.scores,
                retired=True))
        except zmq.ZMQError:
            pass
        link.close()
        return code


def publish_stats(link: ProcessLink, driver: NodeDriver | None, stats: dict) -> None:
    """A node's counters of refused and lost input on ``catbus/stats``, before its final
    progress: the recording then has every node's, not only the recorder's."""
    if driver is None:
        return
    keys = ("malformed", "malformed_by", "dropped", "duplicates", "received")
    link.data.publish(STATS_TOPIC, {
        "node": link.name, "incarnation": link.data.incarnation,
        "stats": {key: stats[key] for key in keys if key in stats}},
        max(driver.stats.tick, 0), driver.sim_time, None)


def publish_final(link: ProcessLink, driver: NodeDriver | None) -> None:
    """Tell peers a node is done, and how far it got: ``through`` is the last tick it actually
    completed (see :func:`~catbus.runtime.lockstep.final_through`), with the end of the
    episode if it is known."""
    completed = driver.completed if driver is not None else -1
    inbox_end = driver.inbox.end if driver is not None else None
    ends = [e for e in (link.end_tick, inbox_end) if e is not None]
    end = min(ends) if ends else None
    tick = driver.stats.tick if driver is not None else -1
    link.data.publish_progress(tick, final_through(completed, end), end, True)
