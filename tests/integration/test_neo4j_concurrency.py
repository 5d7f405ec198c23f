"""Two workers, one Neo4j: a unit of work locks the nodes its reads are about, so two units that
could each miss the other's uncommitted write serialize instead (``graph/neo4j_store.py``).

The race, deterministically: unit ``first`` runs all its reads and writes, then is held open
(not committed) while unit ``second`` starts on another store instance; ``first`` is released
after ``second`` has had time to run. Without the locks ``second`` reads the state before
``first`` and both commit a graph with a violation and no alert; with them ``second`` waits for
``first``'s commit and reads it.
"""

from __future__ import annotations

import os
import threading
import zlib
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from graph import neo4j_cypher as cypher
from graph.neo4j_store import Neo4jStore
from graph.sqlite_store import SqliteStore
from lineage.event_identity import claims_of
from lineage.events import Event
from lineage.policy import Policy
from lineage.ports import Writes
from lineage.tracker import Tracker
from streams.kafka_log import partition_key
from tests import factories as f
from tests.conftest import require_service
from tests.histories import History, histories

pytestmark = pytest.mark.neo4j

T = TypeVar("T")

#: How long ``second`` gets to run (or to block) while ``first`` is held.
RACE_WINDOW_S = 1.5
WAIT_S = 60.0


class HeldStore(Neo4jStore):
    """Holds each unit of work open after its work ran (reads and writes done, not committed)
    until ``release`` is set."""

    def __init__(self, uri: str, user: str, password: str) -> None:
        super().__init__(uri, user, password)
        self.reached = threading.Event()
        self.release = threading.Event()

    def atomically(self, work: Callable[[], T]) -> T:
        def held() -> T:
            result = work()
            self.reached.set()
            if not self.release.wait(WAIT_S):
                raise AssertionError("the held unit was never released")
            return result

        return super().atomically(held)


@pytest.fixture(scope="module")
def credentials() -> tuple[str, str, str]:
    uri = require_service("LINEAGE_NEO4J_URI")
    password = require_service("LINEAGE_NEO4J_PASSWORD")
    return uri, os.environ.get("LINEAGE_NEO4J_USER", "neo4j"), password


@pytest.fixture(scope="module")
def stores(credentials: tuple[str, str, str]) -> Iterator[tuple[Neo4jStore, Neo4jStore]]:
    """Two store instances (two drivers, two connection pools): two workers."""
    one, two = Neo4jStore(*credentials), Neo4jStore(*credentials)
    yield one, two
    one.close()
    two.close()


class _Thread(threading.Thread):
    def __init__(self, work: Callable[[], object]) -> None:
        super().__init__(daemon=True)
        self._work = work
        self.error: BaseException | None = None
        self.done = threading.Event()

    def run(self) -> None:
        try:
            self._work()
        except BaseException as exc:  # re-raised by the test
            self.error = exc
        finally:
            self.done.set()


def _second_waits(
    held: HeldStore, first: Callable[[], object], second: Callable[[], object]
) -> bool:
    """Run ``first`` (a unit on ``held``) until it is held open, then ``second`` on another
    store; release the first after the race window. Whether the second had to wait."""
    one = _Thread(first)
    one.start()
    assert held.reached.wait(WAIT_S), "the first unit never ran"
    two = _Thread(second)
    two.start()
    waited = not two.done.wait(RACE_WINDOW_S)
    held.release.set()
    for thread in (one, two):
        assert thread.done.wait(WAIT_S), "a unit of work hung"
        if thread.error is not None:
            raise thread.error
    return waited


#: Neo4j locks both ends when it creates a relationship, but a *dense* node (over 50
#: relationships, db.relationship_grouping_threshold) only in shared mode: the fillers make
#: ads:m dense, as any real dataset is, so only the store's own locks can serialize the race.
FILLERS = 60
SETUP: list[Event] = [
    f.collected("c-ann", "ann", "auth:x", f.SECURITY, 1, owner="ann"),
    f.flowed("sync", "auth:x", "ads:m", 2),
    *(f.collected(f"c-{n}", f"filler{n}", "ads:m", f.NEWSLETTER, 0) for n in range(FILLERS)),
]
#: Keyed by identifier: bob's copy reaches ads:m through the sync run, then A reads ads:m's uses.
COLLECTION = f.collected("c-bob", "bob", "auth:x", f.SECURITY, 1.5, owner="bob")
#: Keyed by dataset: a whole-dataset use of ads:m, which reads the copies that arrived there.
USE = f.used("match", "ads:m", f.ADS, 3)


