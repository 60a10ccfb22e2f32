"""The command line's assembly, parsers and shared helpers, and the pure parts of the live-run
client, without a run: every command is in ``catbus --help`` in its place, each module brings
its own parser and handler, usage mistakes are one line and exit 2, and ``--json`` still prints
one object on failure.

Everything here but the last test is ``unit``: no process, no socket.
"""

from __future__ import annotations

import argparse
import importlib
import json
import signal
import subprocess
import sys

import pytest

from catbus.cli import common
from catbus.cli.main import build_parser, main, parse_args
from catbus.errors import CatbusError

#: ``catbus --help`` lists the commands in this order; users read it, so it is kept.
COMMANDS = ["launch", "node", "swap", "param", "play", "reproduce", "bus", "keys", "run", "topic",
            "info", "eval",
            "export", "foxglove", "plot", "sweep", "verify", "conformance"]

#: Command module -> the subcommands it adds, through which functions.
MODULES = {
    "launch": {"launch": "add_parser"}, "node": {"node": "add_parser"},
    "swap": {"swap": "add_parser"}, "param": {"param": "add_parser"},
    "play": {"play": "add_parser"}, "reproduce": {"reproduce": "add_parser"},
    "bus": {"bus": "add_parser"}, "keys": {"keys": "add_parser"}, "runs": {"run": "add_parser"},
    "topic": {"topic": "add_parser"}, "info": {"info": "add_parser"},
    "foxglove": {"foxglove": "add_parser"},
    "sweep": {"sweep": "add_parser"}, "conformance": {"conformance": "add_parser"},
    "recording": {"eval": "add_eval_parser", "export": "add_export_parser",
                  "plot": "add_plot_parser", "verify": "add_verify_parser"},
}


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


@pytest.mark.unit
def test_every_command_is_assembled_in_the_documented_order():
    parser = build_parser()
    assert list(subcommands(parser)) == COMMANDS
    assert parser.epilog == common.EXIT_CODES


@pytest.mark.unit
@pytest.mark.parametrize("module", sorted(MODULES))
def test_each_command_module_brings_its_parser_and_handler(module):
    """A module's parser, on a bare parser of its own, sets a handler of that same module."""
    cli = importlib.import_module(f"catbus.cli.{module}")
    for command, adder in MODULES[module].items():
        parser = argparse.ArgumentParser(prog="catbus")
        getattr(cli, adder)(parser.add_subparsers(dest="command"))
        assert list(subcommands(parser)) == [command]
        handler = subcommands(parser)[command].get_default("func")
        assert callable(handler) and handler.__module__ == cli.__name__


@pytest.mark.unit
@pytest.mark.parametrize("command", ["launch", "node", "play", "bus", "topic", "foxglove",
                                     "sweep"])
def test_commands_that_run_or_watch_a_run_show_the_exit_codes(command):
    assert subcommands(build_parser())[command].epilog == common.EXIT_CODES


@pytest.mark.unit
def test_shared_options_are_the_same_everywhere():
    parser = build_parser()
    choosers = ["node", "swap", "topic", "foxglove"]
    for command in choosers:
        options = {o for a in subcommands(parser)[command]._actions for o in a.option_strings}
        assert {"--bus", "--run", "--keys"} <= options, command
    for command in ("launch", "verify"):
        options = {o for a in subcommands(parser)[command]._actions for o in a.option_strings}
        assert {"--mode", "--steps", "--duration", "--seed", "--set"} <= options, command
    assert parse_args(["launch", "f.yaml"]).log_level == "INFO"
    assert parse_args(["sweep", "f.yaml"]).log_level == "WARNING"
    assert parse_args(["node", "m:C", "--name", "x"]).log_level is None   # the run's level


@pytest.mark.unit
def test_swap_takes_its_class_after_the_options():
    args = parse_args(["swap", "robot", "--run", "x", "pkg.mod:Other"])
    assert (args.name, args.cls, args.run) == ("robot", "pkg.mod:Other", "x")
    with pytest.raises(SystemExit) as exited:
        parse_args(["swap", "robot", "a:B", "c:D"])
    assert exited.value.code == 2
    with pytest.raises(SystemExit):
        parse_args(["launch", "f.yaml", "a:B"])   # no other command takes leftover words


