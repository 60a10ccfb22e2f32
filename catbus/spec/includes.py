"""A launch file's ``args:`` and ``include:``, expanded at the YAML level before the schema decode:
the result is one launch document with every node in it, as if written in one file, plus where
each included node was written (so that its errors name the included file and the including one).

``include: {file: other.yaml, prefix: left, args: {...}}`` (or a list of them) brings
``other.yaml``'s nodes under a name prefix:

* **Node names** become ``left_env``. Node names are identifiers (``[A-Za-z_][A-Za-z0-9_]*``)
  because they appear in topics, dotted overrides (``--set left_env.gain=2``), socket and log
  names; a ``/`` (``left/env``, as ROS writes it) would break all of those, so ``_`` joins.
* **Topics** go under ``left/``: every input and output of an included node, resolved as in its
  own file (``~/state`` of ``env`` is ``env/state``), becomes ``left/env/state``, so the
  included nodes still talk to each other and to nothing else. A topic written absolute in the
  included file (``remap: {"~/cmd": /common/cmd}``) and ``catbus/`` topics are not prefixed:
  that is how two includes share a topic. The class is needed to know the topics, so the
  remapping itself is done when the node is checked (:func:`catbus.spec.nodespec.node_spec`,
  from :class:`NodeOrigin`).
* **Order.** Included nodes take the place of the ``include:`` key relative to ``nodes:`` in
  the file (include first: its nodes step first within a tick).
* **What is taken** from an included file: ``nodes``, ``swap`` (node names prefixed),
  ``pythonpath`` and its own folder (for its classes), and its own ``include:``. Its run-wide
  keys (``mode``, ``steps``, ``seed``, ``record``, ``bus``, ...) are the including file's
  business and are not used. Paths in it (``params_file``) stay relative to it.
* An include cycle is refused, naming the chain of files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from catbus.errors import ConfigError
from catbus.spec.decode import decode
from catbus.spec.fieldcheck import absolute
from catbus.spec.launchargs import ARG_OPTION, bind_args, declared_args, substitute
from catbus.spec.runchecks import pythonpath
from catbus.spec.schema import IncludeEntry, LaunchDocument
from catbus.spec.yamlfile import load_yaml_file


@dataclass(frozen=True)
class NodeOrigin:
    """Where an included node was written: ``where`` names the file and how it was included,
    ``local_name`` is its name there, ``namespace`` the topic prefix (``left``, ``a/b``; empty:
    none)."""

    where: str
    local_name: str
    namespace: str = ""
    folder: Path | None = None   # the file's folder: its relative paths (params_file)

    @property
    def field(self) -> str:
        """The node's dotted field in its own file."""
        return f"nodes.{self.local_name}"


@dataclass
class Expanded:
    """A launch document with its arguments substituted and its includes brought in."""

    document: Any
    origins: dict[str, NodeOrigin] = field(default_factory=dict)
    folders: list[Path] = field(default_factory=list)   # import folders of included files


def expand_launch(document: Any, *, where: str, base_dir: Path, path: Path | None,
                  args: Mapping[str, Any]) -> Expanded:
    """``document`` (a launch file's data) with ``args`` bound (given by ``--arg``) and every
    include expanded. A document that is not a mapping is returned as it is (the decode says
    what is wrong with it)."""
    chain = (absolute(path),) if path is not None else ()
    return _expand(document, where=where, base_dir=base_dir, given=args, given_as=ARG_OPTION,
                   chain=chain)