def _race(
    credentials: tuple[str, str, str], policy: Policy, first: Event, second: Event
) -> tuple[set[str], bool]:
    """(identifiers with an active alert, whether ``second`` waited for ``first``)."""
    setup = Neo4jStore(*credentials)
    try:
        setup.clear()
        Tracker(setup, policy).apply(SETUP)
    finally:
        setup.close()
    held = HeldStore(*credentials)
    other = Neo4jStore(*credentials)
    try:
        waited = _second_waits(
            held,
            lambda: Tracker(held, policy).apply([first]),
            lambda: Tracker(other, policy).apply([second]),
        )
        alerted = {a.identifier for a in other.alerts()}
    finally:
        held.release.set()
        held.close()
        other.close()
    return alerted, waited


RACES = [
    pytest.param(COLLECTION, USE, id="collection-held-then-use"),
    pytest.param(USE, COLLECTION, id="use-held-then-collection"),
]


@pytest.mark.parametrize(("first", "second"), RACES)
def test_a_violation_split_across_two_concurrent_units_is_alerted(
    credentials: tuple[str, str, str], policy: Policy, first: Event, second: Event
) -> None:
    alerted, waited = _race(credentials, policy, first, second)
    assert alerted == {f.ref("ann").ref, f.ref("bob").ref}
    assert waited, "the second unit did not wait for the first one's locks"


