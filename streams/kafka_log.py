"""The production event log: canonical events on a Kafka topic (kafka-python producer).

The log is the source of truth and the graph a projection of it, so the events topic keeps
its records forever (``retention.ms=-1``) and ``lineage worker --from-beginning`` can rebuild.
Every kafka-python error is translated into :class:`lineage.errors.StoreError`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from kafka import KafkaAdminClient, KafkaProducer, OffsetSpec, TopicPartition
from kafka.errors import KafkaError, NoError

from lineage.errors import StoreError
from lineage.events import DataFlowed, DataUsed, Event, dump_event
from runtime.settings import Settings
from streams.log import Appended
from streams.topics import ORIGIN_HEADER, REASON_HEADER

log = logging.getLogger(__name__)

TOPIC_ALREADY_EXISTS = 36
#: Bounded waits, so an unreachable broker is an error within seconds, not a hang.
CONNECT_TIMEOUT_MS = 10_000
SEND_TIMEOUT_S = 30.0
KEEP_FOREVER = {"retention.ms": "-1", "retention.bytes": "-1"}
#: Alerts are keyed by alert_id: compaction keeps each one, and drops the rare re-send.
ONE_PER_KEY = {"cleanup.policy": "compact"}


def partition_key(event: Event) -> bytes:
    """The Kafka message key, which picks the partition and so the worker that applies it.

    Events about one identifier (collected, erased) are keyed by its ref, so one identifier's
    history stays in order on one partition; flows and uses are keyed by the dataset they read
    (``source`` / ``dataset``), so the runs of a whole-dataset job stay in order per dataset.
    This is about keeping the state updates for one key on one worker, not about correctness:
    the core's propagation is order-independent (it reasons on event times, not arrival).
    """
    if isinstance(event, DataFlowed):
        return event.source.key.encode()
    if isinstance(event, DataUsed):
        return event.dataset.key.encode()
    return event.identifier.ref.encode()  # IdentifierCollected, IdentifierErased


def ensure_topics(settings: Settings) -> None:
    """Create the events, alerts and dead-letter topics with ``topic_partitions`` if absent."""
    wanted: dict[str, dict[str, Any]] = {
        settings.events_topic: {"configs": KEEP_FOREVER},
        settings.alerts_topic: {"configs": ONE_PER_KEY},
        settings.deadletter_topic: {},
    }
    admin = _admin(settings)
    try:
        existing = set(admin.list_topics())
        missing = {
            name: {"num_partitions": settings.topic_partitions, **options}
            for name, options in wanted.items()
            if name not in existing
        }
        if not missing:
            return
        result = admin.create_topics(missing, raise_errors=False, wait_for_metadata=False)
        failed = [
            f"{t['name']}: {t['error_message']}"
            for t in result["topics"]
            if t["error_code"] not in (0, TOPIC_ALREADY_EXISTS)
        ]
        if failed:
            raise StoreError(f"cannot create Kafka topics: {'; '.join(failed)}")
        admin.wait_for_topics(list(missing), timeout_ms=CONNECT_TIMEOUT_MS)
        log.info("created Kafka topics %s", sorted(missing))
    except KafkaError as exc:
        raise StoreError(f"cannot create Kafka topics: {exc}") from exc
    finally:
        admin.close()


def rewind_group(settings: Settings, group_id: str) -> None:
    """Set ``group_id``'s committed offsets on the events topic to the earliest record, so the
    next worker re-consumes the whole log (a replay). Refused while a worker of it is alive."""
    admin = _admin(settings)
    try:
        partitions = admin.describe_topics([settings.events_topic])[0]["partitions"]
        specs = {
            TopicPartition(settings.events_topic, p["partition_index"]): OffsetSpec.EARLIEST
            for p in partitions
        }
        result = admin.reset_group_offsets(group_id, specs)
    except KafkaError as exc:
        raise StoreError(f"cannot rewind consumer group {group_id}: {exc}") from exc
    finally:
        admin.close()
    failed = sorted({r["error"].__name__ for r in result.values() if r["error"] is not NoError})
    if failed:
        raise StoreError(
            f"cannot rewind consumer group {group_id} ({', '.join(failed)}): "
            "stop every running worker first"
        )


def _admin(settings: Settings) -> Any:
    try:
        return KafkaAdminClient(
            bootstrap_servers=settings.require_kafka(),
            client_id="lineage-admin",
            bootstrap_timeout_ms=CONNECT_TIMEOUT_MS,
        )
    except KafkaError as exc:
        raise StoreError(f"cannot reach Kafka at {settings.kafka_bootstrap}: {exc}") from exc


class KafkaEventLog:
    """``EventLog`` on Kafka: acks from all in-sync replicas, idempotent producer, a short
    linger so a batch of appends travels in few requests. ``append`` flushes before it returns,
    so a returned event is durable; Kafka cannot tell duplicates, the worker's MERGEs can."""

    def __init__(self, settings: Settings) -> None:
        self._events_topic = settings.events_topic
        self._deadletter_topic = settings.deadletter_topic
        try:
            self._producer = KafkaProducer(
                bootstrap_servers=settings.require_kafka(),
                client_id="lineage-event-log",
                acks="all",
                enable_idempotence=True,
                linger_ms=5,
                max_block_ms=CONNECT_TIMEOUT_MS,
            )
        except KafkaError as exc:
            raise StoreError(f"cannot reach Kafka at {settings.kafka_bootstrap}: {exc}") from exc

    @classmethod
    def from_settings(cls, settings: Settings) -> KafkaEventLog:
        ensure_topics(settings)
        return cls(settings)

    def append(self, events: Sequence[Event]) -> Appended:
        futures = [
            self._send(self._events_topic, dump_event(event).encode(), partition_key(event))
            for event in events
        ]
        self._wait(futures, "append to the event log")
        return Appended(list(events))  # Kafka cannot tell; the graph's merges make them no-ops

    def dead_letter(self, raw: bytes, reason: str, origin: str) -> None:
        headers = [(REASON_HEADER, reason.encode()), (ORIGIN_HEADER, origin.encode())]
        future = self._send(self._deadletter_topic, raw, None, headers)
        self._wait([future], "dead-letter a record")

    def close(self) -> None:
        try:
            self._producer.close(timeout=SEND_TIMEOUT_S)
        except KafkaError as exc:
            raise StoreError(f"closing the Kafka producer failed: {exc}") from exc

    def _send(
        self,
        topic: str,
        value: bytes,
        key: bytes | None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> Any:
        try:
            return self._producer.send(topic, value=value, key=key, headers=headers)
        except KafkaError as exc:
            raise StoreError(f"cannot produce to {topic}: {exc}") from exc

    def _wait(self, futures: Sequence[Any], what: str) -> None:
        try:
            self._producer.flush(timeout=SEND_TIMEOUT_S)
            for future in futures:
                future.get(timeout=SEND_TIMEOUT_S)
        except KafkaError as exc:
            raise StoreError(f"cannot {what}: {exc}") from exc
