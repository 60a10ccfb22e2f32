"""Reading catbus recordings (MCAP files written by :class:`catbus.recording.recorder.Recorder`).

::

    rec = Recording("runs/a.mcap")
    rec.metadata["seed"], rec.metadata["mode"]
    for m in rec.messages(["env/state"]):
        m.tick, m.sim_time, m.value["robot"]["pos"]

Messages come in file order, which is the order the recorder wrote them (in stepped/inline: tick,
launch-file order, sequence) -- not re-sorted by log time, which would mix up a tick's messages.

A file whose writer was killed has no footer or summary. Such a file is read as a stream from the
start, and reading stops cleanly at the first record that is cut short or damaged: everything up
to the last complete chunk is there (:attr:`Recording.complete` is then ``False``).
"""

from __future__ import annotations

import json
import os
import struct
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from mcap.exceptions import McapError
from mcap.reader import SeekingReader
from mcap.records import Channel, Message, Metadata
from mcap.stream_reader import CRCValidationError, StreamReader

from catbus.wire import codec
from catbus.errors import CatbusError
from catbus.recording.mcap_layout import (CHANNEL_INCARNATION, CHANNEL_PUBLISHER,
                                          END_METADATA_NAME, JSON_KEYS, MESSAGE_ENCODING,
                                          METADATA_NAME)

MCAP_MAGIC = b"\x89MCAP0\r\n"
#: What a record cut short or damaged can raise while it is parsed (the mcap package has no single
#: error type for it): end of data, short reads, bad lengths, failed decompression or CRC.
_TRUNCATION_ERRORS: tuple[type[BaseException], ...] = (
    McapError, CRCValidationError, EOFError, ValueError, KeyError, IndexError, OverflowError,
    MemoryError, UnicodeDecodeError, zlib.error, struct.error,
)
try:  # zstandard is how the recorder compresses; its error type is not a ValueError
    import zstandard as _zstd

    _TRUNCATION_ERRORS += (_zstd.ZstdError,)
except ImportError:  # pragma: no cover
    pass


@dataclass(frozen=True, slots=True)
class RecordedMessage:
    """One recorded message.

    ``tick`` is ``publish_time // base_tick_ns`` (``None`` if the recording names no base tick);
    ``sim_time`` is in seconds; ``data`` is the raw record bytes (``msgpack([payload, *buffers])``)
    and ``value`` the decoded message (arrays are read-only). Equality and hashing ignore
    ``log_time_ns`` and ``value``: two messages are equal when topic, tick, time, sequence and
    bytes are -- what the determinism contract compares.
    """

    topic: str
    tick: int | None
    sim_time: float
    log_time_ns: int = field(compare=False)
    sequence: int
    value: Any = field(compare=False, repr=False)
    data: bytes = field(repr=False)
    #: The process that published it: its node name and incarnation (1 for a node's first
    #: process; more after a hot swap or a restart), from the metadata of its channel (the
    #: recorder keeps a channel per topic, publisher and incarnation). None in recordings made
    #: before catbus recorded them. Recordings made while channels were kept per topic and
    #: incarnation only name, on a topic several nodes publish (``catbus/stats``,
    #: ``catbus/scores``, ``catbus/log``), the node that published there first; their payload's
    #: ``node`` (``name`` for a log record) says who sent each.
    publisher: str | None = field(default=None, compare=False)
    incarnation: int | None = field(default=None, compare=False)


