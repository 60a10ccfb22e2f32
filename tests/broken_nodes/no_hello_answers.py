#!/usr/bin/env python3
"""``tests/raw_node.py`` that never answers a hello once started (it still counts hellos for
its own barrier): the kit's ``hellos`` check must fail. Used by tests/test_conformance.py."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import raw_node  # noqa: E402


class NoHelloAnswers(raw_node.RawNode):
    def publish_progress(self, tick: int, through: int, end: int | None, final: bool,
                         heard: dict[str, int] | None = None) -> None:
        if heard is None:   # a hello's answer is the progress with ``heard``
            super().publish_progress(tick, through, end, final, heard)


if __name__ == "__main__":
    raw_node.RawNode = NoHelloAnswers
    sys.exit(raw_node.main())
