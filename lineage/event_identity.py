"""Who owns an ``event_id`` on a log that cannot refuse a message.

The embedded log refuses a second event with a known id and other content when it appends.
Kafka accepts every message, so the projector decides when it applies: the first content
applied under an id owns it, a later message with the same id and the same content is a
redelivery (applied again, a no-op), and one with other content is a reused id (dead-lettered,
never applied). What was applied is recorded as claims in the graph store, in the same unit as
the facts, so a replay or a second worker decides the same way.

A flow or use too big for one Kafka message travels in parts (``lineage-part: i/n``), each an
event with the same id and a share of the identifiers. Such a message makes two claims: the
envelope (everything but the identifiers, and ``n``) under the id, and its part under
``id#i``. An unsplit message makes one, its whole content under the id; since the envelope
counts the parts, a whole event and a split one with the same id never agree.

Content means what the producer said: ``observed_time`` (when the tracker received it) is left
out, as the embedded log does.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, timedelta

from lineage.errors import InvalidEventError
from lineage.events import Event

#: At most this many parts: ``fit_message`` halves a list until each part fits 1 MiB, so even
#: a million identifiers need far fewer.
MAX_PARTS = 4096
_PART = re.compile(r"([1-9][0-9]{0,3})/([1-9][0-9]{0,3})")


@dataclass(frozen=True, order=True)
class Part:
    index: int  # 1-based
    count: int

    @classmethod
    def parse(cls, text: bytes | str) -> Part:
        """The ``lineage-part`` header; anything but ``i/n`` with 1 <= i <= n <= MAX_PARTS is
        refused with a reason that does not echo it."""
        if isinstance(text, bytes):
            text = text.decode("ascii", errors="replace")
        match = _PART.fullmatch(text)
        if match is None:
            raise InvalidEventError("lineage-part header: expected 'i/n'")
        index, count = int(match[1]), int(match[2])
        if not 1 <= index <= count <= MAX_PARTS:
            raise InvalidEventError(f"lineage-part header: expected 1 <= i <= n <= {MAX_PARTS}")
        return cls(index, count)

    def header(self) -> bytes:
        """The ``lineage-part`` header's value, as ``parse`` reads it."""
        return f"{self.index}/{self.count}".encode()


@dataclass(frozen=True)
class Claim:
    key: str  # an event id, or "id#i" for a part (ids never contain "#")
    digest: str


def digest(event: Event, leave_out: frozenset[str] = frozenset(), parts: int = 1) -> str:
    """Of the model's JSON (fields in declaration order), the time in UTC: equal events, as
    the embedded log compares them (one instant is one time, whatever its offset), give
    equal bytes."""
    if event.event_time.utcoffset() != timedelta(0):
        event = event.model_copy(update={"event_time": event.event_time.astimezone(UTC)})
    content = event.model_dump_json(exclude={"observed_time", *leave_out}).encode()
    if parts != 1:
        content += b"/%d" % parts
    return hashlib.sha256(content).hexdigest()[:32]


def claims_of(event: Event, part: Part | None = None) -> tuple[Claim, ...]:
    if part is None or part.count == 1:
        return (Claim(event.event_id, digest(event)),)
    envelope = digest(event, frozenset({"identifiers"}), part.count)
    return (
        Claim(event.event_id, envelope),
        Claim(f"{event.event_id}#{part.index}", digest(event)),
    )


@dataclass(frozen=True)
class Decision:
    accepted: list[bool]  # per message, in order
    fresh: list[Claim]  # claims the accepted messages make that were not stored yet


def decide(messages: Sequence[Sequence[Claim]], stored: Mapping[str, str]) -> Decision:
    """In message order: a message whose every claim is absent or equal to what is owned is
    accepted and owns its new claims; one that disagrees with any claim is refused whole (and
    owns nothing, so a refused message never shapes a later decision)."""
    owned = dict(stored)
    accepted: list[bool] = []
    fresh: list[Claim] = []
    for claims in messages:
        ok = all(owned.get(c.key, c.digest) == c.digest for c in claims)
        if ok:
            for claim in claims:
                if claim.key not in owned:
                    owned[claim.key] = claim.digest
                    fresh.append(claim)
        accepted.append(ok)
    return Decision(accepted, fresh)


def reused_reason(event: Event) -> str:
    """The same words as the embedded log's refusal (ids are letters, digits and . _ : -)."""
    return f"event id {event.event_id!r} reused with other content"
