"""Topic and node names: how a declared name becomes a name on the bus, and what a valid name is.

A node class declares names in its own terms; the launch file decides what they mean on the bus, so
one class serves several instances:

* ``~/x``  is relative to the node's name: ``robot/x`` for the node named ``robot``;
* ``/x``   is absolute; the leading slash is dropped (``x``), as in ROS, so ``/robot/x`` and
  ``robot/x`` are the same topic;
* ``x/y``  anything else is taken as is;
* ``*``    (inputs only) is the wildcard: every topic on the bus (the recorder).

A launch file's ``remap`` is looked up by the *declared* name first (``{"~/sensors": "env/obs"}``),
and the result is then resolved by the rules above, so a remap target may itself be ``~/...``.

Valid topic names use ``[A-Za-z0-9_./-]``, have no empty segment (no ``a//b``, no trailing ``/``)
and do not start with ``catbus/``: that prefix carries the framework's own bookkeeping (progress,
drops, logs), and a user topic there would be mistaken for it.
"""

from __future__ import annotations

import re
from typing import Mapping

from catbus.wire.protocol import EVERY_TOPIC as ALL_TOPICS
from catbus.wire.protocol import RESERVED_PREFIX

_TOPIC_CHARS = re.compile(r"[A-Za-z0-9_./-]+\Z")
_NODE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def resolve_topic(declared: str, node_name: str, remap: Mapping[str, str]) -> str:
    """The bus name of ``declared`` for the node ``node_name`` after applying ``remap``.

    The result is not validated (see :func:`validate_topic`) so callers can report a bad name
    together with where it came from (the class or the remap).
    """
    name = remap.get(declared, declared)
    if name == ALL_TOPICS:
        return name
    if name.startswith("~/"):
        return f"{node_name}/{name[2:]}"
    if name.startswith("/"):
        return name[1:]
    return name


def validate_topic(name: str, *, allow_wildcard: bool = False,
                   allow_reserved: bool = False) -> str | None:
    """Why the resolved topic ``name`` is invalid, or ``None`` when it is fine.

    ``allow_wildcard`` is for inputs (``*`` subscribes to everything); ``allow_reserved`` is for the
    framework's own nodes, which may use topics under ``catbus/``.
    """
    if not isinstance(name, str):
        return f"a topic name must be text, got {name!r}"
    if name == ALL_TOPICS:
        return None if allow_wildcard else "'*' (every topic) is only allowed as an input"
    if not name:
        return "a topic name must not be empty"
    if not _TOPIC_CHARS.match(name):
        bad = sorted({c for c in name if not re.match(r"[A-Za-z0-9_./-]", c)})
        return (f"topic {name!r} has characters {''.join(bad)!r}; use letters, digits and _ . / -"
                + (" (write '~/x' for a name relative to the node)" if "~" in bad else ""))
    if any(segment == "" for segment in name.split("/")):
        return f"topic {name!r} has an empty segment (a leading, trailing or double '/')"
    if not allow_reserved and (name == "catbus" or name.startswith(RESERVED_PREFIX)):
        return f"topic {name!r} is under 'catbus/', which is reserved for the framework"
    return None


def validate_node_name(name: object) -> str | None:
    """Why ``name`` cannot name a node, or ``None`` when it is fine.

    Node names are identifiers (``[A-Za-z_][A-Za-z0-9_]*``) because they prefix topics
    (``robot/sensors``), appear in dotted overrides (``robot.kp=1``) and in log and file names.
    """
    if not isinstance(name, str):
        return f"a node name must be text, got {name!r}"
    if not _NODE_NAME.match(name):
        return (f"invalid node name {name!r}: use letters, digits and '_', not starting with a "
                "digit (it is used in topic names and in --set NODE.param=value)")
    return None


def topic_differences(inputs: set[str], their_inputs: set[str], outputs: set[str],
                      their_outputs: set[str]) -> list[str]:
    """What a replacement declares differently (``"inputs: lacks a; adds b"``), if anything:
    a replacement must declare the same input and output names (the graph's topics do not
    change mid-run)."""
    differences = []
    for what, mine, theirs in (("inputs", inputs, their_inputs),
                               ("outputs", outputs, their_outputs)):
        if mine != theirs:
            missing, extra = sorted(mine - theirs), sorted(theirs - mine)
            parts = ([f"lacks {', '.join(missing)}"] if missing else []) + (
                [f"adds {', '.join(extra)}"] if extra else [])
            differences.append(f"{what}: {'; '.join(parts)}")
    return differences


__all__ = ["ALL_TOPICS", "RESERVED_PREFIX", "resolve_topic", "validate_topic",
           "validate_node_name", "topic_differences"]
