"""Time series of any numeric field of any recorded topic (``catbus plot RUN.mcap --topic T
--field F``), as rqt_plot draws them, with or without a plotter named by the environment.

Each ``(topic, field)`` gets a panel of its own over a shared time axis (sim seconds; in a
parallel recording seconds since the start); a field that is an array or a list is one line per
element, a map one line per numeric entry. Swaps, restarts and rejoins (``catbus/swap``) are
marked as dashed vertical lines, live parameter changes (``catbus/params``) as dotted ones, so a
change of behaviour can be matched to its cause. Figures are drawn on matplotlib's Agg canvas
directly, without pyplot, so this works without a display.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

from catbus.errors import CatbusError
from catbus.recording.fields import FieldError, format_field, get_field, numeric_leaves, \
    parse_field
from catbus.recording.reader import Recording
from catbus.wire.protocol import PARAMS_TOPIC, SWAP_TOPIC

#: Lines drawn per panel at most (a 1000-element array would be unreadable and slow).
MAX_LINES = 32


def field_series(recording: Recording, topic: str, field: str | None
                 ) -> tuple[dict[str, tuple[list[float], list[float]]], int]:
    """``({label: (times, values)}, messages without the field)`` of ``field`` (None: the
    whole message) on ``topic``.

    Raises:
        CatbusError: The recording has no such topic (the message lists them); no message has
            the field (the reason from the first); the field holds no number.
    """
    if topic not in recording.topics():
        known = ", ".join(t for t in recording.topics() if not t.startswith("catbus/"))
        raise CatbusError(f"--topic {topic}: not in this recording (topics: {known or 'none'})")
    parts = parse_field(field) if field else ()
    series: dict[str, tuple[list[float], list[float]]] = {}
    missing, first_error, kinds = 0, None, set()
    for message in recording.messages([topic]):
        try:
            value = get_field(message.value, parts)
        except FieldError as exc:
            missing += 1
            first_error = first_error or f"{exc} (tick {message.tick})"
            continue
        leaves = list(numeric_leaves(value))
        if not leaves:
            kinds.add(type(value).__name__)
        for suffix, number in leaves:
            times, values = series.setdefault(suffix, ([], []))
            times.append(message.sim_time)
            values.append(number)
    name = f"{topic} {field}" if field else topic
    if not series and first_error is not None:
        raise CatbusError(f"--field {field}: {topic}: {first_error}")
    if not series:
        what = f" (it is {', '.join(sorted(kinds))})" if kinds else " (no message)"
        raise CatbusError(f"{name}: nothing to plot: no number in it{what}")
    return series, missing


def marks(recording: Recording) -> list[tuple[float, str, str]]:
    """``(time, label, line style)`` of each swap, restart, rejoin and live parameter change."""
    found = []
    topics = recording.topics()
    if SWAP_TOPIC in topics:
        for message in recording.messages([SWAP_TOPIC]):
            value = message.value if isinstance(message.value, Mapping) else {}
            found.append((message.sim_time, f"{value.get('node', '?')} "
                                             f"{value.get('kind', 'swap')}", "--"))
    if PARAMS_TOPIC in topics:
        for message in recording.messages([PARAMS_TOPIC]):
            value = message.value if isinstance(message.value, Mapping) else {}
            changed = value.get("changed")
            keys = ", ".join(changed) if isinstance(changed, (dict, list)) else ""
            found.append((message.sim_time, f"{value.get('node', '?')} params {keys}", ":"))
    return found


def plot_fields(path: str | os.PathLike[str] | Recording, specs: Sequence[tuple[str, str | None]],
                out: str | os.PathLike[str]) -> tuple[str, list[str]]:
    """Draw each ``(topic, field)`` of ``specs`` into the PNG ``out``. Returns the file written
    and notes for the user (messages without the field, lines left out).

    Raises:
        CatbusError: A topic or field that is not there (see :func:`field_series`), or no
            matplotlib.
    """
    recording = path if isinstance(path, Recording) else Recording(path)
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise CatbusError("plotting needs matplotlib: pip install 'catbus[plot]'") from None
    drawn = [(topic, field, *field_series(recording, topic, field)) for topic, field in specs]
    notes = []
    figure = Figure(figsize=(10, 2.6 * len(drawn) + 0.8), layout="constrained")
    canvas = FigureCanvasAgg(figure)
    axes = figure.subplots(len(drawn), 1, sharex=True, squeeze=False)[:, 0]
    swap_marks = marks(recording)
    for ax, (topic, field, series, missing) in zip(axes, drawn):
        name = f"{topic} {format_field(parse_field(field))}" if field else topic
        for suffix, (times, values) in list(series.items())[:MAX_LINES]:
            ax.plot(times, values, label=f"{name}{suffix}" if suffix else name, linewidth=1.2)
        if len(series) > MAX_LINES:
            notes.append(f"{name}: {len(series)} elements, the first {MAX_LINES} drawn")
        if missing:
            notes.append(f"{name}: {missing} message(s) without the field left out")
        for when, label, style in swap_marks:
            ax.axvline(when, color="0.3", linestyle=style, linewidth=1)
            ax.annotate(label, (when, 1), xycoords=("data", "axes fraction"), rotation=90,
                        va="top", ha="right", fontsize=7, color="0.3")
        ax.set_ylabel(field or "value")
        ax.set_title(topic, fontsize=9, loc="left")
        ax.grid(True, alpha=0.3)
        if len(series) <= 12:
            ax.legend(fontsize=7, loc="best")
    mode = recording.metadata.get("mode")
    axes[-1].set_xlabel("time (s since the start, wall clock)" if mode == "parallel"
                        else "sim time (s)")
    figure.suptitle(f"{recording.metadata.get('name') or recording.path.name}"
                    f"{f' ({mode})' if mode else ''}", fontsize=10)
    out_path = Path(out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    canvas.print_png(str(out_path))
    return str(out_path), notes


def pair_specs(topics: Sequence[str], fields: Sequence[str]) -> list[tuple[str, str | None]]:
    """``--topic`` and ``--field`` options as ``(topic, field)`` pairs: one field per topic, in
    order; or one field for every topic; or none (whole messages).

    Raises:
        CatbusError: Another number of fields, or a field without a topic.
    """
    if fields and not topics:
        raise CatbusError("--field needs --topic: catbus plot RUN.mcap --topic T --field F")
    if not fields:
        return [(topic, None) for topic in topics]
    if len(fields) == 1:
        return [(topic, fields[0]) for topic in topics]
    if len(fields) != len(topics):
        raise CatbusError(f"{len(topics)} --topic and {len(fields)} --field: give one --field "
                          f"per --topic (in the same order), or one for all")
    for field in fields:
        parse_field(field)   # a malformed path: said before the file is read
    return list(zip(topics, fields))


__all__ = ["field_series", "marks", "plot_fields", "pair_specs", "MAX_LINES"]
