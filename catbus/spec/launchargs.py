"""Launch arguments: a file declares ``args:``, the command line sets them (``--arg NAME=VALUE``,
``catbus.run(path, args={...})``, an ``include:``'s ``args:``), and ``$(arg NAME)`` stands for
one anywhere a value goes.

Why at the YAML level, before the schema decode: a substituted value then goes through exactly
the checks a written one does (``period: $(arg rate)`` with ``--arg rate=-1`` is refused as
``period: must be a positive number``), and nothing after this module knows arguments exist.

Rules, chosen so that a value never changes type by surprise:

* ``$(arg NAME)`` as a whole value keeps the argument's type (``steps: $(arg n)`` with
  ``--arg n=300`` is the integer 300); inside a longer string it is substituted as text
  (``record: runs/$(arg tag).mcap``).
* Keys are never substituted (a node's name is its identity; an include's ``prefix`` renames).
* ``args:`` itself is not substituted: a default refers to no other argument.
* ``$(WORD ...)`` with another WORD (ROS's ``$(env X)``, ``$(find pkg)``) is refused by name
  rather than left as text a node would receive.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import yaml

from catbus.errors import ConfigError
from catbus.spec.fieldcheck import CLI, did_you_mean
from catbus.spec.yamlfile import load_yaml_text

ARG_OPTION = "--arg"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
#: ``$(WORD rest)``: the substitution syntax (only WORD ``arg`` is known).
_SUBSTITUTION = re.compile(r"\$\(\s*([A-Za-z_]\w*)\s*([^)]*?)\s*\)")
_REQUIRED = object()
_LONG_KEYS = ("default", "help")


@dataclass(frozen=True)
class ArgDecl:
    """One declared argument; ``default`` is ``_REQUIRED`` when none is given."""

    name: str
    default: Any
    help: str = ""

    @property
    def required(self) -> bool:
        return self.default is _REQUIRED


def declared_args(value: Any, where: str) -> dict[str, ArgDecl]:
    """The file's ``args:`` (``NAME: VALUE`` or ``NAME: {default: VALUE, help: TEXT}``; a
    mapping is always the long form, so a mapping default is written ``{default: {...}}``)."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(where, "args", f"must be a mapping of argument name to its default "
                                         f"(or to {{default: VALUE, help: TEXT}}), got "
                                         f"{type(value).__name__}")
    result: dict[str, ArgDecl] = {}
    for name, setting in value.items():
        if not isinstance(name, str) or not _NAME.match(name):
            raise ConfigError(where, f"args.{name}", "an argument name is letters, digits and "
                                                     "'_', not starting with a digit")
        if isinstance(setting, Mapping):
            unknown = [key for key in setting if key not in _LONG_KEYS]
            if unknown:
                raise ConfigError(where, f"args.{name}.{unknown[0]}",
                                  f"unknown key (allowed: default, help); a default that is a "
                                  f"mapping is written {{default: {{...}}}}"
                                  f"{did_you_mean(unknown[0], _LONG_KEYS)}")
            text = setting.get("help", "")
            result[name] = ArgDecl(name, setting.get("default", _REQUIRED),
                                   "" if text is None else str(text))
        else:
            result[name] = ArgDecl(name, setting)
        if _mentions_substitution(result[name].default):
            raise ConfigError(where, f"args.{name}", "a default cannot use $(...): give the "
                                                     "value itself")
    return result


def parse_arg_options(given: Mapping[str, Any] | Sequence[str] | None) -> dict[str, Any]:
    """``--arg NAME=VALUE`` strings (VALUE read as YAML, like ``--set``: ``1e-3`` a number,
    ``[1, 2]`` a list, nothing the empty string), or a mapping as it is (the Python API)."""
    if given is None:
        return {}
    if isinstance(given, Mapping):
        return dict(given)
    if isinstance(given, str):
        given = [given]
    result: dict[str, Any] = {}
    for text in given:
        name, equals, raw = str(text).partition("=")
        name = name.strip()
        if not equals or not _NAME.match(name):
            raise ConfigError(CLI, ARG_OPTION, f"expected NAME=VALUE (for example --arg "
                                               f"seed_offset=3), got {text!r}")
        result[name] = load_yaml_text(raw, f"{CLI}: {ARG_OPTION} {name}") if raw.strip() else ""
    return result


