"""The projector under store failures, with a fake outlet and a store that fails on purpose.

Transient failures are retried (bounded, logged) and then succeed or stop the worker
uncommitted; a permanent failure splits the batch and dead-letters only the culprit; a batch
too large for one transaction is applied in pieces; the consumer loop commits a batch only
after it was applied. Driver errors are classified by their real Neo4j codes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

import pytest
from neo4j.exceptions import (
    AuthError,
    IncompleteCommit,
    Neo4jError,
    ServiceUnavailable,
    SessionExpired,
)

from graph.errors import (
    FatalStoreError,
    PermanentStoreError,
    TransientStoreError,
    is_transient,
)
from graph.sqlite_store import SqliteStore
from graph.store import GraphStore
from lineage.alerts import Alert
from lineage.errors import StoreError
from lineage.events import Event, IdentifierCollected, dump_event
from lineage.inbound import InboundParser
from lineage.policy import Policy
from lineage.ports import Writes
from lineage.reference_case import generate
from lineage.tracker import Tracker
from streams.projector import (
    Inbound,
    KafkaOutlet,
    Projector,
    Rejected,
    Retry,
    consume,
)
from streams.topics import DEADLETTER_MAX_BYTES, TRUNCATED_HEADER

T = TypeVar("T")
FAST = {"first_s": 0.001, "max_s": 0.01}


@dataclass
class FakeOutlet:
    alerts: list[Alert] = field(default_factory=list)
    letters: list[Rejected] = field(default_factory=list)
    failures_left: int = 0  # transient broker failures before it works

    def publish_alerts(self, alerts: Sequence[Alert]) -> None:
        self._maybe_fail()
        self.alerts += alerts

    def dead_letter(self, rejects: Sequence[Rejected]) -> None:
        self._maybe_fail()
        self.letters += rejects

    def _maybe_fail(self) -> None:
        if self.failures_left:
            self.failures_left -= 1
            raise TransientStoreError("broker away", "KafkaTimeoutError")


class FailingStore:
    """A SQLite store whose units fail on purpose: ``transient`` times first, then whenever
    ``refuse`` returns an error for the unit's writes (the unit then rolls back)."""

    def __init__(
        self,
        transient: int = 0,
        refuse: Callable[[Writes], Exception | None] | None = None,
        fatal: bool = False,
    ) -> None:
        self.inner = SqliteStore(":memory:")
        self.transient_left = transient
        self.refuse = refuse
        self.fatal = fatal
        self.units = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def atomically(self, work: Callable[[], T]) -> T:
        self.units += 1
        if self.fatal:
            raise FatalStoreError("credentials rejected", "Neo.ClientError.Security.Unauthorized")
        if self.transient_left:
            self.transient_left -= 1
            raise TransientStoreError("Neo4j is unreachable", "ServiceUnavailable")
        return self.inner.atomically(work)

    def write(self, writes: Writes) -> None:
        if self.refuse is not None and (error := self.refuse(writes)) is not None:
            raise error
        self.inner.write(writes)


@pytest.fixture(scope="module")
def events(parser: InboundParser) -> list[Event]:
    case = generate(users=12)
    observed = datetime.now(UTC)
    parsed = [parser.parse_record(record, observed) for record in case.records]
    assert len(parsed) >= 50
    return parsed[:50]


def inbound(events: Sequence[Event]) -> list[Inbound]:
    return [
        Inbound(dump_event(e).encode(), f"events:0:{n}", e.event_id.encode())
        for n, e in enumerate(events)
    ]


def reference(events: Sequence[Event], policy: Policy) -> SqliteStore:
    store = SqliteStore(":memory:")
    Tracker(store, policy).apply(events)
    return store


def projector(store: FailingStore, policy: Policy, outlet: FakeOutlet, **retry: Any) -> Projector:
    return Projector(cast(GraphStore, store), policy, outlet, Retry(**{**FAST, **retry}))


def test_a_transient_error_is_retried_then_the_batch_applies(
    events: list[Event], policy: Policy, caplog: pytest.LogCaptureFixture
) -> None:
    store, outlet = FailingStore(transient=3), FakeOutlet(failures_left=2)
    worker = projector(store, policy, outlet)
    with caplog.at_level(logging.WARNING, "streams.projector"):
        worker.handle(inbound(events))
    assert store.units == 4  # three refused, the fourth applied the whole batch at once
    assert worker.counters.retries == 3 + 2  # the store's and the broker's
    assert worker.counters.applied == 50 and outlet.letters == []
    retries = [r.getMessage() for r in caplog.records if "retrying in" in r.getMessage()]
    assert len(retries) == 5  # every retry logged, with what failed
    assert "applying 50 event(s) failed (attempt 1" in retries[0]
    assert "TransientStoreError: Neo4j is unreachable" in retries[0]
    expected = reference(events, policy)
    assert store.inner.snapshot() == expected.snapshot()
    assert {a.alert_id for a in outlet.alerts} == {a.alert_id for a in expected.alerts()}
    assert store.inner.unpublished_alerts() == []


