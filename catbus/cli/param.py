"""``catbus param get NODE [KEY]`` and ``catbus param set NODE KEY VALUE``: a running node's
parameters, read or changed live without a new process (the node's ``on_params``; the client's
side: :mod:`catbus.client.params`, the node's: :mod:`catbus.runtime.liveparams`)."""

from __future__ import annotations

import argparse
from typing import Any

from catbus.cli.common import RAW, add_run_choice, print_json, say_run

PARAM_DESCRIPTION = """\
get: the node's current parameters (the launch file's, defaults included, with every live
change since), or one of them (KEY may be dotted: safe.d_min).

set: change one parameter of a running node without a new process. VALUE is read as YAML
(20, 1e-3, true, [1, 2], Unsafe). The node checks it as the launch does and applies it just
before its next step through its on_params(changed) method; in a stepped run that step's tick
is printed, and the recording keeps the change (catbus/params) so that `catbus play` applies it
at the same tick. A node class without on_params refuses, saying so: `catbus swap NODE --param
KEY=VALUE` starts a new process with the value instead. A refusal is one line, exit 1.

  catbus param get robot
  catbus param get robot safe.d_min --json
  catbus param set robot safe.d_min 20
"""


def add_parser(commands: Any) -> None:
    """Add ``param`` (``get``, ``set``) to the ``catbus`` subcommands."""
    p = commands.add_parser("param", help="read or change a running node's parameters",
                            description=PARAM_DESCRIPTION, formatter_class=RAW)
    verbs = p.add_subparsers(dest="verb", metavar="VERB", required=True)
    get = verbs.add_parser("get", help="a node's current parameters",
                           description=PARAM_DESCRIPTION, formatter_class=RAW)
    get.add_argument("node", metavar="NODE")
    get.add_argument("key", nargs="?", metavar="KEY", help="one parameter (dotted: safe.d_min)")
    get.add_argument("--json", action="store_true", help="print the values as JSON")
    add_run_choice(get, "registry address (default: the run on this machine)")
    put = verbs.add_parser("set", help="change a running node's parameter live",
                           description=PARAM_DESCRIPTION, formatter_class=RAW)
    put.add_argument("node", metavar="NODE")
    put.add_argument("key", metavar="KEY", help="the parameter (dotted: safe.d_min)")
    put.add_argument("value", metavar="VALUE", help="its new value, read as YAML")
    put.add_argument("--timeout", type=float, default=30.0, metavar="S",
                     help="seconds to wait for the node's next step (default 30)")
    put.add_argument("--json", action="store_true", help="print the outcome as JSON")
    add_run_choice(put, "registry address (default: the run on this machine)")
    p.set_defaults(func=cmd_param)


def cmd_param(args: argparse.Namespace) -> int:
    """``get`` or ``set``."""
    return cmd_get(args) if args.verb == "get" else cmd_set(args)


def cmd_get(args: argparse.Namespace) -> int:
    """Print the node's parameters (or one); 0, or 2 for an unknown KEY."""
    from catbus.client import ask_graph, find_run
    from catbus.client.params import get_params
    from catbus.security import load_option

    run = find_run(args.bus, args.run)
    keys = load_option(args.keys)
    graph = ask_graph(run["registry"], keys)
    say_run(run, {"run": graph.run, "mode": graph.mode})
    values: Any = get_params(run["registry"], args.node, keys).params
    if args.key:
        values = _lookup(values, args.key, args.node)
    if args.json:
        print_json(values)
    elif isinstance(values, dict):
        for key, value in _flat(values):
            print(f"{key}: {value}")
    else:
        print(values)
    return 0


def cmd_set(args: argparse.Namespace) -> int:
    """Change the parameter and wait until the node applied it; 0, or 1 if refused."""
    from catbus import params as params_mod
    from catbus.client import ask_graph, find_run
    from catbus.client.params import set_params
    from catbus.errors import ConfigError
    from catbus.security import load_option
    from catbus.spec.yamlfile import load_yaml_text

    where = "command line"
    parts, _ = params_mod.parse_assignment(f"{args.key}=x", where="KEY")
    try:
        value = load_yaml_text(args.value, where) if args.value.strip() else ""
    except ConfigError:
        value = args.value
    run = find_run(args.bus, args.run)
    keys = load_option(args.keys)
    graph = ask_graph(run["registry"], keys)
    say_run(run, {"run": graph.run, "mode": graph.mode})
    reply = set_params(run["registry"], args.node, params_mod.nest(parts, value), keys=keys,
                       timeout=args.timeout)
    if args.json:
        print_json({"node": reply.node, "tick": reply.tick, "changed": reply.changed,
                    "params": reply.params})
    else:
        changed = ", ".join(f"{key}={value}" for key, value in _flat(reply.changed))
        print(f"{reply.node}: {changed} from tick {reply.tick}")
    return 0


def _lookup(values: dict, key: str, node: str) -> Any:
    from catbus.errors import ConfigError

    found: Any = values
    for part in key.split("."):
        if not isinstance(found, dict) or part not in found:
            known = ", ".join(name for name, _ in _flat(values))
            raise ConfigError("command line", "KEY", f"node {node!r} has no parameter {key!r} "
                                                     f"(it has: {known})")
        found = found[part]
    return found


def _flat(values: dict, prefix: str = "") -> list[tuple[str, Any]]:
    """``{"safe": {"d_min": 15}}`` as ``[("safe.d_min", 15)]``."""
    rows: list[tuple[str, Any]] = []
    for key, value in values.items():
        name = f"{prefix}{key}"
        rows += _flat(value, f"{name}.") if isinstance(value, dict) and value else \
            [(name, value)]
    return rows


__all__ = ["add_parser", "cmd_param", "cmd_get", "cmd_set"]
