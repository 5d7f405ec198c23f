"""``lineage rebuild --neo4j``: replay the log into memory, bulk-import Neo4j, swap, resume.

The steps and why they are in this order are in :mod:`graph.neo4j_bulk`; this module wires
them to the configured log (the events topic, or the embedded home's SQLite log), the live
server, and the projector group's offsets. Operations (stopping workers, a production
server's swap) are in docs/neo4j-rebuild.md.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from graph.neo4j_bulk import (
    LIVE_ACTIONS,
    LIVE_ALERTS,
    LiveAlert,
    RebuildState,
    live_alerts,
    plan_alerts,
    run_import,
    swap_in,
    write_csvs,
)
from lineage.errors import StoreError
from lineage.events import INCIDENT_EVENT_ADAPTER, IncidentEvent
from lineage.tracker import Tracker
from runtime import batching
from runtime.settings import Settings
from runtime.wiring import build_policy

Progress = Callable[[int], None]
#: How long the replay waits for a fetch that brings nothing before it rechecks the end.
POLL_MS = 1_000


@dataclass
class RebuildReport:
    events: int = 0
    source: str = ""
    nodes: int = 0
    relationships: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)  # per step
    offsets: dict[int, int] = field(default_factory=dict)  # partition -> next offset
    workdir: str = ""
    staged: str = ""  # the imported database's NEO4J_HOME (in workdir)
    previous: str | None = None
    alerts_queued: int = 0

    @property
    def total_seconds(self) -> float:
        return sum(self.seconds.values())


@dataclass
class Live:
    """What the live database holds beyond the log (read before the swap)."""

    alerts: dict[str, LiveAlert] = field(default_factory=dict)
    actions: list[IncidentEvent] = field(default_factory=list)


def read_live(settings: Settings) -> Live:
    from neo4j import GraphDatabase, NotificationMinimumSeverity

    uri, user, password = settings.require_neo4j()
    quiet = NotificationMinimumSeverity.OFF  # "no IncidentAction label yet" is no news
    try:
        with (
            GraphDatabase.driver(
                uri, auth=(user, password), notifications_min_severity=quiet
            ) as driver,
            driver.session(database=settings.neo4j_database) as session,
        ):
            alerts = live_alerts(session.run(LIVE_ALERTS))
            actions = [
                INCIDENT_EVENT_ADAPTER.validate_json(r["json"]) for r in session.run(LIVE_ACTIONS)
            ]
    except Exception as exc:  # the driver's errors: nothing is changed yet
        raise StoreError(f"cannot read the live Neo4j at {uri}: {exc}") from exc
    return Live(alerts, actions)


def replay_local(settings: Settings, tracker: Tracker, progress: Progress | None) -> int:
    """The embedded home's log, in log order (read-only: an ingest may keep running)."""
    from runtime.embedded import EmbeddedHome

    home = EmbeddedHome(settings, writer=False)
    events = 0
    try:
        for chunk in batching.batched(e for _, e in home.log.read()):
            tracker.apply(chunk)
            events += len(chunk)
            if progress is not None:
                progress(len(chunk))
    finally:
        home.close()
    return events


def replay_kafka(
    settings: Settings, tracker: Tracker, progress: Progress | None
) -> tuple[int, dict[int, int]]:
    """Every partition of the events topic from its start to the end offsets taken first:
    the rebuilt point. Messages go through the worker's triage (invalid ones were
    dead-lettered by the worker already: skipped here) and ``apply_claimed``, so event-id
    claims decide as the worker decided."""
    from kafka import KafkaConsumer, TopicPartition

    from streams.kafka_log import ensure_topics
    from streams.projector import Inbound, part_header, triage

    ensure_topics(settings)
    consumer = KafkaConsumer(
        bootstrap_servers=settings.require_kafka(), group_id=None, enable_auto_commit=False,
        client_id="lineage-rebuild", max_poll_records=batching.EVENTS,
    )  # fmt: skip
    try:
        topic = settings.events_topic
        parts = [TopicPartition(topic, p) for p in sorted(_partitions(consumer, topic))]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        ends: dict[Any, int] = consumer.end_offsets(parts)
        events = 0
        pending = {tp for tp in parts if consumer.position(tp) < ends[tp]}
        while pending:
            polled = consumer.poll(timeout_ms=POLL_MS, max_records=batching.EVENTS)
            batch = []
            for tp, records in polled.items():
                for r in records:
                    if r.offset < ends[tp]:
                        origin = f"{r.topic}:{r.partition}:{r.offset}"
                        batch.append(Inbound(r.value, origin, r.key, part_header(r)))
            if batch:
                accepted, _ = triage(tracker, batch)
                if accepted:
                    tracker.apply_claimed([(a.event, a.claims) for a in accepted])
                events += len(batch)
                if progress is not None:
                    progress(len(batch))
            pending = {tp for tp in pending if consumer.position(tp) < ends[tp]}
            for tp in parts:  # a partition read to its end point is paused
                if tp not in pending:
                    consumer.pause(tp)
        return events, {tp.partition: end for tp, end in ends.items()}
    finally:
        consumer.close(autocommit=False)