def test_a_permanent_error_dead_letters_only_the_culprit(
    events: list[Event], policy: Policy
) -> None:
    poison = next(e for e in events[20:] if isinstance(e, IdentifierCollected))

    def refuse(writes: Writes) -> Exception | None:
        if poison.event_id in repr(writes):
            return PermanentStoreError(
                "Neo4j refused the work: Node(7) already exists with label `Identifier`",
                "Neo.ClientError.Schema.ConstraintValidationFailed",
            )
        return None

    store, outlet = FailingStore(refuse=refuse), FakeOutlet()
    worker = projector(store, policy, outlet)
    worker.handle(inbound(events))

    assert worker.counters.applied == 49
    (letter,) = outlet.letters
    assert letter.raw == dump_event(poison).encode()
    assert letter.key == poison.event_id.encode()
    assert letter.origin == f"events:0:{events.index(poison)}"
    assert letter.reason == (
        "apply failed: refused by the graph store "
        "(Neo.ClientError.Schema.ConstraintValidationFailed)"
    )
    assert "Node(7)" not in letter.reason  # the server's message can quote stored values
    # bisection: at most 2n - 1 units for n events, far fewer for one culprit
    assert store.units <= 2 * 6 + 1
    assert worker.counters.retries == 0  # a permanent error is never retried as is
    rest = [e for e in events if e is not poison]
    expected = reference(rest, policy)
    assert store.inner.snapshot() == expected.snapshot()
    assert {a.alert_id for a in outlet.alerts} == {a.alert_id for a in expected.alerts()}


def test_an_exception_from_the_core_dead_letters_the_event(
    events: list[Event], policy: Policy
) -> None:
    poison = events[7]

    def refuse(writes: Writes) -> Exception | None:
        return ValueError("a bug some event triggers") if poison.event_id in repr(writes) else None

    store, outlet = FailingStore(refuse=refuse), FakeOutlet()
    worker = projector(store, policy, outlet)
    worker.handle(inbound(events[:10]))
    assert [(r.raw, r.reason) for r in outlet.letters] == [
        (dump_event(poison).encode(), "apply failed: ValueError")
    ]
    assert worker.counters.applied == 9


def _rows(writes: Writes) -> int:
    facts = writes.facts
    fact_rows = sum(len(getattr(facts, n)) for n in facts.__dataclass_fields__) if facts else 0
    return fact_rows + len(writes.copies) + len(writes.alerts)


def test_an_oversize_batch_is_applied_in_pieces(events: list[Event], policy: Policy) -> None:
    """The server refuses any unit over a row limit (as Neo4j does past its transaction memory
    limit): the batch is split until the pieces fit; nothing is dead-lettered."""
    seen: list[int] = []

    def measure(writes: Writes) -> None:
        seen.append(_rows(writes))

    probe = FailingStore(refuse=measure)
    Tracker(cast(GraphStore, probe), policy).apply(events)
    whole = sum(seen)
    limit = whole // 5
    assert limit > 0

    def refuse(writes: Writes) -> Exception | None:
        if _rows(writes) > limit:
            return PermanentStoreError(
                "transaction too large",
                "Neo.ClientError.General.TransactionOutOfMemoryError",
                oversize=True,
            )
        return None

    store, outlet = FailingStore(refuse=refuse), FakeOutlet()
    worker = projector(store, policy, outlet)
    worker.handle(inbound(events))
    assert worker.counters.splits >= 2
    expected = reference(events, policy)
    if outlet.letters:  # a single event over the limit by itself goes, with its reason
        assert all("too large for one graph store transaction" in r.reason for r in outlet.letters)
        kept = [e for e in events if dump_event(e).encode() not in {r.raw for r in outlet.letters}]
        expected = reference(kept, policy)
    assert worker.counters.applied + len(outlet.letters) == 50
    assert store.inner.snapshot() == expected.snapshot()