def _expand(document: Any, *, where: str, base_dir: Path, given: Mapping[str, Any],
            given_as: str, chain: tuple[Path, ...]) -> Expanded:
    if not isinstance(document, Mapping):
        if given:
            bind_args({}, given, where=where, given_as=given_as)   # the unknown-argument error
        return Expanded(document)
    values = bind_args(declared_args(document.get("args"), where), given, where=where,
                       given_as=given_as)
    body = substitute({key: item for key, item in document.items() if key != "args"}, values,
                      where=where)
    if body.get("include") is None:
        body.pop("include", None)
        return Expanded(body)
    own_nodes = body.get("nodes")
    if own_nodes is not None and not isinstance(own_nodes, Mapping):
        raise ConfigError(where, "nodes", "must be a mapping of node name to its settings")
    result = Expanded({})
    nodes: dict[Any, Any] = {}
    swap_value = body.get("swap")   # not a list: left for the decode to refuse
    swaps = list(swap_value) if isinstance(swap_value, list) else \
        [] if swap_value is None else None
    for key, item in body.items():
        if key == "nodes":
            for name, settings in (own_nodes or {}).items():
                _add_node(nodes, name, settings, where, "nodes")
        elif key == "include":
            for label, entry in _entries(item, where):
                _include(entry, label, where=where, base_dir=base_dir, chain=chain, nodes=nodes,
                         result=result, swaps=swaps)
        else:
            result.document[key] = item
    result.document["nodes"] = nodes
    if swaps:
        result.document["swap"] = swaps
    return result


def _entries(value: Any, where: str) -> list[tuple[str, IncludeEntry]]:
    if isinstance(value, list):
        return [(f"include[{index}]", decode(entry, IncludeEntry, where=where,
                                             prefix=f"include[{index}]"))
                for index, entry in enumerate(value)]
    return [("include", decode(value, IncludeEntry, where=where, prefix="include"))]


def _include(entry: IncludeEntry, label: str, *, where: str, base_dir: Path,
             chain: tuple[Path, ...], nodes: dict[Any, Any], result: Expanded,
             swaps: list[Any] | None) -> None:
    """Bring one included file's nodes (and swaps, and import folders) into ``nodes``."""
    file = absolute(base_dir / entry.file)
    if file in chain:
        cycle = " -> ".join(str(step) for step in (*chain, file))
        raise ConfigError(where, f"{label}.file", f"include cycle: {cycle}; a file cannot "
                                                  f"include itself, directly or not")
    if not file.is_file():
        raise ConfigError(where, f"{label}.file", f"no such launch file: {file} (paths in a "
                                                  f"launch file are relative to its folder)")
    as_what = f" as {entry.prefix!r}" if entry.prefix else ""
    inner_where = f"{entry.file} (included by {where}{as_what})"
    data = load_yaml_file(file, where=inner_where, missing="no such launch file")
    if not isinstance(data, Mapping):
        raise ConfigError(inner_where, "", "an included launch file must be a mapping with a "
                                           "'nodes:' key")
    inner = _expand(data, where=inner_where, base_dir=file.parent, given=entry.args or {},
                    given_as=f"{label}.args of {where}", chain=(*chain, file))
    checked = decode(inner.document, LaunchDocument, where=inner_where)
    result.folders.extend(inner.folders)
    result.folders.extend(pythonpath(checked.pythonpath, file.parent, inner_where))
    result.folders.append(file.parent)
    renamed: dict[Any, str] = {}
    for name, settings in inner.document["nodes"].items():
        new = f"{entry.prefix}_{name}" if entry.prefix else name
        renamed[name] = new
        _add_node(nodes, new, settings, where, f"{label} ({entry.file})")
        origin = inner.origins.get(name, NodeOrigin(inner_where, name, folder=file.parent))
        namespace = "/".join(part for part in (entry.prefix, origin.namespace) if part)
        result.origins[new] = NodeOrigin(origin.where, origin.local_name, namespace,
                                         origin.folder)
    if swaps is not None or inner.document.get("swap"):
        if swaps is None:
            raise ConfigError(where, "swap", "must be a list of swaps")
        for swap in inner.document.get("swap") or []:
            if isinstance(swap, Mapping) and swap.get("node") in renamed:
                swap = {**swap, "node": renamed[swap["node"]]}
            swaps.append(swap)


def _add_node(nodes: dict[Any, Any], name: Any, settings: Any, where: str, source: str) -> None:
    if name in nodes:
        raise ConfigError(where, f"nodes.{name}",
                          f"defined twice ({source} brings a node of this name too); give the "
                          f"include a prefix (include: {{file: ..., prefix: NAME}}) or rename one")
    nodes[name] = settings


__all__ = ["NodeOrigin", "Expanded", "expand_launch"]
