"""Embedded event log: SQLite in WAL mode with ``synchronous=FULL``, so an acknowledged append
survives a crash. Events are stored in arrival order (``seq``) and deduplicated by event id,
which makes re-ingesting a file or redelivering an event a no-op.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from lineage.errors import StoreError
from lineage.events import Event, dump_event, micros, parse_event
from streams.log import Appended

#: The writer's connection. The projection's index seeks want a warm cache (measured: 1.5x
#: faster projection writes at 20k users with 128 MiB than with the 2 MiB default); rarer
#: checkpoints batch the copy of the WAL into the database.
WRITER_PRAGMAS = (
    "journal_mode=WAL", "synchronous=FULL", "cache_size=-131072", "wal_autocheckpoint=10000",
)  # fmt: skip
#: Every connection. GROUP BY and DISTINCT sort in memory, not in a temp file (the report's
#: aggregates over a million alerts: measured 1.7x faster).
PRAGMAS = ("busy_timeout=10000", "temp_store=MEMORY")

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL,
    event_time INTEGER NOT NULL,
    observed_time INTEGER NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_observed ON events (observed_time);
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    origin TEXT NOT NULL,
    reason TEXT NOT NULL,
    raw BLOB NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    id: int
    at: str
    origin: str
    reason: str
    raw: bytes


class LocalEventLog:
    """The log owns the connection; the embedded projection (``graph.sqlite_store``) shares
    it, so an append and what it derives commit together."""

    def __init__(self, path: Path, read_only: bool = False) -> None:
        """``read_only``: a query-only connection that creates nothing (WAL readers never
        block the writer, nor wait for it)."""
        try:
            self._db = sqlite3.connect(path, isolation_level=None)
            if not read_only:
                for pragma in WRITER_PRAGMAS:
                    self._db.execute(f"PRAGMA {pragma}")
                self._db.executescript(SCHEMA)
            for pragma in PRAGMAS:
                self._db.execute(f"PRAGMA {pragma}")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open event log {path}: {exc}") from exc
        self.path = path

    @property
    def connection(self) -> sqlite3.Connection:
        return self._db

    def append(self, events: Sequence[Event]) -> Appended:
        """Inside an open transaction (the service's unit), append joins it. One lookup of
        the batch's ids and one insert, not a statement per event."""
        own = not self._db.in_transaction
        try:
            if own:
                self._db.execute("BEGIN IMMEDIATE")
            stored = self._stored_bodies([e.event_id for e in events])
            fresh: list[Event] = []
            conflicts: list[Event] = []
            first: dict[str, Event] = {}
            for event in events:
                earlier = first.get(event.event_id)
                if earlier is not None:
                    if not _same(earlier, event):
                        conflicts.append(event)
                    continue
                body = stored.get(event.event_id)
                if body is not None:
                    if not _same(parse_event(body), event):
                        conflicts.append(event)
                    continue
                first[event.event_id] = event
                fresh.append(event)
            self._db.executemany(
                "INSERT INTO events (event_id, type, event_time, observed_time, body) "
                "VALUES (?, ?, ?, ?, ?)",
                [(e.event_id, e.type, micros(e.event_time), micros(e.observed_time),
                  dump_event(e)) for e in fresh],
            )  # fmt: skip
            if own:
                self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            if own:
                self._db.execute("ROLLBACK")
            raise StoreError(f"event log append failed: {exc}") from exc
        return Appended(fresh, conflicts)

    def _stored_bodies(self, event_ids: Sequence[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        unique = list(dict.fromkeys(event_ids))
        for start in range(0, len(unique), 500):
            chunk = unique[start : start + 500]
            marks = ", ".join("?" for _ in chunk)
            rows = self._db.execute(
                f"SELECT event_id, body FROM events WHERE event_id IN ({marks})", chunk
            )
            found.update(rows)
        return found

    def dead_letter(self, raw: bytes, reason: str, origin: str) -> None:
        self._db.execute(
            "INSERT INTO dead_letters (at, origin, reason, raw) VALUES (?, ?, ?, ?)",
            (datetime.now(UTC).isoformat(), origin, reason, raw),
        )

    def dead_letters(self) -> list[DeadLetter]:
        rows = self._db.execute("SELECT id, at, origin, reason, raw FROM dead_letters ORDER BY id")
        return [DeadLetter(*row) for row in rows]

    def read(
        self,
        after_seq: int = 0,
        observed_since: datetime | None = None,
        observed_until: datetime | None = None,
    ) -> Iterator[tuple[int, Event]]:
        """Events in log order; the time bounds select by when the tracker observed them."""
        query = "SELECT seq, body FROM events WHERE seq > ?"
        params: list[int] = [after_seq]
        if observed_since is not None:
            query += " AND observed_time >= ?"
            params.append(micros(observed_since))
        if observed_until is not None:
            query += " AND observed_time <= ?"
            params.append(micros(observed_until))
        cursor = self._db.execute(query + " ORDER BY seq", params)
        while rows := cursor.fetchmany(5_000):
            for seq, body in rows:
                yield seq, parse_event(body)

    def count(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM events").fetchone()[0])

    def last_seq(self) -> int:
        row = self._db.execute("SELECT max(seq) FROM events").fetchone()
        return int(row[0] or 0)

    def close(self) -> None:
        self._db.close()


def _same(stored: Event, event: Event) -> bool:
    """A redelivery (same content; only when we observed it may differ) or a reused id?"""
    return stored.model_copy(update={"observed_time": event.observed_time}) == event
