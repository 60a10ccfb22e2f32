"""Checks of a node class's callbacks before any process starts.

A ``step`` or ``on_message`` with the wrong parameters used to pass every launch check and fail
only when the run first called it, in a node process, as a ``TypeError`` traceback. Python can
tell from the signature alone, so the launcher asks before it starts anything.
"""

from __future__ import annotations

import inspect
from typing import Any

#: callback -> the arguments catbus calls it with (after ``self``), as shown in messages.
CALLBACKS: dict[str, tuple[str, ...]] = {
    "setup": ("params",),
    "step": ("t", "inputs"),
    "on_message": ("topic", "message"),
    "on_params": ("changed",),   # optional: live parameter changes (catbus param set)
    "close": (),
}


def callback_problem(node_class: type, callback: str) -> str | None:
    """Why catbus cannot call ``node_class.<callback>`` the way it does, or None."""
    function: Any = inspect.getattr_static(node_class, callback, None)
    if function is None:
        return None
    if isinstance(function, (staticmethod, classmethod)) or not callable(function):
        return f"{callback} must be a plain method, def {callback}(self, {_args(callback)})"
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):   # a builtin or C callable: nothing to check
        return None
    try:
        signature.bind(None, *CALLBACKS[callback])
    except TypeError as exc:
        return (f"{callback}{signature} cannot be called as {callback}(self, "
                f"{_args(callback)}): {exc}")
    return None


def callback_problems(node_class: type) -> list[tuple[str, str]]:
    """``(callback, problem)`` for every callback of ``node_class`` catbus cannot call."""
    found = [(name, callback_problem(node_class, name)) for name in CALLBACKS]
    return [(name, problem) for name, problem in found if problem]


def _args(callback: str) -> str:
    return ", ".join(CALLBACKS[callback])


__all__ = ["CALLBACKS", "callback_problem", "callback_problems"]
