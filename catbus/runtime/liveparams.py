"""Live parameter changes in a node's process (``catbus param set``; ``docs/nodes.md``, "Changing
parameters while a node runs").

A change comes from the registry (:class:`~catbus.wire.messages.ParamsChange`). It is checked
at once, as the launch checks parameters (the class's declarations, :func:`catbus.params.resolve`),
and refused with the reason when it cannot be taken: the class has no ``on_params(changed)``,
the node has no period, a value is wrong, or the change would alter the node's outputs or period
(those shape the run's graph and schedule: a swap makes a new process for that). An accepted
change waits for the node's next step and is applied just before it (the driver calls
:meth:`LiveParams.before_step`): ``on_params(changed)`` runs, then the change is published on
``catbus/params`` at that step's tick, before the step's outputs, and the registry is told the
tick. Why before a step, and never inside one or between a tick's messages: a step sees one set
of parameters, and in ``stepped`` the change then has a tick that every reader agrees on (it is
in the data stream, in schedule order), which the recording keeps and ``catbus play`` applies
again at the same tick (:data:`SCHEDULE_KEY`, changes due at ticks, handed over by the run's
``run_info``).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from catbus import params as params_mod
from catbus.errors import ConfigError
from catbus.wire import messages as msg
from catbus.wire.protocol import PARAMS_TOPIC

#: ``run_info`` key: ``{node: [[tick, changes], ...]}``, changes to apply before stepping those
#: ticks (``catbus play`` of a recording with ``catbus/params``).
SCHEDULE_KEY = "param_changes"


def live_problem(node_class: type, name: str, period: float | None) -> str | None:
    """Why node ``name`` of ``node_class`` cannot take live changes at all, or None."""
    if not callable(getattr(node_class, "on_params", None)):
        return (f"{node_class.__name__} has no on_params(changed) method, so node {name!r} "
                f"cannot change parameters while it runs; start a new process with them: "
                f"catbus swap {name} --param KEY=VALUE")
    if period is None:
        return (f"node {name!r} has no period (it only reacts to messages): live changes apply "
                f"before a step; use catbus swap {name} --param KEY=VALUE")
    return None


def checked_change(node_class: type, name: str, current: Mapping[str, Any],
                   changes: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(params after the change, the changed values)``, validated as at launch; a
    ConfigError (one line) if the change cannot be taken."""
    declared = node_class.params
    where = f"node {name}"
    params_mod.resolve(declared, changes, where=where, prefix="params")   # names the bad key
    new = params_mod.resolve(declared, params_mod.deep_merge(current, changes), where=where,
                             prefix="params")
    for hook, what in ((node_class.declared_outputs, "outputs"),
                       (node_class.declared_period, "period")):
        try:
            differs = hook(new) != hook(dict(current))
        except ConfigError as exc:
            raise ConfigError(where, f"params.{exc.field}" if exc.field else "params",
                              exc.message) from None
        if differs:
            raise ConfigError(where, "params", f"this change alters the node's {what}, which "
                                               f"the run's graph and schedule are built on; use "
                                               f"catbus swap {name} --param KEY=VALUE")
    return new, _pick(new, changes)


def _pick(values: Mapping[str, Any], shape: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of ``values`` at the keys (nested) of ``shape``."""
    picked: dict[str, Any] = {}
    for key, item in shape.items():
        if isinstance(item, Mapping) and isinstance(values.get(key), Mapping):
            picked[key] = _pick(values[key], item)
        else:
            picked[key] = values.get(key)
    return picked


class LiveParams:
    """One node's accepted changes, waiting for its next step, and its scheduled ones.

    ``publish(topic, value, tick, t, through)`` sends on the data plane; ``answer`` sends a
    control message to the registry (None where there is none: inline replay)."""

    def __init__(self, driver: Any, publish: Callable[..., None],
                 answer: Callable[[msg.Message], None] | None = None,
                 schedule: list[tuple[int, dict[str, Any]]] | None = None) -> None:
        self.driver = driver
        self.publish = publish
        self.answer = answer
        #: ``(request id or None, params after, changed)``, in the order they came.
        self.waiting: list[tuple[int | None, dict[str, Any], dict[str, Any]]] = []
        self.schedule = sorted(schedule or [], key=lambda entry: entry[0])
        self._arm()

    def order(self, change: msg.ParamsChange) -> None:
        """A change from the registry: refused now with the reason, or kept for the next step."""
        driver = self.driver
        problem = live_problem(driver.node_class, driver.name, driver.period)
        if problem is None:
            try:
                new, changed = checked_change(driver.node_class, driver.name,
                                              self._latest(), change.changes)
            except ConfigError as exc:
                problem = str(exc)
        if problem is not None:
            self._answer(msg.ParamsApplied(id=change.id, ok=False, message=problem))
            return
        self.waiting.append((change.id, new, changed))
        self._arm()

    def before_step(self, tick: int, t: float) -> None:
        """Apply what is due before the node steps ``tick``: the changes waiting, then those
        scheduled for this tick or before."""
        while self.schedule and self.schedule[0][0] <= tick:
            _, changes = self.schedule.pop(0)
            new, changed = checked_change(self.driver.node_class, self.driver.name,
                                          self._latest(), changes)
            self.waiting.append((None, new, changed))
        waiting, self.waiting = self.waiting, []
        for change_id, new, changed in waiting:
            self._apply(change_id, new, changed, tick, t)
        self._arm()

    def _apply(self, change_id: int | None, new: dict[str, Any], changed: dict[str, Any],
               tick: int, t: float) -> None:
        driver = self.driver
        driver.node.tick = tick
        driver.node.on_params(changed)
        driver.params = new
        self.publish(PARAMS_TOPIC, {"node": driver.name, "tick": tick, "changed": changed,
                                    "params": new}, tick, t, None)
        driver.node.log.info("parameters changed at tick %d: %s", tick, changed)
        if change_id is not None:
            self._answer(msg.ParamsApplied(id=change_id, ok=True, tick=tick, params=new,
                                           changed=changed))

    def _latest(self) -> dict[str, Any]:
        """The parameters the next change builds on: after those still waiting."""
        return dict(self.waiting[-1][1]) if self.waiting else dict(self.driver.params)

    def _arm(self) -> None:
        """The driver looks at this object before a step only while something is due: a step
        with nothing to apply costs one attribute test."""
        self.driver.live = self if (self.waiting or self.schedule) else None

    def _answer(self, message: msg.Message) -> None:
        if self.answer is not None:
            self.answer(message)


def scheduled_changes(run_info: Mapping[str, Any], name: str) -> list[tuple[int, dict]]:
    """The changes ``run_info`` schedules for node ``name`` (see :data:`SCHEDULE_KEY`)."""
    table = run_info.get(SCHEDULE_KEY) if isinstance(run_info, Mapping) else None
    entries = table.get(name) if isinstance(table, Mapping) else None
    return [(int(tick), dict(changes)) for tick, changes in entries or ()
            if type(tick) is int and isinstance(changes, Mapping)]


def prepare(link: Any, driver: Any) -> None:
    """In a node process, after its node's ``setup``: take live changes from the registry
    (``link.live_params``), and the changes the run schedules for this node."""
    link.live_params = LiveParams(driver, link.data.publish, link.send,
                                  scheduled_changes(driver.node.run_info or {}, driver.name))


__all__ = ["SCHEDULE_KEY", "LiveParams", "live_problem", "checked_change", "scheduled_changes",
           "prepare"]
