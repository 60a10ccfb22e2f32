"""What travels between processes: the message codec, the protocol's names and constants, and the
control-plane messages. Pure: no sockets, no threads; any language can implement it from
``docs/protocol.md``."""
