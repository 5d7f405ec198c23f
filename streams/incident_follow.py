"""The incident publisher of the partitioned topology (``lineage incident-publisher``):
alerts topic (every partition) -> incidents, bounded in rate -> incidents topic.

A processor sees only its partitions' alerts, and one incident gathers alerts of many
partitions, so processors publish no incident (``KafkaOutlet(settings, incidents=False)``).
This one process follows the whole alerts topic instead and folds the alerts with
:class:`runtime.incident_publisher.IncidentPublisher`, the same rate bounds and the same
messages as ``lineage worker``'s (an ``opened`` at once, then at most one ``updated`` per
``LINEAGE_INCIDENT_INTERVAL_SECONDS`` and per poll, pending updates flushed at a stop).

No consumer group and no committed offset: its state is rebuilt from the two compacted
topics at every start (docs/scale.md, "Incidents"):

1. the incidents topic, read to its end: the latest message of every incident this
   publisher (or an earlier run of it) sent, with its ``sequence``;
2. the alerts topic from its start to the ends it had at step 2's start: compacted and
   keyed by alert id, it holds every alert's latest revision, so the fold gives every
   incident whole (not only what arrived since the start, as a worker's publisher has it);
3. :meth:`IncidentPublisher.resume`: an incident already announced is not announced again
   (its sequences go on from the last one); one whose fold differs from its last message
   (an update that was pending, or not acked, when the previous run died) gets an
   ``updated`` at once; one never announced gets its ``opened``.

Then it follows the alerts topic live from those ends. So a restart (even after ``kill -9``)
re-opens nothing and loses no update; its cost is one read of both topics. Run exactly one:
two publishers would both number the same incidents' messages.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import timedelta
from typing import Any

from pydantic import ValidationError

from graph.errors import FatalStoreError
from lineage.alerts import Alert
from lineage.errors import StoreError
from runtime.incident_publisher import IncidentMessage, IncidentPublisher, Published
from runtime.settings import Settings
from streams.projector import (
    IDLE_POLL_S,
    MAX_BATCH,
    KafkaOutlet,
    Retry,
    _broker_error,
    _short,
    configure_logging,
    stop_on_signals,
)

log = logging.getLogger(__name__)

#: How long the start waits for a topic's partitions to be known to the client.
METADATA_TIMEOUT_S = 30.0


def topic_consumer(settings: Settings, topic: str, client_id: str) -> tuple[Any, list[Any]]:
    """A consumer with no group, assigned every partition of ``topic``, at its start."""
    from kafka import KafkaConsumer, TopicPartition
    from kafka.errors import KafkaError

    try:
        consumer = KafkaConsumer(
            bootstrap_servers=settings.require_kafka(),
            client_id=client_id,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=MAX_BATCH,
        )
        deadline = time.monotonic() + METADATA_TIMEOUT_S
        while not (numbers := consumer.partitions_for_topic(topic)):
            if time.monotonic() > deadline:
                raise StoreError(f"Kafka: topic {topic} has no partitions")
            time.sleep(0.2)
        parts = [TopicPartition(topic, p) for p in sorted(numbers)]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
    except KafkaError as exc:
        raise _broker_error(f"read {topic}", exc) from exc
    return consumer, parts


def read_to_end(consumer: Any, parts: Sequence[Any], stop: threading.Event) -> Iterator[Any]:
    """The records of ``parts`` up to the end offsets they have now, one poll's batch at a
    time (in offset order within each partition)."""
    from kafka.errors import KafkaError

    try:
        ends = consumer.end_offsets(list(parts))
        while not stop.is_set() and any(consumer.position(tp) < ends[tp] for tp in parts):
            for tp, records in consumer.poll(timeout_ms=500, max_records=MAX_BATCH).items():
                yield [r for r in records if r.offset < ends[tp]]
    except KafkaError as exc:
        raise _broker_error("read to the end of a topic", exc) from exc


def decode_alerts(records: Sequence[Any]) -> list[Alert]:
    """A record that is not an alert (another writer on the topic) is logged and skipped."""
    alerts = []
    for r in records:
        try:
            alerts.append(Alert.model_validate_json(r.value or b""))
        except ValidationError:
            log.warning("skipped a record that is not an alert at %s:%d:%d",
                        r.topic, r.partition, r.offset)  # fmt: skip
    return alerts


def latest_messages(batches: Iterator[Sequence[Any]]) -> dict[str, Published]:
    """The latest message per incident (by key) of an incidents topic read in offset order."""
    published: dict[str, Published] = {}
    for records in batches:
        for r in records:
            if r.key is None or r.value is None:
                continue  # a tombstone, or a record that is not ours
            try:
                published[r.key.decode()] = Published.of(r.value)
            except (ValueError, KeyError, TypeError):
                log.warning("skipped a record that is not an incident message at %s:%d:%d",
                            r.topic, r.partition, r.offset)  # fmt: skip
    return published


class IncidentFollower:
    """Restores from the topics, then follows the alerts topic; ``send`` publishes a batch of
    incident messages (and raises when it cannot)."""

    def __init__(
        self,
        settings: Settings,
        send: Callable[[Sequence[IncidentMessage]], None],
        stop: threading.Event,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings, self.stop = settings, stop
        self.publisher = IncidentPublisher(
            send,
            interval=settings.incident_interval_seconds,
            quiet_period=timedelta(days=settings.incident_quiet_days),
            clock=clock,
        )
        self.consumer: Any = None
        self.restored = 0  # incidents read back from the incidents topic
        self.replayed = 0  # alert records read before following live

    def restore(self) -> list[IncidentMessage]:
        settings = self.settings
        incidents, parts = topic_consumer(
            settings, settings.incidents_topic, "lineage-incident-restore"
        )
        try:
            published = latest_messages(read_to_end(incidents, parts, self.stop))
        finally:
            incidents.close()
        self.restored = len(published)
        self.consumer, parts = topic_consumer(
            settings, settings.alerts_topic, "lineage-incident-publisher"
        )
        for records in read_to_end(self.consumer, parts, self.stop):
            self.replayed += len(records)
            self.publisher.load(decode_alerts(records))
        if self.stop.is_set():  # stopped mid-read: a partial fold must not be sent
            return []
        sent = self.publisher.resume(published)
        log.warning(
            "incident publisher: %d incident(s) read back, %d alert record(s) replayed, "
            "%d message(s) sent to catch up",
            self.restored,
            self.replayed,
            len(sent),
        )
        return sent

    def follow(self, max_polls: int | None = None) -> None:
        """Poll the alerts topic until ``stop``: each poll's alerts are one unit for the
        publisher; updates held back by the interval go out when due."""
        from kafka.errors import KafkaError

        polls = 0
        while not self.stop.is_set() and (max_polls is None or polls < max_polls):
            try:
                polled = self.consumer.poll(
                    timeout_ms=int(IDLE_POLL_S * 1000), max_records=MAX_BATCH
                )
            except KafkaError as exc:
                raise _broker_error("poll the alerts topic", exc) from exc
            records = [r for batch in polled.values() for r in batch]
            if records:
                self.publisher.observe(decode_alerts(records))
            self.publisher.tick()
            polls += 1

    def close(self) -> None:
        try:
            self.publisher.close()  # pending updates
        finally:
            if self.consumer is not None:
                self.consumer.close()


def run_incident_publisher(settings: Settings, loglevel: str) -> None:
    """Until SIGTERM/SIGINT (pending updates are flushed first). Raises a ``StoreError`` when
    it has to stop (the broker away longer than the retry budget): a restart catches up."""
    configure_logging(loglevel)
    stop = threading.Event()
    previous = stop_on_signals(stop)
    outlet: KafkaOutlet | None = None
    follower: IncidentFollower | None = None
    try:
        outlet = KafkaOutlet(settings, incidents=False)
        retry = Retry(stop=stop)
        kafka = outlet

        def send(messages: Sequence[IncidentMessage]) -> None:
            records = [(m.key, m.body(), None) for m in messages]
            retry("publishing incidents", kafka.send, settings.incidents_topic, records,
                  "publish incidents")  # fmt: skip

        follower = IncidentFollower(settings, send, stop)
        try:
            follower.restore()
            follower.follow()
        except KeyboardInterrupt:
            log.warning("stopped at once: a restart sends what was pending")
        except StoreError as exc:
            if not stop.is_set() or isinstance(exc, FatalStoreError):
                raise
            log.warning("stopped while retrying (%s)", _short(exc))
        publisher = follower.publisher
        log.warning("incident publisher stopped: %d alert(s) observed, %d message(s) sent",
                    publisher.observed, publisher.emitted)  # fmt: skip
    finally:
        import signal

        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if follower is not None:
            try:
                follower.close()
            except StoreError as exc:
                log.warning("flushing incident updates: %s", exc)
        if outlet is not None:
            outlet.close()
