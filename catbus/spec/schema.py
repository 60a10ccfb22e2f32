"""The structure of a launch file, as msgspec types: which keys exist, their types, ranges and
defaults, and, in each field's ``Meta(description=...)``, what a right value looks like.

The description is the fix an error message gives: :func:`catbus.spec.decode.decode` turns
msgspec's ``Expected `int` >= 0 - at `$.seed``` into ``seed: must be a non-negative integer,
got -3``, and an unknown key into ``unknown key 'perod' (allowed: ...); did you mean 'period'?``.
So the structure and the wording of its errors are written once, side by side.

What these types cannot say (a class imports and is a Node, parameters fit what the class
declares, one publisher per topic, a folder exists) is checked after decoding, by the validators
in :mod:`catbus.spec.runchecks`, :mod:`catbus.spec.nodespec` and :mod:`catbus.spec.swapplan`.

Two choices worth knowing:

* ``nodes`` is decoded node by node (:func:`catbus.spec.nodelist.decode_nodes`), not as
  ``dict[str, NodeEntry]``: msgspec reports an error inside a mapping value as ``$.nodes[...]``,
  without the key, and every error must name the node.
* ``params`` and ``remap`` stay plain mappings here: parameters are checked against the node
  class (:func:`catbus.params.resolve`), and remap keys against the names the class declares,
  which only the class knows.
"""

import sys
from typing import Annotated, Any, ClassVar, Literal, Optional, Union

import msgspec
from msgspec import Meta

from catbus.wire.protocol import MODES, RESTART_POLICIES

#: The bound of a run without ``steps`` or ``duration`` (periods of the first periodic node).
DEFAULT_MAX_STEPS = 100_000

#: Finite numbers only: a period or a duration of ``.inf`` is a typo, not a setting.
_LARGEST = sys.float_info.max


def _described(kind: Any, description: str) -> Any:
    """``kind`` with the text an error message puts after "must be"."""
    return Annotated[kind, Meta(description=description)]


# -- values shared by the launch file and the command line ---------------------------------------
Mode = _described(Optional[Literal[MODES]], f"one of {', '.join(MODES)}")
Steps = _described(Optional[Annotated[int, Meta(ge=0)]],
                   "a non-negative integer (periods of the first periodic node)")
Duration = _described(Optional[Annotated[float, Meta(gt=0, le=_LARGEST)]],
                      "a positive number of seconds")
MaxSteps = _described(Optional[Annotated[int, Meta(gt=0)]],
                      "a positive integer (the most periods of the first periodic node a run "
                      "without steps or duration lasts)")
Seed = _described(Optional[Annotated[int, Meta(ge=0)]], "a non-negative integer")
Pace = _described(Optional[Annotated[float, Meta(gt=0, le=_LARGEST)]],
                  "a positive number (1 = real time, 2 = twice as fast)")
#: ``bus_address_problem`` checks the address itself; its message repeats this text.
BUS_DESCRIPTION = "'ipc' or 'tcp://HOST:PORT' (for example tcp://0.0.0.0:7700)"
Bus = _described(Optional[str], BUS_DESCRIPTION)
Params = _described(Optional[dict], "a mapping of parameter values")


