"""How a batch of events is recorded, one strategy per deployment, chosen once at open.

The modes differ in what a durable append implies, not in what the core computes:

- embedded (:class:`InOneTransaction`): log and projection share a SQLite database, so the
  append, the projection, its alerts and the outbox commit together;
- producer (:class:`AppendOnly`): the Kafka log only; the worker applies;
- a local log feeding Neo4j (:class:`AppendThenApply`): two systems and no shared transaction,
  so every valid event of a batch is applied, not only the fresh ones, and re-sending a batch
  repairs a crash between the append and the apply (the tracker is idempotent).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from graph.store import GraphStore
from lineage.alerts import Alert
from lineage.events import Event
from lineage.tracker import Tracker
from runtime.faults import fault_point
from streams.log import Appended, EventLog


class Recording(Protocol):
    #: Whether this process applies what it records, and so delivers the store's outbox. A
    #: process that only appends (``lineage ingest --kafka``) must leave the outbox to the
    #: worker that applies: draining it would mark alerts published that never reached Kafka.
    owns_outbox: bool

    def record(self, events: Sequence[Event]) -> tuple[Appended, list[Alert]]:
        """Make the events durable; return the alerts that raised or revised (if applied)."""

    def delivered(self, alerts: Sequence[Alert]) -> None:
        """The sinks have these: take them out of the outbox (now or with the next unit)."""

    def flush(self) -> None:
        """Mark whatever ``delivered`` is still holding."""


class InOneTransaction:
    """Embedded: one transaction per batch. Outbox marks of the previous batch ride in it
    (one fsync per batch, not two; a crash before it re-delivers them: at least once)."""

    owns_outbox = True

    def __init__(self, log: EventLog, store: GraphStore, tracker: Tracker) -> None:
        self._log = log
        self._store = store
        self._tracker = tracker
        self._marks: list[Alert] = []

    def record(self, events: Sequence[Event]) -> tuple[Appended, list[Alert]]:
        marks = self._marks

        def unit() -> tuple[Appended, list[Alert]]:
            self._store.mark_published(marks)
            fault_point("append")
            appended = self._log.append(events)
            fault_point("project")
            alerts = self._tracker.apply(appended.fresh) if appended.fresh else []
            return appended, alerts

        result = self._store.atomically(unit)
        self._marks = []
        fault_point("committed")
        return result

    def delivered(self, alerts: Sequence[Alert]) -> None:
        self._marks.extend(alerts)

    def flush(self) -> None:
        if self._marks:
            self._store.mark_published(self._marks)
            self._marks = []


class AppendThenApply:
    owns_outbox = True

    def __init__(self, log: EventLog, store: GraphStore, tracker: Tracker) -> None:
        self._log = log
        self._store = store
        self._tracker = tracker

    def record(self, events: Sequence[Event]) -> tuple[Appended, list[Alert]]:
        appended = self._log.append(events)
        conflicting = {id(e) for e in appended.conflicts}
        return appended, self._tracker.apply([e for e in events if id(e) not in conflicting])

    def delivered(self, alerts: Sequence[Alert]) -> None:
        self._store.mark_published(alerts)

    def flush(self) -> None:
        pass


class AppendOnly:
    owns_outbox = False

    def __init__(self, log: EventLog) -> None:
        self._log = log

    def record(self, events: Sequence[Event]) -> tuple[Appended, list[Alert]]:
        return self._log.append(events), []

    def delivered(self, alerts: Sequence[Alert]) -> None:
        pass

    def flush(self) -> None:
        pass
