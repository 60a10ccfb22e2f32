"""What the registry's ``welcome`` tells a node process about its run: mode, seed, parameters,
its topics, the schedule. Parsed once; the lifecycle and the loops read it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Collection, Mapping

from catbus.params import deep_merge

from catbus.runtime.inbox import InputBinding
from catbus.runtime.schedule import Schedule
from catbus.wire import messages as msg


@dataclass(frozen=True)
class RunTerms:
    mode: str
    seed: int
    #: This process's identity beside its name (stamped on every message it sends).
    incarnation: int
    params: Mapping[str, Any]
    period: float | None
    inputs: list[InputBinding]
    outputs: list[tuple[str, str]]
    schedule: Schedule | None = None
    duration: float | None = None
    #: node name -> its place in the launch file (the order within a tick)
    order: dict[str, int] = field(default_factory=dict)
    run_info: Mapping[str, Any] = field(default_factory=dict)
    #: How this process joins: "" (the start of the run), "swap" or "restart" (mid-run).
    joining: str = ""
    retire_at: int | None = None

    @staticmethod
    def from_welcome(welcome: msg.Welcome, *, params: Mapping[str, Any],
                     inputs: list[InputBinding], outputs: list[tuple[str, str]],
                     declared_params: Collection[str] = ()) -> "RunTerms":
        """The welcome's terms; what it leaves out (an open bus without a launch file) keeps
        the node's own ``inputs`` and ``outputs``. A replacement's parameters are the welcome's
        base (only those its class declares, ``declared_params``, if the base was another
        class's) with the swap's overrides on top."""
        if welcome.inputs is not None:
            inputs = [InputBinding(*b) for b in welcome.inputs]
            outputs = [tuple(o) for o in (welcome.outputs or [])]
        chosen = welcome.params if welcome.params is not None else params
        if welcome.joining:
            base = dict(welcome.params or {})
            if welcome.filter_params:
                base = {key: value for key, value in base.items() if key in declared_params}
            chosen = deep_merge(base, welcome.overrides)
        return RunTerms(
            mode=welcome.mode, seed=welcome.seed, incarnation=welcome.incarnation,
            params=chosen, joining=welcome.joining, retire_at=welcome.retire_at,
            period=welcome.period, inputs=inputs, outputs=outputs,
            schedule=Schedule.from_dict(welcome.schedule) if welcome.schedule else None,
            duration=welcome.duration,
            order={name: i for i, name in enumerate(welcome.order)},
            run_info=welcome.run_info or {})

    def require_schedule(self) -> Schedule:
        if self.schedule is None:
            raise ValueError(f"a {self.mode} run needs a schedule, and the registry sent none")
        return self.schedule

    def periodic(self, name: str) -> bool:
        """Does the node step at a period (else it only reacts to messages)? Stepped mode asks
        the schedule, which every process computes the same way."""
        if self.mode == "stepped":
            return self.require_schedule().period_ticks(name) is not None
        return self.period is not None