def test_a_single_oversize_event_is_dead_lettered_with_its_reason(
    events: list[Event], policy: Policy
) -> None:
    error = PermanentStoreError(
        "too large", "Neo.TransientError.General.MemoryPoolOutOfMemoryError", oversize=True
    )
    store, outlet = FailingStore(refuse=lambda w: error), FakeOutlet()
    worker = projector(store, policy, outlet)
    worker.handle(inbound(events[:4]))
    assert len(outlet.letters) == 4  # nothing fits: every event alone still fails
    assert store.units == 7  # 4 + 2 + 1: bisection ends
    assert {r.reason for r in outlet.letters} == {
        "apply failed: too large for one graph store transaction "
        "(Neo.TransientError.General.MemoryPoolOutOfMemoryError)"
    }


def test_transient_retries_are_bounded_and_nothing_is_dead_lettered(
    events: list[Event], policy: Policy
) -> None:
    store, outlet = FailingStore(transient=10**9), FakeOutlet()
    worker = projector(store, policy, outlet, budget_s=0.3, first_s=0.01, max_s=0.05)
    started = time.monotonic()
    with pytest.raises(TransientStoreError):
        worker.handle(inbound(events))
    elapsed = time.monotonic() - started
    assert 0.3 <= elapsed < 2.0
    assert 3 <= store.units < 60
    assert outlet.letters == [] and worker.counters.applied == 0


def test_a_stop_request_ends_the_retries_at_once(events: list[Event], policy: Policy) -> None:
    store, outlet = FailingStore(transient=10**9), FakeOutlet()
    stop = threading.Event()
    worker = Projector(cast(GraphStore, store), policy, outlet, Retry(stop=stop, first_s=5.0))
    threading.Timer(0.2, stop.set).start()
    started = time.monotonic()
    with pytest.raises(TransientStoreError):
        worker.handle(inbound(events))
    assert time.monotonic() - started < 2.0  # not the 5 s backoff


def test_a_fatal_error_stops_without_retry_or_dead_letter(
    events: list[Event], policy: Policy
) -> None:
    store, outlet = FailingStore(fatal=True), FakeOutlet()
    worker = projector(store, policy, outlet)
    with pytest.raises(FatalStoreError):
        worker.handle(inbound(events))
    assert store.units == 1 and outlet.letters == []


# -- the consumer loop: commit only what was applied ------------------------------------------


@dataclass
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]] = field(default_factory=list)  # as kafka-python's


@dataclass
class FakeConsumer:
    """Polls hand out ``polls`` in order (``None``: nothing arrived within the timeout); when
    they are used up the loop is told to stop."""

    polls: list[list[Record] | None]
    stop: threading.Event
    commits: list[dict[Any, Any]] = field(default_factory=list)

    def poll(self, timeout_ms: int, max_records: int) -> dict[Any, list[Record]]:
        got = self.polls.pop(0) if self.polls else None
        if not self.polls:
            self.stop.set()
        if got is None:
            time.sleep(timeout_ms / 1000)
            return {}
        return {"tp": got}

    def commit(self, offsets: dict[Any, Any]) -> None:
        self.commits.append({(tp.topic, tp.partition): o.offset for tp, o in offsets.items()})

    def assignment(self) -> set[Any]:
        return set()  # no watermark known: every poll has caught up


def records(events: Sequence[Event], partitions: int = 2) -> list[Record]:
    return [
        Record(
            "events", n % partitions, n // partitions, e.event_id.encode(), dump_event(e).encode()
        )
        for n, e in enumerate(events)
    ]


def test_the_loop_commits_each_batch_after_applying_it(events: list[Event], policy: Policy) -> None:
    stream = records(events)
    stop = threading.Event()
    consumer = FakeConsumer([stream[:30], None, stream[30:], None], stop)
    store, outlet = FailingStore(), FakeOutlet()
    worker = projector(store, policy, outlet)
    consume(consumer, worker, stop)
    assert consumer.commits == [
        {("events", 0): 15, ("events", 1): 15},
        {("events", 0): 25, ("events", 1): 25},
    ]
    assert worker.counters.applied == 50


def test_the_loop_never_commits_a_batch_it_could_not_apply(
    events: list[Event], policy: Policy
) -> None:
    stop = threading.Event()
    consumer = FakeConsumer([records(events), None], stop)
    store, outlet = FailingStore(transient=10**9), FakeOutlet()
    worker = projector(store, policy, outlet, budget_s=0.1)
    with pytest.raises(StoreError):
        consume(consumer, worker, stop)
    assert consumer.commits == []


# -- the outlet: a dead letter over the broker's limit is truncated ---------------------------


class FakeProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes, Any]] = []

    def send(self, topic: str, key: bytes | None, value: bytes, headers: Any) -> Any:
        self.sent.append((topic, key, value, headers))
        return type("Done", (), {"get": lambda self, timeout: None})()

    def flush(self, timeout: float) -> None:
        pass


