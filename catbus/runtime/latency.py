"""Latency models in ``stepped`` and ``inline`` (docs/design.md, "Schedule semantics", and
docs/launch-files.md, "Node keys"): a node's ``latency:`` delays when the outputs of its steps
become visible to the nodes that read them.

Why: an agent's compute time is what makes it act on stale state, and ``parallel`` shows that
only with wall-clock noise no two runs share. A latency model puts it on the exact schedule, so
a run with latency is as reproducible as one without, and ``stepped`` still equals ``inline``.

The rule, on the schedule's integer ticks (the same ``Fraction`` arithmetic as periods):

* the outputs of a step at tick ``t`` with latency ``L`` become visible at tick
  ``v = t + ceil(L / base_tick)``: the first tick whose sim time is at or after ``t``'s plus
  ``L`` (:func:`delay_ticks`), ``L`` read as the decimal it prints as (``Fraction("0.05")``);
* a step's outputs never overtake an earlier step's: ``v`` is at least the previous step's
  (:class:`LatencyPlan`);
* a reader stepping tick ``r`` sees them when ``v <= r`` and the schedule lets it see tick
  ``t`` at ``r`` (``t <= r`` for a publisher listed before it, ``t <= r - 1`` after it). With
  ``L = 0``, ``v = t`` and that is the schedule without latency, exactly.

Readers apply it, not the wire: each reader computes its publishers' visible ticks from the
launch data (the model, the run seed, the node's name), so the header is unchanged, a restarted
or swapped publisher keeps the same plan (it is a function of the tick), and a run without
latency pays nothing. :func:`queue_key` turns the rule into the one number the inbox already
selects by (:meth:`catbus.runtime.inbox.Inbox.take_by_tick`). Nodes without a period (the
recorder) get every message at its own tick: a recording shows when a message was published.

A distribution is drawn once per step of the node, in step order, from a generator of its own
(``SeedSequence([seed, *name], spawn_key=(LATENCY_STREAM,))``): the node's ``self.rng`` stream
is untouched, and every process draws the same values.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any, Callable, Mapping

from catbus.runtime.schedule import Schedule, exact

#: The spawn key of the latency generator (ASCII "lat"): a stream apart from ``self.rng``'s.
LATENCY_STREAM = 0x6C6174
DISTRIBUTIONS = ("normal", "lognormal")
#: Draws are made this many steps at a time (always: the same values in every process).
CHUNK = 256
#: What a right value looks like (the fix a ConfigError gives).
LATENCY_FORMS = ("a number of seconds >= 0 (for example 0.05), or {dist: normal | lognormal, "
                 "mean: SECONDS, std: SECONDS}")
#: Why ``{recorded: RUN.mcap}`` is refused for a recording without a step log (a parallel
#: recording made before ``catbus/steps``, :mod:`catbus.runtime.steplog`).
RECORDED_REFUSAL = ("this recording does not hold each step's duration (it has no catbus/steps "
                    "step log: record the parallel run again with this catbus), so a recorded "
                    "latency cannot be replayed; give a constant or {dist: ..., mean, std}")
#: The keys of a recorded latency: the recording, the node whose step durations to take
#: (default: the same name), and the durations themselves (read from the recording when the
#: launch file is loaded, and kept in the launch document so that every process, also on
#: another host, gets them from the registry).
RECORDED_KEYS = ("recorded", "node", "durations")


def _number(value: Any) -> bool:
    return type(value) in (int, float) and math.isfinite(value)


def latency_problem(value: Any) -> str | None:
    """What is wrong with a ``latency:`` value, or None (None and 0 are "no latency")."""
    if value is None:
        return None
    if isinstance(value, bool) or (not _number(value) and not isinstance(value, Mapping)):
        return f"must be {LATENCY_FORMS}, got {value!r}"
    if _number(value):
        return None if value >= 0 else f"must be >= 0 seconds, got {value!r}"
    if "recorded" in value or "durations" in value:
        return _recorded_problem(value)
    keys = set(value)
    if keys != {"dist", "mean", "std"}:
        return f"a distribution has the keys dist, mean and std, got {sorted(map(str, keys))}"
    dist, mean, std = value["dist"], value["mean"], value["std"]
    if dist not in DISTRIBUTIONS:
        return f"dist must be one of {', '.join(DISTRIBUTIONS)}, got {dist!r}"
    if not _number(mean) or isinstance(mean, bool) or mean < 0:
        return f"mean must be a number of seconds >= 0, got {mean!r}"
    if not _number(std) or isinstance(std, bool) or std < 0:
        return f"std must be a number of seconds >= 0, got {std!r}"
    if dist == "lognormal" and mean <= 0:
        return f"a lognormal latency needs mean > 0, got {mean!r}"
    return None


def _recorded_problem(value: Mapping[str, Any]) -> str | None:
    """What is wrong with a ``{recorded: RUN.mcap, node: NAME}`` latency, or None."""
    extra = sorted(map(str, set(value) - set(RECORDED_KEYS)))
    if extra:
        return f"a recorded latency has the keys recorded and node (optional), got {extra}"
    if not isinstance(value.get("recorded"), str) or not value["recorded"]:
        return "recorded must be the path of a parallel recording (RUN.mcap)"
    if value.get("node") is not None and not isinstance(value["node"], str):
        return f"node must be the name of a node of the recording, got {value['node']!r}"
    durations = value.get("durations")
    if durations is not None and (not isinstance(durations, list) or not durations or not all(
            _number(d) and not isinstance(d, bool) and d >= 0 for d in durations)):
        return "durations must be a non-empty list of seconds >= 0"
    return None


def normalized(value: Any) -> float | dict | None:
    """A checked ``latency:`` value as the launch document keeps it: None for no latency (absent
    or 0, so that ``latency: 0`` is the run without the key, bit for bit)."""
    if value is None or (_number(value) and value == 0):
        return None
    if _number(value):
        return float(value)
    if "recorded" in value:
        return {key: value[key] for key in RECORDED_KEYS if value.get(key) is not None}
    return {"dist": value["dist"], "mean": float(value["mean"]), "std": float(value["std"])}


def delay_ticks(seconds: Fraction, base_tick: Fraction) -> int:
    """``ceil(seconds / base_tick)``: how many ticks after a step its outputs become visible."""
    quotient = seconds / base_tick
    return -((-quotient.numerator) // quotient.denominator)


def queue_key(tick: int, visible: int, publisher_first: bool) -> int:
    """The tick a reader's inbox files a message under, so that its usual selection (a message
    is shown at reader tick ``r`` when its key is at most ``r``, or ``r - 1`` for a publisher
    listed after the reader) applies the latency rule: ``v <= r`` and ``t <= r`` (listed
    before), ``v <= r`` and ``t <= r - 1`` (listed after). ``visible == tick``: the tick."""
    if publisher_first:
        return visible
    return visible - 1 if visible - 1 > tick else tick


class LatencyPlan:
    """When the outputs of each step of one periodic node become visible: :meth:`visible`.

    A pure function of the step's tick (computed in order and kept), so that every process,
    and a restarted or swapped process of the node, agrees."""

    def __init__(self, value: float | Mapping[str, Any], *, name: str, seed: int,
                 period_ticks: int, base_tick: Fraction) -> None:
        self.value = value
        self.k = period_ticks
        self.base_tick = base_tick
        #: Constant latency: the delay in ticks; None for a distribution.
        self.constant: int | None = None
        #: Distribution: the visible tick of each step so far (step i is tick i * k).
        self.ticks: list[int] = []
        #: The largest delay (visible - tick) computed so far.
        self.largest = 0
        if not isinstance(value, Mapping):
            self.constant = self.largest = delay_ticks(exact(value), base_tick)
            return
        if "durations" in value:   # recorded: the durations in order, then again from the first
            durations = [float(d) for d in value["durations"]]
            self._next = 0

            def replay() -> list[float]:
                start = self._next
                self._next = (start + CHUNK) % len(durations)
                return [durations[(start + i) % len(durations)] for i in range(CHUNK)]
            self._draw = replay
            return
        import numpy as np

        self._generator = np.random.default_rng(np.random.SeedSequence(
            [seed, *name.encode()], spawn_key=(LATENCY_STREAM,)))
        mean, std = float(value["mean"]), float(value["std"])
        if value["dist"] == "lognormal":
            sigma = math.sqrt(math.log1p((std / mean) ** 2))
            mu = math.log(mean) - sigma * sigma / 2
            self._draw = lambda: self._generator.lognormal(mu, sigma, CHUNK)
        else:
            self._draw = lambda: self._generator.normal(mean, std, CHUNK)

    def visible(self, tick: int) -> int:
        """The tick at which the outputs of the node's step at ``tick`` become visible."""
        if self.constant is not None:
            return tick + self.constant
        index = tick // self.k
        ticks = self.ticks
        while index >= len(ticks):
            self._extend()
        return ticks[index]

    def _extend(self) -> None:
        """The next :data:`CHUNK` steps' visible ticks: draws clipped at 0, each read as the
        decimal it prints as (as a constant is), never before the step before."""
        ticks = self.ticks
        base = self.base_tick
        previous = ticks[-1] if ticks else 0
        step = len(ticks)
        drawn = self._draw()
        for draw in drawn if isinstance(drawn, list) else drawn.tolist():
            tick = step * self.k
            delay = delay_ticks(exact(draw), base) if draw > 0 else 0
            previous = max(tick + delay, previous)
            if previous - tick > self.largest:
                self.largest = previous - tick
            ticks.append(previous)
            step += 1


