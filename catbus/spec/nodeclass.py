"""A class path (``module:Class``) imported and checked to be a :class:`catbus.Node` subclass,
every failure one ConfigError naming the folders searched and the fix (a launch file's
``class:``, a ``swap:`` entry's, ``catbus node``'s, a restart's)."""

from __future__ import annotations

import importlib
import os
from typing import Any, Sequence

from catbus.errors import ConfigError
from catbus.node import Node
from catbus.spec.fieldcheck import class_path_of, did_you_mean
from catbus.spec.imports import describe, import_path_for, shadowing_module, use_import_path

#: How to fix a class path that does not import, in a launch file.
LAUNCH_IMPORT_FIX = ("put the package in one of those folders, or list the folder that holds it "
                     "under 'pythonpath:' in the launch file (relative to the file); and check "
                     "the spelling")


def checkpoint_problem(node_class: type, every: int | None, period: float | None, where: str,
                       prefix: str) -> None:
    """``checkpoint: N`` needs a class that can give and take its state (``snapshot`` and
    ``restore``: a restart goes on from what ``snapshot`` gave) and a period (checkpoints are
    taken between steps); a ConfigError says which is missing."""
    if every is None:
        return
    from catbus.runtime.nodestate import can_snapshot

    name = getattr(node_class, "__name__", str(node_class))
    if not can_snapshot(node_class):
        missing = [m for m in ("snapshot", "restore") if not callable(getattr(node_class, m, None))]
        raise ConfigError(where, f"{prefix}.checkpoint",
                          f"{name} has no {' or '.join(missing)}(), so a restart could not go "
                          f"on from a checkpoint: give the class snapshot() -> state and "
                          f"restore(state), or remove checkpoint")
    if period is None:
        raise ConfigError(where, f"{prefix}.checkpoint",
                          f"{name} has no period (it only reacts to messages), and checkpoints "
                          f"are taken between steps: remove checkpoint")


def import_node_class(value: Any, where: str, prefix: str, *,
                      import_path: Sequence[str | os.PathLike] | None = None,
                      fix: str = LAUNCH_IMPORT_FIX) -> tuple[str, type]:
    """Import ``module:Class`` (or accept a Node subclass), reporting every failure as config.

    ``import_path`` (default: the current folder) goes in front of ``sys.path`` first
    (:func:`catbus.spec.imports.use_import_path`); ``fix`` ends the message when the module
    is not found."""
    field_path = f"{prefix}.class" if prefix else "class"
    if value is None:
        raise ConfigError(where, field_path, "missing: give the node's class as module:Class "
                                             "(for example nodes.flat_evade.env:FlatEvadeEnv)")
    if isinstance(value, type):
        node_class: Any = value
        class_path = class_path_of(value) or ""
    else:
        if not isinstance(value, str) or ":" not in value:
            raise ConfigError(where, field_path, f"must be module:Class (a colon between the module "
                                                 f"and the class), got {value!r}")
        class_path = value.strip()
        module_name, _, attr = class_path.partition(":")
        if not module_name or not attr:
            raise ConfigError(where, field_path, f"must be module:Class, got {value!r}")
        paths = tuple(import_path) if import_path is not None else import_path_for()
        module = _import_module(module_name, where, field_path, paths, fix)
        node_class = _get_attr(module, module_name, attr, where, field_path)
    if not isinstance(node_class, type) or not issubclass(node_class, Node):
        what = "a class not derived from catbus.Node" if isinstance(node_class, type) else \
            f"a {type(node_class).__name__}, not a class"
        raise ConfigError(where, field_path, f"{class_path} is not a catbus.Node subclass (it is "
                                             f"{what})")
    return class_path, node_class


def _import_module(module_name: str, where: str, field_path: str,
                   import_path: Sequence[str | os.PathLike], fix: str) -> Any:
    use_import_path(import_path)
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        missing = error.name or ""
        if missing and (module_name == missing or module_name.startswith(missing + ".")):
            detail = "" if missing == module_name else f"no module {missing!r}; "
            shadow = shadowing_module(module_name, import_path)
            if shadow is not None and missing != module_name.partition(".")[0]:
                top = module_name.partition(".")[0]
                searched = (f"{top!r} is taken by {shadow}, another package of that name, "
                            f"outside the folders searched first ({describe(import_path)}); a "
                            f"process imports one package of a name")
            else:
                searched = (f"searched {describe(import_path)}, then the installed packages")
            raise ConfigError(where, field_path,
                              f"module {module_name!r} not found ({detail}{searched}); "
                              f"fix: {fix}") from None
        raise ConfigError(where, field_path, f"importing {module_name} failed: "
                                             f"{_one_line(error)}") from None
    except Exception as error:  # noqa: BLE001 -- any import failure is the user's to fix
        raise ConfigError(where, field_path, f"importing {module_name} failed: "
                                             f"{_one_line(error)}") from None


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


def _get_attr(module: Any, module_name: str, attr: str, where: str, field_path: str) -> Any:
    target = module
    for part in attr.split("."):
        if not hasattr(target, part):
            names = [n for n, v in vars(module).items()
                     if isinstance(v, type) and issubclass(v, Node) and v is not Node]
            hint = f" (Node classes there: {', '.join(sorted(names))})" if names else ""
            raise ConfigError(where, field_path, f"module {module_name} has no {attr!r}{hint}"
                                                 f"{did_you_mean(part, names)}")
        target = getattr(target, part)
    return target


__all__ = ["import_node_class", "checkpoint_problem", "LAUNCH_IMPORT_FIX"]
