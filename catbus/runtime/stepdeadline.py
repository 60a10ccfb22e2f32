"""``--deadline`` for a node running in this very process (``inline``): a step (or
``on_message``) running longer than the deadline is interrupted and fails the run, named.

A node process is watched from outside (the registry misses its heartbeats); inline there is no
outside, so a watchdog thread looks at what the main thread is running and, once one call has
run for the deadline, sends the main thread SIGUSR1 (``signal.pthread_kill``) whose handler raises
:class:`StepOverrun`. A real signal, unlike ``_thread.interrupt_main``, also interrupts a node
blocked in a system call (``time.sleep``, a socket); a node busy inside C code that does not
return to Python (a long numpy call) is interrupted when it does.

Limits: Python runs signal handlers only in the main thread, so the deadline applies only when
the run itself runs there (``catbus launch``, ``catbus.run`` from a script); elsewhere it is off.
For the duration of the run SIGUSR1 belongs to catbus (the previous handler is restored after).
"""

from __future__ import annotations

import signal
import threading
import time
from typing import Any

#: The signal the watchdog interrupts the main thread with.
WATCHDOG_SIGNAL = signal.SIGUSR1


class StepOverrun(BaseException):
    """A node call ran past the deadline. A BaseException, so that node code catching
    ``Exception`` does not swallow it."""

    def __init__(self, node: str, tick: int, what: str, deadline: float) -> None:
        super().__init__(f"node {node}: {what} at tick {tick} ran past the {deadline:g} s deadline")
        self.node, self.tick, self.what, self.deadline = node, tick, what, deadline


class StepDeadline:
    """Use as ``with StepDeadline(seconds) as watch:`` around the loop, and bracket every node
    call with :meth:`begin` / :meth:`resume`.

    The main thread only stores a fresh tuple per call (no clock read, no lock): the watchdog
    notices when the same tuple has been current for ``deadline`` seconds of its own polling.
    """

    def __init__(self, deadline: float | None) -> None:
        self.deadline = deadline
        self.active = bool(deadline and deadline > 0 and hasattr(signal, "pthread_kill")
                           and threading.current_thread() is threading.main_thread())
        #: (node, tick, what) of the call running now, or None; a new tuple for every call.
        self.current: tuple[str, int, str] | None = None
        self._fired: tuple[str, int, str] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._previous_handler: Any = None
        self._main = threading.main_thread().ident

    def __enter__(self) -> "StepDeadline":
        if self.active:
            self._previous_handler = signal.signal(WATCHDOG_SIGNAL, self._on_signal)
            self._thread = threading.Thread(target=self._watch, name="catbus-step-deadline",
                                            daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.current = None
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
            signal.signal(WATCHDOG_SIGNAL, self._previous_handler)

    # -- the main thread ------------------------------------------------------------------------
    def begin(self, node: str, tick: int, what: str = "step") -> tuple | None:
        """A node call starts; returns the call it interrupts (for :meth:`resume`)."""
        previous = self.current
        self.current = (node, tick, what)
        return previous

    def resume(self, previous: tuple | None) -> None:
        """The call ended; ``previous`` (what :meth:`begin` returned) runs on, if anything."""
        self.current = previous

    def _on_signal(self, signum: int, frame: Any) -> None:
        fired = self._fired
        # Only for the call that overran: the main thread may have moved on since the watchdog
        # decided (then the signal is late and means nothing).
        if fired is not None and fired is self.current:
            self._fired = None
            node, tick, what = fired
            raise StepOverrun(node, tick, what, float(self.deadline or 0))

    # -- the watchdog thread --------------------------------------------------------------------
    def _watch(self) -> None:
        deadline = float(self.deadline or 0)
        interval = min(0.25, deadline / 10)
        seen: tuple | None = None
        since = time.monotonic()
        while not self._stop.wait(interval):
            current = self.current
            now = time.monotonic()
            if current is None or current is not seen:
                seen, since = current, now
                continue
            if now - since >= deadline:
                self._fired = current
                since = now   # a node that swallows it is interrupted again a deadline later
                signal.pthread_kill(self._main, WATCHDOG_SIGNAL)