def plans_for(latency: Mapping[str, Any] | None, seed: int,
              schedule: Schedule) -> dict[str, LatencyPlan]:
    """``{node: plan}`` for the periodic nodes of ``latency`` (``run_info["latency"]``: node ->
    normalized value) that have one; {} for a run without latency."""
    plans = {}
    for name, value in (latency or {}).items():
        k = schedule.ticks_per_period.get(name)
        if value is not None and k:
            plans[name] = LatencyPlan(value, name=name, seed=seed, period_ticks=k,
                                      base_tick=schedule.base_tick)
    return plans


def reader_keys(reader: str, publisher_of: Mapping[str, str], plans: Mapping[str, LatencyPlan],
                schedule: Schedule) -> dict[str, Callable[[int], int]]:
    """``{topic: tick -> queue key}`` for the inputs of ``reader`` whose publisher has latency
    (:func:`queue_key`); {} when none has (the inbox then files by tick, as without latency)."""
    keys: dict[str, Callable[[int], int]] = {}
    for topic, publisher in publisher_of.items():
        plan = plans.get(publisher)
        if plan is None or publisher == reader:
            continue
        keys[topic] = _keyer(plan.visible, schedule.precedes(publisher, reader))
    return keys


def _keyer(visible: Callable[[int], int], first: bool) -> Callable[[int], int]:
    if first:
        return visible
    return lambda tick: queue_key(tick, visible(tick), False)


def latency_of(run_info: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The run's latency models from its ``run_info`` (None: no node has one)."""
    latency = run_info.get("latency")
    return latency if isinstance(latency, Mapping) and latency else None


__all__ = ["LatencyPlan", "latency_problem", "normalized", "delay_ticks", "queue_key",
           "plans_for", "reader_keys", "latency_of", "DISTRIBUTIONS", "LATENCY_FORMS",
           "LATENCY_STREAM", "RECORDED_KEYS", "RECORDED_REFUSAL"]
