"""One embedded home: the SQLite log and projection in one database, and its writer lock.

What only the embedded mode has lives here: the format check (an older home is refused, and
``lineage replay`` rebuilds it), catching up after ``replay --until``, and the rebuild itself.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from graph import sqlite_incidents
from graph.sqlite_store import FORMAT, SqliteStore
from lineage.errors import ConfigurationError
from lineage.events import from_micros, micros
from lineage.tracker import Tracker
from runtime import home as homes
from runtime.batching import batched, settle
from runtime.settings import Settings
from streams.local_log import LocalEventLog


class EmbeddedHome:
    """``writer=False`` opens for queries: no lock, nothing written, never blocks."""

    def __init__(self, settings: Settings, writer: bool) -> None:
        self.path = homes.prepare(settings.home)
        database = homes.database(self.path)
        if not writer and not _initialised(database):
            EmbeddedHome(settings, writer=True).close()  # a fresh home: create its tables
        self.lock = homes.WriterLock(self.path, settings.lock_wait_seconds) if writer else None
        try:
            self.log = LocalEventLog(database, read_only=not writer)
            self.store = SqliteStore(self.log.connection, create=writer)
        except BaseException:
            self.close()
            raise

    def check_format(self) -> None:
        """An older home (a pickle checkpoint, no projection tables) must be rebuilt."""
        old = (self.path / homes.OLD_CHECKPOINT).exists()
        stamped = self.store.meta("format")
        if stamped is None and not old and self.log.count() == 0:
            if self.lock is not None:
                self.store.atomically(lambda: self.store.set_meta("format", str(FORMAT)))
            return
        if old or stamped != str(FORMAT):
            raise ConfigurationError(
                f"{self.path} was written by an older version of lineage; "
                "run `lineage replay` to rebuild its graph from the event log"
            )
        if self.store.meta("replaying") is not None:
            raise ConfigurationError(
                f"a replay of {self.path} was interrupted; run `lineage replay` again"
            )

    def catch_up(self, tracker: Tracker, batch: int) -> None:
        """After ``replay --until``: apply what the log holds beyond that time."""
        until = self.store.meta("partial_until")
        if until is None:
            return
        since = from_micros(int(until) + 1)
        for chunk in batched((event for _, event in self.log.read(0, since, None)), batch):
            tracker.apply(chunk)
            settle()
        self.store.atomically(lambda: self.store.set_meta("partial_until", None))

    def replay(
        self,
        tracker: Tracker,
        batch: int,
        since: datetime | None,
        until: datetime | None,
        progress: Callable[[int], None] | None,
    ) -> int:
        """Without ``since`` the projection is rebuilt from an empty one (see
        ``SqliteStore.begin_rebuild``/``finish_rebuild`` for what sinks are sent); with it,
        later events are re-applied on top. ``until`` leaves the graph as observed until
        then, and the next writer to open the home applies the rest."""
        store = self.store
        if since is None:
            self._log_recorded_actions()
            store.atomically(lambda: store.begin_rebuild(bulk=True))
        events = 0
        for chunk in batched((event for _, event in self.log.read(0, since, until)), batch):
            tracker.apply(chunk)
            settle()
            events += len(chunk)
            if progress is not None:
                progress(len(chunk))
        if since is None:
            store.atomically(store.finish_rebuild)
        if until is not None:
            mark = str(micros(until))
            store.atomically(lambda: store.set_meta("partial_until", mark))
        (self.path / homes.OLD_CHECKPOINT).unlink(missing_ok=True)
        return events

    def _log_recorded_actions(self) -> None:
        """A home written before officers' actions went to the log kept them only in
        ``incident_actions``, which a rebuild empties: append them to the log first (those
        already there are duplicates, a no-op), so the rebuild records them again."""
        recorded = sqlite_incidents.action_events(self.log.connection)
        if recorded:
            self.log.append(recorded)

    def close(self) -> None:
        try:
            if hasattr(self, "log"):
                self.log.close()
        finally:
            if self.lock is not None:
                self.lock.release()


def _initialised(database: Path) -> bool:
    probe = LocalEventLog(database, read_only=True)
    try:
        return SqliteStore.initialised(probe.connection)
    finally:
        probe.close()
