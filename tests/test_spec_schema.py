"""The launch-file schema (msgspec types) and how its errors read.

Every structural mistake must come out as one line naming the file, the dotted field, what a
right value looks like and what was written; these tests hold the translation of msgspec's
errors to that, and the schema to having a fix text for every field. Pure code: no process, no
socket.
"""

from __future__ import annotations

from typing import Any

import msgspec
import numpy as np
import pytest

from catbus.errors import ConfigError
from catbus.spec import schema
from catbus.spec.decode import decode, description, dotted, field_names, python_scalars, type_at
from catbus.spec.launchfile import build_launch
from catbus.spec.schema import CommandLine, LaunchDocument, NodeEntry, Security, SwapEntry
from tests import toy_nodes

pytestmark = [pytest.mark.unit, pytest.mark.timeout(30)]

STRUCTS = (LaunchDocument, NodeEntry, SwapEntry, Security, CommandLine)
TALKER = {"class": "tests.toy_nodes:Talker"}


def error_of(data: Any, kind: type, prefix: str = "") -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        decode(data, kind, where="x.yaml", prefix=prefix)
    assert "\n" not in str(caught.value)
    return caught.value


# ------------------------------------------------------------------------------------------------
# the schema says how to fix every field
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", STRUCTS, ids=lambda kind: kind.__name__)
def test_every_field_and_struct_has_a_fix_text(kind: type) -> None:
    """An error about any field ends in "must be <description>": none may be without one
    (``description`` is free text, never wrong)."""
    assert description(type_at(kind, [])), f"{kind.__name__} has no 'about'"
    missing = [name for name in field_names(type_at(kind, []))
               if name != "description" and not description(type_at(kind, [name]))]
    assert missing == []


def test_every_struct_refuses_unknown_keys() -> None:
    assert all(kind.__struct_config__.forbid_unknown_fields for kind in STRUCTS)


def test_the_pythonpath_items_have_their_own_fix_text() -> None:
    assert description(type_at(LaunchDocument, ["pythonpath", 0])) == \
        "a folder path (relative to this file)"
    assert description(type_at(LaunchDocument, ["swap", 0, "at"])).startswith(
        "a number of seconds >= 0")


# ------------------------------------------------------------------------------------------------
# msgspec's errors, translated
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("data, kind, prefix, field, message", [
    ({"perod": 0.1, **TALKER}, NodeEntry, "nodes.robot", "nodes.robot.perod",
     "unknown key 'perod' (allowed: class, period, params, params_file, remap, remote, restart, "
     "max_restarts, restart_backoff, checkpoint, latency, group); did you mean 'period'?"),
    ({"period": 0.1}, NodeEntry, "nodes.robot", "nodes.robot.class",
     "missing: give the node's class as module:Class (for example "
     "nodes.flat_evade.env:FlatEvadeEnv)"),
    ({"period": 0, **TALKER}, NodeEntry, "nodes.robot", "nodes.robot.period",
     "must be a positive number of seconds (omit it to use the class's period), got 0"),
    ({"period": float("inf"), **TALKER}, NodeEntry, "nodes.robot", "nodes.robot.period",
     "must be a positive number of seconds (omit it to use the class's period), got inf"),
    ({"restart": "always", **TALKER}, NodeEntry, "nodes.robot", "nodes.robot.restart",
     "must be one of never, on-failure, got 'always'"),
    ({"remote": "yes", **TALKER}, NodeEntry, "nodes.robot", "nodes.robot.remote",
     "must be true or false, got 'yes'"),
    ("tests.toy_nodes:Talker", NodeEntry, "nodes.robot", "nodes.robot",
     "must be a mapping with at least 'class: module:Class', got 'tests.toy_nodes:Talker'"),
    ({3: "x", **TALKER}, NodeEntry, "nodes.robot", "nodes.robot.3",
     "3 is not a key name: keys are text (YAML reads yes/no/on/off/true/false and numbers as "
     "other types: quote the key)"),
    ({"nodes": {"a": {}}, "swap": [{"at": 1, "nod": "a"}]}, LaunchDocument, "", "swap[0].nod",
     "unknown key 'nod' (allowed: at, node, class, params); did you mean 'node'?"),
    ({"nodes": {"a": {}}, "swap": [{"at": 1}]}, LaunchDocument, "", "swap[0].node",
     "missing: give the name of a node of this launch file"),
    ({"nodes": {"a": {}}, "swap": [1]}, LaunchDocument, "", "swap[0]",
     "must be a mapping {at: SECONDS, node: NAME, class: module:Class, params: {...}}, got 1"),
    ({"nodes": {"a": {}}, "security": {"key": "k"}}, LaunchDocument, "", "security.key",
     "unknown key 'key' (allowed: keys); did you mean 'keys'?"),
    ({"nodes": {"a": {}}, "pythonpath": [".", " "]}, LaunchDocument, "", "pythonpath[1]",
     "must be a folder path (relative to this file), got ' '"),
    ({"nodes": {}}, LaunchDocument, "", "nodes",
     "must be a non-empty mapping of node name to its settings (class:, params:, ...), for "
     "example nodes: {env: {class: module:Class}}, got {}"),
    (["a"], LaunchDocument, "", "", "the top level must be a mapping with a 'nodes:' key, "
                                    "got ['a']"),
    ({"steps": True}, CommandLine, "", "steps",
     "must be a non-negative integer (periods of the first periodic node), got True"),
])
def test_an_error_names_the_field_the_fix_and_the_value(data: Any, kind: type, prefix: str,
                                                         field: str, message: str) -> None:
    error = error_of(data, kind, prefix)
    assert (error.where, error.field, error.message) == ("x.yaml", field, message)


