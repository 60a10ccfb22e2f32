"""The run's checkpoints (``checkpoint: N``; ``docs/design.md``, "Checkpoints"): the latest
states each node sent, handed to a restarted process of it.

Kept by the control plane, not by a node's host: the registry outlives every node process, and
a restarted process -- on this host or on a ``catbus launch --only`` host -- already gets its
terms from it, so its checkpoint travels the same way and no host needs a file system another
one can read. The two latest are kept: the node sends one and may die before the registry has
it, and a restarted process must go on from one no later than the first tick its readers lack
(it picks: :func:`catbus.runtime.checkpoints.choose`).
"""

from __future__ import annotations

from catbus.control.instructions import Outbox
from catbus.wire import messages as msg

#: How many checkpoints are kept per node (see the module's documentation).
KEPT = 2


def state_text(tick: int) -> str:
    """How a restart from a checkpoint is named (a record's ``state``) in the summary,
    ``--json`` and the recording, where others say ``fresh`` or ``restored``."""
    return f"checkpoint (tick {tick})"


class Checkpoints:
    """The latest checkpoints of every node, by name."""

    def __init__(self) -> None:
        self.kept: dict[str, list[msg.Checkpoint]] = {}

    def keep(self, name: str, point: msg.Checkpoint) -> None:
        """A checkpoint of ``name``'s current process. One of a tick it has already (a
        restored process stepping again) replaces it and every later one: its state is the
        same, and what came after it belongs to the process that died."""
        kept = [p for p in self.kept.get(name, []) if p.tick < point.tick]
        kept.append(point)
        self.kept[name] = kept[-KEPT:]

    def latest(self, name: str) -> int | None:
        """The tick of ``name``'s latest checkpoint (None: none yet)."""
        kept = self.kept.get(name)
        return kept[-1].tick if kept else None

    def send(self, identity: bytes, name: str, out: Outbox) -> None:
        """To a restarted process of ``name``, after its ``welcome``: what is kept, oldest
        first (nothing: it goes on from tick 0 as it was set up)."""
        for point in self.kept.get(name, []):
            out.send(identity, point)


__all__ = ["Checkpoints", "KEPT", "state_text"]
