"""Writing MCAP fast and durably: an unbuffered file (a killed recorder keeps every complete
chunk) and a chunk builder that writes the same bytes as mcap's own with far fewer calls (most
of the recorder's processor time per message, in a stepped run that shares the machine with the
nodes it records). Third-party internals patched knowingly: if a future mcap lays its writer out
differently, the stock builder stays (slower, same file)."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

from mcap._chunk_builder import ChunkBuilder
from mcap.opcode import Opcode
from mcap.records import Message, MessageIndex
from mcap.writer import Writer


class DirectFile:
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


class FastChunkBuilder(ChunkBuilder):
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
            index = self.message_indices[channel_id] = FastMessageIndex(channel_id=channel_id,
                                                                         records=[])
        records = self.record_writer
        index.records.append((log_time, records.count))
        self.num_messages += 1
        records.write(_MESSAGE_HEAD.pack(Opcode.MESSAGE, _MESSAGE_FIELDS + len(data), channel_id,
                                         message.sequence, log_time, message.publish_time))
        records.write(data)


class FastMessageIndex(MessageIndex):
    """A MessageIndex record written with one ``struct.pack`` instead of two calls per entry
    (the stock ``write`` cost as much as adding the messages); same bytes."""

    def write(self, stream: Any) -> None:
        records = self.records
        flat = [value for record in records for value in record]
        stream.start_record(Opcode.MESSAGE_INDEX)
        stream.write(struct.pack(f"<HI{len(flat)}Q", self.channel_id, len(records) * 16, *flat))
        stream.finish_record()


def use_fast_chunks(writer: Writer) -> None:
    """Give a fresh ``writer`` the :class:`FastChunkBuilder`. The builder is a private
    attribute of mcap's Writer; if a future mcap version lays it out differently, the stock
    builder simply stays (slower, same file)."""
    attribute = "_Writer__chunk_builder"
    current = getattr(writer, attribute, None)
    if type(current) is ChunkBuilder and current.num_messages == 0 and current.count == 0:
        setattr(writer, attribute, FastChunkBuilder())


__all__ = ["DirectFile", "FastChunkBuilder", "FastMessageIndex", "use_fast_chunks"]
