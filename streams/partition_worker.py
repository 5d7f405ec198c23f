"""The partitioned processor (``lineage processor``): events topic -> each partition's own
state -> alerts topic and changes topic. Nothing on this path reads Neo4j.

Each partition this worker is assigned has a :class:`graph.partition_store.PartitionStore`
in ``state_dir`` (one SQLite file per partition, held with an exclusive lock): its working
state in memory, journaled, with its position (the offset of the next event to apply)
committed in the same transaction as each unit. On assignment the worker loads the state,
sends what its outboxes still hold (alerts, changes), and seeks to the position. Kafka's
committed offset is only a hint for tools (lag): ahead or behind, it decides nothing. A
record below the position (redelivered) is skipped; a partition whose file is absent (moved
to a new host) starts from offset 0 and rebuilds its state from its own partition of the log.

Per batch and partition: invalid messages are dead-lettered, the rest applied (bisected on a
permanent failure, as :class:`streams.projector.Projector` does), then the position is moved
past the batch, the alerts are sent and marked, the unit changes are sent to the changes topic
(to the partition of the same number, so a sink sees one partition's changes in order) and
deleted from the outbox. A crash anywhere re-sends at most what was not marked: alerts are
keyed by id, changes carry (partition, seq), so consumers drop the repeats.

Incidents are not published here: one incident gathers alerts of many partitions, so a
processor sees only its share. ``lineage incident-publisher`` (:mod:`streams.incident_follow`)
follows the whole alerts topic and publishes them; the view counts them whole too.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from graph.errors import FatalStoreError
from graph.partition_store import PartitionStore
from lineage.changes import encode
from lineage.errors import StoreError
from lineage.policy import Policy
from runtime.metrics import LineageMetrics, WorkerMetrics
from runtime.settings import Settings
from streams.consumer_group import (
    processor_group_id,
)
from streams.projector import (
    OUTBOX_BATCH,
    Accepted,
    BatchSizer,
    Inbound,
    KafkaOutlet,
    Projector,
    Retry,
    _short,
    behind,
    configure_logging,
    group_consumer,
    part_header,
    poll_batch,
    stop_on_signals,
)

log = logging.getLogger(__name__)


class Partitions:
    """The partitions this worker owns: a store and a projector each."""

    def __init__(
        self,
        settings: Settings,
        policy: Policy,
        outlet: KafkaOutlet,
        retry: Retry,
        metrics: LineageMetrics | None = None,
    ) -> None:
        self.settings, self.policy, self.outlet, self.retry = settings, policy, outlet, retry
        self.metrics = metrics or LineageMetrics()  # one set for all the partitions
        self.directory = Path(settings.state_dir)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.stores: dict[int, PartitionStore] = {}
        self.projectors: dict[int, Projector] = {}

    def path(self, partition: int) -> Path:
        return self.directory / f"{self.settings.events_topic}-{partition}.sqlite"

    def open(self, partition: int) -> PartitionStore:
        """Load the partition's state and send what its outboxes hold."""
        if partition in self.stores:
            return self.stores[partition]
        store = PartitionStore(self.path(partition), partition)
        store.working_state()
        projector = Projector(
            store, self.policy, self.outlet, self.retry, self.metrics, _stager(store)
        )
        self.stores[partition], self.projectors[partition] = store, projector
        projector.drain_outbox()
        self.send_changes(store)
        log.info("partition %d: state loaded, position %d", partition, store.position)
        return store

    def close(self, partition: int) -> None:
        store = self.stores.pop(partition, None)
        self.projectors.pop(partition, None)
        if store is not None:
            store.close()

    def close_all(self) -> None:
        for partition in list(self.stores):
            self.close(partition)

    def handle(self, partition: int, records: Sequence[Any]) -> None:
        store = self.stores[partition]
        position = store.position
        fresh = [r for r in records if r.offset >= position]
        if not fresh:
            return
        batch = [
            Inbound(r.value, f"{r.topic}:{r.partition}:{r.offset}", r.key, part_header(r), r.offset)
            for r in fresh
        ]
        self.projectors[partition].handle(batch)
        self.retry("moving the position", store.commit_position, fresh[-1].offset + 1)
        self.send_changes(store)

    def send_changes(self, store: PartitionStore) -> None:
        topic = self.settings.changes_topic
        while changes := store.unpublished_changes(OUTBOX_BATCH):
            records = [(c.key, encode(c), None) for c in changes]
            self.retry(
                "publishing changes",
                self.outlet.send,
                topic,
                records,
                "publish changes",
                store.partition,
            )
            self.retry("marking changes published", store.mark_changes_published, changes[-1].seq)


def _stager(store: PartitionStore) -> Any:
    def stage(accepted: Sequence[Accepted]) -> None:
        offsets = [a.item.offset for a in accepted if a.item.offset is not None]
        if offsets:
            store.stage_position(max(offsets) + 1)

    return stage


