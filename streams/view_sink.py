"""The served view's sink (``lineage sink``): changes topic -> Neo4j.

Processors compute; the sink only writes what they computed (:mod:`lineage.changes`), with
the store's batched ``UNWIND ... MERGE`` statements and no read of state. Each batch of
changes is one Neo4j transaction that also moves the sink's positions (the last ``seq``
applied per partition, ``SinkPosition`` nodes), so a change is applied exactly once: a repeat
(a processor re-sending after a crash, or this sink re-reading after one) is dropped by its
seq. Kafka's committed offsets only say where to start reading again. Several sinks split
the changes topic's partitions between them; changes of one partition stay in order.

Alerts in the view are marked published in the same transaction: the processors sent them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

from graph.errors import FatalStoreError, PermanentStoreError
from graph.neo4j_store import Neo4jStore
from lineage.changes import UnitChange, coalesce, decode
from lineage.errors import InvalidEventError, StoreError
from runtime.settings import Settings
from streams.consumer_group import sink_group_id
from streams.projector import (
    BatchSizer,
    Retry,
    _short,
    commit_batch,
    configure_logging,
    group_consumer,
    poll_batch,
    stop_on_signals,
)

log = logging.getLogger(__name__)


class ViewSink:
    """Applies batches of changes to the view; transport-free (tests drive it directly)."""

    def __init__(self, store: Neo4jStore, topic: str, retry: Retry | None = None) -> None:
        self.store, self.topic = store, topic
        self.retry = retry or Retry()
        self.positions = self.retry("reading the sink's positions", store.sink_positions, topic)
        self.applied = 0

    def apply(self, changes: Sequence[UnitChange]) -> int:
        """Write the changes not applied yet; returns how many. One transaction, or, when Neo4j
        finds it too large for its memory, halves applied in order (down to one change)."""
        fresh: list[UnitChange] = []
        moved = dict(self.positions)
        for change in changes:
            if change.seq > moved.get(change.partition, 0):
                fresh.append(change)
                moved[change.partition] = change.seq
        if not fresh:
            return 0
        try:
            self._write(fresh, moved)
        except PermanentStoreError as exc:
            if not exc.oversize or len(fresh) < 2:
                raise
            log.warning("%d changes were too large for one transaction: halves", len(fresh))
            half = len(fresh) // 2
            return self.apply(fresh[:half]) + self.apply(fresh[half:])
        return len(fresh)

    def _write(self, fresh: list[UnitChange], moved: dict[int, int]) -> None:
        claims = list({c.key: c for change in fresh for c in change.claims}.values())
        alerts = [a for change in fresh for a in change.alerts]
        actions = [a for change in fresh for a in change.actions]
        writes = coalesce([w for change in fresh for w in change.writes])

        def unit() -> None:
            for w in writes:
                self.store.write(w)
            self.store.put_claims(claims)
            if actions:
                self.store.record_incident_actions(actions)
            self.store.mark_published(alerts)
            self.store.set_sink_positions(self.topic, moved)

        self.retry(f"writing {len(fresh)} change(s)", self.store.atomically, unit)
        self.positions = moved
        self.applied += len(fresh)


def decode_records(records: Sequence[Any]) -> list[UnitChange]:
    """A record that is not a change (another writer on the topic) is logged and skipped: the
    sink cannot apply it and must not stop the view for it."""
    changes = []
    for r in records:
        try:
            changes.append(decode(r.value or b""))
        except InvalidEventError as exc:
            log.error("%s:%d:%d is not a change (%s); skipped", r.topic, r.partition, r.offset,
                      exc.reason)  # fmt: skip
    return changes


def create_consumer(settings: Settings) -> Any:
    return group_consumer(settings, sink_group_id(settings), "lineage-sink", settings.changes_topic)


def consume(consumer: Any, sink: ViewSink, stop: threading.Event) -> None:
    sizer = BatchSizer()
    while not stop.is_set():
        records = poll_batch(consumer, stop, sizer)
        if not records:
            continue
        sink.apply(decode_records(records))
        commit_batch(consumer, records, sink.retry)


def run_sink(settings: Settings, store: Neo4jStore, loglevel: str) -> None:
    """Until SIGTERM/SIGINT (the batch in hand is written first)."""
    configure_logging(loglevel)
    stop = threading.Event()
    previous = stop_on_signals(stop)
    consumer = None
    sink: ViewSink | None = None
    try:
        sink = ViewSink(store, settings.changes_topic, Retry(stop=stop))
        consumer = create_consumer(settings)
        try:
            consume(consumer, sink, stop)
        except KeyboardInterrupt:
            log.warning("stopped in the middle of a batch: the view's positions hold")
        except StoreError as exc:
            if not stop.is_set() or isinstance(exc, FatalStoreError):
                raise
            log.warning("stopped while retrying (%s)", _short(exc))
        log.warning("sink stopped: %d change(s) applied", sink.applied)
    finally:
        import signal

        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if consumer is not None:
            consumer.close(autocommit=False)
