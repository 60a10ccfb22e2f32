"""``catbus reproduce`` as one call, and its report for people (docs/reproduce.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

from catbus.reproduce.compare import Difference, Outcome
from catbus.reproduce.rerun import Rerun
from catbus.reproduce.source import RecordedRun, read_run


def reproduce(path: str | Path, *, overrides: Sequence[str] = (),
              swaps: Mapping[str, str] | None = None, record: str | Path | None = None,
              log_level: str | None = None) -> Outcome:
    """Step the parallel run recorded in ``path`` again in this process (see
    :mod:`catbus.reproduce.rerun`). Without ``overrides`` or ``swaps`` every message is compared with the
    recorded one (:attr:`Outcome.first` is the first that differs); with them it is a
    what-if under the recorded timing. ``record``: write the run computed again there."""
    return Rerun(read_run(path), overrides=overrides, swaps=swaps, record=record,
                 log_level=log_level).execute()


def describe(outcome: Outcome, what_if: bool = False) -> list[str]:
    """The report of a reproduction, line by line, for people."""
    lines = []
    nodes = ", ".join(outcome.nodes)
    if what_if:
        lines.append(f"what-if: {outcome.steps} steps of {nodes} under the recorded timing")
    elif outcome.first is None:
        lines.append(f"reproduced: {outcome.compared} messages of {nodes} equal the recording "
                     f"bit for bit ({outcome.steps} steps)")
    else:
        lines.append(f"DIFFERENT: first at {outcome.first} ({outcome.differences} of "
                     f"{outcome.compared} messages differ); a node that reads the wall clock or "
                     "an unseeded generator cannot be reproduced")
    if outcome.ended:
        lines.append(f"episode ended by {outcome.ended}")
    if outcome.losses:
        lines.append("the recording lost messages: " + "; ".join(outcome.losses))
    if outcome.from_recording:
        lines.append(f"{outcome.from_recording} messages given from the recording (their "
                     "publisher was not run again)")
    if outcome.unchecked:
        shown = outcome.unchecked[:5]
        more = len(outcome.unchecked) - len(shown)
        lines.append(f"not checked ({len(outcome.unchecked)}): " + "; ".join(shown)
                     + (f"; and {more} more" if more else ""))
    if outcome.record is not None:
        lines.append(f"recorded: {outcome.record}")
    return lines


__all__ = ["Difference", "Outcome", "RecordedRun", "Rerun", "describe", "read_run", "reproduce"]