class Security(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """``security: {keys: DIR}``."""

    about: ClassVar[str] = ("{keys: DIR} (DIR: a folder from `catbus keys generate DIR`, "
                            "relative to this file)")
    keys: _described(Annotated[str, Meta(min_length=1)],
                     "a folder from `catbus keys generate DIR`, relative to this file")


class SwapEntry(msgspec.Struct, forbid_unknown_fields=True, kw_only=True,
                rename={"class_": "class"}):
    """One entry of ``swap:`` (checked against the nodes by :mod:`catbus.spec.swapplan`)."""

    about: ClassVar[str] = "a mapping {at: SECONDS, node: NAME, class: module:Class, params: {...}}"
    at: _described(Annotated[float, Meta(ge=0, le=_LARGEST)],
                   "a number of seconds >= 0 (sim time in stepped/inline, wall time in parallel)")
    node: _described(str, "the name of a node of this launch file")
    class_: _described(Any, "module:Class (omit it to keep the node's class)") = None
    params: Params = None


class IncludeEntry(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """One entry of ``include:`` (expanded by :mod:`catbus.spec.includes` before the rest of the
    file is decoded)."""

    about: ClassVar[str] = ("a mapping {file: other.yaml, prefix: NAME, args: {...}} (or a list "
                            "of them)")
    file: _described(Annotated[str, Meta(min_length=1)],
                     "a launch file path, relative to this file")
    prefix: _described(Optional[Annotated[str, Meta(pattern=r"^[A-Za-z_][A-Za-z0-9_]*\Z")]],
                       "a name of letters, digits and '_' (its nodes become PREFIX_NAME, their "
                       "topics PREFIX/TOPIC)") = None
    args: _described(Optional[dict], "a mapping of the included file's argument names to "
                                     "values") = None


class NodeEntry(msgspec.Struct, forbid_unknown_fields=True, kw_only=True,
                rename={"class_": "class"}):
    """One node's settings under ``nodes:``. ``class_`` is ``"module:Class"``, or a Node
    subclass itself in a dict given to :func:`~catbus.spec.launchfile.build_launch`."""

    about: ClassVar[str] = "a mapping with at least 'class: module:Class'"
    class_: _described(Any, "the node's class as module:Class (for example "
                            "nodes.flat_evade.env:FlatEvadeEnv)")
    period: _described(Union[Annotated[float, Meta(gt=0, le=_LARGEST)], msgspec.UnsetType],
                       "a positive number of seconds (omit it to use the class's period)"
                       ) = msgspec.UNSET
    params: Params = None
    params_file: _described(Optional[Annotated[str, Meta(min_length=1)]],
                            "a path to a YAML file of parameters (relative to this file)") = None
    remap: _described(Optional[dict], "a mapping of declared name to topic") = None
    remote: _described(bool, "true or false") = False
    restart: _described(Literal[RESTART_POLICIES],
                        f"one of {', '.join(RESTART_POLICIES)}") = "never"
    max_restarts: _described(Annotated[int, Meta(ge=0)], "a whole number >= 0") = 3
    restart_backoff: _described(Annotated[float, Meta(ge=0, le=_LARGEST)],
                                "a number of seconds >= 0 (doubled after each restart)") = 0.5
    checkpoint: _described(Optional[Annotated[int, Meta(ge=1)]],
                           "a whole number of the node's steps >= 1 (a restart goes on from "
                           "its latest checkpoint; omit it for none)") = None
    #: Stepped/inline: when the node's outputs become visible (checked by
    #: :func:`catbus.runtime.latency.latency_problem`, which says what a right value is).
    latency: _described(Any, "a number of seconds >= 0, or {dist: normal | lognormal, mean, "
                             "std}") = None
    #: Stepped: the nodes of one group run in one process (docs/design.md, "Node groups").
    group: _described(Optional[Annotated[str, Meta(pattern=r"^[A-Za-z0-9_.-]+\Z")]],
                      "a group name of letters, digits, '_', '.' or '-' (the nodes of one "
                      "group share a process in stepped mode)") = None


class LaunchDocument(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A launch file's top level (the format: :mod:`catbus.spec.launchfile`). None is "not
    given", in a file as on the command line; the defaults are applied after the command line's
    values (``mode`` parallel, ``seed`` 0, ``bus`` ipc, ``max_steps`` :data:`DEFAULT_MAX_STEPS`)."""

    about: ClassVar[str] = "a mapping with a 'nodes:' key"
    name: _described(Optional[Annotated[str, Meta(pattern=r"^[A-Za-z0-9_.-]+\Z")]],
                     "a name of letters, digits, '_', '.' or '-'") = None
    description: Any = None
    #: Consumed before decoding (:mod:`catbus.spec.launchargs`, :mod:`catbus.spec.includes`);
    #: here so that an unknown key's message lists them.
    args: _described(Any, "a mapping of argument name to its default, or to {default: VALUE, "
                          "help: TEXT}") = None
    include: _described(Any, "{file: other.yaml, prefix: NAME, args: {...}}, or a list of "
                             "them") = None
    mode: Mode = None
    steps: Steps = None
    duration: Duration = None
    max_steps: MaxSteps = None
    seed: Seed = None
    #: ``false`` is no recording, like leaving it out; ``true`` is refused after decoding.
    record: _described(Union[Annotated[str, Meta(min_length=1)], bool, None],
                       "a file path (for example runs/a.mcap)") = None
    bus: Bus = None
    pythonpath: _described(Optional[list[_described(Annotated[str, Meta(pattern=r"\S")],
                                                    "a folder path (relative to this file)")]],
                           "a list of folders (relative to this file), for example "
                           "pythonpath: [..]") = None
    pace: Pace = None
    security: Optional[Security] = None
    swap: _described(Optional[list[SwapEntry]],
                     "a list of {at: SECONDS, node: NAME, class: module:Class (optional), "
                     "params: {...}} entries") = None
    nodes: _described(Annotated[dict, Meta(min_length=1)],
                      "a non-empty mapping of node name to its settings (class:, params:, ...), "
                      "for example nodes: {env: {class: module:Class}}")


class CommandLine(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The command-line values (keyword arguments of ``load_launch``) that replace the file's;
    None keeps the file's value. ``record`` and ``keys`` are paths, checked on their own."""

    about: ClassVar[str] = "command-line values"
    mode: Mode = None
    steps: Steps = None
    duration: Duration = None
    max_steps: MaxSteps = None
    seed: Seed = None
    pace: Pace = None
    bus: Bus = None


__all__ = ["DEFAULT_MAX_STEPS", "BUS_DESCRIPTION", "LaunchDocument", "NodeEntry", "SwapEntry",
           "IncludeEntry",
           "Security", "CommandLine"]
