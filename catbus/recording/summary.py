"""What a recording holds, in one summary (``catbus info RUN.mcap``, like ``ros2 bag info``):
its run (name, mode, seed, how it was started), its length in sim and wall time, its nodes with
their classes and processes, each topic with its message count and rates, losses, swaps,
restarts and rejoins, live parameter changes, scores, and why it ended.

Everything comes from the file: the ``catbus`` metadata (the launch file after overrides, seed,
mode, base tick, last tick), the ``catbus.end`` metadata written at a clean close, the channels
(each names the publishing node and its incarnation) and the framework's own topics
(``catbus/swap``, ``catbus/scores``, ``catbus/drops``, ``catbus/params``). A recording does not
store why its run ended, so the end reason is read off the last tick against the schedule's,
and says so.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

from catbus.errors import CatbusError
from catbus.recording.reader import Recording
from catbus.wire.protocol import DROPS_TOPIC, PARAMS_TOPIC, SWAP_TOPIC


def _launch(recording: Recording) -> dict[str, Any]:
    """The recorded launch file (after overrides) as a dict; {} if it is missing or broken."""
    import yaml

    text = recording.metadata.get("launch")
    if not isinstance(text, str):
        return {}
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError:
        return {}
    return loaded if isinstance(loaded, dict) else {}


def _topics(recording: Recording) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Per topic ``{messages, publishers, first_s, last_s, hz_sim, hz_wall}``, and the span of
    the whole file (``sim_s``, ``first_ns``, ``last_ns``, ``last_tick``)."""
    topics: dict[str, dict[str, Any]] = {}
    span: dict[str, Any] = {"first_sim": None, "last_sim": None, "first_ns": None,
                            "last_ns": None, "last_tick": None, "processes": {}}
    for message in recording.messages(decode=False):
        row = topics.setdefault(message.topic, {"messages": 0, "publishers": [],
                                                "first_sim": message.sim_time,
                                                "first_ns": message.log_time_ns})
        row["messages"] += 1
        row["last_sim"], row["last_ns"] = message.sim_time, message.log_time_ns
        who = message.publisher
        if who is not None and who not in row["publishers"]:
            row["publishers"].append(who)
        if who is not None and message.incarnation is not None:
            span["processes"].setdefault(who, set()).add(message.incarnation)
        if message.topic.startswith("catbus/"):
            continue
        for key, value, pick in (("first_sim", message.sim_time, min),
                                 ("last_sim", message.sim_time, max),
                                 ("first_ns", message.log_time_ns, min),
                                 ("last_ns", message.log_time_ns, max),
                                 ("last_tick", message.tick, max)):
            if value is not None:
                span[key] = value if span[key] is None else pick(span[key], value)
    for topic, row in topics.items():
        count = row["messages"] if not topic.startswith("catbus/") else 0   # bookkeeping: no rate
        sim = row.pop("last_sim") - row.pop("first_sim")
        wall = (row.pop("last_ns") - row.pop("first_ns")) / 1e9
        row["hz_sim"] = round((count - 1) / sim, 3) if count > 1 and sim > 0 else None
        row["hz_wall"] = round((count - 1) / wall, 3) if count > 1 and wall > 0 else None
    return topics, span


def _decoded(recording: Recording, topic: str, present: Mapping[str, Any]) -> list[Any]:
    if topic not in present:
        return []
    return [m.value for m in recording.messages([topic]) if isinstance(m.value, Mapping)]


def _end_reason(recording: Recording, launch: Mapping[str, Any], mode: Any,
                last_tick: int | None) -> str:
    """Why the run ended, as far as the file tells: cut short, its schedule's last tick or
    duration reached, or an earlier end (a node's end of the episode, or a stop)."""
    if not recording.complete:
        return "cut short: the recording was not closed (recorder killed?)"
    scheduled = recording.metadata.get("last_tick")
    if mode in ("stepped", "inline") and isinstance(scheduled, int) and last_tick is not None:
        if last_tick >= scheduled:
            return f"reached the schedule's last tick ({scheduled})"
        return (f"ended at tick {last_tick}, before the schedule's last tick {scheduled} (a "
                f"node ended the episode, or the run was stopped)")
    duration = launch.get("duration")
    if mode == "parallel" and isinstance(duration, (int, float)):
        return f"closed cleanly (the run's duration: {duration:g} s)"
    return "closed cleanly"


