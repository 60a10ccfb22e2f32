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
  :meth:`Recorder.close`).

Why these choices: a file must survive the recorder being killed (SIGKILL, power of a laptop lid),
so data goes to the OS as soon as each chunk is complete (the file object is unbuffered) and chunks
are moderate in size and also closed after ``flush_interval`` seconds of wall time. A reader then
recovers everything up to the last complete chunk (see :mod:`catbus.recording.reader`).
"""

from __future__ import annotations

import json
import os
import struct
import time
from pathlib import Path
from typing import Any, Mapping, NamedTuple, Sequence

from mcap._chunk_builder import ChunkBuilder
from mcap.opcode import Opcode
from mcap.records import Message, MessageIndex
from mcap.writer import CompressionType, Writer

from catbus.wire import codec
from catbus.node import Input, Node
from catbus.params import Param
from catbus.wire.protocol import (DROPS_TOPIC, EVERY_TOPIC, PROGRESS_TOPIC, SCORES_TOPIC,
                                  STATS_TOPIC, SWAP_TOPIC)

from catbus.recording.mcap_layout import (CHANNEL_INCARNATION, CHANNEL_PUBLISHER,
                                          END_METADATA_NAME, JSON_KEYS, MESSAGE_ENCODING,
                                          METADATA_NAME, PROFILE, launch_nodes)

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


def launch_order(run_info: Mapping[str, Any]) -> dict[str, int]:
    """Node name -> its place in the run's launch file, read from ``run_info["launch"]`` (the
    launch document, YAML text or already a mapping); {} if there is none.

    The recorder needs the order the runtime schedules by (tick, launch order) to write what
    arrives out of schedule -- the nodes' ``catbus/stats`` -- in that order too, and the launch
    document is the one place a node is told it (the same text the recording stores)."""
    return {name: index for index, name in enumerate(launch_nodes(run_info))}


class _Held(NamedTuple):
    """A message received but written only at close (see :meth:`Recorder.close`): the sort key
    first, then what ``add_message`` needs."""

    key: tuple[int, int, str, int, int]   # tick, launch order, node, incarnation, seq
    topic: str
    publisher: str
    incarnation: int
    log_time: int
    publish_time: int
    sequence: int
    data: bytes


class _DirectFile:
    """An unbuffered, write-everything file for :class:`mcap.writer.Writer`.

    The writer keeps the chunk in progress in memory and writes whole records; with a buffered
    file the last complete chunk could still sit in Python's buffer when the process is killed.
    Writing straight to the OS makes "everything up to the last complete chunk" hold. (The class
    deliberately is not a ``RawIOBase``: the writer would wrap that in a ``BufferedWriter``.)
    """

    def __init__(self, path: Path) -> None:
        self._raw = open(path, "wb", buffering=0)

    def write(self, data: bytes | memoryview) -> int:
        view = memoryview(data)
        total = 0
        while total < len(view):
            written = self._raw.write(view[total:])
            if written is None:  # pragma: no cover - only for non-blocking files
                continue
            total += written
        return total

    def tell(self) -> int:
        return self._raw.tell()

    def flush(self) -> None:
        """Nothing is buffered here; the data is with the OS after each ``write``."""

    def close(self) -> None:
        self._raw.close()


#: A Message record up to its data: opcode, record length, channel id, sequence, log time,
#: publish time (MCAP spec, "Message (op=0x05)").
_MESSAGE_HEAD = struct.Struct("<BQHIQQ")
_MESSAGE_FIELDS = _MESSAGE_HEAD.size - 9   # the record length counts the body, not op + length


class _FastChunkBuilder(ChunkBuilder):
    """mcap's chunk builder with a cheaper ``add_message`` that writes the very same bytes.

    The stock one builds each Message record with seven small writes, ``struct.pack`` calls and
    a seek back to patch the length: most of the recorder's processor time per message in a
    stepped run (where the recorder shares the machine with the nodes it records). Here the
    record head is one ``struct.pack``; chunk times and the message index are kept exactly as
    the stock builder keeps them (tests compare the files byte for byte).
    """

    def add_message(self, message: Message) -> None:
        log_time, channel_id, data = message.log_time, message.channel_id, message.data
        if self.num_messages == 0 or log_time < self.message_start_time:
            self.message_start_time = log_time
        if log_time > self.message_end_time:
            self.message_end_time = log_time
        index = self.message_indices.get(channel_id)
        if index is None:
            index = self.message_indices[channel_id] = _FastMessageIndex(channel_id=channel_id,
                                                                         records=[])
        records = self.record_writer
        index.records.append((log_time, records.count))
        self.num_messages += 1
        records.write(_MESSAGE_HEAD.pack(Opcode.MESSAGE, _MESSAGE_FIELDS + len(data), channel_id,
                                         message.sequence, log_time, message.publish_time))
        records.write(data)


class _FastMessageIndex(MessageIndex):
    """A MessageIndex record written with one ``struct.pack`` instead of two calls per entry
    (the stock ``write`` cost as much as adding the messages); same bytes."""

    def write(self, stream: Any) -> None:
        records = self.records
        flat = [value for record in records for value in record]
        stream.start_record(Opcode.MESSAGE_INDEX)
        stream.write(struct.pack(f"<HI{len(flat)}Q", self.channel_id, len(records) * 16, *flat))
        stream.finish_record()


def _use_fast_chunks(writer: Writer) -> None:
    """Give a fresh ``writer`` the :class:`_FastChunkBuilder`. The builder is a private
    attribute of mcap's Writer; if a future mcap version lays it out differently, the stock
    builder simply stays (slower, same file)."""
    attribute = "_Writer__chunk_builder"
    current = getattr(writer, attribute, None)
    if type(current) is ChunkBuilder and current.num_messages == 0 and current.count == 0:
        setattr(writer, attribute, _FastChunkBuilder())


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
    _writer: Writer | None = None
    _file: _DirectFile | None = None
    _closed: bool = False
    path: Path | None = None
    drops: int = 0
    messages_written: int = 0
    malformed: int = 0       # payloads that do not decode: counted, never written
    bad_seq: int = 0         # sequence jumps the stream contradicted (see _count_sequence)
    #: Frames the runtime refused before they reached on_raw (bad envelope, header or
    #: progress: its inbox's ``malformed``), set by the runtime before close(); None if not.
    inbox_malformed: int | None = None
    #: What the run's registry had refused (control messages, connections) when the recorder
    #: last heard it, set by the runtime before close(); None if not known (inline).
    registry_refused: int | None = None

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
        #: catbus/stats messages, written at close in a fixed order (see close())
        self._held: list[_Held] = []
        self._last_seq: dict[tuple[str, str], int] = {}
        self._received: dict[tuple[str, str], int] = {}
        self.drops_by_stream: dict[tuple[str, str], int] = {}
        self.restarts_by_stream: dict[tuple[str, str], int] = {}
        self.drops = 0
        self.messages_written = 0
        self.malformed = 0
        self.bad_seq = 0
        #: (publisher, topic) -> (seq before, messages counted lost) of a jump just seen
        self._jumps: dict[tuple[str, str], tuple[int, int]] = {}
        self._last_publish_time = 0
        self._closed = False
        self._flush_interval = float(params.get("flush_interval", 2.0))
        self._last_flush = time.monotonic()
        self._tick_warned = False
        #: node -> its latest reported scores (from ``catbus/scores``)
        self.reported: dict[str, dict] = {}
        #: nodes that went on mid-episode without their state (see :meth:`_keep_splice`)
        self.spliced: list[dict[str, Any]] = []
        info = getattr(self, "run_info", None) or {}
        base = info.get("base_tick_ns")
        self._base_tick_ns = base if isinstance(base, int) and base > 0 else None
        self._check_ticks = info.get("mode") in ("stepped", "inline")
        self._order = launch_order(info)

        self.path = Path(os.path.expanduser(str(params.get("path", "run.mcap"))))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = _DirectFile(self.path)
        chunk_size = max(1024, int(params.get("chunk_size", 256 * 1024)))
        self._writer = Writer(self._file, chunk_size=chunk_size,
                              compression=CompressionType.ZSTD)
        _use_fast_chunks(self._writer)
        self._writer.start(profile=PROFILE, library=f"catbus-recorder ({self._versions(info)})")
        self._writer.add_metadata(METADATA_NAME, metadata_strings(self._run_metadata(info)))

    def on_raw(self, topic: str, header: codec.Header, payload: bytes | memoryview,
               buffers: Sequence[Any]) -> None:
        """Write one received message, in call order (the runtime already ordered the calls)."""
        if topic == PROGRESS_TOPIC:
            return
        writer = self._writer
        if writer is None:
            raise RuntimeError("Recorder.on_raw called before setup() or after close()")
        # Its sequence number counts even if the payload is refused below: it arrived, so it
        # is not a loss.
        self._count_sequence(header.publisher, topic, header.seq)
        try:
            # The same check every reader of the file will make: a message whose payload does
            # not decode is counted and dropped here, never written into its channel (where
            # it made Recording.messages() raise for the whole file).
            codec.decode_payload(payload, buffers)
        except codec.DecodeError:
            self.malformed += 1
            return
        if topic == SCORES_TOPIC:
            self._keep_scores(payload, buffers)
        elif topic == SWAP_TOPIC:
            self._keep_splice(payload, buffers)
        # Header.unpack bounds sim_time (finite, within +-2**34 s), so this fits MCAP's u64.
        publish_time = min(max(0, round(header.sim_time * 1e9)), _UINT64)
        self._check_tick(topic, header, publish_time)
        self._last_publish_time = max(self._last_publish_time, publish_time)
        if topic == STATS_TOPIC:
            self._hold(topic, header, publish_time, codec.record_bytes(payload, buffers))
            return
        writer.add_message(channel_id=self._channel(writer, topic, header.publisher,
                                                    header.incarnation),
                           log_time=time.time_ns(), data=codec.record_bytes(payload, buffers),
                           publish_time=publish_time, sequence=header.seq & _UINT32)
        self.messages_written += 1
        if self._flush_interval > 0 and time.monotonic() - self._last_flush > self._flush_interval:
            writer.flush()
            self._last_flush = time.monotonic()

    def close(self) -> None:
        """Write the held-back ``catbus/stats``, the drop report and the summary, and close the
        file. Safe to call twice.

        Every node sends its ``catbus/stats`` as it leaves, after its last tick. Which node
        leaves first depends on the machine, and so does where a stepped recorder delivers the
        message: with the last tick (if it came before the last node's progress) or after it.
        Written as they came, the same run gave its statistics in a different order from one
        recording to the next. They are written here instead, once all have come, sorted by
        (tick, launch order, incarnation): a fixed order, the schedule's.
        """
        if self._closed:
            return
        self._closed = True
        writer, self._writer = self._writer, None
        file, self._file = self._file, None
        try:
            if writer is not None:
                self._write_held(writer)
                self._write_drops(writer)
                from catbus.api.result import merge_reported

                writer.add_metadata(END_METADATA_NAME, metadata_strings({
                    "messages": self.messages_written, "drops": self.drops,
                    "malformed": self.malformed, "bad_seq": self.bad_seq,
                    "malformed_frames": self.inbox_malformed,
                    "registry_refused": self.registry_refused,
                    "closed_at_ns": time.time_ns(),
                    "scores": merge_reported(getattr(self, "reported", {})),
                    "spliced": list(getattr(self, "spliced", []))}))
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

    def _hold(self, topic: str, header: codec.Header, publish_time: int, data: bytes) -> None:
        """Keep a message to be written at close, in schedule order (see :meth:`close`). Nodes
        missing from the launch document (none in a run catbus launched) sort after the others,
        by name."""
        place = self._order.get(header.publisher, len(self._order))
        self._held.append(_Held((header.tick, place, header.publisher, header.incarnation,
                                 header.seq), topic, header.publisher, header.incarnation,
                                time.time_ns(), publish_time, header.seq & _UINT32, data))

    def _write_held(self, writer: Writer) -> None:
        """Write the held-back messages sorted by their key (tick, launch order, node,
        incarnation, seq), then bytes: two messages with one key (a resent or forged frame)
        must not fall back on arrival order either."""
        held = sorted(getattr(self, "_held", ()), key=lambda message: (message.key, message.data))
        self._held = []
        for message in held:
            writer.add_message(channel_id=self._channel(writer, message.topic, message.publisher,
                                                        message.incarnation),
                               log_time=message.log_time, data=message.data,
                               publish_time=message.publish_time, sequence=message.sequence)
            self.messages_written += 1

    def _keep_splice(self, payload: bytes | memoryview, buffers: Sequence[Any]) -> None:
        """A ``catbus/swap`` event of a node that went on without its state -- restarted
        fresh, or swapped after its process died -- makes the episode a spliced one:
        ``catbus.end`` lists it, and ``catbus eval`` says so beside the scores."""
        value = codec.decode_payload(payload, buffers)
        if not isinstance(value, Mapping) or value.get("state") != "fresh":
            return
        if value.get("kind") == "restart" or (value.get("kind") == "swap"
                                              and value.get("old_died")):
            self.spliced.append({"node": str(value.get("node", "")), "tick": value.get("tick"),
                                 "kind": str(value.get("kind")), "state": "fresh"})

    def _keep_scores(self, payload: bytes | memoryview, buffers: Sequence[Any]) -> None:
        """A node's ``catbus/scores`` message: keep its newest score set for ``catbus.end``."""
        try:
            value = codec.decode_payload(payload, buffers)
        except Exception:   # a bad payload is counted nowhere and never fails the recording
            return
        if isinstance(value, Mapping) and isinstance(value.get("scores"), Mapping):
            self.reported[str(value.get("node", ""))] = dict(value["scores"])

    def _count_sequence(self, publisher: str, topic: str, seq: int) -> None:
        """Sequence numbers are per (publisher, topic) and start at 0, so a gap is a loss.

        A number lower than expected means the publisher restarted (a hot swap starts a new
        process under the same name): it is counted as a restart, not as a loss.

        A jump that the stream then contradicts -- the next message goes on right after the
        number before the jump, e.g. 100, 1000000, 101 -- was one message with a bad ``seq`` (a
        forged or corrupt header), not a loss: its count is taken back and it is counted in
        ``bad_seq`` instead (so one frame cannot add a million drops).
        """
        key = (publisher, topic)
        last = self._last_seq.get(key, -1)
        expected = last + 1
        jump = self._jumps.pop(key, None) if self._jumps else None
        if jump is not None and seq == jump[0] + 1:
            before, lost = jump
            self.drops -= lost
            self.drops_by_stream[key] -= lost
            self.bad_seq += 1
            expected = before + 1
        if seq > expected:
            lost = seq - expected
            self.drops += lost
            self.drops_by_stream[key] = self.drops_by_stream.get(key, 0) + lost
            self._jumps[key] = (expected - 1, lost)
        elif seq < expected:
            self.restarts_by_stream[key] = self.restarts_by_stream.get(key, 0) + 1
        self._last_seq[key] = seq
        self._received[key] = self._received.get(key, 0) + 1

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
        streams = [
            {"publisher": publisher, "topic": topic, "received": received,
             "lost": self.drops_by_stream.get((publisher, topic), 0),
             "restarts": self.restarts_by_stream.get((publisher, topic), 0)}
            for (publisher, topic), received in sorted(self._received.items())
        ]
        value = {"total": self.drops, "streams": streams,
                 "malformed": self.malformed, "bad_seq": self.bad_seq}
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
