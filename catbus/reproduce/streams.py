"""The messages of a reproduction, per topic, and which of them a step is given.

Every message is kept as its frames, in its topic's stream ordered by (incarnation, seq): a
reader is given fresh :class:`~catbus.runtime.inbox.Received` objects built from them, as each
reader process decodes its own copy of what it receives. A reader's inputs are chosen by the
step log (:class:`~catbus.reproduce.plan.Consumed`): the newest message it had taken, and the
ones before it that it took at the same step (an ``all`` input's list).
"""

from __future__ import annotations

import bisect

from catbus.reproduce.plan import Consumed
from catbus.runtime.inbox import Received
from catbus.wire import codec


class Stored:
    """One message: its frames, and the step of its publisher that sent it (-1: taken from
    the recording, not computed again)."""

    __slots__ = ("key", "frames", "step", "tick")

    def __init__(self, key: tuple[int, int], frames: list[bytes], step: int, tick: int) -> None:
        self.key = key
        self.frames = frames
        self.step = step
        self.tick = tick

    def received(self) -> Received:
        """A reader's own copy, as the wire would hand it over."""
        topic, header, payload = codec.open_envelope(self.frames[0])
        return Received(topic, codec.Header.unpack(header), payload, list(self.frames[1:]))


class Streams:
    """topic -> its messages ordered by (incarnation, seq)."""

    def __init__(self) -> None:
        self.keys: dict[str, list[tuple[int, int]]] = {}
        self.stored: dict[str, dict[tuple[int, int], Stored]] = {}

    def add(self, topic: str, stored: Stored) -> None:
        keys = self.keys.setdefault(topic, [])
        if stored.key not in self.stored.setdefault(topic, {}):
            bisect.insort(keys, stored.key)
        self.stored[topic][stored.key] = stored

    def get(self, topic: str, key: tuple[int, int]) -> Stored | None:
        return self.stored.get(topic, {}).get(key)

    def choose(self, consumed: Consumed, by_step: int | None) -> Stored | None:
        """The message a step consumed: the one of that identity (its position in the
        stream), if its publisher had published it by its step ``by_step`` (None: no step of
        it is known, any will do); else the newest it had published by then (a what-if whose
        changed node published fewer messages), else None."""
        found = self.get(consumed.topic, consumed.key)
        if found is not None and (by_step is None or found.step <= by_step):
            return found
        keys = self.keys.get(consumed.topic, [])
        stored = self.stored.get(consumed.topic, {})
        for key in reversed(keys):
            candidate = stored[key]
            if by_step is None or (candidate.step <= by_step and key[0] <= consumed.incarnation):
                return candidate
        return None

    def between(self, topic: str, after: tuple[int, int] | None, upto: tuple[int, int],
                most: int) -> list[Stored]:
        """The messages after ``after`` (exclusive) up to ``upto`` (inclusive), at most the
        last ``most`` of them (at least ``upto`` itself)."""
        keys = self.keys.get(topic, [])
        high = bisect.bisect_right(keys, upto)
        low = 0 if after is None else bisect.bisect_right(keys, after)
        low = max(low, high - max(1, most))
        return [self.stored[topic][key] for key in keys[low:high]]


__all__ = ["Stored", "Streams"]
