"""Writing a sweep's rows as they come: JSON lines (append-only, the source of truth for
``--resume``) and CSV.

The CSV's columns are the union over the episodes, and a new score may first appear in a later
episode, so the CSV is *rewritten whole* whenever a row brings a new column (and once more at
the end, in grid order); otherwise a row is appended and flushed. Either way the CSV on disk is
always a complete, valid table of every finished episode.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from catbus.sweep.grid import canonical

#: Columns of every row after the settings, the seed and the scores.
TAIL = ("steps", "wall_time_s", "dropped", "malformed", "status", "exit_code", "error",
        "error_log", "end_reason", "worker_pid", "record")
HEAD = ("setting",)


def paths_for(out: str | os.PathLike) -> tuple[Path, Path]:
    """The table and its JSON lines: the suffix of ``out`` is replaced, never appended to
    (``runs/r.csv`` -> runs/r.csv and runs/r.jsonl; ``runs/r.jsonl`` -> the same two)."""
    out = Path(out)
    if out.suffix == ".jsonl":
        return out.with_suffix(".csv"), out
    return out, out.with_suffix(".jsonl")


def logs_folder(out: str | os.PathLike) -> Path:
    """Where the failed rows' full errors go beside ``out``: ``runs/r.csv`` -> runs/r.logs."""
    return paths_for(out)[0].with_suffix(".logs")


class ErrorLogs:
    """Keeps a failed row's ``error`` cell to one line, its full text (the traceback) in a file.

    A CSV cell holding a 30-line traceback breaks every table viewer and hides the reason; the
    first line of an episode's error is its reason (``node env failed in step: RuntimeError:
    boom``). The whole text goes to ``<folder>/<setting>/seed-<n>.log``, named in the row's
    ``error_log`` column; the folder is ``<out>.logs`` beside ``--out`` (``runs/r.logs``), else
    the ``--record`` folder (beside the episode's recording), else a temporary folder made at
    the first such failure (``catbus-sweep-logs-*``), kept for the user to read."""

    def __init__(self, out: str | os.PathLike | None, record: str | os.PathLike | None) -> None:
        self.root = logs_folder(out) if out is not None else \
            Path(record) if record is not None else None

    def path_for(self, row: Mapping[str, Any]) -> Path:
        if self.root is None:
            import tempfile

            self.root = Path(tempfile.mkdtemp(prefix="catbus-sweep-logs-"))
        return self.root / str(row.get("setting", "default")) / f"seed-{row.get('seed')}.log"

    def shorten(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """``row`` with a one-line ``error`` and its ``error_log``: the file written with the
        whole error if it had more to say, else None."""
        row = dict(row)
        row.setdefault("error_log", None)
        text = str(row.get("error") or "").strip()
        if "\n" not in text:
            return row
        path = self.path_for(row)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")
        row["error"] = text.splitlines()[0].strip()
        row["error_log"] = str(path)
        return row


def row_key(row: Mapping[str, Any], setting_keys: Sequence[str]) -> tuple:
    """What identifies an episode: its settings and seed (``--resume`` matches on this)."""
    return tuple(canonical(row.get(k)) for k in setting_keys) + (int(row["seed"]),)


def read_rows(out: str | os.PathLike) -> list[dict[str, Any]]:
    """Rows already written to ``out`` (from its JSON lines; a torn last line is ignored)."""
    _, jsonl = paths_for(out)
    rows = []
    if jsonl.is_file():
        for line in jsonl.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return rows


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    return value if isinstance(value, (str, int, float)) else canonical(value)


class ResultsWriter:
    """Rows to CSV + JSON lines, flushed one by one. ``out=None``: rows kept in memory only."""

    def __init__(self, out: str | os.PathLike | None, setting_keys: Sequence[str],
                 existing: Sequence[Mapping[str, Any]] = ()) -> None:
        self.setting_keys = list(setting_keys)
        self.rows: list[dict[str, Any]] = [dict(r) for r in existing]
        self.score_keys: list[str] = []
        for row in self.rows:
            self._learn(row)
        self.csv_path = self.jsonl_path = None
        self._csv = self._jsonl = None
        self._columns: list[str] = []
        if out is not None:
            self.csv_path, self.jsonl_path = paths_for(out)
            self.csv_path.parent.mkdir(parents=True, exist_ok=True)
            self._jsonl = open(self.jsonl_path, "w")
            for row in self.rows:
                self._jsonl.write(json.dumps(row, default=str) + "\n")
            self._jsonl.flush()
            self._rewrite_csv(self.rows)

    def _learn(self, row: Mapping[str, Any]) -> bool:
        fixed = set(HEAD) | set(self.setting_keys) | {"seed"} | set(TAIL)
        new = [k for k in row if k not in fixed and k not in self.score_keys]
        self.score_keys.extend(new)
        return bool(new)

    @property
    def columns(self) -> list[str]:
        return [*HEAD, *self.setting_keys, "seed", *self.score_keys, *TAIL]

    def _rewrite_csv(self, rows: Sequence[Mapping[str, Any]]) -> None:
        if self.csv_path is None:
            return
        if self._csv is not None:
            self._csv.close()
        tmp = self.csv_path.with_name(self.csv_path.name + ".tmp")
        with open(tmp, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(self.columns)
            for row in rows:
                writer.writerow([_cell(row.get(c)) for c in self.columns])
        os.replace(tmp, self.csv_path)   # never a half-written table on disk
        self._columns = self.columns
        self._csv = open(self.csv_path, "a", newline="")

    def add(self, row: Mapping[str, Any]) -> None:
        row = dict(row)
        self.rows.append(row)
        grew = self._learn(row)
        if self._jsonl is not None:
            self._jsonl.write(json.dumps(row, default=str) + "\n")
            self._jsonl.flush()
        if self._csv is None:
            return
        if grew:
            self._rewrite_csv(self.rows)
        else:
            csv.writer(self._csv).writerow([_cell(row.get(c)) for c in self._columns])
            self._csv.flush()

    def finish(self, order: Sequence[tuple] | None = None) -> list[dict[str, Any]]:
        """Close the files; the CSV is rewritten once in ``order`` (keys of :func:`row_key`)."""
        rows = self.rows
        if order is not None:
            rank = {key: i for i, key in enumerate(order)}
            rows = sorted(rows, key=lambda r: rank.get(row_key(r, self.setting_keys), len(rank)))
        self._rewrite_csv(rows)
        self.close()
        return rows

    def close(self) -> None:
        for f in (self._csv, self._jsonl):
            if f is not None:
                f.close()
        self._csv = self._jsonl = None