def test_a_long_value_is_cut_to_keep_the_line_short() -> None:
    error = error_of({"name": "a b" * 100, "nodes": {"a": {}}}, LaunchDocument)
    assert error.field == "name" and len(error.message) < 200 and error.message.endswith("...")


def test_an_error_msgspec_words_unexpectedly_still_names_the_field() -> None:
    from catbus.spec.decode import explain

    error = explain("Something new - at `$.nodes`", {"nodes": 1}, LaunchDocument, where="f")
    assert error.field == "nodes" and "non-empty mapping" in error.message
    error = explain("Something new", 5, int, where="f", prefix="p")
    assert (error.field, error.message) == ("p", "Something new, got 5")


@pytest.mark.parametrize("prefix, steps, expected", [
    ("", ["swap", 0, "at"], "swap[0].at"), ("nodes.robot", ["period"], "nodes.robot.period"),
    ("", [], ""), ("a", [None], "a[...]"),
])
def test_dotted_fields(prefix: str, steps: list, expected: str) -> None:
    assert dotted(prefix, steps) == expected


# ------------------------------------------------------------------------------------------------
# decoded values
# ------------------------------------------------------------------------------------------------
def test_defaults_and_not_given() -> None:
    top = decode({"nodes": {"a": TALKER}}, LaunchDocument, where="x")
    assert (top.mode, top.seed, top.bus, top.max_steps, top.steps, top.record) == \
        (None, None, None, None, None, None)   # "not given": the command line may still set it
    entry = decode(TALKER, NodeEntry, where="x")
    assert entry.period is msgspec.UNSET and entry.params is None and entry.remote is False
    assert (entry.restart, entry.max_restarts, entry.restart_backoff) == ("never", 3, 0.5)


def test_numpy_scalars_are_numbers_and_classes_pass_through() -> None:
    entry = decode({"class": toy_nodes.Talker, "period": np.float64(0.5),
                    "max_restarts": np.int64(2)}, NodeEntry, where="x")
    assert entry.class_ is toy_nodes.Talker and entry.period == 0.5 and entry.max_restarts == 2
    assert type(entry.max_restarts) is int
    array = np.arange(3)
    assert python_scalars({"a": (np.int32(1), array)})["a"][1] is array


def test_integers_are_not_taken_for_floats_the_other_way() -> None:
    assert decode({"steps": 2}, CommandLine, where="x").steps == 2
    assert error_of({"steps": 2.0}, CommandLine).field == "steps"
    assert decode({"duration": 2}, CommandLine, where="x").duration == 2.0


def test_schema_default_bound_is_the_documented_one() -> None:
    assert schema.DEFAULT_MAX_STEPS == 100_000


# ------------------------------------------------------------------------------------------------
# through build_launch: structure first, then the semantic checks
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("document, field, words", [
    ({"nodes": {"t": {**TALKER, "restart_backoff": -1}}}, "nodes.t.restart_backoff", ">= 0"),
    ({"nodes": {"t": TALKER}, "record": True}, "record", "or false, got True"),
    ({"nodes": {"t": TALKER}, "swap": [{"at": 1, "node": "x"}]}, "swap[0].node",
     "no node named 'x' (nodes: t)"),
    ({"nodes": {"t": TALKER}, "swap": [{"at": 1, "node": "t", "class": "tests.toy_nodes:Nope"}]},
     "swap[0].class", "has no 'Nope'"),
    ({"nodes": {"t": TALKER}, "pace": float("nan")}, "pace", "positive number"),
])
def test_build_launch_errors(document: dict, field: str, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        build_launch(document, where="s.py")
    assert caught.value.where == "s.py" and caught.value.field == field
    assert words in caught.value.message, caught.value.message


def test_a_bad_command_line_value_wins_over_a_bad_file_value() -> None:
    """The command line is decoded first: its error is the one to fix (it replaces the file's
    value anyway)."""
    with pytest.raises(ConfigError) as caught:
        build_launch({"nodes": {"t": TALKER}, "seed": -1}, seed=-2)
    assert (caught.value.where, caught.value.field) == ("command line", "--seed")


def test_restart_policy_and_period_reach_the_node_spec() -> None:
    spec = build_launch({"nodes": {"t": {**TALKER, "period": 1, "restart": "on-failure",
                                         "max_restarts": 5, "restart_backoff": 0}}})
    node = spec.node("t")
    assert node.period == 1.0 and isinstance(node.period, float)
    assert (node.restart.policy, node.restart.max_restarts, node.restart.backoff) == \
        ("on-failure", 5, 0.0)
    assert spec.document["nodes"]["t"]["restart"] == "on-failure"
    assert build_launch(spec.document).nodes == spec.nodes
