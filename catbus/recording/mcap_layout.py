"""How catbus lays out an MCAP recording: the names the recorder writes and the reader expects.

One channel per topic and publishing process -- (topic, publisher node, incarnation), named in
the channel's metadata keys :data:`CHANNEL_PUBLISHER` and :data:`CHANNEL_INCARNATION` -- with
``message_encoding`` :data:`MESSAGE_ENCODING`, each message's data
``msgpack([payload, *buffers])`` exactly as received; the run's description in the metadata
record :data:`METADATA_NAME`, what is known only at the end (losses, end reason) in
:data:`END_METADATA_NAME`.
"""

from __future__ import annotations

from typing import Any, Mapping

MESSAGE_ENCODING = "catbus-msgpack"
PROFILE = "catbus"
METADATA_NAME = "catbus"
END_METADATA_NAME = "catbus.end"
#: Metadata key listing the keys whose values are JSON (every other value is a plain string).
JSON_KEYS = "_json_keys"
#: Channel metadata keys: the node that published the channel's messages, and which of its
#: processes (1, then more after a hot swap or a restart; a decimal string). The channel is the
#: only place a message's sender is stored, which is why no two publishers share one.
CHANNEL_PUBLISHER = "publisher"
CHANNEL_INCARNATION = "incarnation"


def launch_nodes(metadata: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """``{name: {"class", "params", ...}}``, in launch order, from the launch document a
    recording's metadata (or a run's ``run_info``) holds under ``launch``: YAML text or already a
    mapping; {} if there is none or it does not parse."""
    import yaml

    launch = metadata.get("launch")
    if isinstance(launch, str):
        try:
            launch = yaml.safe_load(launch)
        except yaml.YAMLError:
            return {}
    nodes = launch.get("nodes") if isinstance(launch, Mapping) else None
    return {str(k): dict(v) for k, v in nodes.items() if isinstance(v, Mapping)} \
        if isinstance(nodes, Mapping) else {}


__all__ = ["MESSAGE_ENCODING", "PROFILE", "METADATA_NAME", "END_METADATA_NAME", "JSON_KEYS",
           "CHANNEL_PUBLISHER", "CHANNEL_INCARNATION", "launch_nodes"]
