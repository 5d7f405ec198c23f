"""Application services behind the CLI (and the tests): ingest, trace, alerts, report, replay.

Embedded (local log): a batch is appended and projected in one SQLite transaction, so its
alerts are raised in the same call and log and graph never disagree; alerts then leave through
the outbox. Production (Kafka log): ingest only produces; the faust worker applies.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import TypeVar

from graph.dataset_graph import Downstream, downstream
from graph.dataset_graph import build as dataset_graph
from graph.sqlite_store import FORMAT, SqliteStore
from graph.store import GraphStore
from lineage.alerts import Alert
from lineage.errors import ConfigurationError, InvalidEventError
from lineage.events import Event, from_micros, micros
from lineage.identifiers import Pseudonymizer, guess_category
from lineage.inbound import InboundParser
from lineage.policy import Policy
from lineage.report import ViolationReport, summarize
from lineage.trace import Trace, build_trace
from lineage.tracker import Tracker
from runtime import home as homes
from runtime.faults import fault_point
from runtime.settings import Settings
from runtime.sinks import AlertSink
from runtime.wiring import build_policy, build_pseudonymizer
from streams.local_log import LocalEventLog
from streams.log import Appended, EventLog

BATCH = int(os.environ.get("LINEAGE_BATCH", "1000"))
Progress = Callable[[int], None]
T = TypeVar("T")


@dataclass(frozen=True)
class Rejection:
    line: int
    reason: str


@dataclass
class IngestReport:
    lines: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)  # kept only when asked (memory)
    alerts_raised: int = 0  # alerts raised or revised, delivered to the sinks


@dataclass
class ReplayReport:
    events: int
    alerts: list[Alert]


def batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def open_store(settings: Settings) -> GraphStore:
    """The production store (the embedded one comes with its log: see ``LineageService.open``)."""
    from graph.neo4j_store import Neo4jStore

    uri, user, password = settings.require_neo4j()
    return Neo4jStore(uri, user, password, database=settings.neo4j_database)


def _settle() -> None:
    """What survives a batch is long-lived (taxonomy, policy, the normalization memo): move it
    out of the cyclic GC's reach, or every full collection rescans it (measured: a third of
    ingest time at 20k users; nothing here holds reference cycles that need collecting)."""
    gc.freeze()


def _initialised(path: Path) -> bool:
    """A fresh home has no tables yet: a reader lets a short-lived writer create them."""
    probe = LocalEventLog(path, read_only=True)
    try:
        return SqliteStore.initialised(probe.connection)
    finally:
        probe.close()


class LineageService:
    def __init__(
        self,
        settings: Settings,
        store: GraphStore,
        log: EventLog,
        policy: Policy,
        pseudonymizer: Pseudonymizer,
        sinks: Sequence[AlertSink] = (),
        lock: homes.WriterLock | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.log = log
        self.policy = policy
        self.pseudonymizer = pseudonymizer
        self.sinks = list(sinks)
        self.tracker = Tracker(store, policy)
        self.parser = InboundParser(pseudonymizer)
        self._lock = lock
        self._delivered: list[Alert] = []  # sent to the sinks, not yet marked in the outbox

    @classmethod
    def open(
        cls,
        settings: Settings,
        sinks: Sequence[AlertSink] = (),
        writer: bool = True,
        rebuilding: bool = False,
    ) -> LineageService:
        """``writer=False`` opens for queries: no lock, nothing written, never blocks.
        ``rebuilding`` opens a home of another format for ``replay``."""
        policy = build_policy(settings)
        pseudonymizer = build_pseudonymizer(settings)
        if settings.log_kind == "kafka":
            from streams.kafka_log import KafkaEventLog

            return cls(settings, open_store(settings), KafkaEventLog.from_settings(settings),
                       policy, pseudonymizer, sinks)  # fmt: skip
        home = homes.prepare(settings.home)
        path = homes.database(home)
        if not writer and not _initialised(path):
            cls.open(settings, (), writer=True, rebuilding=rebuilding).close()
        lock = homes.WriterLock(home, settings.lock_wait_seconds) if writer else None
        try:
            log = LocalEventLog(path, read_only=not writer)
            store: GraphStore = SqliteStore(log.connection, create=writer)
            if settings.store_kind == "neo4j":
                store = open_store(settings)
            service = cls(settings, store, log, policy, pseudonymizer, sinks, lock)
        except BaseException:
            if lock is not None:
                lock.release()
            raise
        try:
            service._check_format(allow_rebuild=rebuilding)
            if writer and not rebuilding:
                service._catch_up()
                service.publish()
        except BaseException:
            service.close()
            raise
        return service

    @property
    def local_log(self) -> LocalEventLog | None:
        return self.log if isinstance(self.log, LocalEventLog) else None

    @property
    def sqlite(self) -> SqliteStore | None:
        return self.store if isinstance(self.store, SqliteStore) else None

    def _check_format(self, allow_rebuild: bool) -> None:
        """An older home (a pickle checkpoint, no projection tables) must be rebuilt."""
        store, log = self.sqlite, self.local_log
        if store is None or log is None or allow_rebuild:
            return
        old = (self.settings.home / homes.OLD_CHECKPOINT).exists()
        stamped = store.meta("format")
        if stamped is None and not old and log.count() == 0:
            if self._lock is not None:
                store.atomically(lambda: store.set_meta("format", str(FORMAT)))
            return
        if old or stamped != str(FORMAT):
            raise ConfigurationError(
                f"{self.settings.home} was written by an older version of lineage; "
                "run `lineage replay` to rebuild its graph from the event log"
            )
        if store.meta("replaying") is not None:
            raise ConfigurationError(
                f"a replay of {self.settings.home} was interrupted; run `lineage replay` again"
            )

    def _catch_up(self) -> None:
        """After ``replay --until``: apply what the log holds beyond that time."""
        store, log = self.sqlite, self.local_log
        if store is None or log is None or (until := store.meta("partial_until")) is None:
            return
        since = from_micros(int(until) + 1)
        for chunk in batched(log.read(0, since, None), BATCH):
            self.tracker.apply([event for _, event in chunk])
        store.atomically(lambda: store.set_meta("partial_until", None))

    def publish(self, fresh: Sequence[Alert] = ()) -> int:
        """Deliver alerts to every sink, then mark them published (outbox): sinks see each
        alert at least once. ``fresh`` are alerts just committed, delivered without reading
        them back; embedded, their marks ride in the next batch's transaction (one fsync per
        batch, not two; a crash before it re-delivers them). Without ``fresh``, whatever
        the outbox still holds (a crash before marking) is delivered."""
        if fresh:
            self._emit(fresh)
            if self.sqlite is not None:
                self._delivered.extend(fresh)
            else:
                self.store.mark_published(fresh)
            return len(fresh)
        self._flush_marks()
        delivered = 0
        while batch := self.store.unpublished_alerts(BATCH):
            self._emit(batch)
            self.store.mark_published(batch)
            delivered += len(batch)
        return delivered

    def _emit(self, alerts: Sequence[Alert]) -> None:
        for sink in self.sinks:
            sink.emit(alerts)
        fault_point("publish")

    def _flush_marks(self) -> None:
        if self._delivered:
            self.store.mark_published(self._delivered)
            self._delivered = []

    # -- ingest --------------------------------------------------------------------------
    def record(self, events: Sequence[Event]) -> tuple[Appended, list[Alert]]:
        """Append durably; with the local log, project in the same transaction."""
        store = self.sqlite
        if self.local_log is None:
            return self.log.append(events), []
        if store is None:
            # A local log feeding Neo4j directly: two systems, no shared transaction. Apply
            # every valid event, not only the fresh ones, so that re-sending a batch repairs
            # a crash between the append and the apply (the tracker is idempotent).
            appended = self.log.append(events)
            conflicting = {id(e) for e in appended.conflicts}
            alerts = self.tracker.apply([e for e in events if id(e) not in conflicting])
            self.publish(alerts)
            return appended, alerts

        marks = self._delivered

        def unit() -> tuple[Appended, list[Alert]]:
            store.mark_published(marks)
            fault_point("append")
            appended = self.log.append(events)
            fault_point("project")
            alerts = self.tracker.apply(appended.fresh) if appended.fresh else []
            return appended, alerts

        appended, alerts = store.atomically(unit)
        self._delivered = []
        fault_point("committed")
        self.publish(alerts)
        _settle()
        return appended, alerts

    def ingest(
        self,
        lines: Iterable[str | bytes],
        origin: str = "ingest",
        progress: Progress | None = None,
        keep_alerts: bool = True,
    ) -> IngestReport:
        """Alerts go to the sinks as they are raised; ``keep_alerts=False`` only counts them,
        so a million-event file does not hold a million alerts in memory."""
        report = IngestReport()
        pending: list[tuple[int, bytes, Event]] = []
        observed = datetime.now(UTC)

        def reject(number: int, raw: bytes, reason: str) -> None:
            report.rejected.append(Rejection(number, reason))
            self.log.dead_letter(raw.rstrip(b"\r\n"), reason, f"{origin}:{number}")

        def flush() -> None:
            appended, alerts = self.record([event for _, _, event in pending])
            conflicting = {id(event) for event in appended.conflicts}
            for number, raw, event in pending:
                if id(event) in conflicting:
                    reject(number, raw, f"event id {event.event_id!r} reused with other content")
            report.accepted += len(appended.fresh)
            report.duplicates += len(pending) - len(appended.fresh) - len(conflicting)
            report.alerts_raised += len(alerts)
            if keep_alerts:
                report.alerts += alerts
            pending.clear()

        for number, raw, parsed in self._parsed(lines, observed):
            report.lines = number
            if progress is not None:
                progress(1)
            if isinstance(parsed, str):
                reject(number, raw, parsed)
                continue
            try:
                self.tracker.check(parsed)
            except InvalidEventError as exc:
                reject(number, raw, exc.reason)
                continue
            pending.append((number, raw, parsed))
            if len(pending) >= BATCH:
                flush()
        if pending:
            flush()
        return report

    def _parsed(
        self, lines: Iterable[str | bytes], observed: datetime
    ) -> Iterator[tuple[int, bytes, Event | str]]:
        """Non-blank lines, numbered from 1: an event, or the one-line reason it is not.

        (Parsing in a second process was measured and did not pay on this 2-core machine:
        the projection slowed by what the parse saved, and shipping events back costs more
        than parsing them.)"""
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            raw = line.encode() if isinstance(line, str) else line
            try:
                yield number, raw, self.parser.parse_line(line, observed)
            except InvalidEventError as exc:
                yield number, raw, exc.reason

    # -- queries -------------------------------------------------------------------------
    def ref_for(self, raw: str) -> str:
        """The pseudonymized ref a human-typed phone or email maps to."""
        return self.pseudonymizer.identifier(guess_category(raw), raw).ref

    def trace(self, raw: str) -> Trace | None:
        return build_trace(self.store, self.policy, self.ref_for(raw))

    def alerts(self) -> list[Alert]:
        return self.store.alerts()

    def report(self) -> ViolationReport:
        return summarize(self.store.alerts())

    def downstream(self, dataset: str) -> Downstream:
        """Datasets, jobs and uses data in ``dataset`` can reach (the dataset/job graph)."""
        return downstream(dataset_graph(self.store.edges()), dataset)

    # -- replay --------------------------------------------------------------------------
    def replay(
        self,
        observed_since: datetime | None = None,
        observed_until: datetime | None = None,
        progress: Progress | None = None,
    ) -> ReplayReport:
        """Rebuild the graph from the log (after a policy change, or from an older home).

        Without ``observed_since`` the projection is emptied first, so the result is exactly
        what the log implies; with it, later events are re-applied on top (a no-op unless the
        policy changed). Alerts whose content sinks have already seen keep their revision and
        are not re-sent; new or changed ones are revised and delivered; ones that no longer
        hold are delivered withdrawn.
        """
        log, store = self.local_log, self.sqlite
        if log is None or store is None:
            raise ConfigurationError(
                "replay reads the local log; with Kafka, run `lineage worker --from-beginning`"
            )
        if observed_since is not None:
            observed_since = observed_since.astimezone(UTC) if observed_since.tzinfo else (
                observed_since.replace(tzinfo=UTC))
        if observed_until is not None:
            observed_until = observed_until.astimezone(UTC) if observed_until.tzinfo else (
                observed_until.replace(tzinfo=UTC))
        rebuild = observed_since is None
        if rebuild:
            store.atomically(store.begin_rebuild)
        events = 0
        for chunk in batched(log.read(0, observed_since, observed_until), BATCH):
            self.tracker.apply([event for _, event in chunk])
            events += len(chunk)
            if progress is not None:
                progress(len(chunk))
        if rebuild:
            store.atomically(store.finish_rebuild)
        if observed_until is not None:
            # The graph now shows the log as observed until then; the next writer to open
            # the home applies the rest (see _catch_up).
            until = str(micros(observed_until))
            store.atomically(lambda: store.set_meta("partial_until", until))
        (self.settings.home / homes.OLD_CHECKPOINT).unlink(missing_ok=True)
        self.publish()
        return ReplayReport(events, store.alerts())

    def close(self) -> None:
        try:
            if self._lock is not None or self.sqlite is None:
                self._flush_marks()
            for sink in self.sinks:
                sink.close()
            self.log.close()
            self.store.close()
        finally:
            if self._lock is not None:
                self._lock.release()

    def __enter__(self) -> LineageService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