def summarize(path: str | os.PathLike[str] | Recording, scores: bool = True) -> dict[str, Any]:
    """The summary of a recording, as plain JSON-able values (``catbus info --json``).

    ``scores``: also run the evaluator the recording names (its failure is noted, not raised).

    Raises:
        CatbusError: The file is not a recording (missing, not MCAP).
    """
    recording = path if isinstance(path, Recording) else Recording(path)
    meta, end = recording.metadata, recording.end_metadata
    launch = _launch(recording)
    topics, span = _topics(recording)
    mode = meta.get("mode")
    nodes = {}
    listed = launch.get("nodes")
    for name, node in (listed.items() if isinstance(listed, Mapping) else ()):
        node = node if isinstance(node, Mapping) else {}
        nodes[str(name)] = {"class": node.get("class"), "period": node.get("period"),
                            "remote": bool(node.get("remote", False)), "launched": True}
    if launch.get("record") or "catbus/drops" in topics:
        nodes.setdefault("recorder", {"class": "catbus.recording.recorder:Recorder",
                                      "period": None, "remote": False, "launched": True})
    for name in span["processes"]:   # joined from outside the launch file (catbus topic pub)
        nodes.setdefault(name, {"class": None, "period": None, "remote": False,
                                "launched": False})
    swaps = [dict(v) for v in _decoded(recording, SWAP_TOPIC, topics)]
    for name, node in nodes.items():
        node["incarnations"] = sorted(span["processes"].get(name, set())) or [1]
        node["processes"] = [record.get("new") for record in swaps
                             if record.get("node") == name and record.get("new")]
        node["published"] = sorted(t for t, row in topics.items()
                                   if name in row["publishers"] and not t.startswith("catbus/"))
    first_ns, last_ns = span["first_ns"], span["last_ns"]
    started, closed = meta.get("recorder_started_ns"), end.get("closed_at_ns")
    wall = ((closed - started) / 1e9 if isinstance(started, int) and isinstance(closed, int)
            else (last_ns - first_ns) / 1e9 if first_ns is not None else 0.0)
    sim = (span["last_sim"] - span["first_sim"]) if span["first_sim"] is not None else 0.0
    drops = [dict(stream) for value in _decoded(recording, DROPS_TOPIC, topics)
             for stream in value.get("streams", []) if isinstance(stream, Mapping)
             and stream.get("lost")]
    found_scores: dict[str, Any] = {}
    score_note = None
    if scores:
        from catbus.recording.evaluate import evaluate_file, reported_scores

        try:
            found_scores = (evaluate_file(recording) if meta.get("evaluators") else
                            reported_scores(recording))
        except CatbusError as exc:
            found_scores, score_note = reported_scores(recording), str(exc)
    return {
        "file": str(recording.path), "complete": recording.complete,
        "run": meta.get("name") or launch.get("name"), "mode": mode, "seed": meta.get("seed"),
        "base_tick_s": recording.base_tick_ns / 1e9 if recording.base_tick_ns else None,
        "argv": meta.get("argv"), "versions": meta.get("versions"),
        "duration_sim_s": round(sim, 6), "duration_wall_s": round(wall, 3),
        "last_tick": span["last_tick"], "messages": sum(r["messages"] for r in topics.values()),
        "nodes": nodes, "topics": topics,
        "drops": {"total": end.get("drops"), "streams": drops,
                  "malformed": end.get("malformed")},
        "swaps": [s for s in swaps if s.get("kind") == "swap"],
        "restarts": [s for s in swaps if s.get("kind") == "restart"],
        "rejoins": [s for s in swaps if s.get("kind") == "rejoin"],
        "param_changes": [dict(v) for v in _decoded(recording, PARAMS_TOPIC, topics)],
        "spliced": end.get("spliced") or [],
        "scores": found_scores, "scores_note": score_note,
        "end_reason": _end_reason(recording, launch, mode, span["last_tick"]),
    }


__all__ = ["summarize"]
