"""A run going on in the background: what :func:`catbus.start` returns.

The run executes in a thread of this process: the launcher (``parallel``, ``stepped``; each node
in its own process) or the inline runner. The handle waits for it, stops it as Ctrl-C would, and
tells its registry address. It is deliberately small: hot swapping nodes and a Gymnasium wrapper
build on it.
"""

from __future__ import annotations

import threading
import time
import weakref
from typing import Any

from catbus.spec.launchfile import LaunchSpec
from catbus.api.result import RunResult

#: How long :func:`catbus.start` waits for the registry to be bound (to report a bus address it
#: cannot bind as a ConfigError, synchronously, and to know ``bus`` at once). Binding takes
#: milliseconds; the bound only keeps ``start`` from hanging if something is badly wrong.
BIND_WAIT = 10.0
#: How often waits that have no event to block on look again (seconds).
POLL = 0.01

#: Handles whose run is still going, stopped when the interpreter exits (see _stop_all).
_running: "weakref.WeakSet[RunHandle]" = weakref.WeakSet()


class RunHandle:
    """A run started with :func:`catbus.start`; use it as a context manager to stop the run when
    the block is left.

    Attributes:
        spec: The checked :class:`~catbus.spec.launchfile.LaunchSpec` being run.
        name: The run's name (the launch file's ``name:``, else its stem).
        mode: ``"parallel"``, ``"stepped"`` or ``"inline"``.
    """

    def __init__(self, spec: LaunchSpec, *, progress: bool | None = False,
                 deadline: float = 30.0, remote_timeout: float = 120.0, evaluate: bool = True,
                 log_level: str | None = None, announce_remote: bool = True,
                 rejoin_timeout: float | None = None, insecure: bool = False) -> None:
        """Start a checked spec in the background (see :func:`catbus.start`, which checks it
        first; the options are its own). ``announce_remote=False``: do not print the remote
        nodes' commands (a caller that starts them itself, as :mod:`catbus.gym` does).

        The constructor starts the run, so that a handle always stands for a run under way:
        :func:`catbus.start` and :mod:`catbus.gym` both build one from a spec they have checked,
        and nothing else can half-build it.

        Raises:
            ConfigError: The schedule, or the registry cannot bind the bus address: the
                caller's mistake, reported here like every other one.
        """
        self.spec = spec
        self.name: str = spec.name
        self.mode: str = spec.mode
        launcher = None
        if spec.mode != "inline":
            from catbus.supervise.launcher import Launcher

            # Built here, not in the thread: what it checks (the schedule) raises ConfigError
            # to the caller.
            launcher = Launcher(spec, progress=progress, deadline=deadline,
                                remote_timeout=remote_timeout, log_level=log_level,
                                announce_remote=announce_remote, rejoin_timeout=rejoin_timeout,
                                insecure=insecure)
        self._launcher = launcher
        self._options = dict(progress=progress, deadline=deadline,
                             remote_timeout=remote_timeout, evaluate=evaluate,
                             log_level=log_level, rejoin_timeout=rejoin_timeout)
        self._stop_event = threading.Event()
        self._done = threading.Event()
        self._result: RunResult | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name=f"catbus-run-{spec.name}")
        _running.add(self)
        self._thread.start()
        if launcher is not None:
            self._wait_for_bus()

    def _wait_for_bus(self) -> None:
        """Wait for the registry to bind (at most :data:`BIND_WAIT`): a bus address that
        cannot be bound is the caller's mistake (ConfigError), raised here."""
        launcher = self._launcher
        until = time.monotonic() + BIND_WAIT
        while (not launcher.bus_ready.wait(POLL) and not self._done.is_set()
               and time.monotonic() < until):
            pass
        from catbus.errors import ConfigError

        if self._done.is_set() and isinstance(self._error, ConfigError):
            self._thread.join()
            raise self._error

    def _main(self) -> None:
        from catbus.api.execute import execute

        try:
            self._result = execute(self.spec, launcher=self._launcher, stop=self._stop_event,
                                   **self._options)
        except BaseException as exc:   # handed to wait(); nothing is printed by the thread
            self._error = exc
        finally:
            self._done.set()
            _running.discard(self)

    # -- state ----------------------------------------------------------------------------------
    @property
    def bus(self) -> str | None:
        """The registry address (``ipc://...`` or ``tcp://HOST:PORT``), for ``catbus topic
        echo --bus``, ``catbus node --bus`` and remote nodes. Known when :func:`catbus.start`
        returns; None for inline runs (no bus) and for a run that ended before binding it."""
        launcher = self._launcher
        return None if launcher is None else launcher.bus

    @property
    def keys(self) -> Any:
        """The CURVE keys of a secured TCP run (a :class:`catbus.security.Keys`), else None:
        what a node or tool this process joins to the run needs (:mod:`catbus.gym`'s
        stand-in, :meth:`swap`)."""
        return getattr(self._launcher, "keys", None)

    @property
    def done(self) -> bool:
        """True once the run has ended (``wait()`` then returns or raises at once)."""
        return self._done.is_set()

    @property
    def running(self) -> bool:
        """True while the run goes on (also while it is stopping)."""
        return not self._done.is_set()

    @property
    def stopping(self) -> bool:
        """True once :meth:`stop` was called."""
        return self._stop_event.is_set()

    # -- waiting --------------------------------------------------------------------------------
    def wait(self, timeout: float | None = None) -> RunResult:
        """Wait for the run to end and return its result.

        Args:
            timeout: Seconds to wait at most; None waits for the end.

        Returns:
            The :class:`~catbus.api.result.RunResult` (``interrupted`` is True after
            :meth:`stop`), as :func:`catbus.run` returns it.

        Raises:
            TimeoutError: The run did not end within ``timeout`` (it goes on).
            NodeFailed: A node failed; ``error.result`` has the statistics so far.
            RunTimeout: Remote nodes did not join in time, or the run did not start.
            ConfigError: Something about the launch that only showed when the run started.
            KeyboardInterrupt: Ctrl-C while waiting: the run is stopped (as by :meth:`stop`)
                and the interrupt goes on to the caller.
        """
        try:
            finished = self._done.wait(timeout)
        except KeyboardInterrupt:
            self.stop()
            raise
        if not finished:
            raise TimeoutError(f"run {self.name} did not end within {timeout:g} s")
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result

    def wait_until_started(self, timeout: float | None = None) -> bool:
        """Wait until the run has started: every node has joined and stepping began (inline:
        the runner is running).

        Args:
            timeout: Seconds to wait at most; None waits as long as it takes.

        Returns:
            True once the run has started (also if it has ended since); False if ``timeout``
            passed first, or the run ended without starting (``wait()`` tells why).
        """
        until = None if timeout is None else time.monotonic() + timeout
        while True:
            if self._started():
                return True
            if self._done.is_set():
                return self._started()
            if until is not None and time.monotonic() >= until:
                return False
            self._done.wait(POLL)

    def _started(self) -> bool:
        if self._launcher is None:   # inline: it starts as soon as the thread does
            return not self._done.is_set() or self._result is not None
        registry = self._launcher.registry
        return registry is not None and bool(registry.started)

    # -- stopping -------------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop the run gracefully, as Ctrl-C does, and return at once: every node is stopped
        (the recorder last, so the recording is complete) and :meth:`wait` then returns the
        result with ``interrupted=True``. Harmless when the run has already ended or is
        stopping. An inline run stops between two steps.
        """
        if self._done.is_set():
            return
        self._stop_event.set()
        if self._launcher is not None:
            self._launcher.request_stop()

    # -- swapping ---------------------------------------------------------------------------------
    def swap(self, node: str, cls: str | None = None, params: dict[str, Any] | None = None,
             timeout: float = 60.0, wait: bool = False) -> dict[str, Any]:
        """Replace the running ``node`` by a new process, as ``catbus swap`` does, and return
        once it has taken over.

        Args:
            node: The node's name.
            cls: The replacement's class, ``"module:Class"``; None: the launch file's class of
                the node.
            params: Parameters of the replacement, on top of the launch file's (nested dicts,
                or dotted keys as in ``--set``: ``{"safe.d_min": 20}``).
            timeout: Seconds to wait for the swap to be done.
            wait: If the run has not started yet, wait for it (within ``timeout``) instead of
                being refused (``catbus swap --wait``).

        Returns:
            ``{"tick", "state" ("restored" | "fresh"), "gap" (parallel: seconds), "message"}``.

        Raises:
            SwapFailed: The swap was refused or the replacement failed; the old process goes on
                (unless the message says otherwise).
            CatbusError: An inline run (one process: nothing to swap live; schedule swaps in the
                launch file's ``swap:`` instead), or the run did not answer.
        """
        from catbus.errors import CatbusError
        from catbus.client.swap import request_swap
        from catbus import params as params_mod

        if self.bus is None:
            raise CatbusError(f"run {self.name} ({self.mode}) has no bus to swap a node on; an "
                              f"inline run swaps by the launch file's swap: schedule")
        nested: dict[str, Any] = {}
        for key, value in (params or {}).items():
            nested = params_mod.deep_merge(nested, params_mod.nest(str(key).split("."), value))
        reply = request_swap(self.bus, node, cls or "", nested, timeout=timeout,
                             keys=self.keys, wait=wait)
        return {"tick": reply.tick, "state": reply.state, "gap": reply.gap,
                "message": reply.message}

    def __enter__(self) -> "RunHandle":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        """Stop the run if it is still going and wait for its end. The run's own outcome
        (result or error) stays for :meth:`wait`; nothing is raised here."""
        self.stop()
        self._done.wait()
        self._thread.join()

    def __repr__(self) -> str:
        state = ("failed" if self._error is not None else "done") if self.done else (
            "stopping" if self.stopping else "running")
        bus = f" bus={self.bus}" if self.bus else ""
        return f"<RunHandle {self.name} mode={self.mode} {state}{bus}>"


def _stop_all() -> None:
    """At interpreter exit (before threads are joined): stop every run still going, so that
    a script that ends without waiting stops its nodes as Ctrl-C would, instead of waiting
    for the run's end."""
    for handle in list(_running):
        handle.stop()


_register = getattr(threading, "_register_atexit", None)
if _register is not None:
    _register(_stop_all)


__all__ = ["RunHandle"]
