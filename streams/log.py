"""The event-log port: where events are made durable before anything is derived from them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from lineage.events import Event


@dataclass(frozen=True)
class Appended:
    """What an append did: new events, and events whose id the log already holds for
    different content (an id is a promise of identity; reusing it is an error)."""

    fresh: list[Event]
    conflicts: list[Event] = field(default_factory=list)


class EventLog(Protocol):
    def append(self, events: Sequence[Event]) -> Appended:
        """Make events durable. A log that cannot tell duplicates reports every event fresh."""

    def dead_letter(self, raw: bytes, reason: str, origin: str) -> None:
        """Keep a rejected input with its reason; nothing is silently dropped."""

    def close(self) -> None: ...
