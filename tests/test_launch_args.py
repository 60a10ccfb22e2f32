"""Launch arguments (``args:``, ``--arg``, ``$(arg NAME)``) and includes (``include:``): the
substitution keeps a whole value's type and makes text inside strings, includes bring nodes
under a prefix with their topics under it, and every mistake is one ConfigError naming the file,
the field and the fix (the included file and the including one for includes).

The unit tests read launch files only (no process, no socket); one test runs ``catbus launch``
with ``--arg`` and an include end to end, inline, as a user would.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import catbus
from catbus.errors import ConfigError
from catbus.spec.launchargs import as_text, substitute

REPO = Path(__file__).resolve().parents[1]

PAIR = """\
args:
  gain: {default: 1.5, help: the talker's gain}
  period: 0.1
  tag: base
name: pair_$(arg tag)
nodes:
  talker:
    class: tests.toy_nodes:Talker
    period: $(arg period)
    params: {gain: $(arg gain)}
  listener:
    class: tests.toy_nodes:Listener
"""


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def error_of(path: Path, **options: object) -> str:
    with pytest.raises(ConfigError) as caught:
        catbus.load(path, **options)
    return str(caught.value)


# -- args ------------------------------------------------------------------------------------------
@pytest.mark.unit
def test_defaults_and_given_values_keep_their_type(tmp_path: Path) -> None:
    path = write(tmp_path, "pair.yaml", PAIR)
    spec = catbus.load(path)
    assert spec.node("talker").params["gain"] == 1.5 and spec.node("talker").period == 0.1
    assert spec.name == "pair_base"
    spec = catbus.load(path, args=["gain=3", "period=1e-2", "tag=x"])
    assert spec.node("talker").params["gain"] == 3.0 and spec.node("talker").period == 0.01
    assert spec.name == "pair_x"
    assert catbus.load(path, args={"gain": 2.5}).node("talker").params["gain"] == 2.5


@pytest.mark.unit
def test_substitution_rules() -> None:
    values = {"n": 3, "flag": True, "xs": [1, 2], "s": "a b"}
    assert substitute({"k": "$(arg n)", "l": ["$(arg xs)"]}, values, where="f") == \
        {"k": 3, "l": [[1, 2]]}
    assert substitute("run_$(arg n)_$(arg flag)_$(arg s)", values, where="f") == "run_3_true_a b"
    assert substitute({"args": {"x": "$(arg nope)"}}, values, where="f") == \
        {"args": {"x": "$(arg nope)"}}   # the declarations themselves are not substituted
    assert as_text(0.5) == "0.5" and as_text(None) == "null"


@pytest.mark.unit
def test_arg_mistakes_are_one_line_naming_file_field_and_fix(tmp_path: Path) -> None:
    path = write(tmp_path, "pair.yaml", PAIR)
    message = error_of(path, args=["gian=2"])
    assert message.startswith(f"{path}: args.gian: ") and "did you mean 'gain'" in message
    message = error_of(path, args=["period=-1"])
    assert message.startswith(f"{path}: nodes.talker.period: must be a positive number")
    assert "expected NAME=VALUE" in error_of(path, args=["gain"])

    required = write(tmp_path, "required.yaml", PAIR.replace(
        "tag: base", "tag: {help: a name for the run}"))
    message = error_of(required)
    assert message.startswith(f"{required}: args.tag: required argument (a name for the run) "
                              f"not given; set it with --arg tag=VALUE")
    assert catbus.load(required, args=["tag=z"]).name == "pair_z"

    undeclared = write(tmp_path, "undeclared.yaml", PAIR.replace("$(arg gain)", "$(arg gane)"))
    message = error_of(undeclared)
    assert message.startswith(f"{undeclared}: nodes.talker.params.gain: $(arg gane) names an "
                              f"argument this file does not declare")
    assert "did you mean 'gain'" in message and "add it under args:" in message

    other = write(tmp_path, "env.yaml", PAIR.replace("$(arg tag)", "$(env HOME)"))
    assert "only $(arg NAME) is supported" in error_of(other)
    long_form = write(tmp_path, "long.yaml", PAIR.replace("help: the talker", "hlep: the talker"))
    assert error_of(long_form).startswith(f"{long_form}: args.gain.hlep: unknown key")


# -- include ---------------------------------------------------------------------------------------
def _two_pairs(folder: Path) -> Path:
    write(folder, "parts/pair.yaml", PAIR)
    return write(folder, "top.yaml", """\
        args: {left_gain: 4.0}
        mode: inline
        steps: 3
        include:
          - {file: parts/pair.yaml, prefix: left, args: {gain: $(arg left_gain), tag: l}}
          - {file: parts/pair.yaml, prefix: right}
        nodes:
          tap:
            class: tests.toy_nodes:Tap
        """)


@pytest.mark.unit
def test_include_prefixes_names_and_topics(tmp_path: Path) -> None:
    spec = catbus.load(_two_pairs(tmp_path))
    assert spec.node_names == ["left_talker", "left_listener", "right_talker", "right_listener",
                               "tap"]
    assert spec.node("left_talker").params["gain"] == 4.0
    assert spec.node("right_talker").params["gain"] == 1.5
    assert [b.topic for b in spec.node("left_talker").outputs] == ["left/talker/out"]
    assert [b.topic for b in spec.node("left_listener").inputs] == ["left/talker/out"]
    assert [b.topic for b in spec.node("right_listener").outputs] == ["right/listener/count"]
    # The document reproduces the same run without args or includes (sweeps rebuild from it).
    again = catbus.load(spec.document)
    assert again.node("left_listener").inputs == spec.node("left_listener").inputs
    assert "include" not in spec.document and "args" not in spec.document


@pytest.mark.unit
def test_include_mistakes_name_both_files(tmp_path: Path) -> None:
    top = _two_pairs(tmp_path)
    text = top.read_text()
    bad_arg = write(tmp_path, "bad_arg.yaml", text.replace("tag: l}", "tga: l}"))
    message = error_of(bad_arg)
    assert message.startswith(f"parts/pair.yaml (included by {bad_arg} as 'left'): args.tga: "
                              f"include[0].args of {bad_arg} sets argument 'tga'")
    write(tmp_path, "parts/broken.yaml", PAIR.replace("period: $(arg period)", "perod: 1"))
    broken = write(tmp_path, "broken.yaml", text.replace("file: parts/pair.yaml, prefix: right",
                                                         "file: parts/broken.yaml, prefix: r"))
    message = error_of(broken)
    assert message.startswith(f"parts/broken.yaml (included by {broken} as 'r'): "
                              f"nodes.talker.perod: unknown key")
    missing = write(tmp_path, "missing.yaml", text.replace("parts/pair.yaml, prefix: right",
                                                           "parts/nope.yaml, prefix: right"))
    assert error_of(missing).startswith(f"{missing}: include[1].file: no such launch file")
    clash = write(tmp_path, "clash.yaml", text.replace("prefix: right", "prefix: left"))
    message = error_of(clash)
    assert message.startswith(f"{clash}: nodes.left_talker: defined twice")
    assert "give the include a prefix" in message
    bad_prefix = write(tmp_path, "bad_prefix.yaml", text.replace("prefix: right", "prefix: a/b"))
    assert error_of(bad_prefix).startswith(f"{bad_prefix}: include[1].prefix: must be a name")


@pytest.mark.unit
def test_include_cycles_are_refused(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "include: {file: b.yaml, prefix: b}\nnodes: {x: {class: "
                              "tests.toy_nodes:Talker}}\n")
    write(tmp_path, "b.yaml", "include: {file: a.yaml, prefix: a}\nnodes: {y: {class: "
                              "tests.toy_nodes:Talker}}\n")
    message = error_of(tmp_path / "a.yaml")
    assert "include cycle:" in message and "a.yaml -> " in message
    assert message.startswith("b.yaml (included by ")


@pytest.mark.unit
def test_nested_includes_stack_prefixes(tmp_path: Path) -> None:
    write(tmp_path, "parts/pair.yaml", PAIR)
    write(tmp_path, "parts/mid.yaml", "include: {file: pair.yaml, prefix: inner}\n")
    top = write(tmp_path, "top.yaml", "include: {file: parts/mid.yaml, prefix: outer}\n")
    spec = catbus.load(top)
    assert spec.node_names == ["outer_inner_talker", "outer_inner_listener"]
    assert spec.node("outer_inner_listener").inputs[0].topic == "outer/inner/talker/out"


@pytest.mark.timeout(120)
def test_launch_with_arg_and_include_runs(tmp_path: Path) -> None:
    """``catbus launch FILE --arg ...`` of a file with includes, inline, as a user types it."""
    top = _two_pairs(tmp_path)
    done = subprocess.run([sys.executable, "-m", "catbus", "launch", str(top), "--arg",
                           "left_gain=2", "--no-progress", "--json"], cwd=REPO,
                          capture_output=True, text=True, timeout=100)
    assert done.returncode == 0, done.stderr
    assert '"left_talker"' in done.stdout and '"right_listener"' in done.stdout
    wrong = subprocess.run([sys.executable, "-m", "catbus", "launch", str(top), "--arg",
                            "left_gian=2"], cwd=REPO, capture_output=True, text=True,
                           timeout=100)
    assert wrong.returncode == 2 and "Traceback" not in wrong.stderr
    assert wrong.stderr.strip() == (f"catbus: {top}: args.left_gian: --arg sets argument "
                                    f"'left_gian', which this file does not declare (it "
                                    f"declares: left_gain); did you mean 'left_gain'?; declare "
                                    f"it under args: or fix the name")


@pytest.mark.timeout(180)
def test_verify_and_sweep_take_arg(tmp_path: Path) -> None:
    """``catbus verify FILE --arg ...`` and ``catbus sweep FILE --arg ...`` run the file with
    the argument (a wrong one: the same one line, exit 2)."""
    path = write(tmp_path, "pair.yaml", PAIR.replace("\nnodes:", "\nsteps: $(arg n)\nnodes:")
                 .replace("tag: base", "tag: base\n  n: {help: steps}"))
    verified = subprocess.run([sys.executable, "-m", "catbus", "verify", str(path), "--arg",
                               "n=3"], cwd=REPO, capture_output=True, text=True, timeout=150)
    assert verified.returncode == 0, verified.stderr
    assert verified.stdout.startswith("identical:")
    missing = subprocess.run([sys.executable, "-m", "catbus", "verify", str(path)], cwd=REPO,
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and "args.n: required argument (steps) not given" in \
        missing.stderr
    swept = subprocess.run([sys.executable, "-m", "catbus", "sweep", str(path), "--arg", "n=2",
                            "--arg", "gain=2", "--seeds", "0:2", "--jobs", "1", "--json",
                            "--no-progress"], cwd=REPO, capture_output=True, text=True,
                           timeout=150)
    assert swept.returncode == 0, swept.stderr


@pytest.mark.unit
def test_on_params_with_the_wrong_signature_is_refused_at_launch() -> None:
    from catbus.node import Node

    class Wrong(Node):
        period = 0.1

        def on_params(self) -> None:
            pass

    with pytest.raises(ConfigError, match=r"cannot be called as on_params\(self, changed\)"):
        catbus.load({"nodes": {"x": {"class": Wrong}}})
