"""Rules the code keeps, read from its source (no process, no socket).

* No module reaches into another object's underscore names (``x._y`` where ``x`` is not
  ``self``/``cls``/``super()``): state shared that way is what made the control plane impossible
  to reason about. Exceptions, each with its reason: the driver reading its own Node's private
  fields (their contract), and third-party internals patched knowingly.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

PACKAGE = Path(__file__).resolve().parent.parent / "catbus"

#: (file, the attribute reached into) allowed, and why.
ALLOWED = {
    # NodeDriver owns its Node: end_episode()/report() leave their record in these fields.
    ("runtime/driver.py", "_end_requested"), ("runtime/driver.py", "_scores"),
    ("runtime/driver.py", "_scores_changed"),
    # multiprocessing's fork server and resource tracker, patched knowingly (see the module).
    ("sweep/mpservices.py", "_config"), ("sweep/mpservices.py", "_forkserver"),
    ("sweep/mpservices.py", "_resource_tracker"), ("sweep/mpservices.py", "_stop"),
    # os._exit is the standard library's public way to leave a forked child.
    ("sweep/workers.py", "_exit"), ("sweep/cluster.py", "_exit"),
}


def private_reaches(path: Path) -> list[tuple[int, str, str]]:
    """``(line, expression, attribute)`` for every ``x._y`` whose ``x`` is not the object
    itself."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(node, ast.Attribute) or not node.attr.startswith("_") or \
                node.attr.startswith("__"):
            continue
        owner = node.value
        if isinstance(owner, ast.Name) and owner.id in ("self", "cls"):
            continue
        if isinstance(owner, ast.Call) and isinstance(owner.func, ast.Name) and \
                owner.func.id == "super":
            continue
        found.append((node.lineno, ast.unparse(node), node.attr))
    return found


def test_no_module_reaches_into_another_objects_underscore_names():
    offences = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        for line, expression, attribute in private_reaches(path):
            if (relative, attribute) not in ALLOWED:
                offences.append(f"catbus/{relative}:{line}: {expression}")
    assert not offences, "\n".join(offences)


def test_the_rule_sees_a_reach_into_another_object(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("def f(registry, self):\n    registry._send()\n    self._ok()\n"
                      "    self.swaps._fail()\n    super()._fine()\n")
    assert [attr for _, _, attr in private_reaches(sample)] == ["_send", "_fail"]


# -- imports ---------------------------------------------------------------------------------------
def module_imports() -> dict[str, set[str]]:
    """Every catbus module -> the catbus modules it imports, anywhere in it (an import inside a
    function or under ``TYPE_CHECKING`` counts: a lazy import hides a cycle, it does not
    remove it)."""
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    edges: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                    base = ".".join(up + ([base] if base else []))
                targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
            for target in targets:
                found = resolve(target) if target.startswith("catbus") else None
                if found and found != name and not name.startswith(found + "."):
                    edges[name].add(found)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in sorted(edges[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles_among_catbus_modules():
    assert cycles(module_imports()) == []


def test_no_library_module_imports_the_command_line():
    offenders = {name: sorted(t for t in targets
                              if t == "catbus.cli" or t.startswith("catbus.cli."))
                 for name, targets in module_imports().items()
                 if not name.startswith(("catbus.cli", "catbus.__main__"))}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_cycle_finder_finds_a_cycle_through_a_lazy_import():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_a_unit_test_can_neither_open_a_socket_nor_start_a_process():
    import subprocess
    import sys

    import zmq

    with pytest.raises(AssertionError, match="must not open a socket"):
        zmq.Context.instance().socket(zmq.PUB)
    with pytest.raises(AssertionError, match="must not start a process"):
        subprocess.run([sys.executable, "-c", "pass"])
