"""The deterministic schedule shared by ``stepped`` and ``inline`` (``docs/design.md``, "Schedule
semantics").

Time is counted in integer *ticks*. The base tick is the greatest common divisor of all periods,
each read as the decimal the user wrote (``Fraction(str(0.01))`` is exactly 1/100), so sim time is
``tick * base_tick`` and never drifts by accumulated floating-point addition. A node of period
``k`` ticks is due at ticks 0, k, 2k, ...; within a tick the due nodes step in launch-file order.

Everything here is pure: every process computes the same schedule from the same launch data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Iterator, Mapping, Sequence

from catbus.errors import ConfigError

#: A period of more than this many base ticks is refused: it would make every tick of the fast
#: nodes pay for a schedule that is mostly empty (and usually means a typo such as 0.0001).
MAX_TICKS_PER_PERIOD = 1000


def exact(period: float) -> Fraction:
    """The period as the user wrote it: ``exact(0.1) == Fraction(1, 10)``."""
    return Fraction(str(period))


def fraction_gcd(values: Sequence[Fraction]) -> Fraction:
    """gcd of positive fractions: gcd of numerators over lcm of denominators."""
    numerator, denominator = 0, 1
    for value in values:
        denominator_new = denominator * value.denominator // math.gcd(denominator, value.denominator)
        numerator = math.gcd(numerator * (denominator_new // denominator),
                             value.numerator * (denominator_new // value.denominator))
        denominator = denominator_new
    return Fraction(numerator, denominator)


@dataclass(frozen=True)
class Schedule:
    """Which node is due at which tick, and what each node must have seen before it steps."""

    order: tuple[str, ...]                  # launch-file order: the order within a tick
    ticks_per_period: Mapping[str, int | None]  # None for nodes that only react to messages
    base_tick: Fraction                     # seconds
    last_tick: int                          # the run covers ticks 0..last_tick

    # -- time -----------------------------------------------------------------------------------
    def sim_time(self, tick: int) -> float:
        return float(tick * self.base_tick)

    def sim_time_ns(self, tick: int) -> int:
        return int(tick * self.base_tick * 1_000_000_000)

    @property
    def base_tick_ns(self) -> int:
        return int(self.base_tick * 1_000_000_000)

    # -- who steps when -------------------------------------------------------------------------
    def period_ticks(self, name: str) -> int | None:
        return self.ticks_per_period[name]

    def is_due(self, name: str, tick: int) -> bool:
        k = self.ticks_per_period[name]
        return k is not None and tick % k == 0

    def due_ticks(self, name: str) -> range:
        k = self.ticks_per_period[name]
        return range(0, self.last_tick + 1, k) if k else range(0)

    def completes_through(self, name: str, tick: int) -> int:
        """Stepping ``tick`` also completes every tick before the node's next due tick."""
        k = self.ticks_per_period[name] or 1
        return min(tick + k - 1, self.last_tick)

    def precedes(self, first: str, second: str) -> bool:
        return self.order.index(first) < self.order.index(second)

    def required_tick(self, reader: str, publisher: str, tick: int) -> int:
        """The tick ``publisher`` must have completed before ``reader`` steps ``tick``.

        Publishers listed earlier in the launch file are seen at this very tick (sense, then act);
        later ones only up to the previous tick.
        """
        return tick if self.precedes(publisher, reader) else tick - 1

    def visible(self, reader: str, publisher: str, reader_tick: int, message_tick: int) -> bool:
        """May ``reader`` stepping ``reader_tick`` see a message ``publisher`` sent at
        ``message_tick``?"""
        return message_tick <= self.required_tick(reader, publisher, reader_tick)

    def steps(self) -> list[tuple[int, str]]:
        """Every (tick, node) step of the run, in execution order, as a list."""
        return list(self.iter_steps())

    def iter_steps(self) -> Iterator[tuple[int, str]]:
        """Every (tick, node) step of the run, in execution order (the inline runner): a
        generator, because a run bounded only by ``max_steps`` may have millions of ticks that
        the episode's end cuts short."""
        periodic = [(name, k) for name in self.order if (k := self.ticks_per_period[name])]
        for tick in range(self.last_tick + 1):
            for name, k in periodic:
                if tick % k == 0:
                    yield tick, name

    def to_dict(self) -> dict:
        return {"order": list(self.order), "ticks_per_period": dict(self.ticks_per_period),
                "base_tick": [self.base_tick.numerator, self.base_tick.denominator],
                "last_tick": self.last_tick}

    @staticmethod
    def from_dict(data: Mapping) -> "Schedule":
        return Schedule(tuple(data["order"]), dict(data["ticks_per_period"]),
                        Fraction(*data["base_tick"]), int(data["last_tick"]))


def build_schedule(periods: Sequence[tuple[str, float | None]], *, steps: int | None,
                   duration: float | None, max_steps: int | None = None,
                   where: str = "") -> Schedule:
    """Schedule for nodes given as ``(name, period_seconds_or_None)`` in launch-file order.

    ``steps`` counts periods of the first periodic node (the environment, by convention listed
    first): ``steps=N`` runs its ticks 0..N, i.e. N steps after the reset. ``duration`` is in
    seconds of sim time. With neither, ``max_steps`` (same unit as ``steps``) is the upper bound
    of a run that a node is expected to end (``end_episode``); without it too, a ConfigError.
    """
    periodic = [(name, exact(p)) for name, p in periods if p is not None]
    if not periodic:
        raise ConfigError(where, "nodes", "no node has a period; at least one must step")
    base = fraction_gcd([p for _, p in periodic])
    ticks = {name: (int(exact(p) / base) if p is not None else None) for name, p in periods}
    too_slow = [(name, p) for name, p in periodic if ticks[name] > MAX_TICKS_PER_PERIOD]
    if too_slow:
        listed = ", ".join(f"{n} (period {float(p):g} s = {ticks[n]} ticks)" for n, p in too_slow)
        raise ConfigError(
            where, "nodes", f"periods too different for one schedule: the base tick is "
            f"{float(base):g} s, and {listed} exceed {MAX_TICKS_PER_PERIOD} base ticks; "
            "choose periods that are multiples of a common, coarser step")
    if steps is not None:
        last_tick = steps * ticks[periodic[0][0]]
    elif duration is not None:
        last_tick = int(exact(duration) / base)
    elif max_steps is not None:
        last_tick = max_steps * ticks[periodic[0][0]]
    else:
        raise ConfigError(where, "steps", "stepped and inline runs need an end: give steps or "
                                          "duration in the launch file, or --steps / --duration")
    return Schedule(tuple(name for name, _ in periods), ticks, base, last_tick)
