"""Counting what never reached the recorder, from the sequence numbers every publisher stamps
per (publisher, topic): gaps are losses, a lower number is a new process of the publisher (a hot
swap, a restart), and a jump the stream contradicts is one bad number, not losses. The totals go
into the recording as ``catbus/drops``.

Whether a jump was a loss or one bad number is known only at the stream's next message, so
:meth:`LossCount.count` says which of the two a message is, and the recorder holds a message
that jumped until then (:data:`JUMP`, :data:`CONTRADICTS`): a message counted as a bad number is
never written (docs/protocol.md, "Sequence jumps")."""

from __future__ import annotations

from typing import Any, Final

Stream = tuple[str, str]   # (publisher, topic)

#: What :meth:`LossCount.count` says of a message: it follows its stream (a restart included);
#: it jumps ahead of it (a loss before it, or itself a bad number: the next one tells); it
#: goes on right after the number before the previous message's jump, which was therefore one
#: bad number (and is not to be written).
IN_SEQUENCE: Final = 0
JUMP: Final = 1
CONTRADICTS: Final = 2


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

    def count(self, publisher: str, topic: str, seq: int) -> int:
        """One message of (``publisher``, ``topic``) with sequence number ``seq``; returns
        :data:`IN_SEQUENCE`, :data:`JUMP` or :data:`CONTRADICTS`.

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
        verdict = IN_SEQUENCE
        if jump is not None and seq == jump[0] + 1:
            before, lost = jump
            self.drops -= lost
            self.lost[key] -= lost
            self.bad_seq += 1
            # The bad message was counted as received; it was not one of the stream's.
            self.received[key] -= 1
            expected = before + 1
            verdict = CONTRADICTS
        if seq > expected:
            lost = seq - expected
            self.drops += lost
            self.lost[key] = self.lost.get(key, 0) + lost
            self.jumps[key] = (expected - 1, lost)
            verdict = JUMP if verdict == IN_SEQUENCE else verdict
        elif seq < expected:
            self.restarts[key] = self.restarts.get(key, 0) + 1
        self.last_seq[key] = seq
        self.received[key] = self.received.get(key, 0) + 1
        return verdict

    def report(self, malformed: int) -> dict[str, Any]:
        """The ``catbus/drops`` value: totals and every stream, in a fixed order."""
        streams = [{"publisher": publisher, "topic": topic, "received": received,
                    "lost": self.lost.get((publisher, topic), 0),
                    "restarts": self.restarts.get((publisher, topic), 0)}
                   for (publisher, topic), received in sorted(self.received.items())]
        return {"total": self.drops, "streams": streams, "malformed": malformed,
                "bad_seq": self.bad_seq}


__all__ = ["LossCount", "IN_SEQUENCE", "JUMP", "CONTRADICTS"]
