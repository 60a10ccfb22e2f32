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
    ("sweep/workers.py", "_config"), ("sweep/workers.py", "_forkserver"),
    ("sweep/workers.py", "_resource_tracker"), ("sweep/workers.py", "_stop"),
    # os._exit is the standard library's public way to leave a forked child.
    ("sweep/workers.py", "_exit"),
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
