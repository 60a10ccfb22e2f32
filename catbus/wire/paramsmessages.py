"""The control messages of live parameters (``catbus param``; ``docs/protocol.md``, "Live
parameters"), apart from :mod:`catbus.wire.messages` only to keep that module short: they are
part of its :data:`~catbus.wire.messages.Message` union, read and checked the same way."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from catbus.wire.protocol import Op


@dataclass(frozen=True)
class ParamsQuery:
    """A tool (``catbus param get``) asks for node ``node``'s current parameters; answered with
    :class:`ParamsReply`."""

    OP: ClassVar[str] = Op.PARAMS_GET
    node: str


@dataclass(frozen=True)
class ParamsRequest:
    """A tool (``catbus param set``) asks the run to change node ``node``'s parameters live:
    ``changes`` is nested like ``params`` (``{"safe": {"d_min": 20.0}}``). Answered with
    :class:`ParamsReply` once the node applied them or refused."""

    OP: ClassVar[str] = Op.PARAMS_SET
    node: str
    changes: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ParamsReply:
    """The answer to :class:`ParamsQuery` or :class:`ParamsRequest`: ``ok``, a one-line
    ``message`` (why not), the node's whole ``params`` after the change, the values that
    ``changed`` and the ``tick`` they first applied to (None for a query)."""

    OP: ClassVar[str] = Op.PARAMS_REPLY
    ok: bool
    message: str = ""
    node: str = ""
    params: dict = field(default_factory=dict)
    changed: dict = field(default_factory=dict)
    tick: int | None = None


@dataclass(frozen=True)
class ParamsChange:
    """Registry to node: change these parameters live (``id`` names the request in the
    answer, :class:`ParamsApplied`). The node validates them as at launch and applies them
    before its next step (``on_params(changed)``)."""

    OP: ClassVar[str] = Op.PARAMS
    id: int
    changes: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ParamsApplied:
    """Node to registry: request ``id`` applied (``ok``) at ``tick``, before that step, with
    the node's whole ``params`` after it and what ``changed``; or refused (``message``: why)."""

    OP: ClassVar[str] = Op.PARAMS_APPLIED
    id: int
    ok: bool
    message: str = ""
    tick: int | None = None
    params: dict = field(default_factory=dict)
    changed: dict = field(default_factory=dict)


__all__ = ["ParamsQuery", "ParamsRequest", "ParamsReply", "ParamsChange", "ParamsApplied"]
