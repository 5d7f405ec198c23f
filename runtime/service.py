"""Application services behind the CLI (and the tests): ingest, trace, alerts, report, replay.

Embedded (local log): a batch is appended and projected in one SQLite transaction, so its
alerts are raised in the same call and log and graph never disagree; alerts then leave through
the outbox. Production (Kafka log): ingest only produces; the worker applies.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from graph.store import GraphStore
from lineage.alerts import Alert
from lineage.errors import ConfigurationError, InvalidEventError
from lineage.event_identity import reused_reason
from lineage.events import Event, micros
from lineage.identifiers import Pseudonymizer, guess_category
from lineage.inbound import InboundParser
from lineage.report import ViolationReport, report_from
from lineage.trace import Trace, build_trace
from lineage.tracker import Tracker
from runtime import batching
from runtime import parse_ahead as ahead_module
from runtime.batching import Gauge, settle
from runtime.embedded import EmbeddedHome
from runtime.faults import fault_point
from runtime.recording import AppendOnly, AppendThenApply, InOneTransaction, Recording
from runtime.settings import Settings
from runtime.sinks import AlertSink
from runtime.wiring import build_policy, build_pseudonymizer
from streams.local_log import LocalEventLog
from streams.log import Appended, EventLog

if TYPE_CHECKING:
    from graph.dataset_graph import Downstream
    from lineage.openlineage import OpenLineageMapper
    from lineage.queries import Page
    from runtime.audit import AuditReport

Progress = Callable[[int], None]
#: What a line of input is: a producer record, or an OpenLineage RunEvent (several events).
InputFormat = Literal["events", "openlineage"]


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
    summary: ViolationReport  # the graph's violations after the replay (counted, not loaded)


def open_store(settings: Settings) -> GraphStore:
    """The production store (the embedded one comes with its home: ``runtime.embedded``)."""
    from graph.neo4j_store import Neo4jStore

    uri, user, password = settings.require_neo4j()
    return Neo4jStore(uri, user, password, database=settings.neo4j_database)


class LineageService:
    def __init__(
        self,
        settings: Settings,
        store: GraphStore,
        log: EventLog,
        tracker: Tracker,
        recording: Recording,
        pseudonymizer: Pseudonymizer,
        sinks: Sequence[AlertSink] = (),
        home: EmbeddedHome | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.log = log
        self.tracker = tracker
        self.policy = tracker.policy
        self.recording = recording
        self.pseudonymizer = pseudonymizer
        self.sinks = list(sinks)
        self.parser = InboundParser(pseudonymizer)
        self.home = home
        self._openlineage: OpenLineageMapper | None = None

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

            store, log = open_store(settings), KafkaEventLog.from_settings(settings)
            tracker = Tracker(store, policy)
            return cls(settings, store, log, tracker, AppendOnly(log), pseudonymizer, sinks)
        home = EmbeddedHome(settings, writer)
        try:
            store = home.store if settings.store_kind == "sqlite" else open_store(settings)
            tracker = Tracker(store, policy)
            recording: Recording = (
                InOneTransaction(home.log, store, tracker)
                if store is home.store
                else AppendThenApply(home.log, store, tracker)
            )
        except BaseException:
            home.close()
            raise
        service = cls(settings, store, home.log, tracker, recording, pseudonymizer, sinks, home)
        try:
            if not rebuilding:
                home.check_format()
                if writer:
                    home.catch_up(tracker, batching.EVENTS)
                    service.publish()
        except BaseException:
            service.close()
            raise
        return service

    @property
    def local_log(self) -> LocalEventLog | None:
        return self.home.log if self.home is not None else None

    def publish(self, fresh: Sequence[Alert] = ()) -> int:
        """Deliver alerts to every sink, then take them out of the outbox: sinks see each
        alert at least once. ``fresh`` are alerts just committed, delivered without reading
        them back; without it, whatever the outbox still holds (a crash before marking) is."""
        if fresh:
            self._emit(fresh)
            self.recording.delivered(fresh)
            return len(fresh)
        if not self.recording.owns_outbox:
            return 0
        self.recording.flush()
        delivered = 0
        while batch := self.store.unpublished_alerts(batching.EVENTS):
            self._emit(batch)
            self.store.mark_published(batch)
            delivered += len(batch)
        return delivered

    def _emit(self, alerts: Sequence[Alert]) -> None:
        for sink in self.sinks:
            sink.emit(alerts)
        fault_point("publish")

    # -- ingest --------------------------------------------------------------------------
    def record(self, events: Sequence[Event]) -> tuple[Appended, list[Alert]]:
        """Record events as this deployment does (``runtime.recording``), then deliver."""
        appended, alerts = self.recording.record(events)
        self.publish(alerts)
        settle()
        return appended, alerts

    def ingest(
        self,
        lines: Iterable[str | bytes],
        origin: str = "ingest",
        progress: Progress | None = None,
        keep_alerts: bool = True,
        complete: bool = False,
        input_format: InputFormat = "events",
    ) -> IngestReport:
        """Alerts go to the sinks as they are raised; ``keep_alerts=False`` only counts them,
        so a million-event file does not hold a million alerts in memory. ``complete`` says
        ``lines`` is all there (a file, a list): it may be read ahead, and its identifiers
        normalized on another core; a live stream is parsed as it comes. An OpenLineage line
        becomes several events (``lineage.openlineage``): it is accepted or rejected whole,
        and ``accepted``/``duplicates`` count events, not lines."""
        report = IngestReport()
        pending: list[tuple[int, bytes, Event]] = []
        gauge = Gauge()
        observed = datetime.now(UTC)

        def reject(number: int, raw: bytes, reason: str) -> None:
            report.rejected.append(Rejection(number, reason))
            self.log.dead_letter(raw.rstrip(b"\r\n"), reason, f"{origin}:{number}")

        def flush() -> None:
            appended, alerts = self.record([event for _, _, event in pending])
            conflicting = {id(event) for event in appended.conflicts}
            rejected: set[int] = set()
            for number, raw, event in pending:
                if id(event) in conflicting and number not in rejected:
                    rejected.add(number)
                    reject(number, raw, reused_reason(event))
            report.accepted += len(appended.fresh)
            report.duplicates += len(pending) - len(appended.fresh) - len(conflicting)
            report.alerts_raised += len(alerts)
            if keep_alerts:
                report.alerts += alerts
            pending.clear()

        shown = 0  # lines the progress bar was told about: it is told once per batch

        def tell(upto: int) -> None:
            nonlocal shown
            if progress is not None and upto > shown:
                progress(upto - shown)
                shown = upto

        for number, raw, parsed in self._parsed(lines, observed, complete, input_format):
            report.lines = number
            if isinstance(parsed, str):
                reject(number, raw, parsed)
                continue
            try:
                for event in parsed:
                    self.tracker.check(event)
            except InvalidEventError as exc:
                reject(number, raw, exc.reason)
                continue
            for event in parsed:
                pending.append((number, raw, event))
                if gauge.add(event):
                    flush()
                    gauge.reset()
                    tell(number)
        if pending:
            flush()
        tell(report.lines)
        return report

    def ingest_unit(
        self, bodies: Sequence[bytes], origin: str, first: int, input_format: InputFormat
    ) -> tuple[list[IngestReport], list[Alert]]:
        """Several requests' bodies recorded in one ``record`` (one transaction embedded, one
        produce with Kafka): the HTTP server's group commit. Each body is judged as a line of
        ``ingest`` is, its dead letter named ``origin:<first + index>``; the alerts are the
        unit's (they cannot be told apart per body: a flow in one may complete a use in another)."""
        observed = datetime.now(UTC)
        reports = [IngestReport(lines=1) for _ in bodies]
        pending: list[tuple[int, bytes, Event]] = []
        for index, body in enumerate(bodies):
            number = first + index
            for _, raw, parsed in self._parsed([body], observed, False, input_format):
                reason = parsed if isinstance(parsed, str) else self._invalid(parsed)
                if reason is not None:
                    reports[index].rejected.append(Rejection(number, reason))
                    self.log.dead_letter(raw.rstrip(b"\r\n"), reason, f"{origin}:{number}")
                elif not isinstance(parsed, str):
                    pending += [(index, raw, event) for event in parsed]
        if not pending:
            return reports, []
        appended, alerts = self.record([event for _, _, event in pending])
        fresh = {id(event) for event in appended.fresh}
        conflicting = {id(event) for event in appended.conflicts}
        for index, raw, event in pending:
            report = reports[index]
            if id(event) in fresh:
                report.accepted += 1
            elif id(event) not in conflicting:
                report.duplicates += 1
            elif not report.rejected:
                number = first + index
                reason = reused_reason(event)
                report.rejected.append(Rejection(number, reason))
                self.log.dead_letter(raw.rstrip(b"\r\n"), reason, f"{origin}:{number}")
        return reports, alerts

    def _invalid(self, events: Sequence[Event]) -> str | None:
        try:
            for event in events:
                self.tracker.check(event)
        except InvalidEventError as exc:
            return exc.reason
        return None

    def _parsed(
        self,
        lines: Iterable[str | bytes],
        observed: datetime,
        complete: bool,
        input_format: InputFormat,
    ) -> Iterator[tuple[int, bytes, list[Event] | str]]:
        """Non-blank lines, numbered from 1: their events, or the one-line reason they have none.
        Identifiers are normalized a few blocks ahead on another core (runtime/parse_ahead)."""
        ahead = complete and input_format == "events" and ahead_module.ENABLED
        numbered = enumerate(ahead_module.parse_ahead(lines, self.pseudonymizer, ahead), start=1)
        for number, line in numbered:
            if not line.strip():
                continue
            # surrogatepass: a str line with a lone surrogate is the parser's to reject
            raw = line.encode("utf-8", "surrogatepass") if isinstance(line, str) else line
            try:
                if input_format == "openlineage":
                    yield number, raw, self._openlineage_mapper().parse_line(line, observed)
                else:
                    yield number, raw, [self.parser.parse_line(line, observed)]
            except InvalidEventError as exc:
                yield number, raw, exc.reason

    def _openlineage_mapper(self) -> OpenLineageMapper:
        if self._openlineage is None:
            from lineage.openlineage import OpenLineageMapper

            self._openlineage = OpenLineageMapper(self.policy.taxonomy)
        return self._openlineage

    # -- queries -------------------------------------------------------------------------
    def ref_for(self, raw: str) -> str:
        """The pseudonymized ref a human-typed phone or email maps to."""
        return self.pseudonymizer.identifier(guess_category(raw), raw).ref

    def trace(self, raw: str, as_of: datetime | None = None) -> Trace | None:
        return build_trace(self.store, self.policy, self.ref_for(raw), _micros(as_of))

    def alerts(self) -> list[Alert]:
        return self.store.alerts()

    def report(self, as_of: datetime | None = None) -> ViolationReport:
        return report_from(self.store.tally(_micros(as_of)))

    def query(
        self,
        name: str,
        target: str | None = None,
        as_of: datetime | None = None,
        limit: int | None = None,
    ) -> Page[Any] | None:
        """One of ``lineage.queries.QUERIES``; ``blast-radius`` needs ``target`` (a dataset or
        a job) and gives None when it names neither."""
        from lineage import queries

        when = _micros(as_of)
        if name == "blast-radius":
            if target is None:
                raise ConfigurationError("blast-radius needs a dataset (system:name) or a job")
            return queries.blast_radius(self.store, target, when, limit)
        plain: dict[str, Callable[..., Page[Any]]] = {
            "paths": queries.paths,
            "affected": queries.affected,
            "collections": queries.collections,
            "erasure-gaps": queries.erasure_gaps,
        }
        if name not in plain:
            raise ConfigurationError(
                f"unknown query {name!r}; known: {', '.join(queries.QUERIES)}"
            )
        if target is not None:
            raise ConfigurationError(f"{name} takes no argument")
        return plain[name](self.store, when, limit)

    def report_between(self, since: datetime | None, until: datetime | None) -> ViolationReport:
        """The summary of the violations that occurred in [since, until)."""
        return report_from(self.store.tally_between(since, until))

    def audit(
        self,
        since: datetime | None = None,
        until: datetime | None = None,
        step: Callable[[str], None] | None = None,
        as_of: datetime | None = None,
    ) -> AuditReport:
        from runtime.audit import build_audit  # networkx: only the report formats

        return build_audit(self.store, self.policy, since, until, step, _micros(as_of))

    def downstream(self, dataset: str) -> Downstream:
        from graph.dataset_graph import build, downstream  # networkx: only this command

        """Datasets, jobs and uses data in ``dataset`` can reach (the dataset/job graph)."""
        return downstream(build(self.store.edges()), dataset)

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
        hold are delivered withdrawn. Times without a zone are UTC.
        """
        if self.home is None or self.store is not self.home.store:
            raise ConfigurationError(
                "replay rebuilds the embedded home; with Kafka, run `lineage worker "
                "--from-beginning`"
            )
        since, until = _utc(observed_since), _utc(observed_until)
        events = self.home.replay(self.tracker, batching.EVENTS, since, until, progress)
        self.publish()
        return ReplayReport(events, self.report())

    def close(self) -> None:
        try:
            if self.home is None or self.home.lock is not None:
                self.recording.flush()
            for sink in self.sinks:
                sink.close()
            self.store.close()
        finally:
            if self.home is not None:
                self.home.close()
            else:
                self.log.close()

    def __enter__(self) -> LineageService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _micros(moment: datetime | None) -> int | None:
    """An as-of time (naive: UTC) as event-time microseconds."""
    utc = _utc(moment)
    return micros(utc) if utc is not None else None


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
