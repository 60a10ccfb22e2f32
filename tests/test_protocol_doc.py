"""docs/protocol.md cannot silently fall behind the code: every op, every field of every control
message, every protocol constant, header field, schedule key, graph entry key, run.json key and
``done`` statistic the code has must be in it (and the control-message table must list no field
the code does not have)."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest

from catbus.supervise.registry import Member
from catbus.supervise.rundir import RUN_FILE, RunDir
from catbus.runtime.inbox import Inbox
from catbus.runtime.schedule import build_schedule
from catbus.runtime.stats import NodeStats
from catbus.wire import codec, messages, protocol
from tests.conftest import ROOT

DOC = ROOT / "docs" / "protocol.md"


@pytest.fixture(scope="module")
def doc() -> str:
    return DOC.read_text()


def table_rows(text: str) -> list[list[str]]:
    """Every Markdown table row of ``text`` (outside fenced code blocks, where the sequence
    diagrams are) as its stripped cells."""
    rows = []
    fenced = False
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and line.startswith("|") and line.endswith("|") and \
                not set(line) <= set("|-: "):
            rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def code(cell: str) -> str | None:
    """The text of a cell that is exactly one `code span`, else None."""
    match = re.fullmatch(r"`([^`]+)`", cell)
    return match.group(1) if match else None


def test_every_op_is_documented(doc: str) -> None:
    ops = [value for name, value in vars(protocol.Op).items() if name.isupper()]
    assert sorted(ops) == sorted(kind.OP for kind in messages.MESSAGE_TYPES)
    missing = [op for op in ops if f"`{op}`" not in doc]
    assert not missing, f"ops missing from {DOC.name}: {missing}"


def test_control_message_table_matches_messages_py(doc: str) -> None:
    """The table of control messages lists exactly the fields of messages.py, one row each; a
    message without fields has one row with field "—"."""
    documented: set[tuple[str, str]] = set()
    ops = {kind.OP for kind in messages.MESSAGE_TYPES}
    for row in table_rows(doc):
        if len(row) >= 6 and code(row[0]) in ops:
            field = code(row[2]) or row[2]
            documented.add((code(row[0]), field))
    expected = set()
    for kind in messages.MESSAGE_TYPES:
        fields = [f.name for f in dataclasses.fields(kind)]
        expected |= {(kind.OP, name) for name in fields} or {(kind.OP, "—")}
    assert not expected - documented, \
        f"fields missing from the control message table: {sorted(expected - documented)}"
    assert not documented - expected, \
        f"the control message table lists fields messages.py lacks: {sorted(documented - expected)}"


def test_required_fields_are_marked_required(doc: str) -> None:
    rows = {(code(r[0]), code(r[2])): r for r in table_rows(doc) if len(r) >= 6 and code(r[0])}
    for kind in messages.MESSAGE_TYPES:
        for f in dataclasses.fields(kind):
            required = f.default is dataclasses.MISSING and \
                f.default_factory is dataclasses.MISSING
            row = rows[(kind.OP, f.name)]
            assert (row[4] == "required") == required, (kind.OP, f.name, row)


def test_every_protocol_constant_is_documented(doc: str) -> None:
    rows = {code(r[0]): r for r in table_rows(doc) if r and code(r[0])}
    for name in protocol.__all__:
        value = getattr(protocol, name)
        if not name.isupper() or callable(value) or hasattr(value, "pattern"):
            continue
        assert name in rows, f"constant {name} missing from the constants table"
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            assert f"{value:g}" in rows[name][1], (name, value, rows[name])
        elif isinstance(value, str):
            assert value in rows[name][1], (name, value, rows[name])
        elif isinstance(value, tuple):
            assert all(item in rows[name][1] for item in value), (name, value, rows[name])


def test_header_fields_are_documented(doc: str) -> None:
    header = [f.name for f in dataclasses.fields(codec.Header)]
    documented = {code(r[1]) for r in table_rows(doc) if len(r) == 4 and r[0].isdigit()}
    assert set(header) <= documented, set(header) - documented
    assert len([r for r in table_rows(doc) if len(r) == 4 and r[0].isdigit()]) == \
        protocol.HEADER_FIELDS


def test_schedule_graph_and_run_file_keys_are_documented(doc: str, tmp_path: Path) -> None:
    schedule = build_schedule([("a", 0.01), ("b", None)], steps=3, duration=None).to_dict()
    entry = Member("a").graph_entry()
    RunDir(tmp_path).publish("ipc:///x/registry.sock", "run")
    run_file = json.loads((tmp_path / RUN_FILE).read_text())
    for what, keys in (("schedule", schedule), ("graph entry", entry), ("run.json", run_file)):
        missing = [key for key in keys if f"`{key}`" not in doc]
        assert not missing, f"{what} keys missing from {DOC.name}: {missing}"


def test_done_statistics_are_documented(doc: str) -> None:
    stats = NodeStats().to_dict(0, Inbox([], {}))
    documented = set()
    for row in table_rows(doc):
        documented |= set(re.findall(r"`([a-z0-9_]+)`", row[0]))
    missing = [key for key in stats if key not in documented]
    assert not missing, f"done.stats keys missing from {DOC.name}: {missing}"
