"""Scoring and plotting recordings with the functions the recording itself names.

An environment node names its evaluator (``Node.evaluator = "module:function"``) and, optionally,
its plotter; the runtime writes both into the recording's metadata (``evaluators``,
``plotters``). So ``catbus eval run.mcap`` needs no other argument, and an old recording is scored
by the evaluator of the scenario it came from, whatever the current launch file says.

An evaluator is ``fn(recording, **options) -> dict`` of scores; a plotter is
``fn(recording, out, mp4=False, **options) -> None``.
"""

from __future__ import annotations

import importlib
import inspect
import math
import os
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from catbus.errors import CatbusError
from catbus.spec.imports import recorded_import_path
from catbus.recording.reader import Recording


def evaluate_file(path: str | os.PathLike[str] | Recording, **options: Any) -> dict[str, Any]:
    """Scores of a recording: what its nodes reported (:func:`reported_scores`) merged with
    the scores of the evaluator(s) its metadata names, whose keys win.

    ``options`` (e.g. ``d_min=10``) go to the evaluator; ``None`` values are left out so a CLI
    can pass its unset flags through. With several evaluators the results are merged; a key two
    evaluators share is prefixed with the evaluator's name. A recording with reported scores
    needs no evaluator; one with neither is an error.
    """
    recording = _open(path)
    reported = reported_scores(recording)
    if reported and not recording.metadata.get("evaluators") and \
            all(value is None for value in options.values()):
        return _mark_spliced(recording, reported)
    return _mark_spliced(recording, {**reported, **evaluator_scores(recording, **options)})


def _mark_spliced(recording: Recording, scores: dict[str, Any]) -> dict[str, Any]:
    """A recording of a spliced episode (a node went on mid-episode without its state) says so
    beside its scores, as the run's result did: ``spliced: env restarted fresh at tick
    2140``."""
    from catbus.control import splice_line

    spliced = recording.end_metadata.get("spliced")
    if isinstance(spliced, list) and spliced:
        scores = dict(scores, spliced="; ".join(
            splice_line(entry) for entry in spliced if isinstance(entry, Mapping)))
    return scores


def reported_scores(path: str | os.PathLike[str] | Recording) -> dict[str, Any]:
    """The scores the run's nodes reported (``Node.report``), from the recording's
    ``catbus/scores`` messages: each node's last score set, merged as ``RunResult.scores``
    merges them (a key several nodes reported becomes ``<node>.<key>``). {} if none."""
    from catbus.api.result import merge_reported
    from catbus.wire.protocol import SCORES_TOPIC

    recording = _open(path)
    if SCORES_TOPIC not in recording.topics():
        return {}
    by_node: dict[str, dict[str, Any]] = {}
    for message in recording.messages([SCORES_TOPIC]):
        value = message.value
        if isinstance(value, Mapping) and isinstance(value.get("scores"), Mapping):
            by_node[str(value.get("node", ""))] = dict(value["scores"])
    return merge_reported(by_node) or {}


def evaluator_scores(path: str | os.PathLike[str] | Recording, **options: Any) -> dict[str, Any]:
    """The scores of the evaluator(s) the recording's metadata names (see
    :func:`evaluate_file`); an error if it names none."""
    recording = _open(path)
    functions = _named_functions(recording, "evaluators", "evaluator")
    scores: dict[str, Any] = {}
    for ref, fn in functions:
        result = fn(recording, **_options_for(fn, ref, options, recording))
        if not isinstance(result, Mapping):
            raise CatbusError(f"{recording.path}: evaluator {ref} returned "
                              f"{type(result).__name__}, not a dict of scores")
        for key, value in result.items():
            scores[f"{ref}/{key}" if key in scores else str(key)] = value
    return scores


