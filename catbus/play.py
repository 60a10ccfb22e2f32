"""Replay: a node that publishes a recording's messages in place of the nodes that sent them.

``catbus.play:Player`` stands in a launch file where the recorded publisher stood (same name,
same place, so the schedule is the recording's), and an agent runs against recorded sensors::

    nodes:
      env:                                  # the recorded environment's name and place
        class: catbus.play:Player
        params: {file: runs/a.mcap, topics: [robot/sensors, human/sensors]}
      robot: ...

``catbus play FILE --with LAUNCH`` builds that run for you (:mod:`catbus.cli.play`); see
docs/replay.md for what is exact and what is not.

Why it works the way it does:

* **Outputs come from the file.** The topics a player publishes are those of its recording, so
  it declares them through :meth:`catbus.node.Node.declared_outputs` (and its period through
  ``declared_period``): the launch checks read the file before any process starts, and a
  missing file or an unknown topic is a one-line error naming ``nodes.NAME.params.FIELD``.
* **Ticks, not arrival.** In ``stepped`` and ``inline`` a message recorded at sim time ``s``
  (tick ``s / base tick``) is published at the player's step whose time is ``s``; with the
  recorded period that is the same tick, so the header carries the recorded tick and sim time
  and the readers see exactly what they saw in the recording. In ``parallel`` the step's ``t``
  is wall time since the start, and a message is published at the first step at or after
  ``(recorded time - first recorded time) / rate``.
* **The recorded bytes.** Each message is published as its decoded value, which the codec
  encodes back to the recorded bytes (the recorder stores ``record_bytes(payload, buffers)``
  as received; decoding and encoding are inverse for what catbus nodes send, checked by
  tests/test_play.py). The first message of each topic is checked and a difference is logged.
* **The end.** After the recording's last message (any topic outside ``catbus/``) the player
  ends the episode, so the run ends where the recording ended.
* **Memory.** Messages are streamed from the file in file order (stepped/inline recordings are
  in tick order), never loaded all at once.
"""

from __future__ import annotations

import difflib
import math
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Iterator, Mapping

from catbus.errors import CatbusError, ConfigError
from catbus.node import Node
from catbus.params import Param
from catbus.wire.protocol import DROPS_TOPIC, RESERVED_PREFIX

#: A recorded time this close to a step's time belongs to that step (sim times of one tick can
#: differ by rounding when the schedule's base tick differs from the recording's).
TOLERANCE_NS = 1_000
#: What ``format`` in a catbus recording's metadata starts with.
FORMAT_PREFIX = "catbus-recording/"


@dataclass(frozen=True)
class ReplayPlan:
    """What a recording offers a player: read once per file and topic list, at launch check."""

    path: Path                       # absolute
    topics: tuple[str, ...]          # what the player publishes, in recorded order
    publishers: dict[str, str]       # recorded topic -> node that published it (may be partial)
    period: float | None             # the recorded period of those publishers
    first_ns: int                    # publish time of the first message outside catbus/
    last_ns: int                     # ... and of the last one: the player ends there
    messages: int                    # messages on ``topics``


def recorded_topics(recording: Any) -> list[str]:
    """Topics of a recording outside ``catbus/`` (what a player may publish)."""
    return [t for t in recording.topics() if not t.startswith(RESERVED_PREFIX)]


def recorded_publishers(recording: Any) -> dict[str, str]:
    """``{topic: publisher}`` from the recording's ``catbus/drops`` message (written at a clean
    close); empty for a recording cut short."""
    found: dict[str, str] = {}
    try:
        for message in recording.messages([DROPS_TOPIC]):
            value = message.value if isinstance(message.value, Mapping) else {}
            for stream in value.get("streams", []):
                if isinstance(stream, Mapping) and "topic" in stream and "publisher" in stream:
                    found.setdefault(str(stream["topic"]), str(stream["publisher"]))
    except CatbusError:
        return {}
    return found


