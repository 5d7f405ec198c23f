"""The production event log: canonical events on a Kafka topic (kafka-python producer).

The log is the source of truth and the graph a projection of it, so the events topic keeps
its records forever (``retention.ms=-1``) and ``lineage worker --from-beginning`` can rebuild.
Every kafka-python error is translated into :class:`lineage.errors.StoreError`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, OffsetSpec, TopicPartition
from kafka.errors import KafkaError, NoError

from lineage.errors import StoreError
from lineage.event_identity import Part
from lineage.events import INCIDENT_EVENT_TYPES, DataFlowed, DataRead, DataUsed, Event, dump_event
from runtime.settings import Settings
from streams.log import Appended
from streams.partitioning import route
from streams.topics import (
    DEADLETTER_MAX_BYTES,
    KAFKA_MESSAGE_MAX_BYTES,
    ORIGIN_HEADER,
    PART_HEADER,
    REASON_HEADER,
    TRUNCATED_HEADER,
)

log = logging.getLogger(__name__)
# kafka-python logs each failed connection attempt at ERROR level. Without a handler anywhere
# Python's last-resort handler would print them all on stderr of the CLI commands; a process
# that configures logging (the worker) still gets them through its own handlers.
logging.getLogger("kafka").addHandler(logging.NullHandler())

TOPIC_ALREADY_EXISTS = 36
#: Bounded waits, so an unreachable broker is an error within seconds, not a hang.
CONNECT_TIMEOUT_MS = 10_000
#: A record Kafka has not acknowledged within this long (retries included: a broker away for
#: longer) fails; ``append`` waits a little longer, so it sees every record settled.
DELIVERY_TIMEOUT_MS = 30_000
REQUEST_TIMEOUT_MS = 20_000  # kafka-python wants request timeout + linger <= delivery timeout
SEND_TIMEOUT_S = DELIVERY_TIMEOUT_MS / 1000 + 5.0
#: Closing after a failure: what did not settle by then is reported as not delivered.
CLOSE_TIMEOUT_BROKEN_S = 2.0
#: The largest event body sent (the record batch adds the key, headers and framing).
EVENT_MAX_BYTES = KAFKA_MESSAGE_MAX_BYTES - 16 * 1024
KEEP_FOREVER = {"retention.ms": "-1", "retention.bytes": "-1"}
#: Alerts are keyed by alert_id: compaction keeps each one, and drops the rare re-send.
ONE_PER_KEY = {"cleanup.policy": "compact"}


def partition_key(event: Event) -> bytes:
    """The Kafka message key. With keyed routing (``lineage worker``) it picks the partition:
    an identifier's events by its ref, flows, uses and reads by the dataset they read, so
    each key's state updates stay on one worker. With partitioned routing (``lineage
    processor``) :mod:`streams.partitioning` picks it (an identifier's events by its ref,
    which is also this key, so Kafka's default partitioner agrees)."""
    if isinstance(event, DataFlowed):
        return event.source.key.encode()
    if isinstance(event, DataUsed | DataRead):  # a read: its dataset, like a use
        return event.dataset.key.encode()
    if isinstance(event, INCIDENT_EVENT_TYPES):  # an officer's action: about no identifier
        return event.incident_id.encode()
    return event.identifier.ref.encode()  # IdentifierCollected, IdentifierErased


def fit_message(event: Event, limit: int | None = None) -> list[bytes]:
    """The event's body, or, when it is over Kafka's message limit, the bodies of its parts.

    A flow or use that lists identifiers projects one fact per identifier, each carrying the
    event's id and time (``lineage.projection``). So the same event listing the identifiers in
    parts, under the same ``event_id``, gives exactly the same graph: the Kafka log sends it as
    several messages (header ``lineage-part: i/n``), halving the list until each part fits.
    Any other event over the limit is an error, raised before anything is sent.
    """
    return [body for _, body in fit_pieces(event, limit)]


def fit_pieces(event: Event, limit: int | None = None) -> list[tuple[Event, bytes]]:
    """``fit_message``'s pieces, each event with its body."""
    limit = EVENT_MAX_BYTES if limit is None else limit
    body = dump_event(event).encode()
    if len(body) <= limit:
        return [(event, body)]
    listed = event.identifiers if isinstance(event, DataFlowed | DataUsed) else None
    if listed is None or len(listed) < 2:
        raise StoreError(
            f"event {event.event_id} is {len(body):,} bytes once pseudonymized, over "
            f"Kafka's {KAFKA_MESSAGE_MAX_BYTES:,}-byte message limit"
        )
    half = len(listed) // 2
    return [
        piece
        for identifiers in (listed[:half], listed[half:])
        for piece in fit_pieces(event.model_copy(update={"identifiers": identifiers}), limit)
    ]


def event_messages(event: Event, limit: int | None = None) -> list[tuple[bytes, Part | None]]:
    """``fit_message``'s bodies, each with its part (header ``lineage-part``) when the event
    is split, ``None`` when it travels whole."""
    bodies = fit_message(event, limit)
    if len(bodies) == 1:
        return [(bodies[0], None)]
    return [(body, Part(n, len(bodies))) for n, body in enumerate(bodies, start=1)]


def partitioned_messages(
    event: Event, partitions: int, limit: int | None = None
) -> list[tuple[int, bytes, Part | None]]:
    """The event's messages on a topic of ``partitions`` partitions (:mod:`streams.partitioning`):
    (partition, body, part), each share cut to Kafka's limit."""

    def split(share: Event) -> list[tuple[Event, bytes | None]]:
        return list(fit_pieces(share, limit))

    return [
        (r.partition, r.body if r.body is not None else dump_event(r.event).encode(), r.part)
        for r in route(event, partitions, split)
    ]


def ensure_topics(settings: Settings) -> None:
    """Create the events, alerts, incidents, changes and dead-letter topics with
    ``topic_partitions`` if absent."""
    wanted: dict[str, dict[str, Any]] = {
        settings.events_topic: {"configs": KEEP_FOREVER},
        settings.alerts_topic: {"configs": ONE_PER_KEY},
        settings.incidents_topic: {"configs": ONE_PER_KEY},  # the latest message per incident
        settings.changes_topic: {"configs": KEEP_FOREVER},  # until the view's rebuild reads it
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
    so a returned event is durable; Kafka cannot tell duplicates, the worker's MERGEs can.

    Every send is settled within ``DELIVERY_TIMEOUT_MS`` (acknowledged or failed, never left
    pending): ``delivered`` and ``undelivered`` count the events, so a producer that loses the
    broker can say what it sent and what it could not. ``close`` never raises.
    """

    def __init__(self, settings: Settings) -> None:
        self._events_topic = settings.events_topic
        self._deadletter_topic = settings.deadletter_topic
        #: Events Kafka acknowledged / reported as not written / not settled yet.
        self.delivered = 0
        self.failed = 0
        self._unsettled: list[Any] = []
        self._broken = False
        self._partition_count: int | None = None
        self._routing = settings.event_routing
        warn_if_slow_crc()
        try:
            self._producer = KafkaProducer(
                bootstrap_servers=settings.require_kafka(),
                client_id="lineage-event-log",
                acks="all",
                enable_idempotence=True,
                linger_ms=5,
                max_block_ms=CONNECT_TIMEOUT_MS,
                request_timeout_ms=REQUEST_TIMEOUT_MS,
                delivery_timeout_ms=DELIVERY_TIMEOUT_MS,
                max_request_size=KAFKA_MESSAGE_MAX_BYTES,
            )
        except KafkaError as exc:
            raise StoreError(f"cannot reach Kafka at {settings.kafka_bootstrap}: {exc}") from exc

    @classmethod
    def from_settings(cls, settings: Settings) -> KafkaEventLog:
        ensure_topics(settings)
        return cls(settings)

    @property
    def undelivered(self) -> int:
        """Events handed to Kafka that it did not acknowledge (failed, or still unsettled)."""
        return self.failed + len(self._unsettled)

    def append(self, events: Sequence[Event]) -> Appended:
        # Every event is routed, sized and split before anything of the batch is sent.
        messages = [(partition_key(event), self._messages(event)) for event in events]
        futures = []
        try:
            for key, routed in messages:
                for partition, body, part in routed:
                    headers = None if part is None else [(PART_HEADER, part.header())]
                    futures.append(self._send(self._events_topic, body, key, headers, partition))
        finally:
            self._unsettled += futures
        self._wait(futures, "append to the event log")
        return Appended(list(events))  # Kafka cannot tell; the graph's merges make them no-ops

    def _messages(self, event: Event) -> list[tuple[int | None, bytes, Part | None]]:
        """Keyed (``lineage worker``): each event once, on its key's partition. Partitioned
        (``lineage processor``): split and broadcast by :mod:`streams.partitioning`."""
        if self._routing == "partitioned":
            return list(partitioned_messages(event, self._partitions()))
        return [(None, body, part) for body, part in event_messages(event)]

    def _partitions(self) -> int:
        """The events topic's partition count, asked once (it is fixed for the topic's life)."""
        if self._partition_count is None:
            try:
                found = self._producer.partitions_for(self._events_topic)
            except KafkaError as exc:
                raise StoreError(f"cannot read {self._events_topic}'s partitions: {exc}") from exc
            if not found:
                raise StoreError(f"the topic {self._events_topic} has no partitions")
            self._partition_count = len(found)
        return self._partition_count

    def dead_letter(self, raw: bytes, reason: str, origin: str) -> None:
        """Keep the rejected bytes with the reason; input larger than ``DEADLETTER_MAX_BYTES``
        (a line over Kafka's 1 MiB limit) is cut to that size, and header ``truncated`` holds
        its original size."""
        headers = [(REASON_HEADER, reason.encode()), (ORIGIN_HEADER, origin.encode())]
        if len(raw) > DEADLETTER_MAX_BYTES:
            headers.append((TRUNCATED_HEADER, str(len(raw)).encode()))
            raw = raw[:DEADLETTER_MAX_BYTES]
        future = self._send(self._deadletter_topic, raw, None, headers)
        self._wait([future], "dead-letter a record")

    def close(self) -> None:
        """Flush and close within bounded time. Never raises (it runs in ``finally`` blocks,
        often after the broker went away): what was not acknowledged is in ``undelivered``."""
        timeout = CLOSE_TIMEOUT_BROKEN_S if self._broken else SEND_TIMEOUT_S
        try:
            self._producer.close(timeout=timeout)
        except Exception as exc:  # a close must not mask the real outcome
            log.warning("closing the Kafka producer failed: %s", _describe(exc))
        self._settle()

    def _send(
        self,
        topic: str,
        value: bytes,
        key: bytes | None,
        headers: list[tuple[str, bytes]] | None = None,
        partition: int | None = None,
    ) -> Any:
        try:
            placed = {} if partition is None else {"partition": partition}
            return self._producer.send(topic, value=value, key=key, headers=headers, **placed)
        except KafkaError as exc:
            self._broken = True
            raise StoreError(f"cannot produce to {topic}: {_describe(exc)}") from exc

    def _wait(self, futures: Sequence[Any], what: str) -> None:
        """Until every future settled (the delivery timeout bounds it), then the outcome."""
        try:
            self._producer.flush(timeout=SEND_TIMEOUT_S)
        except KafkaError as exc:
            log.debug("flush did not complete: %s", exc)
        self._settle()
        failed = [f for f in futures if not f.succeeded()]
        if failed:
            self._broken = True
            error = next((f.exception for f in failed if f.exception is not None), None)
            why = _describe(error) if error is not None else "no acknowledgement in time"
            raise StoreError(
                f"cannot {what}: Kafka did not acknowledge {len(failed)} of {len(futures)} "
                f"record(s) ({why})"
            )

    def _settle(self) -> None:
        pending = []
        for future in self._unsettled:
            if not future.is_done:
                pending.append(future)
            elif future.succeeded():
                self.delivered += 1
            else:
                self.failed += 1
        self._unsettled = pending


def _describe(exc: BaseException) -> str:
    """One line: kafka-python's messages can span lines or be empty."""
    name, text = type(exc).__name__, " ".join(str(exc).split())
    if not text or text == name:
        return name
    return text if text.startswith(f"{name}:") else f"{name}: {text}"


def crc32c_accelerated() -> bool:
    """kafka-python checks every record batch's CRC-32C with the ``crc32c`` C extension when
    it is importable (a dependency of this project), else in pure Python: ~10x slower."""
    from kafka.record import util

    return getattr(util, "crc32c_c", None) is not None


def warn_if_slow_crc() -> None:
    if not crc32c_accelerated():
        log.warning(
            "the crc32c package is not installed: kafka-python computes checksums in pure "
            "Python (pip install crc32c)"
        )


@dataclass(frozen=True)
class KafkaDeadLetter:
    """A record of the dead-letter topic as ``lineage dead-letters`` shows it: where, when,
    from where and why; never the rejected bytes (they may hold raw identifiers)."""

    id: str  # partition:offset
    at: str  # the record's timestamp, ISO 8601 UTC
    origin: str
    reason: str
    size: int  # bytes kept on the topic
    truncated_from: int | None  # the original size, when it was cut to DEADLETTER_MAX_BYTES


def read_dead_letters(settings: Settings, timeout_s: float = 30.0) -> list[KafkaDeadLetter]:
    """Every record of the dead-letter topic, read to its current end (no consumer group,
    nothing committed), in timestamp order."""
    topic = settings.deadletter_topic
    warn_if_slow_crc()
    try:
        consumer = KafkaConsumer(
            bootstrap_servers=settings.require_kafka(),
            client_id="lineage-dead-letters",
            allow_auto_create_topics=False,
            group_id=None,
            enable_auto_commit=False,
            request_timeout_ms=REQUEST_TIMEOUT_MS,
        )
    except KafkaError as exc:
        raise StoreError(f"cannot reach Kafka at {settings.kafka_bootstrap}: {exc}") from exc
    try:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            return []  # never created: nothing was dead-lettered
        parts = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        ends = consumer.end_offsets(parts)
        found: list[KafkaDeadLetter] = []
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < ends[tp] for tp in parts):
            if time.monotonic() > deadline:
                raise StoreError(f"could not read {topic} to its end within {timeout_s:.0f} s")
            for tp, records in consumer.poll(timeout_ms=500).items():
                found += [_dead_letter(r) for r in records if r.offset < ends[tp]]
        return sorted(found, key=lambda d: (d.at, d.id))
    except KafkaError as exc:
        raise StoreError(f"cannot read {topic}: {_describe(exc)}") from exc
    finally:
        consumer.close()


def _dead_letter(record: Any) -> KafkaDeadLetter:
    headers = {key: value for key, value in record.headers or ()}

    def text(name: str) -> str:
        value = headers.get(name)
        return value.decode("utf-8", "replace") if isinstance(value, bytes) else ""

    truncated = text(TRUNCATED_HEADER)
    at = datetime.fromtimestamp(record.timestamp / 1000, UTC) if record.timestamp >= 0 else None
    return KafkaDeadLetter(
        id=f"{record.partition}:{record.offset}",
        at=at.isoformat() if at is not None else "",
        origin=text(ORIGIN_HEADER),
        reason=text(REASON_HEADER),
        size=len(record.value or b""),
        truncated_from=int(truncated) if truncated.isdigit() else None,
    )
