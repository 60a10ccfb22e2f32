"""The built-in recorder node: every message on the bus, as it travelled, into one MCAP file.

The recorder is an ordinary node subscribed to ``*`` with the ``all`` policy; the runtime hands it
raw frames (``wants_raw``) in the order they must be written (stepped/inline: tick, then
launch-file order, then sequence). File layout (see docs/design.md, "Recording (MCAP)"):

* one channel per topic and publishing process -- (topic, publisher node, incarnation) -- with
  ``message_encoding="catbus-msgpack"``, no schema, registered on its first message; the
  channel's metadata names the publisher and incarnation, so every message's
  ``RecordedMessage.publisher`` is the node that sent it, also on topics every node publishes
  (``catbus/stats``, ``catbus/scores``, ``catbus/log``);
* each message's ``data`` is :func:`catbus.wire.codec.record_bytes` of the received frames -- never
  decoded and re-encoded, so a recording holds exactly the bytes that travelled;
* ``publish_time`` = sim time in ns (so ``tick = publish_time // base_tick_ns`` in
  stepped/inline), ``log_time`` = wall time of receipt in ns, ``sequence`` = the publisher's
  per-topic sequence number (MCAP stores 32 bits);
* a metadata record named ``catbus`` with the run's launch text, seed, mode, base tick, versions,
  evaluators and plotters, written first so even a file cut short carries it; a second one named
  ``catbus.end`` with counts and the scores nodes reported (``scores``, merged as in
  ``RunResult.scores``), written at a clean close;
* bookkeeping under ``catbus/``: everything the bus carries there except the chatty
  ``catbus/progress``, plus one ``catbus/drops`` message written at close. The nodes'
  ``catbus/stats`` (each node's counters, sent as it leaves the run) are held back and written
  at close, sorted by (tick, launch order, incarnation): they arrive after the last tick in an
  order that depends on which node left first, and a recording must not (see
  :mod:`catbus.recording.endnotes`).

Why these choices: a file must survive the recorder being killed (SIGKILL, power of a laptop lid),
so data goes to the OS as soon as each chunk is complete (the file object is unbuffered) and chunks
are moderate in size and also closed after ``flush_interval`` seconds of wall time. A reader then
recovers everything up to the last complete chunk (see :mod:`catbus.recording.reader`).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from mcap.writer import CompressionType, Writer

from catbus.node import Input, Node
from catbus.params import Param
from catbus.recording.endnotes import EndNotes, launch_order
from catbus.recording.fastmcap import DirectFile, message_adder, use_fast_chunks
from catbus.recording.losses import CONTRADICTS, JUMP, LossCount
from catbus.recording.mcap_layout import (CHANNEL_INCARNATION, CHANNEL_PUBLISHER,
                                          END_METADATA_NAME, JSON_KEYS, MESSAGE_ENCODING,
                                          METADATA_NAME, PROFILE)
from catbus.wire import codec
from catbus.wire.payloadcheck import check_payload
from catbus.wire.protocol import DROPS_TOPIC, EVERY_TOPIC, PROGRESS_TOPIC

RUN_INFO_KEYS = ("launch", "seed", "mode", "base_tick_ns", "versions", "evaluators", "plotters")
_UINT32 = 0xFFFFFFFF
_UINT64 = 0xFFFFFFFFFFFFFFFF


def metadata_strings(values: Mapping[str, Any]) -> dict[str, str]:
    """MCAP metadata values must be strings: JSON-encode every non-string value and list those
    keys under ``_json_keys``, so a reader knows exactly which values to decode (a launch text
    that happens to look like JSON stays text)."""
    result: dict[str, str] = {}
    encoded: list[str] = []
    for key, value in values.items():
        if value is None:
            continue
        if isinstance(value, str):
            result[str(key)] = value
        else:
            result[str(key)] = json.dumps(value, default=str, sort_keys=False)
            encoded.append(str(key))
    result[JSON_KEYS] = json.dumps(encoded)
    return result


class Recorder(Node):
    """Records every message on the bus into an MCAP file (``path``).

    After :meth:`close`, ``drops`` is the number of messages lost before they reached the
    recorder (gaps in a (publisher, topic) sequence) and ``drops_by_stream`` says where.
    """

    inputs = [Input(EVERY_TOPIC, "all")]
    outputs = ()
    wants_raw = True
    period = None
    params = {
        "path": Param(str, "run.mcap", "MCAP file to write; parent folders are created"),
        "chunk_size": Param(int, 256 * 1024,
                            "bytes per MCAP chunk (compressed one by one); a file cut short keeps "
                            "every complete chunk, so smaller loses less and compresses less well"),
        "flush_interval": Param(float, 2.0,
                                "also close the chunk in progress after this many seconds of wall "
                                "time, so a slow run killed midway loses little; 0 disables"),
    }

    # Class-level defaults keep close() safe even when setup never ran or failed halfway.
    notes: EndNotes = EndNotes({})
    _writer: Writer | None = None
    _file: DirectFile | None = None
    _closed: bool = False
    path: Path | None = None
    losses: LossCount | None = None
    messages_written: int = 0
    malformed: int = 0       # payloads that do not decode: counted, never written
    #: Frames the runtime refused before they reached on_raw (bad envelope, header or
    #: progress: its inbox's ``malformed``), set by the runtime before close(); None if not.
    inbox_malformed: int | None = None
    #: What the run's registry had refused (control messages, connections) when the recorder
    #: last heard it, set by the runtime before close(); None if not known (inline).
    registry_refused: int | None = None

    @property
    def drops(self) -> int:
        """Messages lost before they reached the recorder (gaps in the sequence numbers)."""
        return self.losses.drops if self.losses is not None else 0

    @property
    def bad_seq(self) -> int:
        """Sequence jumps the stream contradicted (one bad number, not losses)."""
        return self.losses.bad_seq if self.losses is not None else 0

    @property
    def drops_by_stream(self) -> dict[tuple[str, str], int]:
        return self.losses.lost if self.losses is not None else {}

    @property
    def restarts_by_stream(self) -> dict[tuple[str, str], int]:
        return self.losses.restarts if self.losses is not None else {}

    @property
    def malformed_input(self) -> int:
        """What this node refused itself, for its ``malformed`` statistic (the runtime adds the
        frames its inbox refused)."""
        return self.malformed

    # -- lifecycle ------------------------------------------------------------------------------
    def setup(self, params: dict[str, Any]) -> None:
        """Open the file and write the run's metadata before any message arrives."""
        #: (topic, publisher, incarnation) -> channel id
        self._channels: dict[Any, int] = {}
        #: Losses per (publisher, topic), from the sequence numbers.
        self.losses = LossCount()
        #: (publisher, topic) -> the message that jumped ahead of its stream, held until the
        #: stream's next message says whether it was real (after a loss: written then) or one
        #: bad number (never written). See :mod:`catbus.recording.losses`.
        self._held: dict[tuple[str, str], tuple] = {}
        self.messages_written = 0
        self.malformed = 0
        self._last_publish_time = 0
        self._closed = False
        self._flush_interval = float(params.get("flush_interval", 2.0))
        self._last_flush = time.monotonic()
        self._tick_warned = False
        info = getattr(self, "run_info", None) or {}
        base = info.get("base_tick_ns")
        self._base_tick_ns = base if isinstance(base, int) and base > 0 else None
        self._check_ticks = info.get("mode") in ("stepped", "inline")
        #: What is kept for the end: the nodes' statistics (written at close, in order), their
        #: scores and spliced episodes (``catbus.end``).
        self.notes = EndNotes(launch_order(info))

        self.path = Path(os.path.expanduser(str(params.get("path", "run.mcap"))))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = DirectFile(self.path)
        chunk_size = max(1024, int(params.get("chunk_size", 256 * 1024)))
        self._writer = Writer(self._file, chunk_size=chunk_size,
                              compression=CompressionType.ZSTD)
        use_fast_chunks(self._writer)
        self._add_message = message_adder(self._writer)
        self._writer.start(profile=PROFILE, library=f"catbus-recorder ({self._versions(info)})")
        self._writer.add_metadata(METADATA_NAME, metadata_strings(self._run_metadata(info)))

    def on_raw(self, topic: str, header: codec.Header, payload: bytes | memoryview,
               buffers: Sequence[Any]) -> None:
        """Write one received message, in call order (the runtime already ordered the calls)."""
        if topic == PROGRESS_TOPIC:
            return
        if self._writer is None:
            raise RuntimeError("Recorder.on_raw called before setup() or after close()")
        # Its sequence number counts even if the payload is refused below: it arrived, so it
        # is not a loss.
        verdict = self.losses.count(header.publisher, topic, header.seq)
        if self._held:
            held = self._held.pop((header.publisher, topic), None)
            if held is not None and verdict != CONTRADICTS:
                self._write(*held)   # the jump before this one was real: messages were lost
        try:
            # The same check every reader of the file will make: a message whose payload does
            # not decode is counted and dropped here, never written into its channel (where
            # it made Recording.messages() raise for the whole file). check_payload refuses
            # exactly what decode_payload refuses at half its cost (see its module).
            check_payload(payload, buffers)
        except codec.DecodeError:
            self.malformed += 1
            return
        if verdict == JUMP:
            self._held[(header.publisher, topic)] = (topic, header, payload, buffers)
            return
        self._write(topic, header, payload, buffers)

    def _write(self, topic: str, header: codec.Header, payload: bytes | memoryview,
               buffers: Sequence[Any]) -> None:
        """Write one accepted message into its channel (or keep it for the end: catbus/stats)."""
        writer = self._writer
        # Header.unpack bounds sim_time (finite, within +-2**34 s), so this fits MCAP's u64.
        publish_time = min(max(0, round(header.sim_time * 1e9)), _UINT64)
        self._check_tick(topic, header, publish_time)
        self._last_publish_time = max(self._last_publish_time, publish_time)
        if self.notes.keep(topic, header, publish_time, payload, buffers):
            return   # written at close (catbus/stats)
        self._add_message(self._channel(writer, topic, header.publisher, header.incarnation),
                          time.time_ns(), codec.record_bytes(payload, buffers), publish_time,
                          header.seq & _UINT32)
        self.messages_written += 1
        if self._flush_interval > 0 and time.monotonic() - self._last_flush > self._flush_interval:
            writer.flush()
            self._last_flush = time.monotonic()

    def close(self) -> None:
        """Write the held-back ``catbus/stats`` (in the schedule's order: see
        :mod:`catbus.recording.endnotes`), the drop report and the summary, and close the file.
        Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        if self._writer is not None and self._held:
            # A message that jumped ahead of a stream that then ended: nothing says it was one
            # bad number, so it is taken for what it claims (the messages before it lost).
            for held in list(self._held.values()):
                self._write(*held)
            self._held.clear()
        writer, self._writer = self._writer, None
        file, self._file = self._file, None
        try:
            if writer is not None:
                for held in self.notes.held_in_order():
                    writer.add_message(
                        channel_id=self._channel(writer, held.topic, held.publisher,
                                                 held.incarnation), log_time=held.log_time,
                        data=held.data, publish_time=held.publish_time, sequence=held.sequence)
                    self.messages_written += 1
                self._write_drops(writer)
                writer.add_metadata(END_METADATA_NAME, metadata_strings({
                    "messages": self.messages_written, "drops": self.drops,
                    "malformed": self.malformed, "bad_seq": self.bad_seq,
                    "malformed_frames": self.inbox_malformed,
                    "registry_refused": self.registry_refused,
                    "closed_at_ns": time.time_ns(), **self.notes.end_metadata()}))
                writer.finish()
        finally:
            if file is not None:
                file.close()

    # -- helpers --------------------------------------------------------------------------------
    def _channel(self, writer: Writer, topic: str, publisher: str, incarnation: int) -> int:
        """The channel of ``topic`` as published by process ``incarnation`` of node
        ``publisher``, registered on its first message.

        One channel per (topic, publisher, incarnation): the channel's metadata is the only
        place a message's sender is stored, so a channel shared by two nodes (every node
        publishes ``catbus/stats``, ``catbus/scores``, ``catbus/log``) would name one of them
        for both; and after a hot swap or a restart the new process's messages go to a new
        channel of the same topic, whose metadata says which process it is
        (``RecordedMessage.publisher`` / ``.incarnation``).
        """
        key = (topic, publisher, incarnation)
        channel = self._channels.get(key)
        if channel is None:
            channel = writer.register_channel(
                topic=topic, message_encoding=MESSAGE_ENCODING, schema_id=0,
                metadata={CHANNEL_PUBLISHER: publisher, CHANNEL_INCARNATION: str(incarnation)})
            self._channels[key] = channel
        return channel

    def _check_tick(self, topic: str, header: codec.Header, publish_time: int) -> None:
        """Readers derive the tick from ``publish_time``; say so once if that would be wrong."""
        if self._tick_warned or not self._check_ticks or self._base_tick_ns is None:
            return
        if publish_time // self._base_tick_ns != header.tick:
            self._tick_warned = True
            log = getattr(self, "log", None)
            if log is not None:
                log.warning("recorder: %s from %s has tick %d but sim time %r s; readers will "
                            "derive tick %d", topic, header.publisher, header.tick,
                            header.sim_time, publish_time // self._base_tick_ns)

    def _write_drops(self, writer: Writer) -> None:
        """One ``catbus/drops`` message with the totals, always written (also when nothing was
        lost) so every recording has the same channels and a reader can tell "none lost" from
        "not checked"."""
        value = self.losses.report(self.malformed)
        if self.inbox_malformed is not None:
            value["malformed_frames"] = self.inbox_malformed
        payload, buffers = codec.encode_payload(value)
        channel = self._channels.get(DROPS_TOPIC)
        if channel is None:
            channel = writer.register_channel(topic=DROPS_TOPIC,
                                              message_encoding=MESSAGE_ENCODING, schema_id=0)
            self._channels[DROPS_TOPIC] = channel
        writer.add_message(channel_id=channel, log_time=time.time_ns(),
                           data=codec.record_bytes(payload, buffers),
                           publish_time=self._last_publish_time, sequence=0)

    @staticmethod
    def _run_metadata(info: Mapping[str, Any]) -> dict[str, Any]:
        """The run info as metadata: known keys first, then anything else the runtime adds."""
        values: dict[str, Any] = {"format": "catbus-recording/1"}
        for key in RUN_INFO_KEYS:
            if key in info:
                values[key] = info[key]
        for key, value in info.items():
            if key not in values:
                values[str(key)] = value
        values["recorder_started_ns"] = time.time_ns()
        return values

    @staticmethod
    def _versions(info: Mapping[str, Any]) -> str:
        versions = info.get("versions")
        if isinstance(versions, Mapping) and "catbus" in versions:
            return f"catbus {versions['catbus']}"
        return "catbus"


__all__ = ["Recorder", "metadata_strings", "launch_order", "MESSAGE_ENCODING", "METADATA_NAME",
           "END_METADATA_NAME", "DROPS_TOPIC", "PROGRESS_TOPIC", "JSON_KEYS"]
