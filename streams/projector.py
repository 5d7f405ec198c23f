"""The projector agent: events topic -> validation -> graph (``Tracker``) -> alerts topic.

Delivery: at-least-once in. ``take_events`` acks a batch only after :meth:`Projector.handle`
returned, i.e. after the graph write, so a crash redelivers the batch; store writes are
idempotent MERGEs and alerts are deduplicated by ``alert_id``. That gives an exactly-once
effect because ``Tracker.apply`` commits as one store unit (``GraphStore.atomically``): a
crash mid-way leaves nothing stored, so redelivery redoes the whole derivation.
Alerts leave through the store's outbox: stored with the graph change, sent, acked by Kafka,
then marked published, so a crash between send and mark re-sends (consumers key on alert_id).
Invalid input goes to the dead-letter topic with its original bytes and the worker goes on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn, Protocol, TypeVar

import faust
from pydantic import ValidationError

from graph.store import GraphStore
from lineage.alerts import Alert
from lineage.errors import InvalidEventError, StoreError
from lineage.events import Event, parse_event
from lineage.inbound import describe_validation_error
from lineage.policy import Policy
from lineage.tracker import Tracker
from runtime.settings import Settings
from streams.faust_app import create_app
from streams.topics import ORIGIN_HEADER, REASON_HEADER, ProjectorTopics, declare_topics

log = logging.getLogger(__name__)
T = TypeVar("T")

#: A batch closes at 500 events or 50 ms after its first, so an alert leaves ~100 ms after
#: its event at low rates, and large backlogs are written in few store transactions.
BATCH_SIZE = 500
BATCH_WINDOW_S = 0.05
OUTBOX_BATCH = 500
RETRY_FIRST_S = 0.2
RETRY_MAX_S = 10.0
#: Failures worth waiting out (a restarting Neo4j) rather than dead-lettering the batch. A send
#: to Kafka is retried on any error: only the broker can make it fail.
STORE_DOWN: tuple[type[Exception], ...] = (StoreError,)
BROKER_DOWN: tuple[type[Exception], ...] = (Exception,)


@dataclass(frozen=True)
class Inbound:
    raw: bytes | None
    origin: str  # topic:partition:offset, for the dead-letter header and logs
    key: bytes | None = None


@dataclass(frozen=True)
class Rejected:
    raw: bytes
    reason: str
    origin: str
    key: bytes | None = None  # the original key: a dead letter keeps its partition affinity


class Outlet(Protocol):
    """Where the projector's output goes; both methods return once the broker acked."""

    async def publish_alerts(self, alerts: Sequence[Alert]) -> None: ...

    async def dead_letter(self, rejects: Sequence[Rejected]) -> None: ...


Accepted = tuple[Event, Inbound]


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
        except ValidationError as exc:
            reason = describe_validation_error(exc)
            rejected.append(Rejected(item.raw or b"", reason, item.origin, item.key))
        except InvalidEventError as exc:
            rejected.append(Rejected(item.raw or b"", exc.reason, item.origin, item.key))
        else:
            accepted.append((event, item))
    return accepted, rejected


async def retrying(
    operation: Callable[[], Awaitable[T]], what: str, transient: tuple[type[Exception], ...]
) -> T:
    """Run until it succeeds, backing off on ``transient`` errors: a batch must not be acked
    (and so lost) because a server was briefly away. Cancellation still stops it."""
    delay = RETRY_FIRST_S
    while True:
        try:
            return await operation()
        except transient as exc:
            log.warning("%s failed (%s), retrying in %.1fs", what, type(exc).__name__, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_S)


