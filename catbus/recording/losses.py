"""Counting what never reached the recorder, from the sequence numbers every publisher stamps
per (publisher, topic): gaps are losses, a lower number is a new process of the publisher (a hot
swap, a restart), and a jump the stream contradicts is one bad number, not losses. The totals go
into the recording as ``catbus/drops``."""

from __future__ import annotations

from typing import Any

Stream = tuple[str, str]   # (publisher, topic)


class LossCount:
    """Losses, restarts and bad numbers per stream."""

    def __init__(self) -> None:
        self.drops = 0
        self.bad_seq = 0
        self.lost: dict[Stream, int] = {}
        self.restarts: dict[Stream, int] = {}
        self.received: dict[Stream, int] = {}
        self.last_seq: dict[Stream, int] = {}
        #: stream -> (seq before, messages counted lost) of a jump just seen
        self.jumps: dict[Stream, tuple[int, int]] = {}

    def count(self, publisher: str, topic: str, seq: int) -> None:
        """One message of (``publisher``, ``topic``) with sequence number ``seq``.

        Sequence numbers start at 0, so a gap is a loss. A number lower than expected means
        the publisher restarted (a hot swap starts a new process under the same name): counted
        as a restart, not as a loss. A jump that the stream then contradicts -- the next message
        goes on right after the number before the jump, e.g. 100, 1000000, 101 -- was one
        message with a bad ``seq`` (a forged or corrupt header), not a loss: its count is taken
        back and it is counted in ``bad_seq`` instead (one frame cannot add a million drops).
        """
        key = (publisher, topic)
        expected = self.last_seq.get(key, -1) + 1
        jump = self.jumps.pop(key, None) if self.jumps else None
        if jump is not None and seq == jump[0] + 1:
            before, lost = jump
            self.drops -= lost
            self.lost[key] -= lost
            self.bad_seq += 1
            expected = before + 1
        if seq > expected:
            lost = seq - expected
            self.drops += lost
            self.lost[key] = self.lost.get(key, 0) + lost
            self.jumps[key] = (expected - 1, lost)
        elif seq < expected:
            self.restarts[key] = self.restarts.get(key, 0) + 1
        self.last_seq[key] = seq
        self.received[key] = self.received.get(key, 0) + 1

    def report(self, malformed: int) -> dict[str, Any]:
        """The ``catbus/drops`` value: totals and every stream, in a fixed order."""
        streams = [{"publisher": publisher, "topic": topic, "received": received,
                    "lost": self.lost.get((publisher, topic), 0),
                    "restarts": self.restarts.get((publisher, topic), 0)}
                   for (publisher, topic), received in sorted(self.received.items())]
        return {"total": self.drops, "streams": streams, "malformed": malformed,
                "bad_seq": self.bad_seq}


__all__ = ["LossCount"]
