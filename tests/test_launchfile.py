"""Launch files: every class of mistake is one ConfigError naming the file and the dotted field,
and good files resolve names, defaults, overrides and paths the way the module docstring says.

Pure code: no sockets, no processes. The recorder is replaced by a stand-in module so these tests
do not depend on ``catbus.recording.recorder`` (one test checks the real class once it exists).
"""

from __future__ import annotations

import sys
import textwrap
import types
from pathlib import Path
from typing import Any

import pytest
import yaml

from catbus.errors import ConfigError
from catbus.spec.launchfile import LaunchSpec, build_launch, load_launch
from catbus.spec.nodelist import RECORDER_CLASS
from catbus.spec.nodespec import TopicBinding
from catbus.node import Input, Node
from catbus.params import Param
from catbus.topics import resolve_topic, validate_node_name, validate_topic
from tests import toy_nodes

pytestmark = [pytest.mark.timeout(30), pytest.mark.unit]

GOOD = """\
nodes:
  talker:
    class: tests.toy_nodes:Talker
  listener:
    class: tests.toy_nodes:Listener
"""


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def fake_recorder(monkeypatch: pytest.MonkeyPatch) -> type:
    """A stand-in ``catbus.recording.recorder`` module with a Recorder node (path param, reads everything)."""
    module = types.ModuleType("catbus.recording.recorder")

    class Recorder(Node):
        inputs = [Input("*", "all")]
        params = {"path": Param(str, "", "output file")}
        period = None

    Recorder.__module__ = "catbus.recording.recorder"
    module.Recorder = Recorder  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "catbus.recording.recorder", module)
    return Recorder


