#!/usr/bin/env python3
"""``tests/raw_node.py`` that announces ``through = t`` instead of ``min(t + k - 1, last_tick)``
(the mistake docs/protocol.md warns of): the kit's ``through`` check must fail. Used by
tests/test_conformance.py."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import raw_node  # noqa: E402


class ThroughIsTick(raw_node.RawNode):
    def step(self, tick: int, t: float, limit: int | None, through: int | None) -> set[str]:
        return super().step(tick, t, limit, None if through is None else tick)


if __name__ == "__main__":
    raw_node.RawNode = ThroughIsTick
    sys.exit(raw_node.main())
