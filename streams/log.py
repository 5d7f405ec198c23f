"""The event-log port: where events are made durable before anything is derived from them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from lineage.events import Event


class EventLog(Protocol):
    def append(self, events: Sequence[Event]) -> list[Event]:
        """Make events durable; return those that were not in the log yet (if it can tell)."""

    def dead_letter(self, raw: bytes, reason: str, origin: str) -> None:
        """Keep a rejected input with its reason; nothing is silently dropped."""

    def close(self) -> None: ...
