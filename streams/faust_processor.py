"""The partitioned processor as a faust-streaming agent (``lineage processor --engine faust``).

The same core as the kafka-python loop (:mod:`streams.partition_worker`): a
:class:`~streams.partition_worker.Partitions` holds each owned partition's
:class:`graph.partition_store.PartitionStore`, applies batches and moves their positions.
faust only transports: it never decides what was applied.

- **Where to read from.** faust seeks its partitions to "the committed offsets" after every
  rebalance (and whenever it finds its flow stopped). :class:`PositionConsumer` overrides
  that one step, ``seek_to_committed``: each events-topic partition it owns is opened (its
  state loaded, its outboxes sent) and sought to ``store.position``. faust's committed offset
  is a hint for lag tools only, as in the kafka-python loop.
- **What is applied.** The agent takes batches with ``stream.noack_take`` (nothing is acked
  for it), groups them by partition and hands each partition's run to ``Partitions.handle``
  only from its position on and without a gap (:func:`contiguous`): a record fetched from a
  stale offset, or one past a hole, is never applied; the partition is sought back to its
  position instead. Only after ``handle`` returned are the events acked (a hint again).
- **Errors.** Transient failures are retried, bounded, by :class:`streams.projector.Retry`;
  permanent ones are bisected and dead-lettered by the projector, and their events acked. Any
  exception that leaves ``handle`` (a ``FatalStoreError``, a transient one past its budget, a
  bug) stops the worker, nothing acked for the batch, and ``run_faust_processor`` re-raises
  it (non-zero exit). The agent runs under ``mode.CrashingSupervisor``: faust never restarts
  it in-process (a restarted agent would take the next batch and acks would move past the
  failed one; positions would still hold, but the process would hide the failure).
- **Rebalances.** ``Partitions.handle`` is synchronous, on the event loop: faust's revocation
  callback (which closes the revoked partitions' stores) runs between batches, never inside
  one. aiokafka heartbeats from faust's consumer thread, so a long batch does not evict.

faust tables, the web server and changelog topics are not used. The app id (faust's group id)
is :func:`streams.consumer_group.processor_group_id`: the kafka-python loop's group, so the two
engines share the position hints (run one engine per deployment at a time).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP
from mode import CrashingSupervisor

from graph.errors import FatalStoreError
from lineage.errors import StoreError
from lineage.policy import Policy
from runtime.metrics import WorkerMetrics
from runtime.settings import Settings
from streams.consumer_group import (
    HEARTBEAT_INTERVAL_S,
    SESSION_TIMEOUT_S,
    processor_group_id,
)
from streams.partition_worker import Partitions
from streams.projector import (
    BATCH_WINDOW_S,
    MAX_BATCH,
    MAX_POLL_INTERVAL_S,
    KafkaOutlet,
    Retry,
    _short,
    configure_logging,
)

log = logging.getLogger(__name__)

#: faust commits the acked offsets (hints only) this often.
COMMIT_INTERVAL_S = 1.0
#: Test hook (never set in production): the agent raises instead of applying its first N
#: batches ("all": every batch), as a bug in the agent would.
FAIL_BATCHES_ENV = "LINEAGE_TEST_FAIL_BATCHES"
#: Test hook (never set in production): after the first partition of each batch is applied,
#: the agent blocks this many seconds (as a long unit would), so a test can kill it or make
#: the group rebalance mid-batch: some partitions applied, the others not, nothing acked.
SLOW_BATCH_ENV = "LINEAGE_TEST_SLOW_BATCH_S"
MID_BATCH_MARK = "test hook: mid-batch"
SOUGHT = "sought to the stored positions"


@dataclass(frozen=True)
class Record:
    """What ``Partitions.handle`` and ``part_header`` read of a record, from faust's message."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]] | None


def record_of(message: Any) -> Record:
    headers = message.headers
    if isinstance(headers, Mapping):
        headers = list(headers.items())
    return Record(
        message.topic,
        message.partition,
        message.offset,
        message.key,
        message.value,
        list(headers or ()),
    )


def contiguous(records: Iterable[Record], position: int) -> tuple[list[Record], Record | None]:
    """The records that continue ``position`` without a hole (in offset order, repeats and
    those below dropped), and the first record past a hole (None when there is none)."""
    run: list[Record] = []
    expected = position
    for record in sorted(records, key=lambda r: r.offset):
        if record.offset < expected:
            continue
        if record.offset > expected:
            return run, record
        run.append(record)
        expected += 1
    return run, None


