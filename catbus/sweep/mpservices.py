"""The helper processes and folder that ``multiprocessing`` keeps for the life of a process (its
fork server, its resource tracker, its temporary folder), borrowed for a sweep's lifetime only.

A sweep starts its workers from multiprocessing's fork server. multiprocessing would start that
server, and the resource tracker beside it, once and keep both (and its temporary folder, which
holds the server's socket) until the interpreter exits: after a sweep in a notebook or a test,
two processes and a folder would outlive it, and a later sweep with another ``TMPDIR`` would find
the folder gone. multiprocessing has no public API to stop them, so this is the one module that
touches its private attributes (``_config``, ``forkserver._forkserver``,
``resource_tracker._resource_tracker``); if they change, only what this module started lives on
until exit: never an error.
"""

from __future__ import annotations

import multiprocessing
from multiprocessing import forkserver, resource_tracker
from typing import Any


class BorrowedServices:
    """Lend multiprocessing ``tempdir`` as its temporary folder; :meth:`give_back` stops the fork
    server and the resource tracker if they were started after this object was made (by the
    sweep), and gives multiprocessing its own folder back."""

    def __init__(self, tempdir: str) -> None:
        config = _config()
        self._lent = ("tempdir" in config, config.get("tempdir"))
        config["tempdir"] = tempdir
        self._server = forkserver._forkserver
        self._owns_server = getattr(self._server, "_forkserver_pid", 0) is None
        self._tracker = resource_tracker._resource_tracker
        self._owns_tracker = getattr(self._tracker, "_pid", 0) is None

    def give_back(self) -> None:
        """Stop what the sweep started; call it after the workers are gone, before the folder
        lent to multiprocessing is removed (the fork server's socket is in it)."""
        if self._owns_server and getattr(self._server, "_forkserver_pid", None):
            _stop(self._server)
        config = _config()
        had, previous = self._lent
        if had:
            config["tempdir"] = previous
        else:
            config.pop("tempdir", None)
        if self._owns_tracker and getattr(self._tracker, "_pid", None) is not None:
            _stop(self._tracker)


def _config() -> dict[str, Any]:
    return multiprocessing.current_process()._config


def _stop(service: Any) -> None:
    try:
        service._stop()
    except Exception:   # a private API: at worst the service lives until this process exits
        pass