def open_recording(file: Any, field: str = "file") -> Any:
    """The :class:`~catbus.recording.reader.Recording` at ``file``, checked to be catbus's; a
    ConfigError on ``field`` (no file and node: the caller adds them) otherwise."""
    from catbus.recording.reader import Recording

    if not isinstance(file, (str, os.PathLike)) or not str(file):
        raise ConfigError("", field, "give the recording to replay, e.g. file: runs/a.mcap "
                                     "(relative to the current folder, or absolute)")
    path = Path(file).expanduser().absolute()
    if not path.exists():
        raise ConfigError("", field, f"no such recording: {path} (a relative path is relative "
                                     f"to the current folder, {Path.cwd()}; record one with "
                                     f"catbus launch ... --record FILE)")
    try:
        recording = Recording(path)
    except CatbusError as exc:
        raise ConfigError("", field, f"{exc}; give a recording written by catbus "
                                     f"(--record)") from None
    fmt = recording.metadata.get("format")
    if not (isinstance(fmt, str) and fmt.startswith(FORMAT_PREFIX)):
        raise ConfigError("", field, f"{path} is an MCAP file but not a catbus recording (no "
                                     f"'catbus' metadata of format {FORMAT_PREFIX}*); replay "
                                     f"needs a file written by catbus launch --record")
    return recording


def check_topics(wanted: Any, available: list[str], path: Path, field: str = "topics") -> None:
    """Every wanted topic is a recorded topic outside ``catbus/``; a ConfigError otherwise."""
    if not isinstance(wanted, (list, tuple)):
        raise ConfigError("", field, f"must be a list of recorded topics, got {wanted!r}")
    for index, topic in enumerate(wanted):
        where = f"{field}[{index}]" if field else ""
        if not isinstance(topic, str):
            raise ConfigError("", where, f"must be a topic name, got {topic!r}")
        if topic.startswith(RESERVED_PREFIX):
            raise ConfigError("", where, f"{topic!r} is catbus's own bookkeeping and is not "
                                         f"replayed; choose among {', '.join(available)}")
        if topic not in available:
            close = difflib.get_close_matches(topic, available, n=1)
            raise ConfigError("", where, f"topic {topic!r} is not in {path} (recorded: "
                                         f"{', '.join(available) or 'none'})"
                                         + (f"; did you mean {close[0]!r}?" if close else ""))


def replay_plan(file: Any, topics: Any = ()) -> ReplayPlan:
    """Read and check what replaying ``topics`` (empty: all outside ``catbus/``) of ``file``
    means; remembered per (file, size, modification time, topics)."""
    path = Path(file).expanduser().absolute() if isinstance(file, (str, os.PathLike)) and \
        str(file) else None
    try:
        stat = path.stat() if path is not None else None
    except OSError:
        stat = None
    key = (str(path), stat.st_size, stat.st_mtime_ns, repr(list(topics))) if stat else None
    if key is not None and key in _PLANS:
        return _PLANS[key]
    plan = _read_plan(file, topics)
    if key is not None:
        _PLANS[key] = plan
    return plan


_PLANS: dict[tuple, ReplayPlan] = {}


def _read_plan(file: Any, topics: Any) -> ReplayPlan:
    recording = open_recording(file)
    available = recorded_topics(recording)
    if not available:
        raise ConfigError("", "file", f"{recording.path} has no messages outside catbus/ "
                                      f"(nothing to replay)")
    check_topics(topics, available, recording.path)
    chosen = tuple(topics) if topics else tuple(available)
    first = last = None
    count = 0
    times: dict[str, list[int]] = {topic: [] for topic in chosen}
    for message in recording.messages(available, decode=False):
        ns = round(message.sim_time * 1e9)
        first = ns if first is None else min(first, ns)
        last = ns if last is None else max(last, ns)
        if message.topic in times:
            count += 1
            if len(times[message.topic]) < 64:   # enough to infer a period
                times[message.topic].append(ns)
    publishers = recorded_publishers(recording)
    return ReplayPlan(path=recording.path, topics=chosen, publishers=publishers,
                      period=_recorded_period(recording, chosen, publishers, times),
                      first_ns=first or 0, last_ns=last or 0, messages=count)


