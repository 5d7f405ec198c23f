"""Fixtures for the Kafka + Neo4j pipeline: the real broker and server from ``services/svc``.

Every pipeline gets its own topics (so tests never see each other's messages) and an empty
Neo4j; the worker is the real CLI command in a subprocess, so SIGKILL means what it says.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, OffsetSpec, TopicPartition
from kafka.errors import KafkaError
from neo4j import Driver, GraphDatabase
from pydantic import SecretStr

from graph.sqlite_store import SqliteStore
from graph.store import GraphSnapshot, GraphStore
from lineage.alerts import Alert
from lineage.events import Event
from lineage.identifiers import Pseudonymizer
from lineage.inbound import InboundParser
from lineage.policy import Policy
from lineage.reference_case import ReferenceCase, generate
from lineage.tracker import Tracker
from runtime.settings import Settings
from streams.consumer_group import projector_group_id
from streams.kafka_log import KafkaEventLog
from tests.conftest import TEST_KEY, require_service, without_lineage_settings

ROOT = Path(__file__).resolve().parents[2]
WORKER = [sys.executable, "-m", "cli.main", "worker", "--loglevel", "warn"]
CATCH_UP_TIMEOUT_S = 90.0


@dataclass(frozen=True)
class Services:
    bootstrap: str
    neo4j_uri: str
    neo4j_user: str
    neo4j_password: str


@pytest.fixture(scope="session")
def services() -> Services:
    return Services(
        bootstrap=require_service("LINEAGE_KAFKA_BOOTSTRAP"),
        neo4j_uri=require_service("LINEAGE_NEO4J_URI"),
        neo4j_user=os.environ.get("LINEAGE_NEO4J_USER", "neo4j"),
        neo4j_password=require_service("LINEAGE_NEO4J_PASSWORD"),
    )


@pytest.fixture(scope="session")
def case() -> ReferenceCase:
    return generate(users=150)


@pytest.fixture(scope="session")
def case_events(case: ReferenceCase, pseudonymizer: Pseudonymizer) -> list[Event]:
    parser = InboundParser(pseudonymizer)
    observed = datetime.now(UTC)
    return [parser.parse_record(record, observed) for record in case.records]


@dataclass(frozen=True)
class Reference:
    """What a clean, in-process, in-order run of the same events produces."""

    snapshot: GraphSnapshot
    alerts: list[Alert]


@pytest.fixture(scope="session")
def reference(case_events: list[Event], policy: Policy) -> Reference:
    return reference_of(case_events, policy)


def reference_of(events: Sequence[Event], policy: Policy) -> Reference:
    store = SqliteStore()
    Tracker(store, policy).apply(events)
    return Reference(store.snapshot(), store.alerts())


@dataclass
class Pipeline:
    """One isolated deployment: its topics, its worker subprocess, the shared Neo4j."""

    settings: Settings
    env: dict[str, str]
    store: GraphStore
    driver: Driver
    admin: Any  # kafka-python KafkaAdminClient
    logs: Path
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    # -- producing -------------------------------------------------------------------------
    def produce(self, events: Sequence[Event]) -> None:
        log = KafkaEventLog.from_settings(self.settings)
        try:
            log.append(events)
        finally:
            log.close()

    # -- the worker ------------------------------------------------------------------------
    def start_worker(self, options: Sequence[str] = ()) -> subprocess.Popen[bytes]:
        out = (self.logs / f"worker-{len(self.workers)}.log").open("wb")
        command = [*WORKER, *options]
        worker = subprocess.Popen(command, cwd=ROOT, env=self.env, stdout=out, stderr=out)
        self.workers.append(worker)
        return worker

    def kill_worker(self) -> None:
        worker = self.workers[-1]
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)

    def stop_workers(self) -> None:
        for worker in self.workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
                try:
                    worker.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    worker.kill()
                    worker.wait(timeout=10)

    def worker_output(self) -> str:
        return "\n".join(path.read_text(errors="replace")[-3000:] for path in self.logs.iterdir())

    # -- progress --------------------------------------------------------------------------
    def lag(self) -> tuple[int, int]:
        """(events committed by the projector group, events in the topic)."""
        topic = self.settings.events_topic
        parts = [TopicPartition(topic, p) for p in range(self.settings.topic_partitions)]
        ends = self.admin.list_partition_offsets({tp: OffsetSpec.LATEST for tp in parts})
        group = projector_group_id(self.settings)
        committed = self.admin.list_group_offsets(group)[group]
        done = sum(committed[tp].offset for tp in parts if tp in committed)
        return done, sum(ends[tp].offset for tp in parts)

    def wait_until(self, condition: Callable[[int, int], bool], what: str) -> None:
        deadline = time.monotonic() + CATCH_UP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.workers and self.workers[-1].poll() is not None:
                pytest.fail(f"worker exited early:\n{self.worker_output()}")
            try:
                if condition(*self.lag()):
                    return
            except KafkaError as exc:  # e.g. a fresh broker still creating __consumer_offsets
                if not exc.retriable:
                    raise
            time.sleep(0.2)
        pytest.fail(f"timed out waiting for {what}; lag {self.lag()}:\n{self.worker_output()}")

    def wait_caught_up(self) -> None:
        """Committed == produced: the graph holds every event and the outbox was sent
        (the agent acks a batch only after both)."""
        self.wait_until(lambda done, total: total > 0 and done == total, "the worker to catch up")

    # -- reading back ----------------------------------------------------------------------
    def read_topic(self, topic: str) -> list[Any]:
        """Every record of ``topic``, read to its current end (no group, nothing committed)."""
        consumer = KafkaConsumer(bootstrap_servers=self.settings.kafka_bootstrap, group_id=None)
        try:
            parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
            consumer.assign(parts)
            consumer.seek_to_beginning(*parts)
            ends = consumer.end_offsets(parts)
            records: list[Any] = []
            deadline = time.monotonic() + 30
            while any(consumer.position(tp) < ends[tp] for tp in parts):
                assert time.monotonic() < deadline, f"could not read {topic} to its end"
                for batch in consumer.poll(timeout_ms=500).values():
                    records += batch
            return records
        finally:
            consumer.close()

    def published_alert_ids(self) -> list[str]:
        return [
            Alert.model_validate_json(r.value).alert_id
            for r in self.read_topic(self.settings.alerts_topic)
        ]

    def cypher(self, query: str, **params: Any) -> list[dict[str, Any]]:
        records, _, _ = self.driver.execute_query(
            query, params, database_=self.settings.neo4j_database
        )
        return [record.data() for record in records]


@pytest.fixture
def pipeline(services: Services, tmp_path: Path) -> Iterator[Pipeline]:
    with open_pipeline(services, tmp_path) as pipe:
        yield pipe


@contextmanager
def open_pipeline(services: Services, tmp_path: Path) -> Iterator[Pipeline]:
    from graph.neo4j_store import Neo4jStore

    run = f"it-{uuid.uuid4().hex[:10]}"
    settings = Settings(
        kafka_bootstrap=services.bootstrap,
        events_topic=f"{run}.events",
        alerts_topic=f"{run}.alerts",
        incidents_topic=f"{run}.incidents",
        deadletter_topic=f"{run}.deadletter",
        changes_topic=f"{run}.changes",
        state_dir=tmp_path / "partitions",
        key=TEST_KEY.decode(),
        store="neo4j",
        neo4j_uri=services.neo4j_uri,
        neo4j_user=services.neo4j_user,
        neo4j_password=services.neo4j_password,
        home=tmp_path / "home",
    )
    # the worker and CLI subprocesses get the same settings, the way an operator sets them
    env = without_lineage_settings()
    env |= {
        f"LINEAGE_{name.upper()}": _env_value(value)
        for name, value in settings.model_dump(exclude_none=True).items()
    }
    store = Neo4jStore(services.neo4j_uri, services.neo4j_user, services.neo4j_password)
    store.clear()
    driver = GraphDatabase.driver(
        services.neo4j_uri, auth=(services.neo4j_user, services.neo4j_password)
    )
    logs = tmp_path / "logs"
    logs.mkdir()
    admin = KafkaAdminClient(bootstrap_servers=services.bootstrap)
    pipe = Pipeline(settings, env, store, driver, admin, logs)
    try:
        yield pipe
    finally:
        pipe.stop_workers()
        admin.close()
        driver.close()
        store.close()


def _env_value(value: object) -> str:
    return value.get_secret_value() if isinstance(value, SecretStr) else str(value)


@pytest.fixture(scope="class")
def reference_run(
    services: Services, case_events: list[Event], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pipeline]:
    """The reference case produced once and projected by one worker, for read-only checks."""
    with open_pipeline(services, tmp_path_factory.mktemp("reference")) as pipe:
        pipe.produce(case_events)
        pipe.start_worker()
        pipe.wait_caught_up()
        yield pipe
