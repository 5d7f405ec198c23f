"""The projector: events topic -> validation -> graph (``Tracker``) -> alerts topic.

Delivery: at-least-once in, exactly-once effect in the graph. The worker is a plain consumer
loop with manual commits (kafka-python, ``enable_auto_commit=False``): it polls a batch,
applies it, publishes the alerts it stored, and only then commits the batch's offsets. Nothing
else commits: a batch that was not applied (a crash, SIGKILL, a store that stayed away longer
than the retry budget) is redelivered. Store writes are keyed MERGEs and ``Tracker.apply``
commits as one store unit (``GraphStore.atomically``), so a redelivered batch is a no-op and a
half-applied one cannot exist. (faust-streaming's ``Stream.take_events`` acks every event of a
batch in a ``finally`` around its ``yield``: an agent that raised, or was cancelled at shutdown
in the middle of a batch, had that batch acked and then committed, unapplied. This loop
replaced it.)

Failures, by what helps (:mod:`graph.errors`):

- transient (Neo4j away, a lost connection, a deadlock; a broker away): the same call is
  retried with exponential backoff (tenacity), each retry logged, for at most
  ``RETRY_BUDGET_S``; then the worker stops without committing (the batch is redelivered).
- permanent (a constraint violation, a type error, a transaction too large or too slow, an
  exception the core raised for some event): the batch is split in halves and each half applied
  on its own, recursively, so the events that can be applied are, and each event that still
  fails alone is dead-lettered with its reason. At most ``2n - 1`` applies for ``n`` events:
  it never loops.
- fatal (credentials, a missing database): no retry and no dead letter; the worker stops.

Alerts leave through the store's outbox: stored with the graph change, sent (from memory,
right after the units of the batch), acked by Kafka, then marked published. A crash or a stop
between the store and the mark leaves them in the outbox, which the worker reads and sends
when it starts again (consumers key on alert_id: a re-send is a duplicate, never a loss).
Invalid input goes to the dead-letter topic with its original bytes and the worker goes on;
so does a message reusing an event id that other content owns (:mod:`lineage.event_identity`:
the claim is part of the unit, so a redelivered batch decides the same way).
A first SIGTERM/SIGINT lets the batch in hand finish (applied, published, committed) and then
stops; a second one stops at once, committing nothing more.
"""

from __future__ import annotations

import logging
import math
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from types import FrameType
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from pydantic import ValidationError
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    sleep_using_event,
    stop_after_delay,
    stop_when_event_set,
    wait_exponential,
)

from graph.errors import (
    FatalStoreError,
    PermanentStoreError,
    TransientStoreError,
    is_transient,
)
from graph.store import GraphStore
from lineage.alerts import Alert
from lineage.errors import InvalidEventError, StoreError
from lineage.event_identity import Claim, Part, claims_of, reused_reason
from lineage.events import Event, parse_event
from lineage.inbound import describe_validation_error
from lineage.policy import Policy
from lineage.tracker import Claimed, Tracker
from runtime.metrics import LineageMetrics, WorkerMetrics
from runtime.settings import Settings

if TYPE_CHECKING:
    from runtime.incident_publisher import IncidentMessage