class FailureHook:
    """``LINEAGE_TEST_FAIL_BATCHES`` (tests only): ``N`` raises on the first N batches,
    ``all`` on every one, ``after:N`` on every batch after the first N (applied), ``uncaught``
    lets an exception out of the agent."""

    def __init__(self, value: str | None) -> None:
        value = value or ""
        self.uncaught = value == "uncaught"
        self.passing = int(value.removeprefix("after:")) if value.startswith("after:") else 0
        self.always = value == "all" or value.startswith("after:")
        self.remaining = int(value) if value.isdigit() else 0

    def escape(self, size: int) -> None:
        """``uncaught``: an exception the agent does not catch (faust's supervisor sees it)."""
        if self.uncaught:
            raise RuntimeError(f"{FAIL_BATCHES_ENV}: uncaught in the agent, a batch of {size}")

    def check(self, size: int) -> None:
        if self.passing > 0:
            self.passing -= 1
            return
        if self.always or self.remaining > 0:
            self.remaining -= 1
            raise RuntimeError(f"{FAIL_BATCHES_ENV}: the agent raises on a batch of {size}")


def mid_batch_pause() -> None:
    """``LINEAGE_TEST_SLOW_BATCH_S`` (tests only): block the event loop mid-batch."""
    seconds = float(os.environ.get(SLOW_BATCH_ENV) or 0)
    if seconds > 0:
        log.warning("%s, blocking %.1fs", MID_BATCH_MARK, seconds)
        time.sleep(seconds)


class ProcessorApp(faust.App):
    """The faust app with what the consumer needs to seek: the partitions and their stores."""

    partitions: Partitions | None = None
    failure: BaseException | None = None
    _stopping: asyncio.Future[None] | None = None
    #: per partition, the offset past a hole seen once already (after a seek back to the
    #: position): seen again, the hole is in the log itself (e.g. transaction markers)
    holes: dict[int, int]

    async def _on_agent_error(self, agent: Any, exc: BaseException) -> None:
        """An exception the agent let out (a bug): stop, never restart it. (faust's own
        handler commits the acked offsets here: hints, but nothing to hurry.)"""
        self.fail(exc)

    def _new_transport(self) -> Any:
        return PositionTransport(self.conf.broker_consumer, self)

    async def owned_positions(self, assignment: Iterable[TP]) -> dict[TP, int]:
        """Open every owned events-topic partition (idempotent) and return its position."""
        partitions = self.partitions
        if partitions is None:
            return {}
        topic = partitions.settings.events_topic
        positions: dict[TP, int] = {}
        for tp in sorted(assignment):
            if tp.topic == topic:
                store = partitions.open(tp.partition)
                positions[tp] = store.position
        return positions

    def fail(self, exc: BaseException) -> None:
        """Stop the worker; ``run_faust_processor`` re-raises ``exc`` once it stopped."""
        if self.failure is None:
            self.failure = exc
        log.error("processor stopping: %s: %s", type(exc).__name__, _short(exc))
        self._stopping = asyncio.ensure_future(self._stop_worker())

    async def _stop_worker(self) -> None:
        worker = getattr(self, "lineage_worker", None)
        if worker is not None:
            await worker.stop()
        else:
            await self.stop()


class PositionConsumer(faust_aiokafka.Consumer):
    """faust's aiokafka consumer, whose "seek to committed" seeks each owned events-topic
    partition to its store's position (the offset of record) instead."""

    async def seek_to_committed(self) -> Mapping[TP, int]:
        committed = dict(await super().seek_to_committed())
        app = cast(ProcessorApp, self.app)
        try:
            positions = await app.owned_positions(self.assignment())
        except BaseException as exc:
            app.fail(exc)
            raise
        if positions:
            await self.seek_wait(positions)
            log.info("%s %s", SOUGHT, _positions_text(positions))
            # the positions as the group's offsets at once, for lag tools (hints): a
            # partition with nothing new to ack would keep a stale commit until it had
            await self._commit(positions)
        committed.update(positions)
        return committed


class PositionTransport(faust_aiokafka.Transport):
    Consumer = PositionConsumer


def _positions_text(positions: Mapping[TP, int]) -> str:
    return ", ".join(f"{tp.partition}@{offset}" for tp, offset in sorted(positions.items()))


def create_app(settings: Settings) -> ProcessorApp:
    bootstrap = settings.require_kafka()
    state_dir = settings.state_dir
    state_dir.mkdir(parents=True, exist_ok=True)
    app = ProcessorApp(
        processor_group_id(settings),
        broker=f"kafka://{bootstrap}",
        store="memory://",  # no tables: nothing of faust's own is stored
        datadir=str(state_dir / "faust"),
        autodiscover=False,
        web_enabled=False,
        topic_partitions=settings.topic_partitions,
        topic_allow_declare=False,  # ensure_topics made them (lineage processor does)
        topic_disable_leader=True,  # no <id>-__assignor-__leader topic
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        broker_session_timeout=SESSION_TIMEOUT_S,
        broker_heartbeat_interval=HEARTBEAT_INTERVAL_S,
        broker_max_poll_interval=MAX_POLL_INTERVAL_S,
        broker_commit_interval=COMMIT_INTERVAL_S,
        stream_wait_empty=False,
    )
    app.holes = {}
    return app