class Projector:
    """Applies batches and drains the outbox; faust-free, so it can be driven by any loop."""

    def __init__(self, store: GraphStore, policy: Policy, outlet: Outlet) -> None:
        self._store = store
        self._tracker = Tracker(store, policy)
        self._outlet = outlet

    async def handle(self, batch: Sequence[Inbound]) -> None:
        accepted, rejected = triage(self._tracker, batch)
        if rejected:
            await retrying(
                lambda: self._outlet.dead_letter(rejected), "dead-lettering", BROKER_DOWN
            )
            log.warning("dead-lettered %d invalid message(s)", len(rejected))
        if accepted:
            await self._apply(accepted)
        await self.drain_outbox()

    async def drain_outbox(self) -> int:
        sent = 0
        while pending := await self._store_call(self._store.unpublished_alerts, OUTBOX_BATCH):
            await retrying(
                lambda: self._outlet.publish_alerts(pending), "publishing alerts", BROKER_DOWN
            )
            await self._store_call(self._store.mark_published, pending)
            sent += len(pending)
        if sent:
            log.info("published %d alert(s)", sent)
        return sent

    async def _apply(self, accepted: list[Accepted]) -> None:
        """Apply a batch; if it fails for a non-transient reason (a bug some event triggers),
        apply one by one and dead-letter the culprits instead of acking them unapplied."""
        try:
            await self._store_call(self._tracker.apply, [event for event, _ in accepted])
        except Exception as exc:
            if len(accepted) > 1:
                for one in accepted:
                    await self._apply([one])
                return
            _, item = accepted[0]
            reason = f"apply failed: {type(exc).__name__}"
            log.error("message at %s: %s; dead-lettered", item.origin, reason)
            reject = Rejected(item.raw or b"", reason, item.origin, item.key)
            await retrying(
                lambda: self._outlet.dead_letter([reject]), "dead-lettering", BROKER_DOWN
            )

    async def _store_call(self, function: Callable[..., T], *args: Any) -> T:
        """Blocking store calls run in a thread so heartbeats and fetches keep going."""
        return await retrying(
            lambda: asyncio.to_thread(function, *args), "graph store call", STORE_DOWN
        )


class FaustOutlet:
    def __init__(self, topics: ProjectorTopics) -> None:
        self._topics = topics

    async def publish_alerts(self, alerts: Sequence[Alert]) -> None:
        futures = [
            await self._topics.alerts.send(
                key=alert.alert_id.encode(), value=alert.model_dump_json().encode(), force=True
            )
            for alert in alerts
        ]
        await asyncio.gather(*futures)

    async def dead_letter(self, rejects: Sequence[Rejected]) -> None:
        futures = [
            await self._topics.deadletter.send(
                key=reject.key,
                value=reject.raw,
                headers=[
                    (REASON_HEADER, reject.reason.encode()),
                    (ORIGIN_HEADER, reject.origin.encode()),
                ],
                force=True,
            )
            for reject in rejects
        ]
        await asyncio.gather(*futures)


def create_worker_app(settings: Settings, store: GraphStore, policy: Policy) -> faust.App:
    """The faust app with the projector agent on the events topic (one stream, all partitions
    assigned to this worker, one batch at a time: store calls never overlap)."""
    app = create_app(settings)
    topics = declare_topics(app, settings)
    projector = Projector(store, policy, FaustOutlet(topics))

    async def project(stream: Any) -> None:
        await projector.drain_outbox()  # alerts stored before a crash but never confirmed sent
        async for events in stream.take_events(BATCH_SIZE, within=BATCH_WINDOW_S):
            batch = [Inbound(e.value, _origin(e.message), e.key) for e in events]
            await projector.handle(batch)

    app.agent(topics.events, name="lineage-projector")(project)
    return app


def _origin(message: Any) -> str:
    return f"{message.topic}:{message.partition}:{message.offset}"


def run_worker(settings: Settings, store: GraphStore, policy: Policy, loglevel: str) -> NoReturn:
    """Run the faust worker in this process until SIGTERM/SIGINT (faust handles both)."""
    app = create_worker_app(settings, store, policy)
    worker = faust.Worker(app, loglevel=loglevel, quiet=True)
    worker.spinner = None  # it writes terminal escape codes even when logs go to a file
    worker.execute_from_commandline()