class Recording:
    """A recording on disk. Opening checks the file and reads its metadata; messages are read on
    demand, each call to :meth:`messages` with its own file handle (so iterating twice works)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise CatbusError(f"{self.path}: no such recording")
        if not self.path.is_file():
            raise CatbusError(f"{self.path}: is not a file (expected an .mcap recording)")
        with open(self.path, "rb") as handle:
            magic = handle.read(len(MCAP_MAGIC))
        if magic != MCAP_MAGIC:
            what = "is empty" if not magic else "does not start with the MCAP magic bytes"
            raise CatbusError(f"{self.path}: not an MCAP recording (the file {what})")
        #: False when the file has no valid footer/summary (its writer did not finish).
        self.complete = self._has_footer()
        records = self._read_metadata_records()
        #: The run's metadata (``launch``, ``seed``, ``mode``, ``base_tick_ns``, ``versions``,
        #: ``evaluators``, ``plotters``, ...), JSON values decoded; empty if the file has none.
        self.metadata: dict[str, Any] = records.get(METADATA_NAME, {})
        #: What the recorder wrote at a clean close (``messages``, ``drops``), else empty.
        self.end_metadata: dict[str, Any] = records.get(END_METADATA_NAME, {})
        #: Messages :meth:`messages` met that do not decode (skipped or kept without a value).
        self.undecodable = 0
        #: Every metadata record by name, for files with more than catbus wrote.
        self.all_metadata: dict[str, dict[str, Any]] = records
        base = self.metadata.get("base_tick_ns")
        if isinstance(base, str) and base.strip().isdigit():
            base = int(base)
        #: Nanoseconds per schedule tick (stepped/inline), or None when the file names none.
        self.base_tick_ns: int | None = (base if isinstance(base, int) and not isinstance(base, bool)
                                         and base > 0 else None)

    def __repr__(self) -> str:
        state = "" if self.complete else ", truncated"
        return f"Recording({str(self.path)!r}{state})"

    # -- public API -----------------------------------------------------------------------------
    def topics(self) -> list[str]:
        """Every recorded topic (``catbus/`` bookkeeping included), in order of first use."""
        if self.complete:
            with open(self.path, "rb") as handle:
                summary = SeekingReader(handle).get_summary()
            if summary is not None and summary.channels:   # (a topic may have a channel per
                return list(dict.fromkeys(                  # publishing process)
                    c.topic for c in sorted(summary.channels.values(), key=lambda c: c.id)))
        topics: dict[str, None] = {}
        for record in self._stream_records():
            if isinstance(record, Channel):
                topics.setdefault(record.topic, None)
        return list(topics)

    def messages(self, topics: Iterable[str] | str | None = None, *,
                 decode: bool = True, errors: str = "skip") -> Iterator[RecordedMessage]:
        """Messages on ``topics`` (all if ``None``) in file order.

        ``decode=False`` leaves ``value`` as ``None``, for byte comparisons of long runs. A
        channel with another encoding than ``catbus-msgpack`` gives ``value=None``.

        A message whose bytes do not decode (a file from a recorder before 0.3, which wrote
        such messages into their channel, or another writer's) never spoils the rest of the
        file: with ``errors="skip"`` (the default) it is left out and counted in
        :attr:`undecodable`, and a warning names the first one; ``errors="keep"`` yields it
        with ``value=None``; ``errors="raise"`` raises :class:`~catbus.errors.CatbusError`.
        """
        if errors not in ("skip", "keep", "raise"):
            raise ValueError(f"errors must be 'skip', 'keep' or 'raise', not {errors!r}")
        wanted = {topics} if isinstance(topics, str) else (None if topics is None else set(topics))
        if wanted is not None and not wanted:
            return
        for channel, message in self._channel_messages(wanted):
            data = bytes(message.data)
            value = None
            if decode and channel.message_encoding == MESSAGE_ENCODING:
                try:
                    value = self._decode(channel.topic, message, data)
                except CatbusError as exc:
                    if errors == "raise":
                        raise
                    self.undecodable += 1
                    if self.undecodable == 1:
                        warnings.warn(f"{exc} (left out; Recording.undecodable counts them)",
                                      stacklevel=2)
                    if errors == "skip":
                        continue
            publish_time = message.publish_time
            tick = publish_time // self.base_tick_ns if self.base_tick_ns else None
            metadata = channel.metadata or {}
            incarnation = metadata.get(CHANNEL_INCARNATION)
            yield RecordedMessage(topic=channel.topic, tick=tick,
                                  sim_time=publish_time / 1e9, log_time_ns=message.log_time,
                                  sequence=message.sequence, value=value, data=data,
                                  publisher=metadata.get(CHANNEL_PUBLISHER),
                                  incarnation=int(incarnation) if incarnation and
                                  incarnation.isdigit() else None)

    def __iter__(self) -> Iterator[RecordedMessage]:
        return self.messages()

    def stored_metadata(self) -> list[tuple[str, dict[str, str]]]:
        """Every metadata record as stored: ``(name, {key: string value})`` in file order.

        :attr:`metadata` and :attr:`end_metadata` are these decoded and merged by name; a tool
        that copies a recording (``catbus export``) needs them as they are, also from a file
        cut short (read then by a stream pass that skips chunks, which hold no metadata)."""
        if self.complete:
            with open(self.path, "rb") as handle:
                records: Iterable[Any] = list(SeekingReader(handle).iter_metadata())
        else:
            records = self._stream_records(emit_chunks=True)
        return [(record.name, dict(record.metadata)) for record in records
                if isinstance(record, Metadata)]

    # -- reading --------------------------------------------------------------------------------
    def _has_footer(self) -> bool:
        """True when the file ends with a footer and the closing magic, i.e. its writer finished.

        The magic is checked first: the mcap package would otherwise accept any bytes that happen
        to sit where a footer belongs in a file cut short.
        """
        try:
            with open(self.path, "rb") as handle:
                handle.seek(0, os.SEEK_END)
                if handle.tell() < 2 * len(MCAP_MAGIC) + 9:
                    return False
                handle.seek(-len(MCAP_MAGIC), os.SEEK_END)
                if handle.read(len(MCAP_MAGIC)) != MCAP_MAGIC:
                    return False
                handle.seek(0)
                SeekingReader(handle).get_summary()
                return True
        except _TRUNCATION_ERRORS + (OSError,):
            return False

    def _channel_messages(self, wanted: set[str] | None) -> Iterator[tuple[Channel, Message]]:
        if self.complete:
            with open(self.path, "rb") as handle:
                # log_time_order=False keeps file order (chunk offset, then position in chunk).
                messages = SeekingReader(handle).iter_messages(topics=wanted, log_time_order=False)
                while True:
                    try:
                        _, channel, message = next(messages)
                    except StopIteration:
                        return
                    except _TRUNCATION_ERRORS as exc:
                        raise CatbusError(f"{self.path}: the file is damaged: "
                                          f"{type(exc).__name__}: {exc}") from None
                    yield channel, message
        channels: dict[int, Channel] = {}
        for record in self._stream_records():
            if isinstance(record, Channel):
                channels[record.id] = record
            elif isinstance(record, Message):
                channel = channels.get(record.channel_id)
                if channel is None:
                    raise CatbusError(f"{self.path}: message on channel {record.channel_id}, "
                                      "which the file never defines (the file is damaged)")
                if wanted is None or channel.topic in wanted:
                    yield channel, record

    def _stream_records(self, *, emit_chunks: bool = False) -> Iterator[Any]:
        """Records from the start of the file until its end, or until the first record that is
        cut short or damaged (a file whose writer was killed): then stop without an error.

        CRCs are checked so that a chunk cut short is recognised instead of being misparsed.
        """
        with open(self.path, "rb") as handle:
            reader = StreamReader(handle, validate_crcs=not emit_chunks)
            iterator = iter(reader.records)
            while True:
                try:
                    record = next(iterator)
                except StopIteration:
                    return
                except _TRUNCATION_ERRORS:
                    return
                yield record

    def _read_metadata_records(self) -> dict[str, dict[str, Any]]:
        """Metadata records by name, decoded (see :meth:`stored_metadata`)."""
        found: dict[str, dict[str, Any]] = {}
        for name, values in self.stored_metadata():
            found.setdefault(name, {}).update(_decode_metadata(values))
        return found

    def _decode(self, topic: str, message: Message, data: bytes) -> Any:
        try:
            payload, buffers = codec.split_record_bytes(data)
            return codec.decode_payload(payload, buffers)
        except Exception as exc:
            raise CatbusError(f"{self.path}: message {message.sequence} on {topic} cannot be "
                              f"decoded: {exc}") from None


def _decode_metadata(values: dict[str, str]) -> dict[str, Any]:
    """Undo :func:`catbus.recording.recorder.metadata_strings`. Files from other writers (no
    ``_json_keys``) get every value that parses as JSON decoded."""
    listed = values.get(JSON_KEYS)
    json_keys: set[str] | None = None
    if listed is not None:
        try:
            json_keys = set(json.loads(listed))
        except (ValueError, TypeError):
            json_keys = None
    result: dict[str, Any] = {}
    for key, text in values.items():
        if key == JSON_KEYS:
            continue
        if json_keys is None or key in json_keys:
            try:
                result[key] = json.loads(text)
                continue
            except (ValueError, TypeError):
                pass
        result[key] = text
    return result


__all__ = ["Recording", "RecordedMessage"]