from streams.consumer_group import HEARTBEAT_INTERVAL_S, SESSION_TIMEOUT_S, projector_group_id
from streams.topics import (
    DEADLETTER_MAX_BYTES,
    ORIGIN_HEADER,
    PART_HEADER,
    REASON_HEADER,
    TRUNCATED_HEADER,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Adaptive batches (:class:`BatchSizer`): a batch closes as soon as the worker has caught up
#: with every partition it owns (so an idle worker applies an event, and sends its alert, right
#: after the poll that brought it), or when it reaches the current target. The target starts at
#: ``MIN_BATCH`` and doubles after each full batch while the worker is behind, up to
#: ``MAX_BATCH`` events (tens of thousands of rows in one transaction, the size Neo4j
#: recommends for bulk writes), and halves again once batches come in short.
MIN_BATCH = 500
MAX_BATCH = 8_000
#: A batch also closes at this many bytes of records: listed flows name thousands of
#: identifiers each, so bytes bound a unit's rows where event counts do not.
MAX_BATCH_BYTES = 8 << 20
#: While behind, how long a batch may wait for more records to reach its target.
BATCH_WINDOW_S = 0.25
#: How long an idle poll waits before the loop looks at the stop flag again.
IDLE_POLL_S = 0.5
#: Alerts read from the outbox, sent and marked published per round: each round is a read,
#: a producer flush and a write, so a backlog's thousands of alerts go in few rounds.
OUTBOX_BATCH = 5_000
#: Transient failures: first wait, and the cap of the doubling waits between attempts.
RETRY_FIRST_S = 0.2
RETRY_MAX_S = 10.0
#: How long one call (an apply, a publish, a commit) is retried before the worker gives up and
#: stops, uncommitted: a Neo4j restart or a broker failover of a few minutes is waited out.
RETRY_BUDGET_S = 300.0
#: Kafka evicts a consumer that does not poll for this long; above the retry budget, so a
#: worker waiting out an outage keeps its partitions.
MAX_POLL_INTERVAL_S = RETRY_BUDGET_S + 120.0
PRODUCER_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Inbound:
    raw: bytes | None
    origin: str  # topic:partition:offset, for the dead-letter header and logs
    key: bytes | None = None
    part: bytes | None = None  # the PART_HEADER of a split event ("i/n")
    offset: int | None = None  # in its partition, for a store that keeps its position


@dataclass(frozen=True)
class Rejected:
    raw: bytes
    reason: str
    origin: str
    key: bytes | None = None  # the original key: a dead letter keeps its partition affinity


class Outlet(Protocol):
    """Where the projector's output goes; both methods return once the broker acked, and raise
    a :class:`TransientStoreError` when retrying can help."""

    def publish_alerts(self, alerts: Sequence[Alert]) -> None: ...

    def dead_letter(self, rejects: Sequence[Rejected]) -> None: ...


@dataclass(frozen=True)
class Accepted:
    event: Event
    item: Inbound
    claims: tuple[Claim, ...]  # what the message claims of its event id


def triage(tracker: Tracker, batch: Sequence[Inbound]) -> tuple[list[Accepted], list[Rejected]]:
    """Split a batch into valid events and rejects; reasons never echo input values."""
    accepted: list[Accepted] = []
    rejected: list[Rejected] = []
    for item in batch:
        try:
            if not item.raw:
                raise InvalidEventError("empty message")
            event = parse_event(item.raw)
            tracker.check(event)
            part = None if item.part is None else Part.parse(item.part)
        except ValidationError as exc:
            reason = describe_validation_error(exc)
            rejected.append(Rejected(item.raw or b"", reason, item.origin, item.key))
        except InvalidEventError as exc:
            rejected.append(Rejected(item.raw or b"", exc.reason, item.origin, item.key))
        else:
            accepted.append(Accepted(event, item, claims_of(event, part)))
    return accepted, rejected


def apply_failure_reason(exc: BaseException) -> str:
    """A dead letter's reason for an event the store or the core refused: the server's status
    code or the exception's type, never its message (which can quote stored values)."""
    if isinstance(exc, PermanentStoreError):
        if exc.oversize:
            return f"apply failed: too large for one graph store transaction ({exc.code})"
        return f"apply failed: refused by the graph store ({exc.code})"
    return f"apply failed: {type(exc).__name__}"


@dataclass
class Counters:
    applied: int = 0
    dead_lettered: int = 0
    splits: int = 0
    retries: int = 0
    published: int = 0


@dataclass
class Retry:
    """Bounded retries of transient failures (tenacity): exponential backoff from
    ``RETRY_FIRST_S`` to ``RETRY_MAX_S``, every retry logged, at most ``budget_s`` per call;
    ``stop`` (set by SIGTERM) ends the waiting early. The last error is re-raised."""

    budget_s: float = RETRY_BUDGET_S
    stop: threading.Event = field(default_factory=threading.Event)
    first_s: float = RETRY_FIRST_S
    max_s: float = RETRY_MAX_S
    counters: Counters = field(default_factory=Counters)

    def __call__(self, what: str, function: Callable[..., T], *args: Any) -> T:
        def before_sleep(state: RetryCallState) -> None:
            self.counters.retries += 1
            exc = state.outcome.exception() if state.outcome else None
            log.warning(
                "%s failed (attempt %d, %.1fs so far: %s: %s); retrying in %.1fs",
                what,
                state.attempt_number,
                state.seconds_since_start,
                type(exc).__name__,
                _short(exc),
                state.upcoming_sleep,
            )

        retrying = Retrying(
            retry=retry_if_exception(is_transient),
            wait=wait_exponential(multiplier=self.first_s, max=self.max_s),
            stop=stop_after_delay(self.budget_s) | stop_when_event_set(self.stop),
            sleep=sleep_using_event(self.stop),
            before_sleep=before_sleep,
            reraise=True,
        )
        return retrying(function, *args)


def _short(exc: BaseException | None, limit: int = 300) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class Projector:
    """Applies batches and drains the outbox; transport-free, so any loop (and the unit tests'
    fake outlet) can drive it. Raises only what must stop the worker: a fatal store error, or
    a transient one that outlived the retry budget (the caller must then not commit).
    ``metrics``: the Prometheus counters it keeps (a registry nobody serves when not given)."""

    def __init__(
        self,
        store: GraphStore,
        policy: Policy,
        outlet: Outlet,
        retry: Retry | None = None,
        metrics: LineageMetrics | None = None,
        stage: Callable[[Sequence[Accepted]], None] | None = None,
    ) -> None:
        self._store = store
        self._tracker = Tracker(store, policy)
        self._outlet = outlet
        self.retry = retry or Retry()
        self.counters = self.retry.counters
        self.metrics = metrics or LineageMetrics()
        #: Called before each unit with the messages it applies (a partition's store stages
        #: its position there, so the unit commits it).
        self._stage = stage

    def handle(self, batch: Sequence[Inbound]) -> None:
        """Dead-letter the invalid, apply the rest, then send the alerts the units stored
        (from memory: the outbox is read back only by ``drain_outbox``)."""
        accepted, rejected = triage(self._tracker, batch)
        if rejected:
            self._dead_letter(rejected)
            log.warning("dead-lettered %d invalid message(s)", len(rejected))
        alerts: list[Alert] = []
        if accepted:
            self._apply(accepted, alerts)
        for start in range(0, len(alerts), OUTBOX_BATCH):
            self._publish(alerts[start : start + OUTBOX_BATCH])

    def drain_outbox(self) -> int:
        """Send what the outbox still holds: alerts stored before a crash (or a stop while
        publishing) but never confirmed sent. Run when the worker starts."""
        sent = 0
        while pending := self.retry(
            "reading the alert outbox", self._store.unpublished_alerts, OUTBOX_BATCH
        ):
            self._publish(pending)
            sent += len(pending)
        return sent

    def _publish(self, alerts: Sequence[Alert]) -> None:
        self.retry("publishing alerts", self._outlet.publish_alerts, alerts)
        self.retry("marking alerts published", self._store.mark_published, alerts)
        self.counters.published += len(alerts)
        log.info("published %d alert(s)", len(alerts))

    def _apply(self, accepted: list[Accepted], alerts: list[Alert]) -> None:
        """Apply events as one unit; if the store or the core refuses them for good, bisect:
        each half is applied on its own, down to single events, which are dead-lettered.
        A message reusing an event id that other content owns is dead-lettered, not applied
        (:mod:`lineage.event_identity`)."""
        messages = [(a.event, a.claims) for a in accepted]
        if self._stage is not None:
            self._stage(accepted)
        try:
            claimed = self.retry(f"applying {len(messages)} event(s)", self._timed_apply, messages)
        except FatalStoreError:
            raise
        except Exception as exc:
            if is_transient(exc):
                raise  # the budget is spent: stop uncommitted, never dead-letter for this
            if len(accepted) > 1:
                self.counters.splits += 1
                log.warning(
                    "a batch of %d event(s) was refused (%s); applying it in halves",
                    len(accepted),
                    apply_failure_reason(exc),
                )
                middle = len(accepted) // 2
                self._apply(accepted[:middle], alerts)
                self._apply(accepted[middle:], alerts)
                return
            item = accepted[0].item
            reason = apply_failure_reason(exc)
            log.error("message at %s: %s (%s); dead-lettered", item.origin, reason, _short(exc))
            self._dead_letter([Rejected(item.raw or b"", reason, item.origin, item.key)])
            return
        if claimed.reused:
            reused = [accepted[i] for i in claimed.reused]
            rejects = [
                Rejected(a.item.raw or b"", reused_reason(a.event), a.item.origin, a.item.key)
                for a in reused
            ]
            log.warning("dead-lettered %d message(s) reusing an event id", len(rejects))
            self._dead_letter(rejects)
        alerts += claimed.alerts
        applied = len(messages) - len(claimed.reused)
        self.counters.applied += applied
        self.metrics.events.labels("accepted").inc(applied)
        self.metrics.count_alerts(claimed.alerts)

    def _timed_apply(self, messages: Sequence[tuple[Event, Sequence[Claim]]]) -> Claimed:
        """One attempt of a unit, timed when it commits (a failed attempt is no unit)."""
        started = time.monotonic()
        claimed = self._tracker.apply_claimed(messages)
        self.metrics.unit_seconds.observe(time.monotonic() - started)
        return claimed

    def _dead_letter(self, rejects: Sequence[Rejected]) -> None:
        self.retry("dead-lettering", self._outlet.dead_letter, rejects)
        self.counters.dead_lettered += len(rejects)
        self.metrics.dead_letters.inc(len(rejects))


# -- Kafka ------------------------------------------------------------------------------------


def _broker_error(what: str, exc: Exception) -> StoreError:
    """kafka-python errors, classified like the store's: retriable ones are transient."""
    message = f"Kafka: cannot {what}: {type(exc).__name__}: {_short(exc)}"
    code = type(exc).__name__
    if getattr(exc, "retriable", False):
        return TransientStoreError(message, code)
    return FatalStoreError(message, code)


class KafkaOutlet:
    """Alerts and dead letters through a kafka-python producer (acks from all in-sync
    replicas, idempotent; a new one after a failed send); each call flushes and waits for
    every record's ack. A dead letter over ``DEADLETTER_MAX_BYTES`` is cut there (header
    ``truncated``: the original size), as :class:`streams.kafka_log.KafkaEventLog` does."""

    #: How long a send waits for its acks before it fails (and is retried by the caller).
    _timeout_s: float = PRODUCER_TIMEOUT_S
    #: Producers replaced after a failed send (:meth:`_renew_producer`).
    renewals: int = 0

    def __init__(
        self,
        settings: Settings,
        incidents: bool = True,
        producer_config: Mapping[str, Any] | None = None,
        timeout_s: float = PRODUCER_TIMEOUT_S,
    ) -> None:
        self._with_incidents = incidents
        self._timeout_s = timeout_s
        self._alerts_topic = settings.alerts_topic
        self._deadletter_topic = settings.deadletter_topic
        self._incidents_topic = settings.incidents_topic
        self._config: dict[str, Any] = {
            "bootstrap_servers": settings.require_kafka(),
            "client_id": "lineage-projector",
            "acks": "all",
            "enable_idempotence": True,
            "linger_ms": 5,
            "max_block_ms": 10_000,
            # kafka-python backs reconnects off up to 30 s; the Java client's 1 s gets a
            # worker going again soon after a broker is back
            "reconnect_backoff_max_ms": 1_000,
            **(producer_config or {}),  # kafka-python options (the outage test's short timeouts)
        }
        self._producer: Any = self._new_producer()
        from runtime.incident_publisher import IncidentPublisher

        self.incidents = IncidentPublisher(
            self._publish_incidents,
            interval=settings.incident_interval_seconds,
            quiet_period=timedelta(days=settings.incident_quiet_days),
        )

    def publish_alerts(self, alerts: Sequence[Alert]) -> None:
        records = [
            (alert.alert_id.encode(), alert.model_dump_json().encode(), None) for alert in alerts
        ]
        self.send(self._alerts_topic, records, "publish alerts")
        # after the alerts' acks: an incident message never runs ahead of its alerts
        if self._with_incidents:
            self.incidents.observe(alerts)

    def _publish_incidents(self, messages: Sequence[IncidentMessage]) -> None:
        records = [(m.key, m.body(), None) for m in messages]
        self.send(self._incidents_topic, records, "publish incidents")

    def dead_letter(self, rejects: Sequence[Rejected]) -> None:
        records = []
        for reject in rejects:
            headers = [
                (REASON_HEADER, reject.reason.encode()),
                (ORIGIN_HEADER, reject.origin.encode()),
            ]
            raw = reject.raw
            if len(raw) > DEADLETTER_MAX_BYTES:
                headers.append((TRUNCATED_HEADER, str(len(raw)).encode()))
                raw = raw[:DEADLETTER_MAX_BYTES]
            records.append((reject.key, raw, headers))
        self.send(self._deadletter_topic, records, "dead-letter")

    def send(
        self,
        topic: str,
        records: Sequence[tuple[bytes | None, bytes, list[tuple[str, bytes]] | None]],
        what: str,
        partition: int | None = None,
    ) -> None:
        """Send and wait for every record's ack (``partition``: all of them to that one)."""
        from kafka.errors import KafkaError

        placed = {} if partition is None else {"partition": partition}
        if self._producer is None:
            self._producer = self._new_producer()
        try:
            futures = [
                self._producer.send(topic, key=key, value=value, headers=headers, **placed)
                for key, value, headers in records
            ]
            self._producer.flush(timeout=self._timeout_s)
            for future in futures:
                future.get(timeout=self._timeout_s)
        except KafkaError as exc:
            self._renew_producer()
            raise _broker_error(what, exc) from exc

    def _new_producer(self) -> Any:
        from kafka import KafkaProducer
        from kafka.errors import KafkaError

        try:
            return KafkaProducer(**self._config)
        except KafkaError as exc:
            raise _broker_error("create a producer", exc) from exc

    def _renew_producer(self) -> None:
        """After a failed send, the retry goes through a new producer, with a new producer id.
        kafka-python's idempotent producer can stay stuck after a broker outage: in CI, a
        batch that expired (120 s) while the broker was away was followed by sends that timed
        out for minutes with the broker back. A new id starts its sequences afresh. Records
        of the failed send may have landed: alerts are keyed by id and changes carry
        (partition, seq), so consumers drop the repeats."""
        from kafka.errors import KafkaError

        old, self._producer = self._producer, None
        if old is None:
            return
        self._config["api_version"] = old.config["api_version"]  # no bootstrap wait next time
        try:
            old.close(timeout=0)
        except KafkaError as exc:
            # close() flushes first, which raises while a batch is stuck; its sender thread
            # would go on retrying: stop it and fail what it holds (nothing waits on it)
            log.debug("closing the failed producer: %s", _short(exc))
            sender = getattr(old, "_sender", None)
            if sender is not None:
                sender.force_close()
        self.renewals += 1
        log.warning("a send failed: the next one goes through a new producer")

    def close(self) -> None:
        from kafka.errors import KafkaError

        try:
            self.incidents.close()  # pending updates
        except StoreError as exc:
            log.warning("flushing incident updates: %s", exc)
        if self._producer is None:
            return
        try:
            self._producer.close(timeout=PRODUCER_TIMEOUT_S)
        except KafkaError as exc:
            log.warning("closing the producer: %s", _short(exc))


def create_consumer(settings: Settings) -> Any:
    """The projector group's consumer: manual commits only, batches of up to ``MAX_BATCH``, one
    subscription, partitions split between the group's workers by Kafka (the producers key
    events by identifier or dataset, so a key's events go to one worker)."""
    return group_consumer(
        settings, projector_group_id(settings), "lineage-projector", settings.events_topic
    )


def group_consumer(
    settings: Settings, group_id: str, client_id: str, topic: str, listener: Any = None
) -> Any:
    """A consumer of ``topic`` in ``group_id`` as every loop here wants one: manual commits,
    from the earliest record, ``MAX_BATCH`` per poll, fast failover, and a poll interval above
    the retry budget (``listener``: a rebalance listener)."""
    from kafka import KafkaConsumer
    from kafka.errors import KafkaError

    try:
        consumer = KafkaConsumer(
            bootstrap_servers=settings.require_kafka(),
            group_id=group_id,
            client_id=client_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=MAX_BATCH,
            session_timeout_ms=int(SESSION_TIMEOUT_S * 1000),
            heartbeat_interval_ms=int(HEARTBEAT_INTERVAL_S * 1000),
            max_poll_interval_ms=int(MAX_POLL_INTERVAL_S * 1000),
        )
        if listener is None:
            consumer.subscribe([topic])
        else:
            consumer.subscribe([topic], listener=listener)
    except KafkaError as exc:
        raise _broker_error(f"create {client_id}'s consumer", exc) from exc
    return consumer


class BatchSizer:
    """The adaptive target of :func:`poll_batch`: doubles after a batch that filled it (the
    worker is behind: bigger transactions write faster), halves after one that did not
    (caught up), between ``minimum`` and ``maximum`` events."""

    def __init__(self, minimum: int = MIN_BATCH, maximum: int = MAX_BATCH) -> None:
        self.minimum, self.maximum = minimum, maximum
        self.target = minimum

    def update(self, size: int, full: bool) -> None:
        if full:
            self.target = min(self.maximum, self.target * 2)
        elif size < self.target:
            self.target = max(self.minimum, self.target // 2)


def behind(consumer: Any) -> int:
    """Records the assigned partitions hold past the consumer's position, as of the high
    watermarks of the last fetch (local reads: no request to the broker)."""
    lag = 0
    for tp in consumer.assignment() or ():
        highwater = consumer.highwater(tp)
        if highwater is not None:
            lag += max(0, highwater - consumer.position(tp))
    return lag


def caught_up(consumer: Any) -> bool:
    """Whether every assigned partition's next record is its last known high watermark (no
    fetched record waits in the client and none was waiting at the broker at the last fetch).
    A partition not fetched yet (no watermark) does not count as behind."""
    return behind(consumer) == 0


def poll_batch(consumer: Any, stop: threading.Event, sizer: BatchSizer | None = None) -> list[Any]:
    """Up to ``sizer.target`` records (and ``MAX_BATCH_BYTES``): what the first poll brings,
    topped up while the worker is behind, for at most ``BATCH_WINDOW_S``; closed at once when
    it has caught up. Empty when nothing came within ``IDLE_POLL_S`` or on stop."""
    sizer = sizer or BatchSizer()
    target = sizer.target
    records: list[Any] = []
    size = 0
    timeout_s = IDLE_POLL_S
    deadline: float | None = None
    while len(records) < target and size < MAX_BATCH_BYTES and not stop.is_set():
        polled = consumer.poll(
            timeout_ms=max(1, math.ceil(timeout_s * 1000)), max_records=target - len(records)
        )
        for batch in polled.values():
            records += batch
            size += sum(len(r.value or b"") for r in batch)
        if not records or caught_up(consumer):
            break
        if deadline is None:
            deadline = time.monotonic() + BATCH_WINDOW_S
        timeout_s = deadline - time.monotonic()
        if timeout_s <= 0:
            break
    sizer.update(len(records), full=len(records) >= target or size >= MAX_BATCH_BYTES)
    return records


def commit_batch(consumer: Any, records: Sequence[Any], retry: Retry) -> None:
    """Commit the offsets after the batch's last record of each partition. A commit the group
    refuses (it rebalanced meanwhile) is logged and skipped: the batch is applied, and its
    redelivery to the partition's new owner is a no-op."""
    from kafka import TopicPartition
    from kafka.errors import CommitFailedError, KafkaError
    from kafka.structs import OffsetAndMetadata

    ends: dict[Any, int] = {}
    for record in records:
        tp = TopicPartition(record.topic, record.partition)
        ends[tp] = max(ends.get(tp, 0), record.offset + 1)
    offsets = {tp: OffsetAndMetadata(end, "", -1) for tp, end in ends.items()}

    def commit() -> None:
        try:
            consumer.commit(offsets)
        except CommitFailedError as exc:
            log.warning("offsets not committed (%s): the batch will be redelivered", _short(exc))
        except KafkaError as exc:
            raise _broker_error("commit offsets", exc) from exc

    retry("committing offsets", commit)


def consume(
    consumer: Any,
    projector: Projector,
    stop: threading.Event,
    max_batches: int | None = None,
    metrics: WorkerMetrics | None = None,
) -> None:
    """The loop: poll a batch, apply it, publish its alerts, commit it; until ``stop``.
    ``metrics``: its consumer lag gauge is set here, on the consumer's own thread."""
    projector.drain_outbox()  # alerts stored before a crash but never confirmed sent
    sizer = BatchSizer()
    batches = 0
    while not stop.is_set() and (max_batches is None or batches < max_batches):
        records = poll_batch(consumer, stop, sizer)
        if metrics is not None:
            metrics.consumer_lag.set(len(records) + behind(consumer))
        if not records:
            continue
        batch = [
            Inbound(r.value, f"{r.topic}:{r.partition}:{r.offset}", r.key, part_header(r))
            for r in records
        ]
        projector.handle(batch)
        commit_batch(consumer, records, projector.retry)
        if metrics is not None:
            metrics.consumer_lag.set(behind(consumer))
        batches += 1


def part_header(record: Any) -> bytes | None:
    for name, value in record.headers or ():
        if name == PART_HEADER:
            return bytes(value or b"")
    return None


def stop_on_signals(stop: threading.Event) -> dict[int, Any]:
    """SIGTERM/SIGINT set ``stop`` (the batch in hand finishes); a second one stops at once.
    Returns the previous handlers, for ``signal.signal`` to put back."""

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            raise KeyboardInterrupt  # a second signal: stop now, nothing more is committed
        log.warning("%s: finishing the batch in hand, then stopping", signal.strsignal(signum))
        stop.set()

    return {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}


def configure_logging(loglevel: str) -> None:
    level = logging.getLevelName(loglevel.upper())
    logging.basicConfig(
        level=level if isinstance(level, int) else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def run_worker(
    settings: Settings,
    store: GraphStore,
    policy: Policy,
    loglevel: str,
    metrics: WorkerMetrics | None = None,
) -> None:
    """Run the projector in this process until SIGTERM/SIGINT: the first lets the batch in
    hand finish and be committed, a second stops at once. Raises a ``StoreError`` when it has
    to stop (a fatal error, or an outage longer than the retry budget), nothing committed for
    the batch in hand. ``metrics``: kept up to date (serving them is the caller's)."""
    configure_logging(loglevel)
    stop = threading.Event()
    previous = stop_on_signals(stop)
    outlet: KafkaOutlet | None = None
    consumer = None
    try:
        outlet = KafkaOutlet(settings)
        consumer = create_consumer(settings)
        projector = Projector(store, policy, outlet, Retry(stop=stop), metrics)
        try:
            consume(consumer, projector, stop, metrics=metrics)
        except KeyboardInterrupt:
            log.warning("stopped in the middle of a batch: it was not committed")
        except StoreError as exc:
            if not stop.is_set() or isinstance(exc, FatalStoreError):
                raise
            log.warning("stopped while retrying (%s): the batch was not committed", _short(exc))
        counters = projector.counters
        log.warning(
            "projector stopped: %d applied, %d dead-lettered, %d published, %d retries",
            counters.applied,
            counters.dead_lettered,
            counters.published,
            counters.retries,
        )
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if consumer is not None:
            consumer.close(autocommit=False)
        if outlet is not None:
            outlet.close()
