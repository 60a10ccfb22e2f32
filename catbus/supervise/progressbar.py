"""The progress bar of a run (tqdm), fed from the registry's view of the nodes' heartbeats."""

from __future__ import annotations

import sys
import time
from typing import Any

from catbus.runtime.schedule import Schedule


class RunProgress:
    """Ticks (stepped) or seconds (parallel) done, with sim time and rate. Shown only on a
    terminal unless asked for, and only for runs that last more than a second."""

    def __init__(self, schedule: Schedule | None, duration: float | None, *,
                 enabled: bool | None = None) -> None:
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.schedule, self.duration = schedule, duration
        self.bar = None
        self.began = time.monotonic()

    def _open(self) -> None:
        from tqdm import tqdm

        if self.schedule is not None:
            self.bar = tqdm(total=self.schedule.last_tick, unit="tick", desc="run",
                            dynamic_ncols=True, leave=False)
        else:
            self.bar = tqdm(total=self.duration, unit="s", desc="run", dynamic_ncols=True,
                            leave=False, bar_format="{l_bar}{bar}| {n:.1f}/{total} s")

    def update(self, registry: Any) -> None:
        if not self.enabled or not registry.started:
            return
        if self.bar is None:
            if time.monotonic() - self.began < 1.0:
                return
            self._open()
        if self.schedule is not None:
            tick = max(registry.min_tick(), 0)
            self.bar.n = tick
            self.bar.set_postfix_str(f"sim {self.schedule.sim_time(tick):.2f} s", refresh=False)
        else:
            self.bar.n = round(time.monotonic() - registry.started_at, 1)
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
