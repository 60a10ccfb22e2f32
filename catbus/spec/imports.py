"""Where class paths are imported from: the *import path*, one rule for every process.

A class path (``module:Class`` in a launch file or given to ``catbus node``, and the
``module:function`` evaluators and plotters a recording names) is imported with these folders in
front of ``sys.path``, in this order:

1. the launch file's ``pythonpath:`` folders (relative to the launch file),
2. the launch file's own folder,
3. the current folder.

So a user's own ``nodes/`` package (regular or namespace, next to the launch file or in the
current folder) is found before anything installed; catbus installs no ``nodes`` package of its
own, so nothing of ours can hide it. The launcher computes the list once
(:attr:`~catbus.spec.launchfile.LaunchSpec.import_path`) and passes it to every node process as
``--path DIR`` options; ``catbus node`` typed by hand uses its ``--path`` options and the current
folder; ``catbus eval`` the folders the recording lists and the current folder.

Node processes start with :func:`python_command` (``python -P -m catbus``): the current folder
is *not* put first on ``sys.path`` before ``catbus`` is imported, so a folder that happens to be
called ``catbus`` there (the folder holding a clone, say) cannot shadow the installed package; the
import path is added deliberately afterwards, by :func:`use_import_path`.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from typing import Iterable, Mapping, Any

#: ``python -c`` program used on Python 3.10, which has no ``-P``: drop sys.path[0] (the current
#: folder, '' under -c) before catbus is imported, then run the CLI as ``-m catbus`` would.
_SAFE_MAIN_310 = ("import sys; sys.path.pop(0) if sys.path[:1] == [''] else None; "
                  "from catbus.cli.main import main; sys.exit(main())")


def python_command(version: tuple[int, int] | None = None) -> list[str]:
    """``python -m catbus`` for a child process, without the current folder on ``sys.path``
    before ``catbus`` is imported (``-P``, Python >= 3.11; an equivalent ``-c`` on 3.10)."""
    major_minor = tuple(version or sys.version_info[:2])
    if major_minor >= (3, 11):
        return [sys.executable, "-P", "-m", "catbus"]
    return [sys.executable, "-c", _SAFE_MAIN_310]


def node_process_command(class_path: str, name: str, bus: str,
                         import_path: Iterable[str | os.PathLike[str]] = (),
                         extra: Iterable[str] = ()) -> list[str]:
    """``python -P -m catbus node CLASS --name NAME --bus ADDR --path DIR ... EXTRA``: how every
    node process is started (by the launcher, for a swap or a restart, by ``--only``), with the
    run's import path as ``--path`` options so it imports its class from the launcher's
    folders."""
    paths = [arg for folder in import_path for arg in ("--path", os.fspath(folder))]
    return [*python_command(), "node", class_path, "--name", name, "--bus", bus, *paths, *extra]


def _absolute(path: str | os.PathLike[str], base: Path) -> Path:
    """Absolute, relative to ``base``, without resolving symlinks (the user's spelling stays)."""
    return Path(os.path.abspath(base / Path(path).expanduser()))


def import_path_for(folders: Iterable[str | os.PathLike[str]] = (), *,
                    cwd: str | os.PathLike[str] | None = None) -> tuple[Path, ...]:
    """``folders`` (relative ones relative to ``cwd``) then the current folder, each once, in
    that order: the import path of a launch (give it the ``pythonpath:`` folders and the launch
    file's folder), of ``catbus node`` (its ``--path`` folders) or of ``catbus eval``."""
    here = Path(os.path.abspath(cwd if cwd is not None else os.getcwd()))
    result: list[Path] = []
    for folder in [*folders, here]:
        path = _absolute(folder, here)
        if path not in result:
            result.append(path)
    return tuple(result)


def use_import_path(paths: Iterable[str | os.PathLike[str]]) -> None:
    """Put ``paths`` in front of ``sys.path``, in this order, each once (an entry already further
    back moves to the front). Called after ``catbus`` itself is imported; it stays in effect for
    the process (a node may import sibling modules later, in ``setup`` or ``step``)."""
    front = [os.fspath(p) for p in paths]
    sys.path[:] = front + [entry for entry in sys.path if entry not in front]
    importlib.invalidate_caches()   # folders made or filled since the last import are seen


def describe(paths: Iterable[str | os.PathLike[str]]) -> str:
    """The folders searched, for an error message."""
    return ", ".join(os.fspath(p) for p in paths) or "none"


def shadowing_module(module_name: str, paths: Iterable[str | os.PathLike[str]]) -> str | None:
    """If the top-level package of ``module_name`` is already imported from outside ``paths``
    (so those folders were never searched for it), where it came from; else None."""
    top = sys.modules.get(module_name.partition(".")[0])
    if top is None:
        return None
    locations = list(getattr(top, "__path__", None) or [])
    if not locations and getattr(top, "__file__", None):
        locations = [os.path.dirname(top.__file__)]
    folders = {os.path.abspath(os.fspath(p)) for p in paths}
    if any(os.path.dirname(os.path.abspath(loc)) in folders for loc in locations):
        return None
    return ", ".join(locations) or "a module without a file"


def recorded_import_path(metadata: Mapping[str, Any]) -> tuple[Path, ...]:
    """The import path a recording's run used (its launch document's ``pythonpath``), for
    ``catbus eval``/``plot`` from another folder; () if the recording has none."""
    import yaml

    launch = metadata.get("launch")
    if isinstance(launch, str):
        try:
            launch = yaml.safe_load(launch)
        except yaml.YAMLError:
            return ()
    folders = launch.get("pythonpath") if isinstance(launch, Mapping) else None
    if not isinstance(folders, list):
        return ()
    return tuple(Path(f) for f in folders if isinstance(f, str) and os.path.isabs(f))


__all__ = ["python_command", "node_process_command", "import_path_for", "use_import_path", "describe",
           "shadowing_module", "recorded_import_path"]
