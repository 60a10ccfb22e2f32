"""Per-node run statistics: steps, step-time percentiles, waiting, messages, losses.

Collected in every runner the same way and shown in the summary table at the end of a run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: Step times kept for percentiles; a long run keeps an even sample rather than growing forever.
MAX_SAMPLES = 20_000


@dataclass
class NodeStats:
    steps: int = 0
    tick: int = -1
    overruns: int = 0            # parallel: cycles skipped because a step ran past its period
    wait_time: float = 0.0       # stepped: seconds spent waiting for peers
    step_time: float = 0.0       # total seconds inside step / on_message
    state: str = "starting"
    samples: list[float] = field(default_factory=list)
    first_step: float | None = None   # perf_counter at the start of the first step
    last_step: float = 0.0            # ... and at the end of the latest one

    def record_step(self, seconds: float, now: float | None = None) -> None:
        """One step (or batch of handled messages) of ``seconds``, ending ``now`` (a
        ``perf_counter`` reading; read here if not given)."""
        if now is None:
            now = time.perf_counter()
        if self.first_step is None:
            self.first_step = now - seconds
        self.last_step = now
        self.steps += 1
        self.step_time += seconds
        if len(self.samples) < MAX_SAMPLES:
            self.samples.append(seconds)
        elif self.steps % 2 == 0:
            self.samples[self.steps % MAX_SAMPLES] = seconds

    def to_dict(self, sent: int | None = None, inbox: Any = None, *,
                node_malformed: int = 0) -> dict[str, Any]:
        """The summary row: ``sent`` is counted by the runner (a node process's data plane, or
        the inline loop), ``inbox`` the node's, for its receive and loss counters;
        ``node_malformed`` is input the node itself refused (the recorder: payloads that do not
        decode, sequence jumps its stream contradicted). See :func:`add_link_counts` for the
        rest of ``malformed``."""
        p50, p99 = (np.percentile(self.samples, [50, 99]).tolist() if self.samples
                    else (0.0, 0.0))
        active = self.last_step - self.first_step if self.first_step is not None else 0.0
        result = {"steps": self.steps, "tick": self.tick, "overruns": self.overruns,
                  "active_s": round(active, 6),
                  "wait_s": round(self.wait_time, 6), "step_s": round(self.step_time, 6),
                  "p50_ms": p50 * 1e3, "p99_ms": p99 * 1e3}
        if sent is not None:
            result["sent"] = sent
        if inbox is not None:
            result.update(received=inbox.received, dropped=inbox.dropped,
                          duplicates=inbox.duplicates,
                          malformed=inbox.malformed + node_malformed)
            result["malformed_by"] = {"data": inbox.malformed, "node": node_malformed}
        return result


def add_link_counts(stats: dict[str, Any], control: Any = None, data: Any = None,
                    inbox: Any = None) -> dict[str, Any]:
    """Add to a node's summary row (:meth:`NodeStats.to_dict`) the malformed input counted
    outside its inbox: control messages its control link dropped (``control.malformed``) and
    anything its data plane refused (``data.malformed``). ``malformed`` is then every refused
    or malformed input of the node, and ``malformed_by`` says where: ``data`` (frames on the
    data plane: envelope, header, progress, payload), ``node`` (refused by the node itself, the
    recorder), ``control``, ``dataplane``, ``subscriptions`` (subscriptions to topics the node
    does not publish, refused by its publishing socket) and ``security`` (connections its
    publishing socket refused on a keyed bus). Who sent what was refused, when known:
    ``malformed_from`` (neighbour -> count: the socket a forged or unreadable message came in
    on, :attr:`catbus.runtime.inbox.Inbox.malformed_from`) and ``refused_from`` (address ->
    subscriptions refused: who floods or asks for topics outside the run). Returns ``stats``."""
    by = stats.setdefault("malformed_by", {"data": stats.get("malformed", 0), "node": 0})
    curve = getattr(data, "curve", None)   # a keyed run: what the publisher's ZAP refused
    for key, source, attribute in (("control", control, "malformed"),
                                   ("dataplane", data, "malformed"),
                                   ("subscriptions", getattr(data, "gate", None), "refused"),
                                   ("security", getattr(curve, "auth", None), "refused")):
        count = int(getattr(source, attribute, 0) or 0)
        by[key] = by.get(key, 0) + count
        stats["malformed"] = stats.get("malformed", 0) + count
    senders = getattr(inbox, "malformed_from", None)
    if senders:
        stats["malformed_from"] = senders
    guard = getattr(getattr(data, "gate", None), "guard", None)
    addresses = getattr(guard, "refused_from", None)
    if addresses:
        stats["refused_from"] = dict(sorted(addresses.items()))
    return stats