@pytest.fixture
def boom_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A module that raises when imported."""
    folder = tmp_path / "mods"
    write(folder, "catbus_test_boom.py", "raise RuntimeError('kaboom at import\\nsecond line')\n")
    monkeypatch.syspath_prepend(str(folder))
    return "catbus_test_boom"


# ------------------------------------------------------------------------------------------------
# topics
# ------------------------------------------------------------------------------------------------
def test_resolve_topic_rules() -> None:
    assert resolve_topic("~/sensors", "robot", {}) == "robot/sensors"
    assert resolve_topic("/abs/x", "robot", {}) == "abs/x"
    assert resolve_topic("env/obs", "robot", {}) == "env/obs"
    assert resolve_topic("*", "robot", {}) == "*"
    assert resolve_topic("~/sensors", "robot", {"~/sensors": "env/obs"}) == "env/obs"
    assert resolve_topic("~/sensors", "robot", {"~/sensors": "~/raw"}) == "robot/raw"
    assert resolve_topic("~/sensors", "robot", {"robot/sensors": "x"}) == "robot/sensors"


@pytest.mark.parametrize("name, ok", [
    ("robot/sensors", True), ("a.b/c-d_e", True), ("x", True),
    ("", False), ("a b", False), ("a//b", False), ("a/", False), ("~/x", False),
    ("catbus/progress", False), ("catbus", False), ("*", False),
])
def test_validate_topic(name: str, ok: bool) -> None:
    assert (validate_topic(name) is None) is ok


def test_validate_topic_wildcard_and_reserved_exceptions() -> None:
    assert validate_topic("*", allow_wildcard=True) is None
    assert validate_topic("catbus/progress", allow_reserved=True) is None
    assert "reserved" in (validate_topic("catbus/x") or "")


@pytest.mark.parametrize("name, ok", [("robot", True), ("_r2", True), ("Env_1", True),
                                      ("1robot", False), ("ro-bot", False), ("", False),
                                      ("a.b", False), (3, False)])
def test_validate_node_name(name: Any, ok: bool) -> None:
    assert (validate_node_name(name) is None) is ok


# ------------------------------------------------------------------------------------------------
# bad launch files: one case per class of mistake
# ------------------------------------------------------------------------------------------------
T = "  talker:\n    class: tests.toy_nodes:Talker\n"

BAD_FILES: list[tuple[str, str, str, str]] = [
    # id, launch text, expected field, expected words in the message
    ("yaml_syntax", "nodes: [a\n  b: {c\n", "", "line"),
    ("top_not_mapping", "- a\n- b\n", "", "top level must be a mapping"),
    ("empty_file", "", "", "empty"),
    ("unknown_top_key", "nodez:\n" + T, "nodez", "did you mean 'nodes'"),
    ("unknown_node_key", "nodes:\n" + T + "    perod: 0.1\n", "nodes.talker.perod",
     "did you mean 'period'"),
    ("missing_class", "nodes:\n  talker:\n    period: 0.1\n", "nodes.talker.class", "missing"),
    ("class_without_colon", "nodes:\n  talker:\n    class: tests.toy_nodes.Talker\n",
     "nodes.talker.class", "module:Class"),
    ("module_not_found", "nodes:\n  talker:\n    class: tests.no_such_module:Talker\n",
     "nodes.talker.class", "not found"),
    ("class_not_found", "nodes:\n  talker:\n    class: tests.toy_nodes:Talkr\n",
     "nodes.talker.class", "did you mean 'Talker'"),
    ("not_a_node", "nodes:\n  talker:\n    class: tests.toy_nodes:NotANode\n",
     "nodes.talker.class", "not a catbus.Node subclass"),
    ("import_raises", "nodes:\n  talker:\n    class: catbus_test_boom:X\n", "nodes.talker.class",
     "RuntimeError: kaboom at import"),
    ("period_type", "nodes:\n" + T + "    period: fast\n", "nodes.talker.period",
     "positive number"),
    ("period_zero", "nodes:\n" + T + "    period: 0\n", "nodes.talker.period", "positive number"),
    ("period_negative", "nodes:\n" + T + "    period: -0.1\n", "nodes.talker.period",
     "positive number"),
    ("period_null", "nodes:\n" + T + "    period: null\n", "nodes.talker.period",
     "positive number"),
    ("class_period_bad", "nodes:\n  talker:\n    class: tests.toy_nodes:BadPeriod\n",
     "nodes.talker.class", "period"),
    ("unknown_param", "nodes:\n" + T + "    params: {gian: 2}\n", "nodes.talker.params.gian",
     "unknown parameter"),
    ("param_type", "nodes:\n" + T + "    params: {gain: high}\n", "nodes.talker.params.gain",
     "must be a number"),
    ("nested_param_type", "nodes:\n" + T + "    params: {nested: {k: 1.5}}\n",
     "nodes.talker.params.nested.k", "must be an integer"),
    ("params_not_mapping", "nodes:\n" + T + "    params: [1, 2]\n", "nodes.talker.params",
     "mapping"),
    ("params_file_missing", "nodes:\n" + T + "    params_file: nope.yaml\n",
     "nodes.talker.params_file", "not found"),
    ("params_file_not_mapping", "nodes:\n" + T + "    params_file: list.yaml\n",
     "nodes.talker.params_file", "must contain a mapping"),
    ("remap_not_mapping", "nodes:\n" + T + "    remap: [a]\n", "nodes.talker.remap", "mapping"),
    ("remap_unknown_declared", "nodes:\n" + T + "    remap: {'~/ou': x}\n",
     "nodes.talker.remap.~/ou", "did you mean '~/out'"),
    ("remap_invalid_topic", "nodes:\n" + T + "    remap: {'~/out': 'has space'}\n",
     "nodes.talker.remap.~/out", "characters"),
    ("remap_reserved_topic", "nodes:\n" + T + "    remap: {'~/out': catbus/out}\n",
     "nodes.talker.remap.~/out", "reserved"),
    ("remap_to_wildcard", "nodes:\n  relay:\n    class: tests.toy_nodes:Relay\n"
     "    remap: {'~/in': '*'}\n", "nodes.relay.remap.~/in", "cannot remap to '*'"),
    ("class_declares_bad_topic", "nodes:\n  talker:\n    class: tests.toy_nodes:BadOutput\n",
     "nodes.talker.class", "BadOutput declares output"),
    ("duplicate_node", "nodes:\n" + T + T, "nodes.talker", "defined twice"),
    ("duplicate_param", "nodes:\n" + T + "    params:\n      gain: 1\n      gain: 2\n",
     "nodes.talker.params.gain", "defined twice"),
    ("yaml_boolean_node_name", "nodes:\n  on:\n    class: tests.toy_nodes:Talker\n",
     "nodes.True", "quote the name"),
    ("bad_node_name", "nodes:\n  1talker:\n    class: tests.toy_nodes:Talker\n",
     "nodes.1talker", "invalid node name"),
    ("node_not_mapping", "nodes:\n  talker: tests.toy_nodes:Talker\n", "nodes.talker",
     "must be a mapping"),
    ("remote_not_bool", "nodes:\n" + T + "    remote: maybe\n", "nodes.talker.remote",
     "true or false"),
    ("bad_mode", "mode: fast\nnodes:\n" + T, "mode", "parallel, stepped, inline"),
    ("negative_steps", "steps: -1\nnodes:\n" + T, "steps", "non-negative integer"),
    ("fractional_steps", "steps: 1.5\nnodes:\n" + T, "steps", "non-negative integer"),
    ("steps_and_duration", "steps: 10\nduration: 1.0\nnodes:\n" + T, "steps", "not both"),
    ("bad_duration", "duration: -2\nnodes:\n" + T, "duration", "positive number"),
    ("bad_seed", "seed: abc\nnodes:\n" + T, "seed", "non-negative integer"),
    ("negative_seed", "seed: -3\nnodes:\n" + T, "seed", "non-negative integer"),
    ("bad_bus", "bus: udp://host:1\nnodes:\n" + T, "bus", "tcp://HOST:PORT"),
    ("bad_record", "record: 5\nnodes:\n" + T, "record", "file path"),
    ("bad_name", "name: a b\nnodes:\n" + T, "name", "letters"),
    ("two_publishers", "nodes:\n" + T + "  talker2:\n    class: tests.toy_nodes:Talker\n"
     "    remap: {'~/out': talker/out}\n", "nodes.talker2.remap",
     "published by nodes talker and talker2"),
    ("no_nodes_key", "name: x\n", "nodes", "missing"),
    ("empty_nodes", "nodes: {}\n", "nodes", "empty"),
    ("nodes_is_list", "nodes:\n  - talker\n", "nodes", "mapping"),
    ("bad_max_steps", "mode: stepped\nmax_steps: 0\nnodes:\n" + T, "max_steps",
     "positive integer"),
    ("inline_remote", "mode: inline\nsteps: 3\nnodes:\n" + T + "    remote: true\n",
     "nodes.talker.remote", "inline"),
    ("steps_without_periodic_node", "steps: 3\nnodes:\n  tap:\n    class: tests.toy_nodes:Tap\n",
     "steps", "no node has a period"),
    ("record_name_taken", "record: a.mcap\nnodes:\n  recorder:\n    class: tests.toy_nodes:Talker\n",
     "nodes.recorder", "rename"),
    ("bad_restart", "nodes:\n" + T + "    restart: always\n", "nodes.talker.restart",
     "must be one of never, on-failure, got 'always'"),
    ("negative_max_restarts", "nodes:\n" + T + "    max_restarts: -1\n",
     "nodes.talker.max_restarts", "whole number >= 0"),
    ("unknown_security_key", "security: {key: k}\nnodes:\n" + T, "security.key",
     "did you mean 'keys'"),
    ("swap_without_node", "swap: [{at: 1}]\nnodes:\n" + T, "swap[0].node", "missing: give"),
    ("swap_unknown_key", "swap: [{at: 1, node: talker, parms: {}}]\nnodes:\n" + T,
     "swap[0].parms", "did you mean 'params'"),
    ("infinite_pace", "pace: .inf\nnodes:\n" + T, "pace", "positive number"),
    ("record_true", "record: true\nnodes:\n" + T, "record", "file path"),
    ("node_key_not_text", "nodes:\n" + T + "    1: x\n", "nodes.talker.1", "quote the key"),
]


@pytest.mark.parametrize("text, field, words", [case[1:] for case in BAD_FILES],
                         ids=[case[0] for case in BAD_FILES])
def test_bad_launch_file(tmp_path: Path, boom_module: str, text: str, field: str,
                         words: str) -> None:
    write(tmp_path, "list.yaml", "- 1\n- 2\n")
    path = write(tmp_path, "bad.yaml", text)
    with pytest.raises(ConfigError) as caught:
        load_launch(path)
    error = caught.value
    assert error.where == str(path)
    assert "bad.yaml" in str(error)
    assert error.field == field
    assert f"{field}: " in str(error) or not field
    assert words in str(error)


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.yaml", "nodes:\n  talker:\n    class: [x\n    period: 1\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: line \d+"):
        load_launch(path)


def test_error_in_params_file_names_that_file(tmp_path: Path) -> None:
    write(tmp_path, "talker.yaml", "gain: 1.0\ngian: 2\n")
    path = write(tmp_path, "launch.yaml", "nodes:\n" + T + "    params_file: talker.yaml\n")
    with pytest.raises(ConfigError) as caught:
        load_launch(path)
    assert caught.value.where.endswith("talker.yaml")
    assert caught.value.field == "gian"
    assert "unknown parameter" in str(caught.value)


def test_missing_launch_file_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.yaml"
    with pytest.raises(ConfigError, match="nowhere.yaml.*no such launch file"):
        load_launch(path)


BAD_COMMAND_LINES: list[tuple[str, dict[str, Any], str, str, str]] = [
    # id, keyword arguments, expected where, expected field, expected words
    ("set_unknown_node", {"overrides": ["talkr.gain=2"]}, "--set", "talkr.gain",
     "did you mean 'talker'"),
    ("set_without_value", {"overrides": ["talker.gain"]}, "--set", "talker.gain", "KEY=VALUE"),
    ("set_empty_part", {"overrides": ["talker..gain=1"]}, "--set", "talker..gain", "empty part"),
    ("set_without_param", {"overrides": ["talker=3"]}, "--set", "talker", "name a parameter"),
    ("set_bad_type", {"overrides": ["talker.gain=abc"]}, "--set", "talker.gain",
     "must be a number"),
    ("set_unknown_param", {"overrides": ["talker.gian=1"]}, "--set", "talker.gian",
     "unknown parameter"),
    ("set_group_to_scalar", {"overrides": ["talker.nested=5"]}, "--set", "talker.nested",
     "mapping"),
    ("bad_mode", {"mode": "turbo"}, "command line", "--mode", "parallel"),
    ("negative_steps", {"steps": -1}, "command line", "--steps", "non-negative"),
    ("steps_and_duration", {"steps": 3, "duration": 1.0}, "command line", "--steps", "not both"),
    ("negative_seed", {"seed": -1}, "command line", "--seed", "non-negative"),
    ("unknown_remote", {"remote": ["talkerr"]}, "command line", "--remote", "did you mean"),
    ("bad_max_steps", {"max_steps": 2.5}, "command line", "--max-steps", "positive integer"),
    ("inline_remote", {"mode": "inline", "steps": 2, "remote": ["listener"]}, "good.yaml",
     "nodes.listener.remote", "inline"),
    ("bad_bus", {"bus": "tcp://host"}, "command line", "--bus", "tcp://HOST:PORT"),
]


@pytest.mark.parametrize("kwargs, where, field, words", [case[1:] for case in BAD_COMMAND_LINES],
                         ids=[case[0] for case in BAD_COMMAND_LINES])
def test_bad_command_line(tmp_path: Path, kwargs: dict[str, Any], where: str, field: str,
                          words: str) -> None:
    path = write(tmp_path, "good.yaml", GOOD)
    with pytest.raises(ConfigError) as caught:
        load_launch(path, **kwargs)
    assert caught.value.field == field
    assert where in caught.value.where
    assert words in str(caught.value)


# ------------------------------------------------------------------------------------------------
# good launch files
# ------------------------------------------------------------------------------------------------
def test_defaults(tmp_path: Path) -> None:
    spec = load_launch(write(tmp_path, "demo_run.yaml", GOOD))
    assert isinstance(spec, LaunchSpec)
    assert (spec.name, spec.mode, spec.steps, spec.duration, spec.seed, spec.record, spec.bus) == \
        ("demo_run", "parallel", None, None, 0, None, "ipc")
    assert spec.path == tmp_path / "demo_run.yaml"
    assert spec.node_names == ["talker", "listener"]
    talker = spec.node("talker")
    assert talker.node_class is toy_nodes.Talker
    assert talker.class_path == "tests.toy_nodes:Talker"
    assert talker.params == {"gain": 1.0, "nested": {"k": 3}, "stop_after": 0}
    assert talker.period == 0.1 and talker.remote is False and talker.remap == {}
    assert talker.outputs == (TopicBinding("~/out", "talker/out", "latest"),)
    assert spec.node("listener").inputs == (TopicBinding("talker/out", "talker/out", "latest"),)
    assert spec.clock_node == "talker"
    assert spec.publishers() == {"talker/out": "talker", "listener/count": "listener"}
    assert spec.unpublished_inputs() == []


def test_unknown_node_lookup(tmp_path: Path) -> None:
    spec = load_launch(write(tmp_path, "good.yaml", GOOD))
    with pytest.raises(ConfigError, match="did you mean 'talker'"):
        spec.node("talkr")


def test_file_values(tmp_path: Path) -> None:
    spec = load_launch(write(tmp_path, "x.yaml", "name: custom\nmode: stepped\nsteps: 0\nseed: 7\n"
                                                 "bus: tcp://0.0.0.0:7700\n" + "nodes:\n" + T
                                                 + "    period: 0.25\n    remote: true\n"))
    assert (spec.name, spec.mode, spec.steps, spec.seed, spec.bus) == \
        ("custom", "stepped", 0, 7, "tcp://0.0.0.0:7700")
    assert spec.node("talker").period == 0.25 and spec.node("talker").remote


def test_command_line_overrides_file(tmp_path: Path) -> None:
    path = write(tmp_path, "x.yaml", "mode: stepped\nduration: 2.0\nseed: 7\nnodes:\n" + T)
    spec = load_launch(path, mode="inline", steps=5, seed=3)
    assert (spec.mode, spec.steps, spec.duration, spec.seed) == ("inline", 5, None, 3)
    spec = load_launch(path, remote=["talker"], mode="parallel")
    assert spec.node("talker").remote and spec.duration == 2.0


def test_remap_and_relative_names(tmp_path: Path) -> None:
    text = """\
    nodes:
      talker:
        class: tests.toy_nodes:Talker
        remap: {"~/out": /robot/raw}
      relay:
        class: tests.toy_nodes:Relay
        remap: {"~/in": robot/raw, "~/out": "~/scaled"}
      listener:
        class: tests.toy_nodes:Listener
        remap: {talker/out: relay/scaled}
      tap:
        class: tests.toy_nodes:Tap
    """
    spec = load_launch(write(tmp_path, "remap.yaml", text))
    assert spec.node("talker").outputs[0] == TopicBinding("~/out", "robot/raw")
    relay = spec.node("relay")
    assert relay.inputs == (TopicBinding("~/in", "robot/raw", "all"),)
    assert relay.outputs == (TopicBinding("~/out", "relay/scaled"),)
    assert relay.period is None
    assert spec.node("listener").inputs[0].topic == "relay/scaled"
    assert spec.node("tap").inputs == (TopicBinding("*", "*", "all"),)
    assert spec.unpublished_inputs() == []


def test_unpublished_inputs_are_listed_not_refused(tmp_path: Path) -> None:
    text = "nodes:\n  listener:\n    class: tests.toy_nodes:Listener\n" \
           "  relay:\n    class: tests.toy_nodes:Relay\n"
    spec = load_launch(write(tmp_path, "x.yaml", text), mode="stepped", steps=3)
    assert spec.unpublished_inputs() == [
        ("listener", TopicBinding("talker/out", "talker/out")),
        ("relay", TopicBinding("~/in", "relay/in", "all")),
    ]


def test_set_overrides(tmp_path: Path) -> None:
    path = write(tmp_path, "x.yaml", "nodes:\n" + T + "    params: {gain: 2.0, nested: {k: 4}}\n")
    spec = load_launch(path, overrides=["talker.nested.k=9", "talker.stop_after=5"])
    assert spec.node("talker").params == {"gain": 2.0, "nested": {"k": 9}, "stop_after": 5}
    spec = load_launch(path, overrides=["talker.gain=3"])  # an int where a float is declared
    assert spec.node("talker").params["gain"] == 3.0
    assert isinstance(spec.node("talker").params["gain"], float)


def test_params_file_merges_under_inline_params(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                ) -> None:
    write(tmp_path, "cfg/talker.yaml", "gain: 2.0\nnested: {k: 5}\n")
    path = write(tmp_path, "cfg/launch.yaml",
                 "nodes:\n" + T + "    params_file: talker.yaml\n    params: {gain: 3.0}\n")
    monkeypatch.chdir(tmp_path)  # relative to the launch file's folder, not the cwd
    spec = load_launch(path, overrides=["talker.stop_after=2"])
    assert spec.node("talker").params == {"gain": 3.0, "nested": {"k": 5}, "stop_after": 2}
    spec = load_launch(path, overrides=["talker.nested.k=1"])
    assert spec.node("talker").params["nested"] == {"k": 1}


def test_empty_params_file_is_no_params(tmp_path: Path) -> None:
    write(tmp_path, "empty.yaml", "")
    spec = load_launch(write(tmp_path, "x.yaml", "nodes:\n" + T + "    params_file: empty.yaml\n"))
    assert spec.node("talker").params["gain"] == 1.0


def test_record_paths_file_vs_command_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           fake_recorder: type) -> None:
    path = write(tmp_path, "launch/x.yaml", "record: runs/a.mcap\nnodes:\n" + T)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert load_launch(path).record == tmp_path / "launch" / "runs" / "a.mcap"
    assert load_launch(path, record="out/b.mcap").record == elsewhere / "out" / "b.mcap"
    assert load_launch(path, record=False).record is None
    assert load_launch(path, record=False).node_names == ["talker"]


def test_recorder_appended(tmp_path: Path, fake_recorder: type) -> None:
    spec = load_launch(write(tmp_path, "x.yaml", GOOD), record=tmp_path / "r.mcap")
    assert spec.node_names == ["talker", "listener", "recorder"]
    recorder = spec.node("recorder")
    assert recorder.class_path == RECORDER_CLASS and recorder.node_class is fake_recorder
    assert recorder.params == {"path": str(tmp_path / "r.mcap")}
    assert recorder.inputs == (TopicBinding("*", "*", "all"),)
    assert spec.document["record"] == str(tmp_path / "r.mcap")
    assert spec.document["nodes"]["recorder"]["params"]["path"] == str(tmp_path / "r.mcap")


def test_existing_recorder_gets_the_path(tmp_path: Path, fake_recorder: type) -> None:
    text = f"nodes:\n  rec:\n    class: {RECORDER_CLASS}\n    params: {{path: old.mcap}}\n" + T
    spec = load_launch(write(tmp_path, "x.yaml", text), record=str(tmp_path / "new.mcap"))
    assert spec.node_names == ["rec", "talker"]
    assert spec.node("rec").params["path"] == str(tmp_path / "new.mcap")
    spec = load_launch(write(tmp_path, "x.yaml", text))  # no record: the file's recorder stays
    assert spec.node("rec").params["path"] == "old.mcap"


def test_set_reaches_the_appended_recorder(tmp_path: Path, fake_recorder: type) -> None:
    spec = load_launch(write(tmp_path, "x.yaml", GOOD), record="r.mcap",
                       overrides=["recorder.path=/tmp/other.mcap"])
    assert spec.node("recorder").params["path"] == "/tmp/other.mcap"


def test_real_recorder_class_when_it_exists(tmp_path: Path) -> None:
    pytest.importorskip("catbus.recording.recorder", reason="catbus.recording.recorder is not written yet")
    spec = load_launch(write(tmp_path, "x.yaml", GOOD), record=tmp_path / "r.mcap")
    assert spec.node_names[-1] == "recorder"
    assert spec.node("recorder").params["path"] == str(tmp_path / "r.mcap")


def test_document_round_trip(tmp_path: Path, fake_recorder: type) -> None:
    path = write(tmp_path, "x.yaml", "description: demo\nmode: stepped\nsteps: 4\nnodes:\n" + T
                 + "    params: {gain: 2}\n    remap: {'~/out': chatter}\n"
                 "  listener:\n    class: tests.toy_nodes:Listener\n"
                 "    remap: {talker/out: chatter}\n")
    spec = load_launch(path, seed=5, overrides=["talker.nested.k=8"], record="r.mcap")
    document = yaml.safe_load(spec.to_yaml())
    assert document == spec.document
    assert document["seed"] == 5 and document["mode"] == "stepped" and document["steps"] == 4
    assert document["nodes"]["talker"] == {
        "class": "tests.toy_nodes:Talker", "period": 0.1,
        "params": {"gain": 2.0, "nested": {"k": 8}, "stop_after": 0},
        "remap": {"~/out": "chatter"}, "remote": False}
    again = build_launch(document)
    assert again.to_yaml() == spec.to_yaml()
    assert again.nodes == spec.nodes and again.path is None


def test_build_launch_from_dict_with_class_objects(tmp_path: Path) -> None:
    write(tmp_path, "relay.yaml", "scale: 0.5\n")
    spec = build_launch({"nodes": {"talker": {"class": toy_nodes.Talker, "params": {"gain": 4}},
                                   "relay": {"class": "tests.toy_nodes:Relay",
                                             "params_file": "relay.yaml",
                                             "remap": {"~/in": "talker/out"}}},
                         "record": None},
                        base_dir=tmp_path, mode="inline", steps=10)
    assert spec.name == "launch" and spec.mode == "inline" and spec.steps == 10
    assert spec.node("talker").class_path == "tests.toy_nodes:Talker"
    assert spec.node("relay").params == {"scale": 0.5}
    assert spec.document["nodes"]["talker"]["params"]["gain"] == 4.0


def test_build_launch_errors_name_the_source() -> None:
    with pytest.raises(ConfigError, match=r"^script\.py: nodes\.t\.params\.gain: must be a number"):
        build_launch({"nodes": {"t": {"class": "tests.toy_nodes:Talker",
                                      "params": {"gain": "x"}}}}, where="script.py")


def test_exponent_numbers_are_numbers(tmp_path: Path) -> None:
    """PyYAML alone reads 1e-3 as text; launch files, parameter files and --set read a number."""
    write(tmp_path, "p.yaml", "gain: 2e-1\n")
    path = write(tmp_path, "x.yaml", "duration: 1e1\nnodes:\n" + T
                 + "    period: 1e-2\n    params_file: p.yaml\n")
    spec = load_launch(path)
    assert spec.duration == 10.0 and spec.node("talker").period == 0.01
    assert spec.node("talker").params["gain"] == 0.2
    assert load_launch(path, overrides=["talker.gain=1e-3"]).node("talker").params["gain"] == 0.001


# ------------------------------------------------------------------------------------------------
# node callbacks are checked at launch
# ------------------------------------------------------------------------------------------------
class _OnMessageWithoutTopic(Node):
    inputs = ["talker/out"]

    def on_message(self, message):  # type: ignore[override]
        return None


class _StepWithoutInputs(Node):
    period = 0.1

    def step(self, t):  # type: ignore[override]
        return None


class _FlexibleCallbacks(Node):
    period = 0.1

    def step(self, *args, **kwargs):
        return None

    def on_message(self, topic, message, extra=None):
        return None


@pytest.mark.parametrize("node_class, callback", [
    (_OnMessageWithoutTopic, "on_message(self, message)"),
    (_StepWithoutInputs, "step(self, t)"),
])
def test_a_callback_with_the_wrong_parameters_is_refused_at_launch(
        node_class: type, callback: str) -> None:
    from catbus.spec.callbacks import callback_problems

    problems = callback_problems(node_class)
    assert len(problems) == 1 and callback in problems[0][1], problems
    document = {"steps": 1, "nodes": {"talker": {"class": toy_nodes.Talker},
                                       "bad": {"class": node_class}}}
    with pytest.raises(ConfigError) as error:
        build_launch(document, where="x.yaml")
    message = str(error.value)
    assert message.startswith("x.yaml: nodes.bad.class: ") and callback in message, message


def test_callbacks_that_accept_the_call_pass() -> None:
    from catbus.spec.callbacks import callback_problems

    assert callback_problems(_FlexibleCallbacks) == []
    assert callback_problems(Node) == []


def test_an_input_nobody_publishes_is_warned_about_with_the_nearest_topics() -> None:
    spec = build_launch({"steps": 1, "nodes": {
        "talker": {"class": toy_nodes.Talker},
        "listener": {"class": toy_nodes.Listener, "remap": {"talker/out": "talker/uot"}}}},
        where="x.yaml")
    (warning,) = spec.unpublished_input_warnings()
    assert "nodes.listener: input 'talker/out' reads 'talker/uot'" in warning, warning
    assert "did you mean talker/out?" in warning
    fine = build_launch({"steps": 1, "nodes": {"talker": {"class": toy_nodes.Talker},
                                               "listener": {"class": toy_nodes.Listener}}})
    assert fine.unpublished_input_warnings() == []
