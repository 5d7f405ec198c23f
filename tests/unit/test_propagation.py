"""Scenarios of incremental propagation on the embedded store."""

from __future__ import annotations

from datetime import UTC, datetime

from graph.sqlite_store import SqliteStore
from lineage.identifiers import Pseudonymizer
from lineage.inbound import InboundParser
from lineage.model import Copy
from lineage.policy import Policy
from lineage.ports import Request
from lineage.reference_case import generate
from lineage.tracker import Tracker
from tests import factories as f
from tests.conftest import TEST_KEY


def _tracker(policy: Policy) -> Tracker:
    return Tracker(SqliteStore(":memory:"), policy)


def copies_of(tracker: Tracker, identifier: str, dataset: str) -> list[Copy]:
    found = tracker.store.fetch(Request(copies={(identifier, dataset)})).copies
    return found.get((identifier, dataset), [])


def _store(tracker: Tracker) -> SqliteStore:
    assert isinstance(tracker.store, SqliteStore)
    return tracker.store


def test_purpose_travels_with_the_copy_not_the_person(policy: Policy) -> None:
    tracker = _tracker(policy)
    alerts = tracker.apply(
        [
            f.collected("c-2fa", "eve", "auth:db", f.SECURITY, 1, owner="eve"),
            f.collected("c-news", "eve", "crm:news", f.NEWSLETTER, 2, owner="eve"),
            f.flowed("f-news", "crm:news", "ads:t", 3),
            f.used("u1", "ads:t", f.ADS, 4),
        ]
    )
    assert alerts == []
    assert tracker.apply([f.flowed("f-auth", "auth:db", "ads:t", 5, who=["eve"])]) == []
    (alert,) = tracker.apply([f.used("u2", "ads:t", f.ADS, 6)])
    assert alert.origin_purpose == f.SECURITY
    assert [s.event_id for s in alert.evidence] == ["c-2fa", "f-auth", "u2"]


def test_alert_fires_at_the_first_use_and_once(policy: Policy) -> None:
    tracker = _tracker(policy)
    tracker.apply(
        [
            f.collected("c1", "ann", "auth:db", f.SECURITY, 1),
            f.flowed("f1", "auth:db", "ads:t", 2, who=["ann"]),
        ]
    )
    (first,) = tracker.apply([f.used("u1", "ads:t", f.ADS, 3, who=["ann"])])
    assert first.occurred_at == f.at(3)
    assert tracker.apply([f.used("u2", "ads:t", f.ADS, 9, who=["ann"])]) == []


def test_whole_dataset_flow_carries_what_the_source_held_then(policy: Policy) -> None:
    tracker = _tracker(policy)
    store = _store(tracker)
    tracker.apply(
        [
            f.collected("c1", "early", "auth:db", f.SECURITY, 1),
            f.flowed("run1", "auth:db", "ads:t", 2),
            f.collected("c2", "late", "auth:db", f.SECURITY, 3),
        ]
    )
    assert [
        c.identifier
        for c in store.fetch(Request(arrivals={("ads:t", None, 10**18, None)})).arrivals[
            ("ads:t", None, 10**18, None)
        ]
    ] == [f.ref("early").ref]
    tracker.apply([f.flowed("run2", "auth:db", "ads:t", 4)])
    late = copies_of(tracker, f.ref("late").ref, "ads:t")
    assert [c.event_id for c in late] == ["run2"]
    (early,) = copies_of(tracker, f.ref("early").ref, "ads:t")
    assert early.event_id == "run1"


def test_multi_hop_evidence_and_late_collection(policy: Policy) -> None:
    tracker = _tracker(policy)
    assert (
        tracker.apply(
            [
                f.flowed("f1", "auth:db", "lake:raw", 5, job="export"),
                f.flowed("f2", "lake:raw", "ads:t", 6, job="audience-build"),
                f.used("u1", "ads:t", f.ADS, 7, job="matcher"),
            ]
        )
        == []
    )
    (alert,) = tracker.apply([f.collected("c1", "bob", "auth:db", f.RECOVERY, 1)])
    assert [(s.kind, s.event_id) for s in alert.evidence] == [
        ("collected", "c1"),
        ("flowed", "f1"),
        ("flowed", "f2"),
        ("used", "u1"),
    ]
    assert alert.use_job == "matcher" and alert.origin_purpose == f.RECOVERY


def test_cycles_terminate(policy: Policy) -> None:
    tracker = _tracker(policy)
    tracker.apply(
        [
            f.flowed("ab", "x:a", "x:b", 2),
            f.flowed("ba", "x:b", "x:a", 3),
            f.collected("c1", "cy", "x:a", f.SECURITY, 1),
        ]
    )
    assert {
        c.dataset
        for c in tracker.store.fetch(Request(histories={f.ref("cy").ref}))
        .histories[f.ref("cy").ref]
        .copies
    } == {
        "x:a",
        "x:b",
    }


def test_flows_before_collection_carry_nothing(policy: Policy) -> None:
    tracker = _tracker(policy)
    assert (
        tracker.apply(
            [
                f.flowed("f1", "auth:db", "ads:t", 1, who=["ann"]),
                f.collected("c1", "ann", "auth:db", f.SECURITY, 2),
                f.used("u1", "ads:t", f.ADS, 3),
            ]
        )
        == []
    )


def test_erasure_stops_later_copies_and_uses(policy: Policy) -> None:
    tracker = _tracker(policy)
    assert (
        tracker.apply(
            [
                f.collected("c1", "zed", "auth:db", f.SECURITY, 1),
                f.erased("e1", "zed", 2),
                f.flowed("f1", "auth:db", "ads:t", 3),
                f.used("u1", "auth:db", f.ADS, 4),
            ]
        )
        == []
    )
    assert copies_of(tracker, f.ref("zed").ref, "ads:t") == []


def test_non_security_origins_never_alert(policy: Policy) -> None:
    tracker = _tracker(policy)
    assert (
        tracker.apply(
            [
                f.collected("c1", "nia", "crm:news", f.NEWSLETTER, 1),
                f.used("u1", "crm:news", f.ADS, 2),
            ]
        )
        == []
    )


def test_alerts_built_without_validation_validate_to_themselves(policy: Policy) -> None:
    """Propagation constructs alerts and their evidence without pydantic's validation (they
    come from stored facts): validating each one again, and reading its JSON back, must give
    the very same alert, with every field set."""
    parser = InboundParser(Pseudonymizer(TEST_KEY))
    events = [parser.parse_record(r, datetime.now(UTC)) for r in generate(users=40).records]
    alerts = _tracker(policy).apply(events)
    assert alerts
    for alert in alerts:
        again = type(alert).model_validate(alert.model_dump())
        assert again == alert
        assert type(alert).model_validate_json(alert.model_dump_json()) == alert
        assert alert.model_fields_set == set(type(alert).model_fields)
        for step in alert.evidence:
            assert step.model_fields_set == set(type(step).model_fields)