def _recorded_period(recording: Any, topics: tuple[str, ...], publishers: Mapping[str, str],
                     times: Mapping[str, list[int]]) -> float | None:
    """The gcd of the recorded periods of the topics' publishers (from the launch the recording
    carries), else the gcd of the spacing of their recorded messages; None if neither says."""
    import yaml

    periods: list[Fraction] = []
    try:
        document = yaml.safe_load(recording.metadata.get("launch") or "") or {}
        nodes = document.get("nodes") or {}
        for topic in topics:
            period = (nodes.get(publishers.get(topic)) or {}).get("period")
            if not isinstance(period, (int, float)) or isinstance(period, bool) or period <= 0:
                periods = []
                break
            periods.append(Fraction(str(period)))
    except (yaml.YAMLError, AttributeError, TypeError):
        periods = []
    if periods:
        return float(_gcd(periods))
    spacing = 0
    for stamps in times.values():
        for a, b in zip(stamps, stamps[1:]):
            spacing = math.gcd(spacing, b - a)
    return spacing / 1e9 if spacing > 0 else None


def _gcd(values: list[Fraction]) -> Fraction:
    result = values[0]
    for value in values[1:]:
        den = result.denominator * value.denominator // math.gcd(result.denominator,
                                                                 value.denominator)
        result = Fraction(math.gcd(int(result * den), int(value * den)), den)
    return result


class Player(Node):
    """Publishes the messages of a recording on their recorded topics (see the module doc).

    Stands in for the recorded publisher of those topics: give it that node's name and place in
    the launch file, so the order within a tick, and so what every reader sees, is the
    recording's. ``remap`` works as for any node (declared names are the recorded topics).
    """

    params = {
        "file": Param(str, "", "the .mcap recording to replay (relative to the current folder, "
                               "or absolute)"),
        "topics": Param(list, [], "recorded topics to publish; empty: every topic outside "
                                  "catbus/"),
        "rate": Param(float, 1.0, "parallel mode only: replay speed, 2 = twice as fast "
                                  "(stepped/inline replay at the recorded ticks)"),
    }
    period = None   # the recorded publishers' period: declared_period

    @classmethod
    def declared_outputs(cls, params: Mapping[str, Any]) -> list[str]:
        """The recorded topics it publishes: read from ``file`` when the launch is checked."""
        rate = params.get("rate", 1.0)
        if not (isinstance(rate, (int, float)) and math.isfinite(rate) and rate > 0):
            raise ConfigError("", "rate", f"must be a positive number (2 = twice as fast), got "
                                          f"{rate!r}")
        return list(replay_plan(params.get("file"), params.get("topics") or ()).topics)

    @classmethod
    def declared_period(cls, params: Mapping[str, Any]) -> float | None:
        """The recorded period of the publishers it stands in for (a launch ``period:`` wins)."""
        plan = replay_plan(params.get("file"), params.get("topics") or ())
        if plan.period is None:
            raise ConfigError("", "file", f"cannot tell the recorded period of "
                                          f"{', '.join(plan.topics)} from {plan.path}; give the "
                                          f"node a period: (the recorded publisher's)")
        return plan.period

    def setup(self, params: dict[str, Any]) -> None:
        plan = replay_plan(params["file"], params.get("topics") or ())
        rate = float(params.get("rate", 1.0))
        self.parallel = (self.run_info or {}).get("mode") == "parallel"
        if not self.parallel and rate != 1.0:
            self.log.warning("rate %s is used in parallel mode only; stepped and inline replay "
                             "at the recorded ticks", rate)
        self.plan = plan
        # Parallel: recorded time relative to the first message, scaled; else the sim time.
        self.rate = rate if self.parallel else 1.0
        self.origin_ns = plan.first_ns if self.parallel else 0
        self.published = 0
        self.skipped = 0
        self._checked: set[str] = set()
        self._stream: Iterator[Any] = self._open_stream()
        self._next = next(self._stream, None)

    def _open_stream(self) -> Iterator[Any]:
        from catbus.recording.reader import Recording

        return Recording(self.plan.path).messages(self.plan.topics, decode=False)

    def step(self, t: float, inputs: dict[str, Any]) -> dict[str, Any] | None:
        """Publish every message due by ``t`` (the newest, if several of one topic are due)."""
        now_ns = self.origin_ns + round(t * self.rate * 1e9)
        due: dict[str, Any] = {}
        while self._next is not None and round(self._next.sim_time * 1e9) <= now_ns + TOLERANCE_NS:
            if self._next.topic in due:
                self.skipped += 1
            due[self._next.topic] = self._next
            self._next = next(self._stream, None)
        if self._next is None and now_ns + TOLERANCE_NS >= self.plan.last_ns:
            self.end_episode(f"replay of {self.plan.path.name} finished (its last message at "
                             f"{self.plan.last_ns / 1e9:g} s)")
        if not due:
            return None
        self.published += len(due)
        return {topic: self._value(message) for topic, message in due.items()}

    def _value(self, message: Any) -> Any:
        """The decoded value; on each topic's first message, check it encodes back to the
        recorded bytes (else say once that the replay is not bit for bit)."""
        from catbus.wire import codec

        payload, buffers = codec.split_record_bytes(message.data)
        value = codec.decode_payload(payload, buffers)
        if message.topic not in self._checked:
            self._checked.add(message.topic)
            again = codec.record_bytes(*codec.encode_payload(value))
            if again != message.data:
                self.log.warning("%s: a recorded message does not encode back to its recorded "
                                 "bytes (written by another encoder?); replayed values are "
                                 "equal, bytes may differ", message.topic)
        return value

    def close(self) -> None:
        if getattr(self, "skipped", 0):
            self.log.warning("%d recorded message(s) skipped: more than one message of a topic "
                             "was due in one step (give the player a shorter period, or a "
                             "lower rate)", self.skipped)
        stream = getattr(self, "_stream", None)
        if stream is not None and hasattr(stream, "close"):
            stream.close()