def build(
    settings: Settings,
    policy: Policy,
    metrics: WorkerMetrics | None = None,
) -> tuple[ProcessorApp, KafkaOutlet]:
    """The app with its agent; the outlet is the caller's to close."""
    app = create_app(settings)
    outlet = KafkaOutlet(settings, incidents=False)
    partitions = Partitions(settings, policy, outlet, Retry(), metrics)
    app.partitions = partitions
    hook = FailureHook(os.environ.get(FAIL_BATCHES_ENV))
    topic = app.topic(
        settings.events_topic,
        key_serializer="raw",
        value_serializer="raw",
        partitions=settings.topic_partitions,
    )

    async def on_revoked(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        revoked: set[TP] = args[0]
        for tp in revoked:
            if tp.topic == settings.events_topic:
                partitions.close(tp.partition)
                app.holes.pop(tp.partition, None)

    app.on_partitions_revoked.connect(on_revoked)

    async def process(stream: Any) -> None:
        async for events in stream.noack_take(MAX_BATCH, within=BATCH_WINDOW_S):
            hook.escape(len(events))
            try:
                hook.check(len(events))
                await apply_batch(app, partitions, events)
            except asyncio.CancelledError:
                raise  # shutdown or rebalance: nothing acked, positions hold
            except BaseException as exc:
                app.fail(exc)  # nothing of the batch is acked
                # Wait here for the stop: leaving the loop would close noack_take, which
                # turns the stream's acks back on, and faust would ack (and commit) what it
                # fetches meanwhile, unapplied (seen with an exception the agent let out).
                await asyncio.Event().wait()
            for event in events:
                if applied(partitions, event.message):
                    await stream.ack(event)
            if isinstance(partitions.metrics, WorkerMetrics):
                lag = behind_positions(app.consumer, settings.events_topic, partitions)
                partitions.metrics.consumer_lag.set(lag)

    app.agent(
        topic,
        name="lineage-processor",
        supervisor_strategy=CrashingSupervisor,
        concurrency=1,
    )(process)
    return app, outlet


def behind_positions(consumer: Any, topic: str, partitions: Partitions) -> int:
    """The ``lineage_consumer_lag`` gauge: records the owned partitions hold past their stored
    positions, as of the high watermarks of the last fetch (a local read; a partition not
    fetched yet counts 0)."""
    lag = 0
    for partition, store in partitions.stores.items():
        highwater = consumer.highwater(TP(topic, partition))
        if highwater is not None:
            lag += max(0, highwater - store.position)
    return lag


def applied(partitions: Partitions, message: Any) -> bool:
    """Whether the message is below its partition's position (applied, now or before): only
    those are acked, so faust's commits (hints) never pass an event not applied."""
    store = partitions.stores.get(message.partition)
    return store is not None and message.offset < store.position


async def apply_batch(app: ProcessorApp, partitions: Partitions, events: Sequence[Any]) -> None:
    by_partition: dict[int, list[Record]] = {}
    for event in events:
        record = record_of(event.message)
        by_partition.setdefault(record.partition, []).append(record)
    consumer = app.consumer
    paused = False
    for partition, records in sorted(by_partition.items()):
        store = partitions.stores.get(partition)
        if store is None:
            continue  # revoked meanwhile: its new owner reads from the position
        seen = app.holes.pop(partition, None)
        run, hole = contiguous(records, store.position)
        if not run and hole is not None and hole.offset == seen:
            # sought back to the position once and the log still goes on from here: the
            # hole is the log's own (offsets without a record), not a stale fetch
            run, hole = contiguous(records, hole.offset)
        if run:
            partitions.handle(partition, run)
            if not paused:
                paused = True
                mid_batch_pause()
        if hole is not None:
            position = store.position
            app.holes[partition] = hole.offset
            log.warning(
                "partition %d: record %d is past the position %d; seeking back",
                partition,
                hole.offset,
                position,
            )
            await consumer.seek(TP(hole.topic, partition), position)


def run_faust_processor(
    settings: Settings, policy: Policy, loglevel: str, metrics: WorkerMetrics | None = None
) -> None:
    """Until SIGTERM/SIGINT (faust's worker handles them: the batch in hand is not acked
    when cut, its partitions' positions hold). Raises what stopped the agent: a fatal error,
    a transient one past the retry budget, or any other exception (the agent never restarts)."""
    configure_logging(loglevel)
    app, outlet = build(settings, policy, metrics)
    worker = faust.Worker(app, loglevel=loglevel, quiet=True, redirect_stdouts=False)
    worker.spinner = None  # it writes terminal escape codes even when logs go to a file
    app.lineage_worker = worker  # type: ignore[attr-defined]
    try:
        try:
            worker.execute_from_commandline()
        except SystemExit as exc:
            if app.failure is None and exc.code not in (0, None):
                raise StoreError(f"the faust worker exited with status {exc.code}") from exc
    finally:
        if app.partitions is not None:
            app.partitions.close_all()
        outlet.close()
    if app.failure is not None:
        failure = app.failure
        if isinstance(failure, StoreError):
            raise failure
        raise FatalStoreError(
            f"the agent failed: {type(failure).__name__}: {_short(failure)}", "agent-error"
        ) from failure
