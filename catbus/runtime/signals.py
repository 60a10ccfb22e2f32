"""How a node process ends when it is told to, or when its launcher is gone (``docs/design.md``,
"Processes"): SIGINT/SIGTERM become :class:`Interrupted`, the parent-death signal, and the orphan
watchdog that is the last resort behind both."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator

#: Seconds a node whose launcher died gets to finish gracefully before it SIGKILLs itself.
ORPHAN_GRACE = 5.0


class Interrupted(BaseException):
    """SIGINT or SIGTERM reached this process (also: the launcher died, via PDEATHSIG).

    A BaseException, like KeyboardInterrupt: the signal handler raises it wherever the process
    happens to be, and as an Exception it was swallowed by every ``except Exception`` on the
    way -- codec.Header.unpack turned it into a DecodeError that the inbox counted as malformed,
    the control link into a malformed message, node code's own handlers into nothing -- after
    which the node ignored every further signal and outlived its launcher.

    ``signum`` is the signal; the process then exits with ``128 + signum`` (130 for SIGINT, 143
    for SIGTERM), the shell's convention. A launcher found dead counts as SIGTERM, the
    parent-death signal.
    """

    def __init__(self, signum: int = signal.SIGTERM) -> None:
        super().__init__(signum)
        self.signum = int(signum)

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class PendingSignal:
    """The signal that told this node to stop, until the node has acted on it.

    The handler raises :class:`Interrupted` wherever the process happens to be, and the code
    there may swallow it without knowing: a bare ``except:`` (Cython's memoryview module runs
    one while ``numpy.random`` is imported, lazily, in the first ``setup``), an ``except
    BaseException`` in node code, a ``__del__``. That node then ran on and ignored the one
    SIGTERM it was sent. So the handler also notes the signal here, and the node's I/O loop
    (every wait and every poll between steps) raises it again until the node is finishing."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def note(self, signum: int) -> None:
        self.signum = int(signum)

    def clear(self) -> None:
        """The node is finishing: the signal has been acted on."""
        self.signum = None

    def raise_if_pending(self) -> None:
        """Raise :class:`Interrupted` for a noted signal that nobody has acted on yet."""
        if self.signum is not None:
            raise Interrupted(self.signum)


#: prctl option: the signal this process gets when its parent exits (linux/prctl.h).
PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int) -> bool:
    """Ask the kernel to send ``sig`` to this process when its parent exits (Linux prctl
    ``PR_SET_PDEATHSIG``): the parent may die by SIGKILL, when it can stop nothing itself.

    Linux only; elsewhere nothing is asked and False is returned, so a caller keeps its own way
    of noticing the parent is gone (the heartbeat, the orphan watchdog). "Parent" is the *thread*
    that started this process, and a process orphaned before it asked is told nothing: a caller
    that must not outlive its parent checks once more after asking.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def set_parent_death_signal(parent_pid: int | None) -> None:
    """A node asks for SIGTERM (a graceful end) when its launcher dies, then closes the race
    where the launcher died before it asked."""
    if parent_pid is None:
        return
    die_with_parent(signal.SIGTERM)
    if os.getppid() != parent_pid:
        raise Interrupted()


def start_orphan_watchdog(parent_pid: int | None, grace: float = ORPHAN_GRACE) -> None:
    """The last resort behind PDEATHSIG and the heartbeat timeout: both act only where the node
    runs catbus code, so a node stuck in a step that ignores SIGTERM outlived its launcher for
    ever. A daemon thread notices the launcher is gone and, ``grace`` seconds later (time for the
    graceful exit: close() runs, a recording is finished), ends the process with SIGKILL."""
    if parent_pid is None:
        return

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(0.5)
        time.sleep(grace)
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="catbus-orphan-watchdog", daemon=True).start()


def signal_exit_code(exc: BaseException) -> int | None:
    """The exit code of a process that ``exc`` (a signal: :class:`Interrupted` or Ctrl-C's
    KeyboardInterrupt) ends, else None: ``128 + signum``."""
    if isinstance(exc, Interrupted):
        return exc.exit_code
    if isinstance(exc, KeyboardInterrupt):
        return 128 + signal.SIGINT
    return None


def install_signal_handlers(runtime: Any) -> None:
    """SIGINT and SIGTERM end the node gracefully: ``close()`` runs, the recording is finished.
    ``runtime.interrupt(signum, frame)`` decides (it raises :class:`Interrupted` until the node
    is finishing)."""
    handler: Callable[[int, Any], None] = runtime.interrupt
    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


@contextmanager
def noted_ctrl_c() -> Iterator[list[int]]:
    """Within the block, Ctrl-C (SIGINT) is noted in the yielded list instead of raising
    KeyboardInterrupt; the block looks at the list where it can stop cleanly (a wait in short
    slices) and raises KeyboardInterrupt itself. Two reasons: a KeyboardInterrupt raised
    wherever the process happens to be can be swallowed (a bare ``except:`` in a library, as a
    node process once showed), and a process that inherited SIGINT ignored (started as a
    background job) gets no KeyboardInterrupt at all: a sweep run so ran on to its end after
    the Ctrl-C it was sent. Outside the main thread (where Python cannot take signals) nothing
    is changed and the list stays empty."""
    noted: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield noted
        return
    previous = signal.signal(signal.SIGINT, lambda signum, _: noted.append(signum))
    try:
        yield noted
    finally:
        signal.signal(signal.SIGINT, previous)
