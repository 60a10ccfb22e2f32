"""Where classes come from: a user's own ``nodes/`` package, in every mode and install style.

A tiny user project is made in ``tmp_path``: a ``nodes`` package (regular or namespace) with a
node ``nodes.mybot:MyBot`` that, in ``setup``, writes a report of the process it runs in (pid,
where ``nodes`` and ``catbus`` were imported from, whether the repo's example ``nodes`` package
is visible, ``sys.flags.safe_path``). Runs are real ``catbus launch`` processes (``stepped``
starts real node processes) with the repo root taken out of ``PYTHONPATH`` (``bus_sandbox`` puts
it there for the toy nodes), so nothing but the import path rule can find a package:

(a) a regular ``nodes/`` next to the launch file, run from another folder;
(b) a namespace ``nodes/`` (no ``__init__.py``) in the current folder;
(c) run from a folder that holds a folder named ``catbus`` (empty, a broken package, a clone);
(d) the repo's ``launch/flat_evade.yaml`` from another folder;
(e) a NON-editable install (a wheel of the repo installed with ``pip --target``): the user's
    ``nodes`` wins and ``import nodes`` finds nothing of ours.

Every test is bounded and runs in ``bus_sandbox`` (no process or run folder outlives it).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from pathlib import Path

import pytest

from catbus.errors import ConfigError
from catbus.spec.imports import import_path_for, python_command, recorded_import_path, \
    use_import_path
from catbus.supervise.launcher import node_command
from catbus.spec.launchfile import load_launch
from tests.conftest import ROOT

pytestmark = pytest.mark.usefixtures("bus_sandbox")

MODES = ("inline", "stepped")
RUN_TIMEOUT = 60

BOT = '''\
import importlib.util
import json
import os
import sys

import catbus
import nodes
from catbus import Node, Param


class MyBot(Node):
    outputs = ["~/out"]
    params = {"report": Param(str, "", "file to write where this process imported things from")}
    period = 0.1

    def setup(self, params):
        report = {"pid": os.getpid(), "nodes": [os.path.realpath(p) for p in nodes.__path__],
                  "nodes_file": getattr(nodes, "__file__", None),
                  "catbus": os.path.realpath(catbus.__file__),
                  "ours_visible": importlib.util.find_spec("nodes.flat_evade") is not None,
                  "safe_path": bool(getattr(sys.flags, "safe_path", False))}
        with open(f"{params['report']}.{os.getpid()}.json", "w") as out:
            json.dump(report, out)

    def step(self, t, inputs):
        return {"~/out": {"t": t}}
'''


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------
def make_nodes(folder: Path, *, namespace: bool = False) -> Path:
    """A user's ``nodes`` package in ``folder`` (without ``__init__.py``: a namespace package)."""
    package = folder / "nodes"
    package.mkdir(parents=True)
    if not namespace:
        (package / "__init__.py").write_text("")
    (package / "mybot.py").write_text(BOT)
    return package


