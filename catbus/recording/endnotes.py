"""What the recorder keeps for the end of a recording: the nodes' ``catbus/stats`` (written at
close, in a fixed order), their reported scores and the spliced episodes (``catbus.end``).

Every node sends its ``catbus/stats`` as it leaves, after its last tick. Which node leaves
first depends on the machine, and so does where a stepped recorder delivers the message: with
the last tick (if it came before the last node's progress) or after it. Written as they came,
the same run gave its statistics in a different order from one recording to the next. They are
written at close instead, once all have come, sorted by (tick, launch order, incarnation): a
fixed order, the schedule's.
"""

from __future__ import annotations

import time
from typing import Any, Mapping, NamedTuple, Sequence

from catbus.recording.mcap_layout import launch_nodes
from catbus.wire import codec
from catbus.wire.protocol import SCORES_TOPIC, STATS_TOPIC, SWAP_TOPIC

_UINT32 = 2 ** 32 - 1


def launch_order(run_info: Mapping[str, Any]) -> dict[str, int]:
    """Node name -> its place in the run's launch file, read from ``run_info["launch"]`` (the
    launch document, YAML text or already a mapping); {} if there is none.

    The recorder needs the order the runtime schedules by (tick, launch order) to write what
    arrives out of schedule -- the nodes' ``catbus/stats`` -- in that order too, and the launch
    document is the one place a node is told it (the same text the recording stores)."""
    return {name: index for index, name in enumerate(launch_nodes(run_info))}


class EndNotes:
    """Statistics held back, scores and splices, for the end of one recording."""

    def __init__(self, order: Mapping[str, int]) -> None:
        #: node -> its place in the launch file (the schedule's order within a tick)
        self.order = dict(order)
        self.held: list[Held] = []
        #: node -> its latest reported scores (from ``catbus/scores``)
        self.reported: dict[str, dict] = {}
        #: nodes that went on mid-episode without their state
        self.spliced: list[dict[str, Any]] = []

    def keep(self, topic: str, header: codec.Header, publish_time: int,
             payload: bytes | memoryview, buffers: Sequence[Any]) -> bool:
        """Note what a received message means for the end; True if it is to be written at
        close rather than now (``catbus/stats``)."""
        if topic == STATS_TOPIC:
            self.hold(topic, header, publish_time, codec.record_bytes(payload, buffers))
            return True
        if topic == SCORES_TOPIC:
            self.keep_scores(codec.decode_payload(payload, buffers))
        elif topic == SWAP_TOPIC:
            self.keep_splice(codec.decode_payload(payload, buffers))
        return False

    def hold(self, topic: str, header: codec.Header, publish_time: int, data: bytes) -> None:
        """Keep a message to be written at close, in schedule order. Nodes missing from the
        launch document (none in a run catbus launched) sort after the others, by name."""
        place = self.order.get(header.publisher, len(self.order))
        self.held.append(Held((header.tick, place, header.publisher, header.incarnation,
                               header.seq), topic, header.publisher, header.incarnation,
                              time.time_ns(), publish_time, header.seq & _UINT32, data))

    def held_in_order(self) -> list["Held"]:
        """The held-back messages sorted by their key (tick, launch order, node, incarnation,
        seq), then bytes: two messages with one key (a resent or forged frame) must not fall
        back on arrival order either. Each is given once."""
        held, self.held = self.held, []
        return sorted(held, key=lambda message: (message.key, message.data))

    def keep_scores(self, value: Any) -> None:
        """A node's ``catbus/scores`` message: keep its newest score set for ``catbus.end``."""
        if isinstance(value, Mapping) and isinstance(value.get("scores"), Mapping):
            self.reported[str(value.get("node", ""))] = dict(value["scores"])

    def keep_splice(self, value: Any) -> None:
        """A ``catbus/swap`` event of a node that went on without its state -- restarted
        fresh, or swapped after its process died -- makes the episode a spliced one:
        ``catbus.end`` lists it, and ``catbus eval`` says so beside the scores."""
        if not isinstance(value, Mapping) or value.get("state") != "fresh":
            return
        if value.get("kind") == "restart" or (value.get("kind") == "swap"
                                              and value.get("old_died")):
            self.spliced.append({"node": str(value.get("node", "")), "tick": value.get("tick"),
                                 "kind": str(value.get("kind")), "state": "fresh"})

    def end_metadata(self) -> dict[str, Any]:
        """``scores`` (merged as ``RunResult.scores`` merges them) and ``spliced``."""
        from catbus.api.result import merge_reported

        return {"scores": merge_reported(self.reported), "spliced": list(self.spliced)}


class Held(NamedTuple):
    """A message received but written only at close: the sort key first, then what
    ``add_message`` needs."""

    key: tuple[int, int, str, int, int]   # tick, launch order, node, incarnation, seq
    topic: str
    publisher: str
    incarnation: int
    log_time: int
    publish_time: int
    sequence: int
    data: bytes


__all__ = ["EndNotes", "Held", "launch_order"]
