"""Application services behind the CLI (and the tests): ingest, trace, alerts, report, replay.

Embedded (local log): an event is appended durably, then applied at once, so its alert is
raised in the same call. Production (Kafka log): ingest only produces; the faust worker applies.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import islice
from typing import TypeVar

from graph.networkx_store import NetworkxStore
from graph.store import GraphStore
from lineage.alerts import Alert
from lineage.errors import ConfigurationError, InvalidEventError
from lineage.events import Event
from lineage.identifiers import Pseudonymizer, guess_category
from lineage.inbound import InboundParser
from lineage.policy import Policy
from lineage.report import ViolationReport, summarize
from lineage.trace import Trace, build_trace
from lineage.tracker import Tracker
from runtime import checkpoint
from runtime.settings import Settings
from runtime.sinks import AlertSink
from runtime.wiring import build_policy, build_pseudonymizer
from streams.local_log import LocalEventLog
from streams.log import Appended, EventLog

BATCH = 1_000
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
    alerts: list[Alert] = field(default_factory=list)


@dataclass
class ReplayReport:
    events: int
    alerts: list[Alert]


def batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def open_store(settings: Settings) -> GraphStore:
    if settings.store_kind == "neo4j":
        from graph.neo4j_store import Neo4jStore

        uri, user, password = settings.require_neo4j()
        return Neo4jStore(uri, user, password, database=settings.neo4j_database)
    return NetworkxStore()


def open_log(settings: Settings) -> EventLog:
    if settings.log_kind == "kafka":
        from streams.kafka_log import KafkaEventLog

        return KafkaEventLog.from_settings(settings)
    return LocalEventLog(settings.home / "events.db")


class LineageService:
    def __init__(
        self,
        settings: Settings,
        store: GraphStore,
        log: EventLog,
        policy: Policy,
        pseudonymizer: Pseudonymizer,
        sinks: Sequence[AlertSink] = (),
        applied_seq: int = 0,
    ) -> None:
        self.settings = settings
        self.store = store
        self.log = log
        self.policy = policy
        self.pseudonymizer = pseudonymizer
        self.sinks = list(sinks)
        self.tracker = Tracker(store, policy)
        self.parser = InboundParser(pseudonymizer)
        self._applied_seq = applied_seq
        self._dirty = False

    @classmethod
    def open(cls, settings: Settings, sinks: Sequence[AlertSink] = ()) -> LineageService:
        policy = build_policy(settings)
        pseudonymizer = build_pseudonymizer(settings)
        log = open_log(settings)
        applied = 0
        store: GraphStore
        if settings.store_kind == "networkx" and isinstance(log, LocalEventLog):
            store, applied = checkpoint.load(settings.home / "graph.pickle")
        else:
            store = open_store(settings)
        service = cls(settings, store, log, policy, pseudonymizer, sinks, applied)
        service._catch_up()
        return service

    @property
    def local_log(self) -> LocalEventLog | None:
        return self.log if isinstance(self.log, LocalEventLog) else None

    def _catch_up(self) -> None:
        """Re-apply what the log holds beyond the checkpoint (after a crash, say)."""
        log = self.local_log
        if log is None or not isinstance(self.store, NetworkxStore):
            return
        for chunk in batched(log.read(after_seq=self._applied_seq), BATCH):
            self.tracker.apply([event for _, event in chunk])
            self._applied_seq = chunk[-1][0]
            self._dirty = True
        self.publish()
        self._settle()

    def publish(self) -> int:
        """Deliver stored-but-unpublished alerts to every sink, then mark them (outbox):
        a crash in between re-delivers on the next open, so sinks see each alert at least once."""
        delivered = 0
        while pending := self.store.unpublished_alerts(BATCH):
            for sink in self.sinks:
                sink.emit(pending)
            self.store.mark_published([a.alert_id for a in pending])
            delivered += len(pending)
        return delivered

    # -- ingest --------------------------------------------------------------------------
    def record(self, events: Sequence[Event]) -> tuple[Appended, list[Alert]]:
        """Append durably, then, when the log is local, apply what was new at once."""
        appended = self.log.append(events)
        alerts: list[Alert] = []
        if self.local_log is not None and appended.fresh:
            alerts = self.tracker.apply(appended.fresh)
            self._applied_seq = self.local_log.last_seq()
            self._dirty = True
            self.publish()
            self._settle()
        return appended, alerts

    def _settle(self) -> None:
        """The in-memory graph only grows and holds no reference cycles, so move what survived
        this batch out of the cyclic GC's reach: otherwise every full collection rescans
        millions of graph objects (``bench/gc_freeze.py``: 1.65x the rate at 150k users)."""
        if isinstance(self.store, NetworkxStore):
            gc.freeze()

    def ingest(
        self,
        lines: Iterable[str | bytes],
        origin: str = "ingest",
        progress: Progress | None = None,
    ) -> IngestReport:
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
            report.alerts += alerts
            pending.clear()

        for number, line in enumerate(lines, start=1):
            report.lines += 1
            if progress is not None:
                progress(1)
            if not line.strip():
                continue
            raw = line.encode() if isinstance(line, str) else line
            try:
                event = self.parser.parse_line(line, observed)
                self.tracker.check(event)
            except InvalidEventError as exc:
                reject(number, raw, exc.reason)
                continue
            pending.append((number, raw, event))
            if len(pending) >= BATCH:
                flush()
        if pending:
            flush()
        return report

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

    # -- replay --------------------------------------------------------------------------
    def replay(
        self,
        observed_since: datetime | None = None,
        observed_until: datetime | None = None,
        progress: Progress | None = None,
    ) -> ReplayReport:
        """Rebuild from the log. Without ``observed_since`` the graph is emptied first, so the
        result is exactly what the log implies; with it, later events are re-applied on top."""
        log = self.local_log
        if log is None:
            raise ConfigurationError(
                "replay reads the local log; with Kafka, run `lineage worker --from-beginning`"
            )
        if observed_since is None:
            self.store.clear()
        events = 0
        alerts: list[Alert] = []
        last = 0
        for chunk in batched(log.read(0, observed_since, observed_until), BATCH):
            alerts += self.tracker.apply([event for _, event in chunk])
            self._settle()
            events += len(chunk)
            last = chunk[-1][0]
            if progress is not None:
                progress(len(chunk))
        # Replayed alerts were delivered when first raised; consumers key on alert_id anyway.
        self.store.mark_published([a.alert_id for a in alerts])
        self._applied_seq = last if observed_until is not None else log.last_seq()
        self._dirty = observed_until is None
        return ReplayReport(events, alerts)

    def close(self) -> None:
        try:
            if self._dirty and isinstance(self.store, NetworkxStore):
                checkpoint.save(self.settings.home / "graph.pickle", self.store, self._applied_seq)
        finally:
            for sink in self.sinks:
                sink.close()
            self.log.close()
            self.store.close()

    def __enter__(self) -> LineageService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
