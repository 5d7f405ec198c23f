"""Fuzzing the worker: what it does with a raw Kafka record (``streams.projector``).

``triage`` (parse + validate: the pure part) on the mutated canonical corpus and on
hypothesis input; ``Projector.handle`` (triage, dead letters, apply) against the real Neo4j
store with a fake outlet; and the real thing: bad records on a fresh events topic, read by
the worker subprocess, which dead-letters them and keeps applying the good ones.
Every record ends applied or dead-lettered with a one-line reason; nothing stops the worker.
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from graph.sqlite_store import SqliteStore
from graph.store import GraphStore
from lineage.alerts import Alert
from lineage.events import Event
from lineage.identifiers import Pseudonymizer
from lineage.inbound import InboundParser
from lineage.policy import Policy
from lineage.tracker import Tracker
from runtime.wiring import default_policy, default_taxonomy
from streams.projector import Inbound, Projector, Rejected, Retry, triage
from tests.conftest import TEST_KEY, neo4j_store, require_service
from tests.fuzz.corpus import (
    FUZZ,
    MUST_REJECT,
    canonical_corpus,
    canonical_lines,
    check_reason,
    good_records,
    hostile_lines,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)
PARSER = InboundParser(Pseudonymizer(TEST_KEY))
POLICY = default_policy(default_taxonomy())
#: triage never writes: one tracker on an empty in-memory store serves every example
TRACKER = Tracker(SqliteStore(":memory:"), POLICY)


def canonical(tag: str) -> list[Event]:
    """The good records as the producer side makes them (pseudonymized, canonical)."""
    return [PARSER.parse_record(record, NOW) for record in good_records(tag)]


@dataclass
class FakeOutlet:
    alerts: list[Alert] = field(default_factory=list)
    letters: list[Rejected] = field(default_factory=list)

    def publish_alerts(self, alerts: Sequence[Alert]) -> None:
        self.alerts += alerts

    def dead_letter(self, rejects: Sequence[Rejected]) -> None:
        self.letters += rejects


def _items(lines: Sequence[bytes | None], tag: str) -> list[Inbound]:
    return [Inbound(raw, f"{tag}:0:{n}", b"key") for n, raw in enumerate(lines)]


# -- triage: the worker's parse + validation ---------------------------------------------------


def test_triage_accepts_or_rejects_every_corpus_record_with_a_one_line_reason(
    policy: Policy,
) -> None:
    named = [*canonical_corpus(canonical("w")), ("none", None), ("empty", b"")]
    items = _items([raw for _, raw in named], "events")
    accepted, rejected = triage(Tracker(SqliteStore(":memory:"), policy), items)
    assert len(accepted) + len(rejected) == len(items)
    by_origin = {
        item.origin: (name, item.raw) for (name, _), item in zip(named, items, strict=True)
    }
    for reject in rejected:
        check_reason(reject.reason)
        name, raw = by_origin[reject.origin]
        assert reject.raw == (raw or b""), name  # the original bytes, for a fix and re-send
        assert reject.key == b"key"
    names = {by_origin[reject.origin][0] for reject in rejected}
    assert set(MUST_REJECT) | {"none", "empty"} <= names
    assert all(name.startswith("canonical.") for name in names ^ {n for n, _ in named})


@FUZZ
@given(raw=hostile_lines([event.model_dump(mode="json") for event in canonical("hw")]))
def test_triage_of_hostile_records(raw: bytes) -> None:
    accepted, rejected = triage(TRACKER, _items([raw], "events"))
    assert len(accepted) + len(rejected) == 1
    for reject in rejected:
        check_reason(reject.reason)


# -- Projector.handle on the real Neo4j store --------------------------------------------------


@pytest.fixture
def neo4j() -> Iterator[GraphStore]:
    """The shared Neo4j, not emptied: every event here has ids of its own run."""
    store = neo4j_store()
    yield store
    store.close()


@pytest.mark.neo4j
def test_the_projector_dead_letters_bad_records_and_applies_the_rest_on_neo4j(
    neo4j: GraphStore, policy: Policy
) -> None:
    run = f"fz{uuid.uuid4().hex[:8]}"
    outlet = FakeOutlet()
    projector = Projector(neo4j, policy, outlet, Retry(budget_s=30))
    hostile = [raw for _, raw in canonical_corpus(canonical(f"{run}-bad"))]
    good_origins: set[str] = set()
    total = 0
    for k, chunk in enumerate(hostile[i : i + 200] for i in range(0, len(hostile), 200)):
        goods = canonical_lines(canonical(f"{run}-{k}"))
        batch = _items([*chunk[:100], *goods[:2], *chunk[100:], *goods[2:], None], f"b{k}")
        good_origins |= {item.origin for item in batch if item.raw in goods}
        projector.handle(batch)
        total += len(batch)
    # and after all that, a batch of good events alone still applies
    projector.handle(_items(canonical_lines(canonical(f"{run}-after")), "after"))
    total += 4

    counters = projector.counters
    assert counters.applied + counters.dead_lettered == total
    assert counters.dead_lettered == len(outlet.letters)
    assert not good_origins & {letter.origin for letter in outlet.letters}
    assert not {letter.origin for letter in outlet.letters if letter.origin.startswith("after")}
    for letter in outlet.letters:
        check_reason(letter.reason)
    assert outlet.alerts  # the good events' security collection reached an ad use


@pytest.mark.neo4j
def test_hostile_batches_never_stop_the_projector_on_neo4j(
    neo4j: GraphStore, policy: Policy
) -> None:
    run = f"fz{uuid.uuid4().hex[:8]}"
    outlet = FakeOutlet()
    projector = Projector(neo4j, policy, outlet, Retry(budget_s=30))
    hostile = hostile_lines([e.model_dump(mode="json") for e in canonical(f"{run}-h")])
    runs = itertools.count()

    @settings(FUZZ, max_examples=25)
    @given(st.lists(hostile, min_size=1, max_size=4))
    def check(lines: list[bytes]) -> None:
        n = next(runs)
        good = canonical_lines(canonical(f"{run}-{n}"))[n % 4]
        counters = projector.counters
        before = counters.applied + counters.dead_lettered
        letters = len(outlet.letters)
        projector.handle(_items([*lines, good], f"r{n}"))
        assert counters.applied + counters.dead_lettered == before + len(lines) + 1
        for letter in outlet.letters[letters:]:
            check_reason(letter.reason)
            assert letter.origin != f"r{n}:0:{len(lines)}", "the good event was dead-lettered"

    check()


# -- the real worker on a fresh events topic ---------------------------------------------------

KAFKA_CASES = (
    "nested-1100-arrays",
    "nested-1100-objects",
    "non-utf8-byte",
    "utf8-surrogate-bytes",
    "bigint-5000-digits",
    "duplicate-type",
    "IdentifierCollected.extra-newline-key",
    "IdentifierCollected.type-is-email",
    "canonical.IdentifierCollected.event_time=time0",
    "canonical.DataFlowed.observed_time=time0",
    "canonical.DataUsed.extra-key",
    "canonical.IdentifierErased.type-is-email",
)


@pytest.mark.kafka
@pytest.mark.neo4j
def test_the_worker_dead_letters_bad_records_and_keeps_going(tmp_path: Path) -> None:
    from kafka import KafkaProducer

    from streams.kafka_log import ensure_topics
    from tests.integration.conftest import Services, open_pipeline

    services = Services(
        bootstrap=require_service("LINEAGE_KAFKA_BOOTSTRAP"),
        neo4j_uri=require_service("LINEAGE_NEO4J_URI"),
        neo4j_user=os.environ.get("LINEAGE_NEO4J_USER", "neo4j"),
        neo4j_password=require_service("LINEAGE_NEO4J_PASSWORD"),
    )
    run = f"fz{uuid.uuid4().hex[:8]}"
    chosen = dict(canonical_corpus(canonical(f"{run}-bad")))
    bad: list[bytes | None] = [*(chosen[name] for name in KAFKA_CASES), None, b""]
    first, later = canonical(f"{run}-1"), canonical(f"{run}-2")
    with open_pipeline(services, tmp_path) as pipe:
        ensure_topics(pipe.settings)
        producer = KafkaProducer(bootstrap_servers=pipe.settings.kafka_bootstrap)
        try:
            for n, raw in enumerate(bad):
                producer.send(pipe.settings.events_topic, raw, key=b"k%d" % n)
        finally:
            producer.flush()
            producer.close()
        pipe.produce(first)
        pipe.start_worker()
        pipe.wait_caught_up()
        pipe.produce(later)  # after the bad ones: still applied
        pipe.wait_until(
            lambda done, total: done == total == len(bad) + len(first) + len(later),
            "the worker to apply the later events",
        )
        worker = pipe.workers[-1]
        assert worker.poll() is None, pipe.worker_output()

        letters = pipe.read_topic(pipe.settings.deadletter_topic)
        assert sorted(letter.value or b"" for letter in letters) == sorted(r or b"" for r in bad)
        topic = pipe.settings.events_topic.encode()
        for letter in letters:
            headers = dict(letter.headers)
            check_reason(headers["reason"].decode())
            assert headers["origin"].startswith(topic + b":")
        # The worker commits a batch only once it is applied: committed == produced above
        # means the later events were applied. (Not compared with a reference graph: other
        # suites empty the shared Neo4j whenever they start a pipeline.) The good events
        # raise their alert: security collection -> ads table -> ad matching.
        assert pipe.published_alert_ids()
        pipe.stop_workers()
        assert "Traceback" not in pipe.worker_output()