def test_without_the_locks_the_same_race_misses_the_violation(
    credentials: tuple[str, str, str], policy: Policy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scenario above is a real race: the same fetches without the lock clauses commit
    a graph in which bob's security copy is used for ads and no alert says so.

    The use is held: the collection's unit reads ads:m's uses (none committed), and only its
    final write waits (Neo4j's own lock for the copy relationship). The other order happens to
    serialize without our locks: the use's unit writes its run on ads:m before it reads, and
    waits there for the collection's copy relationship to commit."""
    monkeypatch.setattr(cypher, "FETCH_LOCKING", cypher.FETCH)
    alerted, _ = _race(credentials, policy, USE, COLLECTION)
    assert alerted == {f.ref("ann").ref}


class PausedBeforeDrop(Neo4jStore):
    """Pauses a unit that drops copies (a recompute) after its reads, before that write."""

    def __init__(self, uri: str, user: str, password: str) -> None:
        super().__init__(uri, user, password)
        self.reached = threading.Event()
        self.release = threading.Event()

    def write(self, writes: Writes) -> None:
        if writes.dropped:
            self.reached.set()
            if not self.release.wait(WAIT_S):
                raise AssertionError("the paused unit was never released")
        super().write(writes)


def test_a_recompute_and_a_run_reading_its_stale_copy_serialize(
    credentials: tuple[str, str, str], policy: Policy
) -> None:
    """A late erasure makes bob's copy in s:x impossible (it was carried after the erasure).
    Its unit reads bob's history and pauses before dropping his copies; meanwhile a run of
    s:x -> ads:m reads s:x's arrivals, stale bob included, then waits for bob's lock. The drop
    must lock s:x (deadlock, one unit retried) rather than let the run carry a copy the
    recompute removed: in the end bob has no copy downstream and no active alert."""
    setup_events: list[Event] = [
        f.collected("c-bob", "bob", "auth:x", f.SECURITY, 1, owner="bob"),
        f.flowed("carry", "auth:x", "s:x", 2, who=["bob"]),
        f.used("match", "ads:m", f.ADS, 4),
        *(f.collected(f"c-{n}", f"filler{n}", "s:x", f.NEWSLETTER, 0) for n in range(FILLERS)),
    ]
    erasure = f.erased("e-bob", "bob", 1.5)
    run = f.flowed("sync", "s:x", "ads:m", 3)
    setup = Neo4jStore(*credentials)
    try:
        setup.clear()
        Tracker(setup, policy).apply(setup_events)
    finally:
        setup.close()
    paused, other = PausedBeforeDrop(*credentials), Neo4jStore(*credentials)
    try:
        one = _Thread(lambda: Tracker(paused, policy).apply([erasure]))
        one.start()
        assert paused.reached.wait(WAIT_S), "the recompute never ran"
        two = _Thread(lambda: Tracker(other, policy).apply([run]))
        two.start()
        assert not two.done.wait(RACE_WINDOW_S), "the run did not wait for bob's lock"
        paused.release.set()
        for thread in (one, two):
            assert thread.done.wait(WAIT_S), "a unit of work hung"
            if thread.error is not None:
                raise thread.error
        snapshot, alerts = other.snapshot(), other.alerts()
    finally:
        paused.release.set()
        paused.close()
        other.close()
    reference = SqliteStore(":memory:")
    Tracker(reference, policy).apply([*setup_events, erasure, run])
    assert snapshot == reference.snapshot()
    assert alerts == reference.alerts() == []


# -- many units at once ------------------------------------------------------------------------


def _partition(event: Event) -> int:
    """Kafka's keying: identifier events by identifier, flows, uses and reads by dataset,
    officers' actions by incident."""
    return zlib.crc32(partition_key(event)) % 2


def _apply_concurrently(
    stores: tuple[Neo4jStore, Neo4jStore], policy: Policy, parts: Sequence[list[Event]]
) -> None:
    barrier = threading.Barrier(len(parts))

    def worker(store: Neo4jStore, events: list[Event]) -> Callable[[], None]:
        def run() -> None:
            barrier.wait(WAIT_S)
            for event in events:  # one unit per event: the most interleaving
                Tracker(store, policy).apply([event])

        return run

    threads = [_Thread(worker(s, p)) for s, p in zip(stores, parts, strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        assert thread.done.wait(WAIT_S * 3), "a worker hung"
        if thread.error is not None:
            raise thread.error


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(history=histories(max_events=14), seed=st.integers(0, 3))  # fmt: skip
def test_two_workers_applying_their_partitions_concurrently_build_the_sequential_result(
    stores: tuple[Neo4jStore, Neo4jStore], policy: Policy, history: History, seed: int
) -> None:
    events: list[Event] = list(history)
    parts: list[list[Event]] = [[], []]
    for event in events:
        parts[(_partition(event) + seed) % 2].append(event)
    stores[0].clear()
    _apply_concurrently(stores, policy, parts)
    reference = SqliteStore(":memory:")
    Tracker(reference, policy).apply(events)
    assert stores[0].snapshot() == reference.snapshot()
    assert [a.content() for a in stores[1].alerts()] == [a.content() for a in reference.alerts()]


def test_two_workers_applying_one_event_id_with_other_content_keep_the_first(
    credentials: tuple[str, str, str], policy: Policy
) -> None:
    """A reused event id on two partitions (two workers): the first unit claims the id and is
    held open; the second waits on the claim, then sees it and refuses its event. One
    collection is stored, and no empty claim is left behind."""
    first = f.collected("c-same", "ann", "auth:x", f.SECURITY, 1, owner="ann")
    second = f.collected("c-same", "bob", "auth:x", f.SECURITY, 2, owner="bob")
    setup = Neo4jStore(*credentials)
    setup.clear()
    held = HeldStore(*credentials)
    other = Neo4jStore(*credentials)
    try:
        results: dict[str, list[int]] = {}

        def claim(name: str, store: Neo4jStore, event: Event) -> None:
            results[name] = Tracker(store, policy).apply_claimed([(event, claims_of(event))]).reused

        waited = _second_waits(
            held, lambda: claim("first", held, first), lambda: claim("second", other, second)
        )
        assert results == {"first": [], "second": [0]}
        assert waited, "the second unit did not wait for the first one's claim"
        collections = other.snapshot().collections
        assert {c.identifier for c in collections} == {f.ref("ann").ref}
        empty = setup._read("counting claims", "MATCH (c:EventClaim) WHERE c.digest IS NULL "
                            "RETURN count(c) AS n")  # fmt: skip
        assert empty[0]["n"] == 0
    finally:
        held.release.set()
        for store in (held, other, setup):
            store.close()