def test_an_oversize_dead_letter_is_truncated_and_says_so() -> None:
    outlet = KafkaOutlet.__new__(KafkaOutlet)
    producer = FakeProducer()
    outlet.__dict__.update(_producer=producer, _deadletter_topic="dl", _alerts_topic="al")
    outlet.dead_letter([Rejected(b"x" * (2 * 1024 * 1024), "line too long", "ingest:1")])
    ((topic, _, value, headers),) = producer.sent
    assert topic == "dl" and len(value) == DEADLETTER_MAX_BYTES
    assert dict(headers)[TRUNCATED_HEADER] == str(2 * 1024 * 1024).encode()
    assert dict(headers)["reason"] == b"line too long"


# -- Neo4j driver errors, by their real codes ---------------------------------------------------


def _server_error(code: str) -> Neo4jError:
    return Neo4jError._hydrate_neo4j(code=code, message="something about Node(7)")


@pytest.mark.parametrize(
    ("error", "kind", "oversize"),
    [
        (ServiceUnavailable("connection refused"), TransientStoreError, False),
        (SessionExpired("leader switched"), TransientStoreError, False),
        (IncompleteCommit("lost during commit"), TransientStoreError, False),
        (
            _server_error("Neo.TransientError.Transaction.DeadlockDetected"),
            TransientStoreError,
            False,
        ),
        (_server_error("Neo.TransientError.Cluster.NotALeader"), TransientStoreError, False),
        (_server_error("Neo.ClientError.Transaction.Terminated"), TransientStoreError, False),
        (_server_error("Neo.DatabaseError.General.UnknownError"), TransientStoreError, False),
        (
            _server_error("Neo.ClientError.Schema.ConstraintValidationFailed"),
            PermanentStoreError,
            False,
        ),
        (_server_error("Neo.ClientError.Statement.TypeError"), PermanentStoreError, False),
        (
            _server_error("Neo.ClientError.General.TransactionOutOfMemoryError"),
            PermanentStoreError,
            True,
        ),
        (
            _server_error("Neo.TransientError.General.MemoryPoolOutOfMemoryError"),
            PermanentStoreError,
            True,
        ),
        (
            _server_error("Neo.ClientError.Transaction.TransactionTimedOut"),
            PermanentStoreError,
            True,
        ),
        (AuthError("bad credentials"), FatalStoreError, False),
        (_server_error("Neo.ClientError.Security.Forbidden"), FatalStoreError, False),
        (_server_error("Neo.ClientError.Database.DatabaseNotFound"), FatalStoreError, False),
    ],
)
def test_neo4j_errors_are_classified_by_what_helps(
    error: Exception, kind: type[StoreError], oversize: bool
) -> None:
    from graph.neo4j_store import Neo4jStore

    store = Neo4jStore.__new__(Neo4jStore)  # no server: only the translation is under test
    store.__dict__.update(_uri="bolt://127.0.0.1:1", _database="neo4j", _user="neo4j")
    with pytest.raises(StoreError) as raised, store._translated("testing"):
        raise error
    assert type(raised.value) is kind
    assert raised.value.__cause__ is error
    assert is_transient(raised.value) == (kind is TransientStoreError)
    if isinstance(raised.value, PermanentStoreError):
        assert raised.value.oversize == oversize
        assert raised.value.code == cast(Neo4jError, error).code


# -- alerts: sent from memory after the batch, the outbox read back only at start -------------


def test_alerts_a_worker_could_not_send_are_sent_by_the_next_one(
    events: list[Event], policy: Policy
) -> None:
    """The batch's alerts go out from memory (the outbox is not read per batch); when the
    broker stays away past the budget, they stay in the outbox and the next worker's start
    sends them: none lost."""
    store = FailingStore()
    reads = 0
    unpublished = store.inner.unpublished_alerts

    def counted(limit: int = 1_000) -> list[Alert]:
        nonlocal reads
        reads += 1
        return unpublished(limit)

    store.inner.unpublished_alerts = counted  # type: ignore[method-assign]
    sent = FakeOutlet()
    projector(store, policy, sent).handle(inbound(events[:25]))
    assert reads == 0 and sent.alerts

    away = FakeOutlet(failures_left=10**9)
    with pytest.raises(TransientStoreError):
        projector(store, policy, away, budget_s=0.05).handle(inbound(events[25:]))
    stranded = unpublished()
    assert stranded and away.alerts == []

    later = FakeOutlet()
    assert projector(store, policy, later).drain_outbox() == len(stranded)
    expected = reference(events, policy)
    assert {a.alert_id for a in sent.alerts + later.alerts} == {
        a.alert_id for a in expected.alerts()
    }
    assert unpublished() == []