def recorded_param_changes(recording: Any, spec: Any, replaced: Any = ()
                           ) -> tuple[dict[str, list[tuple[int, dict]]], list[str]]:
    """The live parameter changes a recording holds (``catbus/params``), for the nodes of
    ``spec`` that run (not those ``replaced`` by players), to apply again at their ticks; and a
    note for each that cannot be (another class without ``on_params``, a node not in the
    launch). Each is checked as it was live, in order (a wrong one: ConfigError)."""
    from catbus.runtime.liveparams import checked_change
    from catbus.wire.protocol import PARAMS_TOPIC

    changes: dict[str, list[tuple[int, dict]]] = {}
    notes: list[str] = []
    if PARAMS_TOPIC not in recording.topics():
        return changes, notes
    current = {node.name: dict(node.params) for node in spec.nodes}
    for message in recording.messages([PARAMS_TOPIC]):
        value = message.value if isinstance(message.value, Mapping) else {}
        name, tick, changed = value.get("node"), value.get("tick"), value.get("changed")
        if name in replaced or type(tick) is not int or not isinstance(changed, Mapping):
            continue
        if name not in current:
            notes.append(f"{name}'s parameter change at tick {tick} not applied: no node {name}")
            continue
        node_class = spec.node(name).node_class
        if not callable(getattr(node_class, "on_params", None)):
            notes.append(f"{name}'s parameter change at tick {tick} not applied: "
                         f"{node_class.__name__} has no on_params(changed)")
            continue
        try:
            current[name], _ = checked_change(node_class, name, current[name], changed)
        except ConfigError as exc:
            raise ConfigError(str(recording.path), f"{PARAMS_TOPIC} at tick {tick}",
                              f"{exc} (the launch's {name} differs from the recorded one)"
                              ) from None
        changes.setdefault(name, []).append((tick, dict(changed)))
    return changes, notes


__all__ = ["Player", "ReplayPlan", "replay_plan", "open_recording", "recorded_topics",
           "recorded_publishers", "check_topics", "recorded_param_changes"]
