""":func:`sweep`: every (setting, seed) episode of a grid, in isolated worker processes."""

from __future__ import annotations

import numbers
import os
import sys

from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from catbus.errors import ConfigError
from catbus.sweep.episode import Episode
from catbus.sweep.grid import settings_of, unique_slugs
from catbus.sweep.results import TAIL, ErrorLogs, ResultsWriter, read_rows, row_key


def sweep(launch: str | os.PathLike | Mapping[str, Any], seeds: Iterable[int] | None = None,
          grid: Mapping[str, Sequence[Any]] | None = None, *, mode: str = "inline",
          jobs: int | None = None, out: str | os.PathLike | None = None,
          record: str | os.PathLike | None = None, steps: int | None = None,
          fresh: bool = False, episode_timeout: float | None = None, resume: bool = False,
          progress: bool | None = False, deadline: float = 30.0, evaluate: bool = True,
          on_row: Callable[[dict[str, Any]], None] | None = None,
          cluster: Any = None, log_level: str = "WARNING") -> list[dict[str, Any]]:
    """Run the launch once per (setting, seed) of ``grid`` x ``seeds``; one row per episode.

    Each episode runs in a worker process (``jobs`` of them, default: the number of cores), with
    its own endpoints (``ipc`` in a private folder: never a shared port or path) and, with
    ``record``, its own recording ``record/<setting-slug>/seed-<n>.mcap``. Without ``record``,
    an episode whose environment names an evaluator is recorded to a temporary file for its
    scores, deleted after. A worker that dies or an episode past ``episode_timeout`` seconds
    gives a failed row, and the sweep goes on with a new worker.

    Args:
        launch: A launch file path or a launch dict (as for :func:`catbus.run`).
        seeds: Run seeds (default: the launch's seed only).
        grid: ``{"node.param": [value, ...]}``; every combination is a setting.
        mode: ``"inline"`` (default) or ``"stepped"`` (or ``"parallel"``).
        jobs: Worker processes (default ``os.cpu_count()``).
        out: CSV path; rows are written to it and, as JSON lines, to the same path with the
            suffix ``.jsonl`` (``runs/r.csv`` -> ``runs/r.jsonl``) as they come. A failed row's
            full error goes to ``runs/r.logs/<setting>/seed-<n>.log`` (see ``error_log``).
        record: Folder for the recordings (none by default).
        steps: Environment steps per episode (default: the launch's).
        fresh: A new worker per episode (also forced by a node class with
            ``one_per_process = True``).
        episode_timeout: Seconds after which an episode's worker is killed (row "timeout").
        resume: Keep the rows already in ``out`` and run only the missing episodes.
        progress: A tqdm bar on stderr (``None``: only on a terminal).
        deadline: As for :func:`catbus.run`.
        evaluate: Score episodes with the environment's evaluator (``False``: only what nodes
            report; no temporary recording).
        on_row: Called with each row as it comes.
        cluster: Run the episodes on a Dask distributed cluster instead: a scheduler address
            (``"tcp://HOST:8786"``) or a ``distributed.Client`` (needs ``catbus[dask]``; ``jobs``
            is then the cluster's business). See :mod:`catbus.sweep.cluster`.
        log_level: The nodes' ``self.log`` records at this level and above go to the workers'
            stderr as ``[NODE] LEVEL message`` and into recordings (default ``"WARNING"``: a
            sweep runs many episodes; any case).

    Returns:
        The rows (dicts), in grid order: ``setting`` (slug), one column per grid key, ``seed``,
        the scores, ``steps``, ``wall_time_s``, ``dropped``, ``malformed``, ``status``
        (``"ok"``/``"failed"``), ``exit_code``, ``error`` (one line: the reason),
        ``error_log`` (the file with the whole error, traceback and all, when it had more
        than one line: beside ``out``, else in ``record``, else in a temporary folder),
        ``end_reason``, ``worker_pid``, ``record``.

    Raises:
        ConfigError: The launch, the grid or an option is wrong (before any episode runs);
            ``cluster`` without Dask installed.
        RunTimeout: No scheduler answered at ``cluster`` in time.
    """
    from catbus.api.run import load

    if isinstance(launch, (str, os.PathLike)):
        launch = str(Path(launch).resolve())
    from catbus.api.execute import check_timing
    from catbus.runtime.logs import check_level

    # Options first: they are cheap to check, and a launch can be slow to import.
    if jobs is not None and (isinstance(jobs, bool) or not isinstance(jobs, numbers.Integral)
                             or jobs < 1):
        raise ConfigError("<sweep>", "jobs", f"must be a whole number of worker processes, at "
                                             f"least 1; got {jobs!r}")
    if episode_timeout is not None and not episode_timeout > 0:
        raise ConfigError("<sweep>", "episode_timeout", f"must be positive, got {episode_timeout}")
    check_timing(deadline=deadline, where="<sweep>")
    level = check_level(log_level)
    settings = settings_of(grid)
    slugs = unique_slugs(settings)
    seed_list = list(seeds) if seeds is not None else None
    # Checked here, once per setting (a misspelt parameter is one error, not N failed rows).
    spec = None
    for setting in settings:
        spec = load(launch, mode=mode, steps=steps, overrides=setting, record=False, bus="ipc")
    if seed_list is None:
        seed_list = [spec.seed]
    if any(not isinstance(s, int) or s < 0 for s in seed_list):
        raise ConfigError("<sweep>", "seeds", f"must be non-negative integers, got {seed_list}")
    classes = [n.node_class for n in spec.nodes]
    wants_own = [c.__name__ for c in classes if getattr(c, "one_per_process", False)]
    has_evaluator = any(getattr(c, "evaluator", None) for c in classes)
    record_dir = Path(record).resolve() if record is not None else None

    client = None
    if cluster is not None:
        from catbus.sweep import cluster as dask_cluster

        client = dask_cluster.connect(cluster)   # before any file is written

    keys = list(grid or {})
    tasks = [Episode(index=len(settings) and i * len(seed_list) + j, launch=launch,
                     setting=setting, slug=slug, seed=seed, mode=spec.mode, steps=steps,
                     record=str(record_dir / slug / f"seed-{seed}.mcap") if record_dir else None,
                     score_record=record_dir is None and has_evaluator and evaluate,
                     deadline=deadline, evaluate=evaluate, log_level=level,
                     extra={"fresh": bool(wants_own)})
             for i, (setting, slug) in enumerate(zip(settings, slugs))
             for j, seed in enumerate(seed_list)]
    order = [row_key(t.base_row(), keys) for t in tasks]
    existing = read_rows(out) if (resume and out is not None) else []
    done = {row_key(r, keys) for r in existing if "seed" in r}
    existing = [r for r in existing if "seed" in r]
    todo = [t for t in tasks if row_key(t.base_row(), keys) not in done]

    writer = ResultsWriter(out, keys, existing)
    error_logs = ErrorLogs(out, record_dir)
    bar = _progress_bar(progress, total=len(tasks), initial=len(tasks) - len(todo))
    failures = [0]

    def collected(row: dict[str, Any]) -> None:
        row = error_logs.shorten(row)
        writer.add(row)
        if row.get("status") != "ok":
            failures[0] += 1
        if bar is not None:
            bar.update(1)
            bar.set_postfix_str(f"failed {failures[0]}", refresh=True)
        if on_row is not None:
            on_row(row)

    finished = False
    pool = None
    try:
        if client is not None:
            dask_cluster.run(cluster, todo, collected, fresh=fresh, timeout=episode_timeout,
                             client=client)
        else:
            from catbus.sweep.workers import WorkerPool

            pool = WorkerPool(min(jobs or os.cpu_count() or 1, max(len(todo), 1)), fresh=fresh,
                              timeout=episode_timeout)
            pool.run(todo, collected)
        finished = True
    finally:
        if pool is not None:
            pool.close(kill=not finished)
        if bar is not None:
            bar.close()
        if not finished:
            writer.close()   # every finished row is on disk already
    return writer.finish(order)


def _progress_bar(enabled: bool | None, total: int, initial: int) -> Any:
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="episode", desc="sweep", dynamic_ncols=True,
                file=sys.stderr)


def score_keys(rows: Sequence[Mapping[str, Any]], setting_keys: Sequence[str]) -> list[str]:
    """The score columns of ``rows``: every key that is not a setting or a fixed column."""
    from catbus.sweep.episode import RESERVED

    fixed = RESERVED | set(TAIL)
    keys: list[str] = []
    for row in rows:
        for key in row:
            if key not in fixed and key not in setting_keys and key not in keys:
                keys.append(key)
    return keys