def make_launch(folder: Path, report: Path, *, extra: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "run.yaml"
    path.write_text(textwrap.dedent(f"""\
        steps: 3
        {extra}
        nodes:
          bot:
            class: nodes.mybot:MyBot
            params: {{report: {json.dumps(str(report))}}}
        """))
    return path


def clean_env(**extra: str) -> dict[str, str]:
    """The test's environment without the repo root on PYTHONPATH: nothing of the repo is
    importable except through the installed catbus and the import path rule."""
    env = dict(os.environ)
    entries = [e for e in env.get("PYTHONPATH", "").split(os.pathsep)
               if e and Path(e).resolve() != ROOT]
    env["PYTHONPATH"] = os.pathsep.join(entries)
    if not entries:
        del env["PYTHONPATH"]
    env.update(extra)
    return env


def catbus_script() -> list[str]:
    """The ``catbus`` console script of this Python (what users type)."""
    script = Path(sysconfig.get_path("scripts")) / "catbus"
    if not script.exists():
        pytest.skip(f"no catbus console script at {script}")
    return [str(script)]


def launch(command: list[str], launch_file: Path, mode: str, cwd: Path,
           env: dict[str, str] | None = None, *extra: str) -> subprocess.CompletedProcess:
    done = subprocess.run([*command, "launch", str(launch_file), "--mode", mode, "--no-progress",
                           *extra], cwd=cwd, env=env or clean_env(), text=True,
                          capture_output=True, timeout=RUN_TIMEOUT)
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done


def reports(report: Path) -> list[dict]:
    found = sorted(report.parent.glob(f"{report.name}.*.json"))
    assert found, f"the node wrote no report next to {report}"
    return [json.loads(path.read_text()) for path in found]


def check_report(report: Path, mode: str, *, nodes: Path, catbus_init: Path) -> dict:
    """One node process ran, with the user's ``nodes`` and the expected catbus; in stepped mode
    a node process of its own, started without the current folder first on sys.path."""
    (found,) = reports(report)
    assert found["nodes"] == [str(nodes.resolve())]
    assert found["catbus"] == str(catbus_init.resolve())
    assert found["ours_visible"] is False, "the repo's example nodes package is importable"
    if mode == "stepped" and sys.version_info >= (3, 11):
        assert found["safe_path"] is True
    return found


INSTALLED_CATBUS = ROOT / "catbus" / "__init__.py"   # the editable install


# ------------------------------------------------------------------------------------------------
# (a) (b): a user's nodes package
# ------------------------------------------------------------------------------------------------
@pytest.mark.timeout(RUN_TIMEOUT + 30)
@pytest.mark.parametrize("mode", MODES)
def test_a_regular_nodes_package_next_to_the_launch_file_from_another_folder(
        tmp_path: Path, mode: str) -> None:
    project = tmp_path / "project"
    package = make_nodes(project)
    report = tmp_path / "report"
    launch_file = make_launch(project, report)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = launch([sys.executable, "-m", "catbus"], launch_file, mode, elsewhere)
    found = check_report(report, mode, nodes=package, catbus_init=INSTALLED_CATBUS)
    assert found["nodes_file"] == str(package / "__init__.py")
    assert "bot" in done.stdout


@pytest.mark.timeout(RUN_TIMEOUT + 30)
@pytest.mark.parametrize("mode", MODES)
def test_b_a_namespace_nodes_package_in_the_current_folder(tmp_path: Path, mode: str) -> None:
    work = tmp_path / "work"
    package = make_nodes(work, namespace=True)
    report = tmp_path / "report"
    launch_file = make_launch(tmp_path / "launch", report)   # a folder without nodes/
    launch([sys.executable, "-m", "catbus"], launch_file, mode, work)
    found = check_report(report, mode, nodes=package, catbus_init=INSTALLED_CATBUS)
    assert found["nodes_file"] is None   # a namespace package


@pytest.mark.timeout(RUN_TIMEOUT + 30)
@pytest.mark.parametrize("mode", MODES)
def test_the_launch_files_pythonpath_wins_over_its_folder_and_the_current_folder(
        tmp_path: Path, mode: str) -> None:
    """Three ``nodes`` packages: the one in the folder ``pythonpath:`` lists is used."""
    chosen = make_nodes(tmp_path / "lib")
    report = tmp_path / "report"
    launch_dir = tmp_path / "launch"
    make_nodes(launch_dir)
    launch_file = make_launch(launch_dir, report, extra="pythonpath: [../lib]")
    work = tmp_path / "work"
    make_nodes(work)
    launch([sys.executable, "-m", "catbus"], launch_file, mode, work)
    check_report(report, mode, nodes=chosen, catbus_init=INSTALLED_CATBUS)


# ------------------------------------------------------------------------------------------------
# (c): a folder named catbus in the current folder
# ------------------------------------------------------------------------------------------------
def make_catbus_folder(holder: Path, kind: str) -> None:
    """A folder named ``catbus`` in ``holder``: empty (a namespace package), a package that
    fails when imported, or a clone-like checkout (the folder that holds a clone)."""
    folder = holder / "catbus"
    folder.mkdir(parents=True)
    broken = "raise ImportError('the catbus folder in the current folder was imported')\n"
    if kind == "package":
        (folder / "__init__.py").write_text(broken)
        (folder / "__main__.py").write_text(broken)
    elif kind == "clone":
        (folder / "pyproject.toml").write_text("[project]\nname = 'catbus'\n")
        (folder / "catbus").mkdir()
        (folder / "catbus" / "__init__.py").write_text(broken)
        (folder / "nodes").mkdir()


@pytest.mark.timeout(RUN_TIMEOUT + 30)
@pytest.mark.parametrize("kind", ["empty", "package", "clone"])
@pytest.mark.parametrize("mode", MODES)
def test_c_a_folder_named_catbus_in_the_current_folder_does_not_shadow_catbus(
        tmp_path: Path, mode: str, kind: str) -> None:
    holder = tmp_path / "holder"
    make_catbus_folder(holder, kind)
    package = make_nodes(holder)
    report = tmp_path / "report"
    launch_file = make_launch(holder, report)
    launch(catbus_script(), launch_file, mode, holder)
    check_report(report, mode, nodes=package, catbus_init=INSTALLED_CATBUS)


@pytest.mark.timeout(RUN_TIMEOUT + 30)
def test_c_the_python_310_form_of_the_node_command_does_not_shadow_catbus(tmp_path: Path) -> None:
    """Python 3.10 has no ``-P``: its ``python -c`` form is checked here (as the launcher
    process; its stepped node processes use this Python's form)."""
    holder = tmp_path / "holder"
    make_catbus_folder(holder, "empty")
    package = make_nodes(holder)
    report = tmp_path / "report"
    launch_file = make_launch(holder, report)
    command = python_command((3, 10))
    assert "-P" not in command and command[1] == "-c"
    launch(command, launch_file, "stepped", holder)
    check_report(report, "stepped", nodes=package, catbus_init=INSTALLED_CATBUS)


def test_node_processes_get_safe_path_and_the_import_path(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "path", list(sys.path))   # load_launch puts folders in front
    lib = tmp_path / "lib"
    (lib / "cbt_pkg_probe").mkdir(parents=True)
    (lib / "cbt_pkg_probe" / "__init__.py").write_text(
        "from catbus import Node\nclass Probe(Node):\n    period = 0.1\n")
    launch_dir = tmp_path / "launch"
    launch_dir.mkdir()
    file = launch_dir / "run.yaml"
    file.write_text("steps: 1\npythonpath: [../lib]\n"
                    "nodes: {probe: {class: cbt_pkg_probe:Probe}}\n")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    spec = load_launch(file)
    assert spec.import_path == (lib, launch_dir, work)
    assert spec.document["pythonpath"] == [str(lib), str(launch_dir), str(work)]
    assert recorded_import_path({"launch": spec.to_yaml()}) == spec.import_path
    command = node_command(spec.node("probe"), "ipc:///x", spec.import_path)
    assert command[:len(python_command())] == python_command()
    if sys.version_info >= (3, 11):
        assert command[1:4] == ["-P", "-m", "catbus"]
    tail = command[len(python_command()):]
    assert tail == ["node", "cbt_pkg_probe:Probe", "--name", "probe", "--bus", "ipc:///x",
                    "--path", str(lib), "--path", str(launch_dir), "--path", str(work)]


# ------------------------------------------------------------------------------------------------
# (d): the repo's example launch file from another folder
# ------------------------------------------------------------------------------------------------
@pytest.mark.timeout(RUN_TIMEOUT + 30)
@pytest.mark.parametrize("mode", MODES)
def test_d_the_example_launch_file_runs_from_another_folder(tmp_path: Path, mode: str) -> None:
    elsewhere = tmp_path / "elsewhere"
    make_nodes(elsewhere)   # a user's own nodes package here does not hide the example's
    record = tmp_path / "run.mcap"
    done = launch([sys.executable, "-m", "catbus"], ROOT / "launch" / "flat_evade.yaml", mode,
                  elsewhere, None, "--steps", "5", "--record", str(record))
    assert "robot" in done.stdout and "min_distance" in done.stdout   # evaluated, too
    assert record.stat().st_size > 0

    # A recording names its evaluator; the import path recorded with it finds it from anywhere
    # (without it, only the current folder is searched, whose nodes/ is the user's).
    probe = textwrap.dedent("""\
        import sys
        from catbus.errors import CatbusError
        from catbus.spec.imports import recorded_import_path
        from catbus.recording.evaluate import load_function
        from catbus.recording.reader import Recording
        recording = Recording(sys.argv[1])
        (ref,) = recording.metadata["evaluators"]
        path = recorded_import_path(recording.metadata) if sys.argv[2] == "with" else ()
        try:
            print("found:", load_function(ref, path=path).__module__)
        except CatbusError as error:
            print("error:", error)
        """)

    def evaluator(how: str) -> str:
        out = subprocess.run([sys.executable, "-c", probe, str(record), how], cwd=elsewhere,
                             env=clean_env(), text=True, capture_output=True, timeout=RUN_TIMEOUT)
        assert out.returncode == 0, out.stderr
        return out.stdout

    assert "found: nodes.flat_evade.evaluator" in evaluator("with")
    without = evaluator("without")
    assert "error: " in without and f"searched {elsewhere}, then the installed" in without


# ------------------------------------------------------------------------------------------------
# (e): a non-editable install
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def wheel_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel of the repo installed with ``pip install --target`` into a folder of its own (the
    editable install stays untouched; use it with PYTHONPATH). Built from a copy of the sources,
    so the build writes nothing into the working tree."""
    base = tmp_path_factory.mktemp("wheel")
    source = base / "src"
    skip = shutil.ignore_patterns("__pycache__", "*.egg-info", "build", "*.mcap")
    for name in ("catbus", "nodes"):
        shutil.copytree(ROOT / name, source / name, ignore=skip)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "-w", str(base / "dist"), str(source)],
                   check=True, timeout=300, cwd=base)
    (wheel,) = (base / "dist").glob("catbus-*.whl")
    top = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()}
    assert "nodes" not in top and "catbus" in top, f"the wheel holds {sorted(top)}"
    site = base / "site"
    subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)],
                   check=True, timeout=300, cwd=base)
    assert (site / "catbus" / "__init__.py").is_file() and not (site / "nodes").exists()
    return site


@pytest.mark.timeout(300 + 2 * RUN_TIMEOUT)
@pytest.mark.parametrize("mode", MODES)
def test_e_a_non_editable_install_uses_the_users_nodes(tmp_path: Path, wheel_site: Path,
                                                       mode: str) -> None:
    env = clean_env(PYTHONPATH=str(wheel_site))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    nothing = subprocess.run([sys.executable, "-c", "import catbus, nodes"], cwd=elsewhere,
                             env=env, text=True, capture_output=True, timeout=RUN_TIMEOUT)
    assert nothing.returncode != 0 and "No module named 'nodes'" in nothing.stderr, (
        f"`import nodes` found a package with the wheel installed (a stale editable install "
        f"of catbus that still maps nodes? reinstall it): {nothing.stdout}{nothing.stderr}")

    project = tmp_path / "project"
    package = make_nodes(project)
    report = tmp_path / "report"
    launch_file = make_launch(project, report)
    launch([sys.executable, "-m", "catbus"], launch_file, mode, elsewhere, env)
    check_report(report, mode, nodes=package, catbus_init=wheel_site / "catbus" / "__init__.py")


# ------------------------------------------------------------------------------------------------
# errors
# ------------------------------------------------------------------------------------------------
@pytest.fixture
def keep_sys_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "path", list(sys.path))


@pytest.mark.usefixtures("keep_sys_path")
@pytest.mark.parametrize("value, message", [
    ("[nope]", "pythonpath[0]: no such folder: {base}/nope (paths in a launch file are relative "
               "to its folder"),
    ("[run.yaml]", "pythonpath[0]: is not a folder: {base}/run.yaml"),
    ("..", "pythonpath: must be a list of folders (relative to this file), for example "
           "pythonpath: [..]"),
    ("[., 3]", "pythonpath[1]: must be a folder path"),
])
def test_pythonpath_mistakes_are_one_line_naming_the_entry(tmp_path: Path, value: str,
                                                           message: str) -> None:
    file = tmp_path / "run.yaml"
    file.write_text(f"steps: 1\npythonpath: {value}\nnodes: {{a: {{class: 'x:Y'}}}}\n")
    with pytest.raises(ConfigError) as error:
        load_launch(file)
    assert str(error.value).startswith(f"{file}: " + message.format(base=tmp_path))


@pytest.mark.usefixtures("keep_sys_path")
def test_a_class_that_does_not_import_names_file_field_folders_and_fix(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "lib").mkdir()
    file = tmp_path / "launch" / "run.yaml"
    file.parent.mkdir()
    file.write_text("steps: 1\npythonpath: [../lib]\nnodes:\n"
                    "  robot: {class: 'cbt_no_such_pkg.mybot:MyBot'}\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as error:
        load_launch(file)
    assert str(error.value) == (
        f"{file}: nodes.robot.class: module 'cbt_no_such_pkg.mybot' not found (no module "
        f"'cbt_no_such_pkg'; searched {tmp_path / 'lib'}, {file.parent}, {tmp_path}, then the "
        f"installed packages); fix: put the package in one of those folders, or list the folder "
        f"that holds it under 'pythonpath:' in the launch file (relative to the file); and check "
        f"the spelling")


@pytest.mark.timeout(RUN_TIMEOUT)
def test_catbus_node_by_hand_uses_path_and_says_how_to_fix_a_missing_class(
        tmp_path: Path) -> None:
    """``catbus node`` imports before it looks for the registry: a bad class or --path fails
    at once, exit 2, naming the folders searched and the fix."""
    def node(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "catbus", "node", "nodes.mybot:MyBot",
                               "--name", "bot", "--bus", "tcp://127.0.0.1:9", "--timeout",
                               "0.2", *args], cwd=tmp_path, env=clean_env(), text=True,
                              capture_output=True, timeout=RUN_TIMEOUT)

    missing = node()
    assert missing.returncode == 2
    assert (f"catbus node: node.class: module 'nodes.mybot' not found (no module 'nodes'; "
            f"searched {tmp_path}, then the installed packages); fix: run from the folder that "
            f"holds the package, or give that folder with --path DIR") in missing.stderr
    bad_path = node("--path", "nope")
    assert bad_path.returncode == 2 and "--path: nope: no such folder" in bad_path.stderr
    make_nodes(tmp_path / "project")
    found = node("--path", "project")   # imported; then no registry answers (exit 1)
    said = found.stdout + found.stderr
    assert found.returncode == 1 and "no answer from the registry" in said, said


def test_use_import_path_puts_folders_first_once(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "path", ["a", str(tmp_path), "b"])
    monkeypatch.chdir(tmp_path)
    paths = import_path_for(["x", tmp_path / "y", "x"])
    assert paths == (tmp_path / "x", tmp_path / "y", tmp_path)
    use_import_path(paths)
    assert sys.path == [str(tmp_path / "x"), str(tmp_path / "y"), str(tmp_path), "a", "b"]