@pytest.mark.unit
@pytest.mark.parametrize("argv, said", [
    (["node", "pkg:Node"], "catbus: node: --name is required"),
    (["topic", "echo"], "catbus: topic echo: name the topic"),
    (["verify", "f.yaml", "--mode", "inline"], "catbus: verify: --mode inline does not apply"),
    (["node", "list", "--bus", "tcp://127.0.0.1:1", "--run", "x"], "not both"),
])
def test_usage_mistakes_are_one_line_and_exit_2(argv, said, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert said in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.unit
def test_json_failure_is_one_object_on_stdout(capsys):
    assert main(["sweep", "f.yaml", "--seeds", "x:y", "--json"]) == 2
    out, err = capsys.readouterr()
    assert json.loads(out) == {"error": "<command line>: --seeds: expected A:B (half-open, e.g. "
                                        "0:100) or a list (e.g. 3,7,9), got 'x:y'",
                               "exit_code": 2}
    assert err.startswith("catbus: <command line>: --seeds:") and len(err.splitlines()) == 1


@pytest.mark.unit
def test_sigterm_is_an_interrupt_only_while_a_command_runs():
    before = signal.getsignal(signal.SIGTERM)
    assert common.interrupt_exit_code() == 130
    with common.sigterm_as_interrupt():
        handler = signal.getsignal(signal.SIGTERM)
        with pytest.raises(KeyboardInterrupt):
            handler(signal.SIGTERM, None)
        assert common.interrupt_exit_code() == 143
    assert signal.getsignal(signal.SIGTERM) is before
    with common.sigterm_as_interrupt():   # each command starts without the last one's signal
        assert common.interrupt_exit_code() == 130
    assert common.interrupt_exit_code(signal.SIGTERM) == 143


@pytest.mark.unit
def test_say_run_and_json_error(capsys):
    common.say_run({"registry": "ipc:///r", "name": None, "pid": 7},
                   {"run": "demo-1", "mode": "stepped"})
    common.json_error("boom", 1, summary=None, extra={"a": 1})
    out, err = capsys.readouterr()
    assert err == "catbus: run demo-1 (pid 7, mode stepped) on ipc:///r\n"
    assert json.loads(out) == {"error": "boom", "exit_code": 1, "extra": {"a": 1}}


# -- the client, its pure parts ---------------------------------------------------------------------
@pytest.mark.unit
def test_find_run_takes_a_bus_as_it_is_and_refuses_bus_and_run():
    from catbus.client import find_registry, find_run

    assert find_run("tcp://10.0.0.1:7700") == {"registry": "tcp://10.0.0.1:7700",
                                               "folder": None, "name": None, "id": None}
    assert find_registry("tcp://10.0.0.1:7700") == "tcp://10.0.0.1:7700"
    with pytest.raises(CatbusError, match="not both"):
        find_run("tcp://10.0.0.1:7700", "demo")


@pytest.mark.unit
def test_topics_of_a_graph():
    from catbus.client import topics_of

    graph = {"nodes": [
        {"name": "env", "endpoint": "ipc:///e", "key": None,
         "outputs": [["~/state", "env/state"], ["~/s", "robot/sensors"]],
         "inputs": [["~/action", "robot/action", "latest"]]},
        {"name": "robot", "endpoint": "ipc:///r", "key": "K",
         "outputs": [["~/action", "robot/action"]],
         "inputs": [["~/sensors", "robot/sensors", "latest"], ["~/x", "nobody/x", "all"]]},
    ]}
    topics = topics_of(graph)
    assert sorted(topics) == ["env/state", "robot/action", "robot/sensors"]
    assert topics["robot/sensors"] == {"publishers": ["env"], "subscribers": ["robot"],
                                       "endpoints": ["ipc:///e"], "keys": [""]}
    assert topics["robot/action"]["keys"] == ["K"]
    assert topics["env/state"]["subscribers"] == []


def test_building_the_parser_loads_no_zeromq_numpy_or_yaml():
    """``catbus --help`` and ``catbus run list`` stay fast: the command modules import a run's
    libraries only when their command runs."""
    probe = ("import sys; from catbus.cli.main import build_parser; build_parser(); "
             "print(sorted(m for m in ('zmq', 'numpy', 'yaml', 'mcap') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
