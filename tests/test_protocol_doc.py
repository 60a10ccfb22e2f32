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


# -- versions: every number written as a version is the code's ------------------------------------
#: ``(pattern, what the number must be)``: every match anywhere in the document, sequence
#: diagrams included, is checked. A number written as "version N" that none of these names is
#: a stale version (see test_every_version_number_is_accounted_for).
VERSION_MENTIONS = tuple((re.compile(pattern.replace(" ", r"\s+")), kind) for pattern, kind in (
    (r"\bprotocol`?[:=]? (\d+)", "protocol"),                   # protocol: 4, `protocol` 4
    (r"\bPROTOCOL_VERSION`?(?: =|,| \(| is)? (\d+)", "protocol"),
    (r"\bprotocol version (\d+)", "protocol"),
    (r"\bspeaks version (\d+)", "protocol"),
    (r"\bregister\.protocol`? is (\d+)", "protocol"),
    (r"\bHEADER_VERSION`?(?: =| \(| is)? (\d+)", "header"),
    (r"\bheader of version (\d+)", "header"),
    (r"\bversion-(\d+) header", "header"),
    (r"\bcounts as version (\d+)", "absent"),                  # a register without protocol
    (r"\bHEADER_FIELDS`? \((\d+)\)", "fields"),
))


def expected_versions() -> dict[str, int]:
    absent = next(f.default for f in dataclasses.fields(messages.Register)
                  if f.name == "protocol")
    return {"protocol": protocol.PROTOCOL_VERSION, "header": protocol.HEADER_VERSION,
            "absent": absent, "fields": protocol.HEADER_FIELDS}


@pytest.mark.unit
def test_versions_in_prose_and_diagrams_are_the_codes(doc: str) -> None:
    expected = expected_versions()
    wrong = []
    for pattern, kind in VERSION_MENTIONS:
        for match in pattern.finditer(doc):
            if int(match.group(1)) != expected[kind]:
                line = doc.count("\n", 0, match.start()) + 1
                wrong.append(f"line {line}: {match.group(0)!r} ({kind}: {expected[kind]})")
    assert not wrong, "versions that are not catbus/wire/protocol.py's:\n" + "\n".join(wrong)
    assert re.search(r"PROTOCOL_VERSION`? = (\d+)", doc), "the Versions section states it"


@pytest.mark.unit
def test_every_version_number_is_accounted_for(doc: str) -> None:
    """Any "version N" must be one of the mentions checked above, or N one of the code's
    versions: a sentence about an old version would otherwise go unchecked."""
    checked = {m.start(1) for pattern, _ in VERSION_MENTIONS for m in pattern.finditer(doc)}
    allowed = set(expected_versions().values())
    loose = [m.group(0) for m in re.finditer(r"\bversion[-\s]+(\d+)", doc)
             if m.start(1) not in checked and int(m.group(1)) not in allowed]
    assert not loose, f"version numbers the code does not have: {loose}"


@pytest.mark.unit
def test_the_version_mentions_catch_a_stale_number() -> None:
    stale = "Send `register` with `protocol:\n3`.\n |-- register {name A, protocol 2,->|"
    found = [int(m.group(1)) for pattern, kind in VERSION_MENTIONS if kind == "protocol"
             for m in pattern.finditer(stale)]
    assert sorted(found) == [2, 3]


@pytest.mark.unit
def test_protocol_defaults_in_the_table_are_the_codes(doc: str) -> None:
    rows = {(code(r[0]), code(r[2])): r for r in table_rows(doc) if len(r) >= 6 and code(r[0])}
    assert rows[("register", "protocol")][4] == str(expected_versions()["absent"])
    assert rows[("welcome", "protocol")][4] == str(protocol.PROTOCOL_VERSION)


# -- what a node is told and what it tells ---------------------------------------------------------
def section(doc: str, start: str, end: str = "\n**") -> str:
    """The text from ``start`` to the next bold paragraph start (or ``end``)."""
    begin = doc.index(start)
    return doc[begin:doc.index(end, begin + len(start))]


@pytest.mark.unit
def test_every_run_info_key_is_documented(doc: str) -> None:
    from catbus.api.run import load
    from catbus.security import run_info as security_run_info
    from catbus.supervise.launcher import Launcher

    spec = load({"nodes": {"a": {"class": "tests.toy_nodes:Talker"}}}, mode="stepped", steps=3)
    keys = set(Launcher(spec).run_info) | {"security"}
    table = section(doc, "**`welcome.run_info`**", "**`graph.nodes[i]`**")
    documented = set(re.findall(r"^\| `([a-z_]+)`", table, re.M)) | \
        set(re.findall(r"`, `([a-z_]+)` \|", table))
    assert keys <= documented, f"run_info keys missing: {sorted(keys - documented)}"
    assert security_run_info(None) == {}   # the security entry is keyed runs' only


@pytest.mark.unit
def test_catbus_stats_and_swap_events_are_documented(doc: str) -> None:
    source = (ROOT / "catbus" / "runtime" / "process.py").read_text()
    published = re.search(r"keys = \(([^)]*)\)", source).group(1)
    stats_keys = re.findall(r'"([a-z_]+)"', published)
    stats = section(doc, "**`catbus/stats`** is", "\n\n")
    for key in ["node", "incarnation", "stats", *stats_keys]:
        assert f'"{key}"' in stats, f"catbus/stats: {key!r} not documented"
    events = re.findall(r'record_event\(link, driver, "([a-z-]+)"', source)
    assert sorted(events) == ["rejoin", "swap-failed"]
    swap = section(doc, "**`catbus/swap`** is", "\n\nA recording")
    for kind in ["swap", "restart", *events]:
        assert f"`{kind}`" in swap, f"catbus/swap: kind {kind!r} not documented"
    assert "`old_died: true`" in swap


def anchors(text: str) -> set[str]:
    """The anchors MkDocs gives the headings of ``text`` (python-markdown's toc slugify)."""
    found = set()
    for heading in re.findall(r"^#{1,6} (.+)$", text, re.M):
        slug = re.sub(r"[^\w\s-]", "", heading.replace("`", "")).strip().lower()
        found.add(re.sub(r"[-\s]+", "-", slug))
    return found


@pytest.mark.unit
def test_every_section_the_conformance_kit_points_to_exists(doc: str) -> None:
    from catbus.conformance import CHECKS

    missing = {c.id: c.section for c in CHECKS if c.section not in anchors(doc)}
    assert not missing, f"conformance checks point to missing sections: {missing}"
    kit = (ROOT / "docs" / "conformance.md").read_text()
    assert all(f"`{c.id}`" in kit for c in CHECKS), "docs/conformance.md lists every check"