def _partitions(consumer: Any, topic: str, timeout_s: float = 30.0) -> set[int]:
    """The topic's partitions, once the client's metadata has them (just created: not yet)."""
    deadline = time.monotonic() + timeout_s
    while not (found := consumer.partitions_for_topic(topic)):
        if time.monotonic() > deadline:
            raise StoreError(f"Kafka does not know the events topic {topic}")
        time.sleep(0.2)
    return set(found)


def set_offsets(settings: Settings, offsets: dict[int, int]) -> None:
    """The projector group resumes right after the rebuilt point. Refused while a worker of
    the group is alive (it would commit over them): stop the workers first."""
    from kafka import KafkaAdminClient, TopicPartition
    from kafka.errors import KafkaError, NoError

    from streams.consumer_group import projector_group_id

    group = projector_group_id(settings)
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=settings.require_kafka(), client_id="lineage-rebuild"
        )
    except KafkaError as exc:
        raise StoreError(f"cannot reach Kafka at {settings.kafka_bootstrap}: {exc}") from exc
    try:
        specs = {TopicPartition(settings.events_topic, p): o for p, o in offsets.items()}
        result = admin.reset_group_offsets(group, specs)
    except KafkaError as exc:
        raise StoreError(f"cannot set the offsets of consumer group {group}: {exc}") from exc
    finally:
        admin.close()
    failed = sorted({r["error"].__name__ for r in result.values() if r["error"] is not NoError})
    if failed:
        raise StoreError(
            f"cannot set the offsets of consumer group {group} ({', '.join(failed)}): "
            "stop every running worker first"
        )


def finish(settings: Settings, actions: list[IncidentEvent]) -> float:
    """After the start: the store's constraints and indexes (``Neo4jStore`` creates them
    and waits until they are online), then the officers' incident actions."""
    from runtime.service import open_store

    started = time.perf_counter()
    store = open_store(settings)
    try:
        if actions:
            store.record_incident_actions(actions)
    finally:
        store.close()
    return time.perf_counter() - started


MANIFEST = "manifest.json"


def _write_manifest(workdir: Path, report: RebuildReport, actions: list[IncidentEvent]) -> None:
    """What ``finish_staged`` needs once an operator has swapped the staged database in."""
    manifest = {
        "offsets": {str(p): o for p, o in report.offsets.items()},
        "incident_actions": [json.loads(a.model_dump_json()) for a in actions],
    }
    (workdir / MANIFEST).write_text(json.dumps(manifest))


def finish_staged(settings: Settings, workdir: Path) -> dict[int, int]:
    """After a production swap of a ``--no-swap`` rebuild (docs/neo4j-rebuild.md): the
    schema, the incident actions, and the workers' offsets; returns the offsets set."""
    path = workdir / MANIFEST
    if not path.is_file():
        raise StoreError(f"{path} is missing: is {workdir} the --workdir of a --no-swap rebuild?")
    manifest = json.loads(path.read_text())
    actions = [INCIDENT_EVENT_ADAPTER.validate_python(a) for a in manifest["incident_actions"]]
    finish(settings, actions)
    offsets = {int(p): int(o) for p, o in manifest["offsets"].items()}
    if offsets:
        set_offsets(settings, offsets)
    return offsets


def rebuild_neo4j(
    settings: Settings,
    libs: Path,
    workdir: Path,
    live_home: Path | None,
    control: tuple[Callable[[], None], Callable[[], None]] | None,
    progress: Progress | None = None,
) -> RebuildReport:
    """The whole rebuild. ``control`` (stop, start) swaps into ``live_home`` and finishes;
    without it the imported database is left staged in ``workdir/home`` for an operator."""
    report = RebuildReport(workdir=str(workdir), staged=str(workdir / "home"))
    clock = time.perf_counter()

    def lap(step: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        report.seconds[step] = now - clock
        clock = now

    live = read_live(settings)
    lap("read_live")
    state = RebuildState()
    tracker = Tracker(state, build_policy(settings))
    if settings.log_kind == "kafka":
        report.source = f"kafka:{settings.events_topic}"
        report.events, report.offsets = replay_kafka(settings, tracker, progress)
    else:
        report.source = f"local:{settings.home}"
        report.events = replay_local(settings, tracker, progress)
    lap("replay")
    planned = plan_alerts(state.alert_bodies(), live.alerts)
    report.alerts_queued = sum(p.queued for p in planned)
    csvs = write_csvs(state, planned, workdir / "csv", datetime.now(UTC))
    del state, tracker, planned
    report.counts = csvs.counts
    report.nodes, report.relationships = csvs.node_count, csvs.relationship_count
    lap("csv")
    run_import(libs, csvs, workdir / "home")
    lap("import")
    if control is None or live_home is None:
        _write_manifest(workdir, report, live.actions)
        return report
    stop, start = control
    report.previous = str(swap_in(workdir / "home", live_home, stop, start))
    lap("swap")
    finish(settings, live.actions)
    lap("schema")
    if report.offsets:
        set_offsets(settings, report.offsets)
    lap("offsets")
    return report