def plot_file(path: str | os.PathLike[str] | Recording, out: str | os.PathLike[str],
              mp4: bool = False, **options: Any) -> list[str]:
    """Draw a recording with the plotter(s) its metadata names; returns the files written.

    A plotter writes the picture to ``out`` and, with ``mp4``, an animation beside it (same name,
    ``.mp4``). With several plotters the second and later get ``<stem>.<n><suffix>``.

    ``mp4`` without ffmpeg on PATH: the pictures are still drawn (as without ``mp4``), then
    :class:`NoFFmpeg` is raised; its ``written`` lists them.
    """
    recording = _open(path)
    functions = _named_functions(recording, "plotters", "plotter")
    missing_ffmpeg = mp4 and ffmpeg_path() is None
    if missing_ffmpeg:
        mp4 = False
    out_path = Path(out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    written: list[str] = []
    for index, (ref, fn) in enumerate(functions):
        target = out_path if index == 0 else out_path.with_name(
            f"{out_path.stem}.{index + 1}{out_path.suffix}")
        candidates = list(dict.fromkeys(
            [target, target.with_suffix(".png"), target.with_suffix(".mp4")] if mp4 else [target]))
        before = {c: _mtime(c) for c in candidates}
        fn(recording, str(target), mp4=mp4, **_options_for(fn, ref, options, recording))
        written += [str(c) for c in candidates if _mtime(c) not in (None, before[c])]
    if missing_ffmpeg:
        raise NoFFmpeg(written)
    return written


class NoFFmpeg(CatbusError):
    """``plot_file(mp4=True)`` without ffmpeg: the pictures were written (``written``), the
    animation was not."""

    def __init__(self, written: list[str]) -> None:
        super().__init__("no MP4 written: it needs ffmpeg on PATH (e.g. `apt-get install "
                         "ffmpeg`)" + ("; the PNG was written" if written else ""))
        self.written = written


def ffmpeg_path() -> str | None:
    """Where the ffmpeg that matplotlib would use is, or None."""
    import shutil

    try:
        import matplotlib

        name = matplotlib.rcParams["animation.ffmpeg_path"] or "ffmpeg"
    except Exception:   # no matplotlib: the plotter will say so
        name = "ffmpeg"
    return shutil.which(name)


def format_table(scores: Mapping[str, Any]) -> str:
    """Scores as an aligned two-column table for people; nested dicts become dotted keys."""
    rows = list(_flatten(scores))
    if not rows:
        return "(no scores)"
    width = max(len(key) for key, _ in rows)
    return "\n".join(f"{key:<{width}}  {_format_value(value)}" for key, value in rows)


def to_jsonable(value: Any) -> Any:
    """Scores with numpy scalars and arrays turned into plain Python, for ``json.dumps``."""
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if hasattr(value, "tolist"):  # numpy array or scalar
        return to_jsonable(value.tolist())
    return value


# -- helpers ------------------------------------------------------------------------------------
def _mtime(path: Path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return None


def _open(path: str | os.PathLike[str] | Recording) -> Recording:
    return path if isinstance(path, Recording) else Recording(path)


def _named_functions(recording: Recording, key: str,
                     what: str) -> list[tuple[str, Callable[..., Any]]]:
    refs = recording.metadata.get(key)
    if isinstance(refs, str):
        refs = [refs]
    if not refs:
        raise CatbusError(f"{recording.path}: the recording names no {what} (metadata "
                          f"'{key}' is {'missing' if key not in recording.metadata else 'empty'}); "
                          f"the run's environment node declares none")
    path = recorded_import_path(recording.metadata)
    return [(str(ref), load_function(str(ref), where=str(recording.path), path=path))
            for ref in refs]


def load_function(ref: str, *, where: str = "",
                  path: Sequence[str | os.PathLike[str]] = ()) -> Callable[..., Any]:
    """Import ``"package.module:function"`` with the import path in front of ``sys.path``:
    ``path`` (a recording's run lists its folders:
    :func:`catbus.spec.imports.recorded_import_path`), then the current folder -- the same rule
    as for node classes (:mod:`catbus.spec.imports`); ``catbus eval`` is often run from the
    project folder, whose packages are not installed."""
    from catbus.spec.imports import describe, import_path_for, use_import_path

    prefix = f"{where}: " if where else ""
    module_name, sep, attr = ref.partition(":")
    if not sep or not module_name or not attr:
        raise CatbusError(f"{prefix}'{ref}' is not of the form module:function")
    folders = import_path_for([p for p in path if os.path.isdir(p)])
    use_import_path(folders)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        where_hint = (f" (searched {describe(folders)}, then the installed packages; run from "
                      f"the folder that holds the package)"
                      if module_name == missing or module_name.startswith(missing + ".") else "")
        raise CatbusError(f"{prefix}cannot import {module_name} for {ref}: {exc}"
                          f"{where_hint}") from None
    fn = module
    for part in attr.split("."):
        fn = getattr(fn, part, None)
        if fn is None:
            raise CatbusError(f"{prefix}{module_name} has no {attr} (named as {ref})")
    if not callable(fn):
        raise CatbusError(f"{prefix}{ref} is not callable")
    return fn  # type: ignore[return-value]


def _options_for(fn: Callable[..., Any], ref: str, options: Mapping[str, Any],
                 recording: Recording) -> dict[str, Any]:
    """The options ``fn`` accepts; an option it does not accept is an error, not ignored."""
    given = {k: v for k, v in options.items() if v is not None}
    try:
        parameters = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return given
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return given
    unknown = [k for k in given if k not in parameters]
    if unknown:
        accepted = [name for name, p in list(parameters.items())[1:]
                    if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        raise CatbusError(f"{recording.path}: {ref} has no option {', '.join(unknown)} "
                          f"(it takes: {', '.join(accepted) or 'none'})")
    return given


def _flatten(scores: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = []
    for key, value in scores.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            rows.extend(_flatten(value, name + "."))
        else:
            rows.append((name, value))
    return rows


def _format_value(value: Any) -> str:
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        value = value.item()
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        if value == 0:
            return "0"
        return f"{value:.6g}" if 1e-4 <= abs(value) < 1e7 else f"{value:.4e}"
    return str(value)


__all__ = ["evaluate_file", "reported_scores", "evaluator_scores", "plot_file", "format_table",
           "to_jsonable", "load_function", "NoFFmpeg", "ffmpeg_path"]
