"""How catbus lays out an MCAP recording: the names the recorder writes and the reader expects.

One channel per topic with ``message_encoding`` :data:`MESSAGE_ENCODING`, each message's data
``msgpack([payload, *buffers])`` exactly as received; the run's description in the metadata
record :data:`METADATA_NAME`, what is known only at the end (losses, end reason) in
:data:`END_METADATA_NAME`.
"""

MESSAGE_ENCODING = "catbus-msgpack"
PROFILE = "catbus"
METADATA_NAME = "catbus"
END_METADATA_NAME = "catbus.end"
#: Metadata key listing the keys whose values are JSON (every other value is a plain string).
JSON_KEYS = "_json_keys"

__all__ = ["MESSAGE_ENCODING", "PROFILE", "METADATA_NAME", "END_METADATA_NAME", "JSON_KEYS"]
