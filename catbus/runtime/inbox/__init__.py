"""What a node has received, and which of it the node sees at a step.

The inbox is pure bookkeeping (no sockets), shared by the three runners so that they hand a node
exactly the same inputs. :class:`Inbox` composes three parts, each usable and tested alone:

* :mod:`.admission` -- who may publish what, which process of a publisher is listened to,
  sequence numbers; what it refuses, it counts (``malformed``, ``duplicates``, ``dropped``);
* :mod:`.progress` -- how far each peer has completed (its ``catbus/progress`` messages and the
  ``through`` its data carries), its end of the episode, its final word, what it has heard;
* :mod:`.buffers` -- the admitted messages per input, and which of them a step gets (by tick
  in ``stepped`` / ``inline``, the newest or all in ``parallel``, in order for reactive nodes).

Before any of them, the facade checks who sent a message: a node receives each neighbour's
messages on a socket of their own (:mod:`catbus.runtime.dataplane`), so a message whose header
names another publisher than the socket's neighbour is forged, refused and counted against the
neighbour that sent it (docs/design.md, "Data plane": provenance from the transport).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Callable, Collection, Iterable, Mapping, Sequence

import msgpack

from catbus.runtime.inbox.admission import Admission
from catbus.runtime.inbox.buffers import (ALL, Buffers, InputBinding, LocalMessage, Message,
                                          Received, Shared)
from catbus.runtime.inbox.progress import (PeerProgress, PeersProgress, end_problem,
                                           progress_problem)
from catbus.wire import codec
from catbus.wire.protocol import HELLO_PREFIX, PROGRESS_TOPIC

__all__ = ["ALL", "Admission", "Buffers", "Frames", "Inbox", "InputBinding", "LocalMessage",
           "Message", "PeerProgress", "PeersProgress", "Received", "Shared", "end_problem",
           "progress_problem"]


class Frames(list):
    """The frames of one received message and ``source``: the neighbour whose socket it came
    in on (the transport's word for who sent it, where the header's is the sender's own).
    A list, so that whatever takes a message's frames takes these."""

    __slots__ = ("source",)

    def __init__(self, frames: Iterable[Any] = (), source: str | None = None) -> None:
        super().__init__(frames)
        self.source = source


def _buffer(frame: Any) -> Any:
    """A frame's bytes without a copy: bytes as they are, a ``zmq.Frame`` as its buffer."""
    if type(frame) is bytes:
        return frame
    return frame.buffer if hasattr(frame, "buffer") else frame


_open_envelope = codec.open_envelope
_unpack_header = codec.Header.unpack
#: What a frame that is not a catbus message raises on the way in.
_NOT_A_MESSAGE = (codec.DecodeError, ValueError, TypeError, IndexError, msgpack.UnpackException)


class Inbox:
    """A node's inbox: frames in, admitted (:class:`Admission`), their progress noted
    (:class:`PeersProgress`) and buffered (:class:`Buffers`); inputs out.

    The methods the runtime calls per step are the parts' own, bound here (no call through the
    facade); :meth:`add_frames` and :meth:`add_local` hold the parts' methods bound too. The
    facade's attributes are the parts' containers (the same objects) and, as properties, their
    settings and counters.
    """

    # Bound in __init__: Buffers' take_by_tick, take_latest, take_raw_through, take_raw_all,
    # resume_after and topic_of; PeersProgress's through, end_tick, all_final and set_sources.
    take_by_tick: Callable[[Mapping[str, int]], dict[str, Any]]
    take_latest: Callable[[], dict[str, Any]]
    take_raw_through: Callable[[int], list[Message]]
    take_raw_all: Callable[[], list[Message]]
    resume_after: Callable[[Mapping[str, int], int], None]
    topic_of: Callable[[str], str]
    through: Callable[[str], int]
    end_tick: Callable[[], int | None]
    all_final: Callable[[Sequence[str]], bool]
    set_sources: Callable[[Mapping[str, Collection[str]]], None]

    def __init__(self, inputs: Sequence[InputBinding], order: Mapping[str, int], *,
                 reactive: bool = False) -> None:
        self.buffers = buffers = Buffers(inputs, order, reactive=reactive)
        self.peers = peers = PeersProgress()
        self.admission = admission = Admission(peers.through)
        peers.newest_tick = admission.newest_tick
        #: Frames that are not catbus messages (envelope, header), and what callers count as
        #: malformed through :attr:`malformed` (payloads they failed to decode).
        self.unreadable = 0
        #: Messages whose header names another publisher than the neighbour whose socket they
        #: came in on (see :meth:`add_frames`).
        self.forged = 0
        #: neighbour -> frames refused at the facade (unreadable, forged) that came on its
        #: socket; :attr:`malformed_from` adds the parts' own counts.
        self._refused_from: defaultdict[str, int] = defaultdict(int)
        #: Nodes without a period (from the graph): in a stepped run they cannot end the
        #: episode (see :attr:`PeersProgress.cannot_end`).
        self._reactive: frozenset[str] = frozenset()
        # The parts' containers, shared (never replaced) so callers can bind them once.
        self.inputs = buffers.inputs
        self.wildcard = buffers.wildcard
        self.in_order = buffers.in_order
        self.by_topic = buffers.by_topic
        self.declared_of = buffers.declared_of
        self.raw = buffers.raw
        self.progress = peers.progress
        self.heard = peers.heard
        # The hot path, bound once: add_frames and add_local call these without a lookup.
        self._admit = admission.admit
        self._queue = buffers.file
        self._carry = peers.carry
        self._add_progress = peers.add_progress
        self.take_by_tick = buffers.take_by_tick
        self.take_latest = buffers.take_latest
        self.take_raw_through = buffers.take_raw_through
        self.take_raw_all = buffers.take_raw_all
        self.resume_after = buffers.resume_after
        self.topic_of = buffers.topic_of
        self.through = peers.through
        self.end_tick = peers.end_tick
        self.all_final = peers.all_final
        self.set_sources = peers.set_sources

    # -- receiving ------------------------------------------------------------------------------
    def add_frames(self, frames: Sequence[Any], source: str | None = None) -> Received | None:
        """Take one multipart message (zmq.Frame objects or bytes). Returns the data message, or
        None for progress, malformed frames, refused messages and topics we did not ask for.

        ``source`` (or, for :class:`Frames`, their own ``source``) is the neighbour whose socket
        the message came in on: a message whose header names another publisher is forged --
        refused, counted in ``malformed`` and against ``source`` -- and never reaches the
        parts, so it cannot displace anything of the publisher it names (its sequence numbers,
        process, progress). None: the caller vouches for the header (inline, tests)."""
        # Runs once per message on every receiver: _buffer is called only for frames that are
        # not bytes already (receive_frames hands over the envelope as bytes).
        if source is None and type(frames) is Frames:
            source = frames.source
        try:
            first = frames[0]
            topic, header, payload = _open_envelope(
                first if type(first) is bytes else bytes(_buffer(first)))
            header = _unpack_header(header)
            if source is not None and header.publisher != source:
                self.forged += 1
                self._refused_from[source] += 1
                return None
            if topic == PROGRESS_TOPIC:
                self._add_progress(payload, header.publisher)
                return None
        except _NOT_A_MESSAGE:
            self.unreadable += 1
            if source is not None:
                self._refused_from[source] += 1
            return None
        if topic.startswith(HELLO_PREFIX):
            return None
        buffers = [_buffer(frame) for frame in frames[1:]] if len(frames) > 1 else []
        message = Received(topic, header, payload, buffers)
        publisher = header.publisher
        seq = header.seq
        tick = header.tick
        # Admitted first: the first message of a new process of a publisher sets what of it is
        # dropped (Admission's floors) from the progress known before this message.
        filed = self._admit(topic, publisher, seq, tick, header.incarnation) and \
            self._queue(message, topic, publisher, seq, tick)
        through = header.through
        if through is not None:
            self._carry(publisher, topic, through)
        return message if filed else None

    def add_local(self, message: LocalMessage) -> None:
        """Take one in-process data message (inline): :meth:`add_frames` without the frames
        (and without ``through``: inline messages carry no progress)."""
        topic = message.topic
        publisher = message.publisher
        seq = message.seq
        tick = message.tick
        if self._admit(topic, publisher, seq, tick):
            self._queue(message, topic, publisher, seq, tick)

    def set_latency(self, keys: Mapping[str, Callable[[int], int]]) -> None:
        """Readers of a publisher with latency: file its messages by when they become visible
        (:meth:`Buffers.set_keys`, :mod:`catbus.runtime.latency`); those queued already are
        filed again."""
        self.buffers.set_keys(keys)
        self._queue = self.buffers.file

    # -- the parts' settings and counters, under the names the runtime uses ---------------------
    @property
    def owners(self) -> dict[str, str]:
        """topic -> the node the run assigned it to (see :attr:`Admission.owners`)."""
        return self.admission.owners

    @owners.setter
    def owners(self, owners: dict[str, str]) -> None:
        self.admission.owners = owners

    @property
    def last_tick(self) -> int | None:
        """Stepped: the schedule's last tick (see :attr:`Admission.last_tick`)."""
        return self.admission.last_tick

    @last_tick.setter
    def last_tick(self, tick: int | None) -> None:
        self.admission.last_tick = tick
        self._rules_for_ends()

    @property
    def reactive(self) -> frozenset[str]:
        """The run's nodes without a period (from the graph; see :attr:`PeersProgress.
        cannot_end`)."""
        return self._reactive

    @reactive.setter
    def reactive(self, names: Iterable[str]) -> None:
        self._reactive = frozenset(names)
        self._rules_for_ends()

    def _rules_for_ends(self) -> None:
        """Who may end the episode: in a stepped run (a last tick is known) not a node without
        a period; in a parallel run anyone (docs/design.md, "Lockstep by progress")."""
        self.peers.cannot_end = self._reactive if self.admission.last_tick is not None \
            else frozenset()

    @property
    def received(self) -> int:
        return self.admission.received

    @property
    def dropped(self) -> int:
        return self.admission.dropped

    @property
    def duplicates(self) -> int:
        return self.admission.duplicates

    @property
    def advances(self) -> int:
        """Changes of any peer's progress (see :attr:`PeersProgress.advances`)."""
        return self.peers.advances

    @property
    def end(self) -> int | None:
        """The earliest end any peer announced."""
        return self.peers.end

    @property
    def malformed(self) -> int:
        """Everything refused as not a message this node may be sent, whichever part refused
        it: one count in the node's statistics (docs/protocol.md, "Validation")."""
        return (self.unreadable + self.forged + self.admission.malformed + self.peers.malformed
                + self.buffers.malformed)

    @malformed.setter
    def malformed(self, count: int) -> None:
        # ``inbox.malformed += 1`` from a caller: the difference is the caller's own count.
        self.unreadable += count - self.malformed

    @property
    def malformed_from(self) -> dict[str, int]:
        """``malformed`` by sender: the neighbour whose socket a refused message came in on
        (forged and unreadable frames), else the publisher its header names (the parts'
        refusals, made after the header was checked against the socket). A new dict, sorted by
        name; messages a caller counted through :attr:`malformed` have no sender and are not
        in it."""
        counts: defaultdict[str, int] = defaultdict(int)
        for part in (self._refused_from, self.admission.malformed_from,
                     self.peers.malformed_from, self.buffers.malformed_from):
            for sender, count in part.items():
                if count:
                    counts[sender] += count
        return dict(sorted(counts.items()))