class Assignment:
    """What the group gave and took since the loop last looked. kafka-python runs the
    rebalance listener on its network thread, where a partition's load (seconds at 200k
    identifiers) would hold up heartbeats and SQLite connections cannot follow: the listener
    only pauses the new partitions and notes them; the loop opens, seeks and resumes them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._assigned: set[Any] = set()
        self._revoked: set[Any] = set()

    def note(self, assigned: Sequence[Any] = (), revoked: Sequence[Any] = ()) -> None:
        with self._lock:
            self._assigned = (self._assigned - set(revoked)) | set(assigned)
            self._revoked |= set(revoked)

    def take(self) -> tuple[set[Any], set[Any]]:
        with self._lock:
            taken = self._assigned, self._revoked
            self._assigned, self._revoked = set(), set()
            return taken


def create_consumer(settings: Settings, assignment: Assignment) -> Any:
    from kafka import ConsumerRebalanceListener

    class Listener(ConsumerRebalanceListener):  # type: ignore[misc]
        def on_partitions_revoked(self, revoked: Any) -> None:
            assignment.note(revoked=list(revoked))

        def on_partitions_assigned(self, assigned: Any) -> None:
            consumer.pause(*assigned)  # nothing is fetched before its position is sought
            assignment.note(assigned=list(assigned))

    consumer = group_consumer(
        settings,
        processor_group_id(settings),
        "lineage-processor",
        settings.events_topic,
        Listener(),
    )
    return consumer


def follow(consumer: Any, assignment: Assignment, partitions: Partitions) -> set[int]:
    """Close what was revoked (its units are all committed: batches are applied between
    polls); open, seek and resume what was assigned. Returns the partitions opened now: any
    record of theirs already in hand was fetched from a hint, not from their position."""
    assigned, revoked = assignment.take()
    for tp in revoked:
        partitions.close(tp.partition)
    opened = set()
    for tp in sorted(assigned):
        store = partitions.open(tp.partition)
        consumer.seek(tp, store.position)
        opened.add(tp.partition)
    if assigned:
        consumer.resume(*assigned)
    return opened


def hint_offsets(consumer: Any, partitions: Partitions) -> None:
    """Commit each owned partition's position, for lag tools only; a refusal is ignored."""
    from kafka import TopicPartition
    from kafka.errors import KafkaError
    from kafka.structs import OffsetAndMetadata

    topic = partitions.settings.events_topic
    offsets = {
        TopicPartition(topic, p): OffsetAndMetadata(s.position, "", -1)
        for p, s in partitions.stores.items()
    }
    try:
        consumer.commit_async(offsets)
    except KafkaError as exc:
        log.debug("offset hint not committed: %s", exc)


def consume(
    consumer: Any,
    assignment: Assignment,
    partitions: Partitions,
    stop: threading.Event,
    max_batches: int | None = None,
) -> None:
    sizer = BatchSizer()
    batches = 0
    while not stop.is_set() and (max_batches is None or batches < max_batches):
        records = poll_batch(consumer, stop, sizer)
        opened = follow(consumer, assignment, partitions)
        if opened:
            hint_offsets(consumer, partitions)  # lag tools see the positions at once
        if not records:
            continue
        by_partition: dict[int, list[Any]] = {}
        for record in records:
            by_partition.setdefault(record.partition, []).append(record)
        for partition, recs in sorted(by_partition.items()):
            if partition in partitions.stores and partition not in opened:
                partitions.handle(partition, recs)
        hint_offsets(consumer, partitions)
        if isinstance(partitions.metrics, WorkerMetrics):
            partitions.metrics.consumer_lag.set(behind(consumer))
        batches += 1


def run_processor(
    settings: Settings, policy: Policy, loglevel: str, metrics: WorkerMetrics | None = None
) -> None:
    """Until SIGTERM/SIGINT (the batch in hand finishes first; a second signal stops at once).
    Raises a ``StoreError`` when it has to stop: a fatal error, or an outage longer than the
    retry budget (nothing of the batch in hand is lost: positions say what was applied)."""
    configure_logging(loglevel)
    stop = threading.Event()
    previous = stop_on_signals(stop)
    outlet: KafkaOutlet | None = None
    consumer = None
    partitions: Partitions | None = None
    try:
        outlet = KafkaOutlet(settings, incidents=False)
        partitions = Partitions(settings, policy, outlet, Retry(stop=stop), metrics)
        assignment = Assignment()
        consumer = create_consumer(settings, assignment)
        try:
            consume(consumer, assignment, partitions, stop)
        except KeyboardInterrupt:
            log.warning("stopped in the middle of a batch: its partitions' positions hold")
        except StoreError as exc:
            if not stop.is_set() or isinstance(exc, FatalStoreError):
                raise
            log.warning("stopped while retrying (%s)", _short(exc))
        counters = partitions.retry.counters
        log.warning(
            "processor stopped: %d applied, %d dead-lettered, %d published, %d retries",
            counters.applied,
            counters.dead_lettered,
            counters.published,
            counters.retries,
        )
    finally:
        import signal

        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if consumer is not None:
            consumer.close(autocommit=False)
        if partitions is not None:
            partitions.close_all()
        if outlet is not None:
            outlet.close()
