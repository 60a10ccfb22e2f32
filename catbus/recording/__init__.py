"""Recordings: the recorder node that writes MCAP, the reader, evaluation and the
stepped-equals-inline check."""

from catbus.recording.reader import RecordedMessage, Recording

__all__ = ["Recording", "RecordedMessage"]
