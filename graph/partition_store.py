"""One Kafka partition's state store: the embedded store's state and journal, plus the
partition's offset of record and the outbox of changes for the served view.

A production worker keeps one of these per partition it owns, in a local SQLite file. Each
unit commits, in one SQLite transaction, the state's journal rows, the alerts' outbox, the
unit's changes for the view (``lineage.changes``) and the position: the offset of the next
event of this partition to apply. So the position is exactly as far as the state; on
assignment the worker seeks there, whatever Kafka's committed offset says.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from graph.errors import TransientStoreError
from graph.sqlite_store import SqliteStore
from lineage.changes import UnitChange, decode, encode_pieces
from lineage.errors import StoreError
from lineage.event_identity import Claim
from lineage.events import IncidentEvent
from lineage.ports import Writes
from streams.local_log import PRAGMAS, WRITER_PRAGMAS

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS changes (seq INTEGER PRIMARY KEY AUTOINCREMENT, body BLOB NOT NULL);
"""
POSITION = "position"
#: A change's body at most (a unit's rows over it travel as several changes): under Kafka's
#: 1 MiB message limit, with room for the numbering, key and framing.
CHANGE_MAX_BYTES = 900 * 1024
#: How long opening waits for the worker that held the partition to close it.
OPEN_WAIT_S = 60.0


class PartitionStore(SqliteStore):
    """A writer :class:`SqliteStore` whose units also record their changes and position."""

    def __init__(
        self, path: Path | str, partition: int, change_limit: int = CHANGE_MAX_BYTES
    ) -> None:
        # exclusive: a worker that lost the partition but has not closed it yet (it does
        # after its poll) holds it until then, so two processes never apply to one state
        db = sqlite3.connect(str(path), isolation_level=None, timeout=OPEN_WAIT_S)
        try:
            for pragma in ("locking_mode=EXCLUSIVE", *WRITER_PRAGMAS, *PRAGMAS):
                db.execute(f"PRAGMA {pragma}")
            db.execute("BEGIN IMMEDIATE")  # takes the lock now, waiting up to OPEN_WAIT_S
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            db.close()
            raise TransientStoreError(
                f"partition {partition}'s state is busy: {exc}", "sqlite-busy"
            ) from exc
        super().__init__(db, create=True)
        try:
            db.executescript(SCHEMA)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot create the partition's tables: {exc}") from exc
        self.partition = partition
        self._change_limit = change_limit
        self._unit_writes: list[Writes] | None = None
        self._unit_claims: list[Claim] = []
        self._unit_actions: list[IncidentEvent] = []
        self._staged: int | None = None

    # -- the position ------------------------------------------------------------------
    @property
    def position(self) -> int:
        """The offset of the next event to apply (0: nothing applied yet)."""
        value = self.meta(POSITION)
        return int(value) if value is not None else 0

    def stage_position(self, offset: int) -> None:
        """The next unit to commit also moves the position to ``offset`` (never back)."""
        self._staged = offset

    def commit_position(self, offset: int) -> None:
        """Move the position past messages that made no unit (dead letters at a batch's end)."""
        if offset > self.position:
            self.stage_position(offset)
            self.atomically(lambda: None)

    # -- units -------------------------------------------------------------------------
    def atomically(self, work: Callable[[], T]) -> T:
        if self._db.in_transaction:
            return super().atomically(work)

        def unit() -> T:
            self._unit_writes, self._unit_claims, self._unit_actions = [], [], []
            result = work()
            self._end_unit()
            return result

        try:
            return super().atomically(unit)
        finally:
            self._unit_writes, self._unit_claims, self._staged = None, [], None
            self._unit_actions = []

    def _end_unit(self) -> None:
        writes = [w for w in self._unit_writes or () if _any(w)]
        if writes or self._unit_claims or self._unit_actions:
            pieces = encode_pieces(
                writes, self._unit_claims, self._change_limit, self._unit_actions
            )
            self._db.executemany("INSERT INTO changes (body) VALUES (?)", [(p,) for p in pieces])
        if self._staged is not None and self._staged > self.position:
            self.set_meta(POSITION, str(self._staged))

    def write(self, writes: Writes) -> None:
        super().write(writes)
        if self._unit_writes is not None:
            self._unit_writes.append(writes)

    def write_claims(self, fresh: Sequence[Claim], absent: Sequence[str]) -> None:
        super().write_claims(fresh, absent)
        self._unit_claims.extend(fresh)

    def record_incident_actions(self, events: Sequence[IncidentEvent]) -> None:
        """Kept here and sent with the unit's change: the view folds them into its incidents
        (a processor's partition is not where officers read them)."""

        def unit() -> None:
            self._unit_actions.extend(events)
            super(PartitionStore, self).record_incident_actions(events)

        self.atomically(unit)

    def close(self) -> None:
        """This store opened its connection: closing it releases the partition."""
        self._db.close()

    # -- the changes' outbox -----------------------------------------------------------
    def unpublished_changes(self, limit: int = 1_000) -> list[UnitChange]:
        rows = self._db.execute(
            "SELECT seq, body FROM changes ORDER BY seq LIMIT ?", (limit,)
        ).fetchall()
        return [decode(body, self.partition, seq) for seq, body in rows]

    def mark_changes_published(self, upto: int) -> None:
        self.atomically(lambda: self._db.execute("DELETE FROM changes WHERE seq <= ?", (upto,)))


def _any(w: Writes) -> bool:
    return bool(w.facts or w.dropped or w.copies or w.alerts)
