#!/usr/bin/env python3
"""``tests/raw_node.py`` that leaves without its final progress (``final`` true): the kit's
``final`` check must fail (and a recorder waits for that progress, so the run cannot end well).
Used by tests/test_conformance.py."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import raw_node  # noqa: E402


class NoFinalProgress(raw_node.RawNode):
    def publish_progress(self, tick: int, through: int, end: int | None, final: bool,
                         heard: dict[str, int] | None = None) -> None:
        if not final:
            super().publish_progress(tick, through, end, final, heard)


if __name__ == "__main__":
    raw_node.RawNode = NoFinalProgress   # what raw_node.main() builds
    sys.exit(raw_node.main())