def bind_args(declared: Mapping[str, ArgDecl], given: Mapping[str, Any], *, where: str,
              given_as: str) -> dict[str, Any]:
    """Every declared argument's value: given, else its default. ``given_as`` names where the
    values came from in an error (``--arg``, ``include[0].args``)."""
    for name in given:
        if name not in declared:
            known = ", ".join(declared) or "none"
            raise ConfigError(where, f"args.{name}",
                              f"{given_as} sets argument {name!r}, which this file does not "
                              f"declare (it declares: {known}){did_you_mean(name, declared)}; "
                              f"declare it under args: or fix the name")
    values: dict[str, Any] = {}
    for name, decl in declared.items():
        if name in given:
            values[name] = given[name]
        elif decl.required:
            about = f" ({decl.help})" if decl.help else ""
            raise ConfigError(where, f"args.{name}",
                              f"required argument{about} not given; set it with {given_as} "
                              f"{name}=VALUE" if given_as == ARG_OPTION else
                              f"required argument{about} not given; set it in {given_as}")
        else:
            values[name] = decl.default
    return values


def substitute(value: Any, values: Mapping[str, Any], *, where: str, field: str = "") -> Any:
    """``value`` with every ``$(arg NAME)`` replaced (keys and ``args:`` excepted; see the
    module's rules). ``field`` is the dotted path of ``value``, for errors."""
    if isinstance(value, Mapping):
        return {key: (item if not field and key == "args" else
                      substitute(item, values, where=where, field=_join(field, key)))
                for key, item in value.items()}
    if isinstance(value, list):
        return [substitute(item, values, where=where, field=f"{field}[{index}]")
                for index, item in enumerate(value)]
    if not isinstance(value, str) or "$(" not in value:
        return value
    whole = _SUBSTITUTION.fullmatch(value.strip())
    if whole and value.strip() == value:
        return _lookup(whole, values, where, field)
    return _SUBSTITUTION.sub(lambda found: as_text(_lookup(found, values, where, field)), value)


def as_text(value: Any) -> str:
    """An argument inside a longer string: text as it is, anything else as YAML flow
    (``true``, ``0.5``, ``[1, 2]``), so that the string reads as the file would write it."""
    if isinstance(value, str):
        return value
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def _lookup(found: re.Match, values: Mapping[str, Any], where: str, field: str) -> Any:
    kind, name = found.group(1), found.group(2)
    if kind != "arg":
        raise ConfigError(where, field, f"unknown substitution {found.group(0)!r}: only "
                                        f"$(arg NAME) is supported (declare NAME under args:)")
    if not _NAME.match(name or ""):
        raise ConfigError(where, field, f"{found.group(0)!r}: write $(arg NAME) with NAME an "
                                        f"argument declared under args:")
    if name not in values:
        known = ", ".join(values) or "none"
        raise ConfigError(where, field, f"$(arg {name}) names an argument this file does not "
                                        f"declare (declared: {known}){did_you_mean(name, values)}"
                                        f"; add it under args: {{{name}: {{default: VALUE}}}}")
    return values[name]


def _mentions_substitution(value: Any) -> bool:
    if isinstance(value, str):
        return bool(_SUBSTITUTION.search(value))
    if isinstance(value, Mapping):
        return any(map(_mentions_substitution, value.values()))
    if isinstance(value, list):
        return any(map(_mentions_substitution, value))
    return False


def _join(field: str, key: Any) -> str:
    return f"{field}.{key}" if field else str(key)


__all__ = ["ARG_OPTION", "ArgDecl", "declared_args", "parse_arg_options", "bind_args",
           "substitute", "as_text"]
