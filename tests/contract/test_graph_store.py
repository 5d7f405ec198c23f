"""The GraphStore contract: every backend (networkx, Neo4j) must pass each test here."""

from __future__ import annotations

from graph.networkx_store import NetworkxStore
from graph.store import GraphStore
from lineage.events import Event
from lineage.model import CarriedFlow, Collection, Copy, Origin, Run, SpecificUse
from lineage.policy import Policy
from lineage.projection import (
    AddCarriedFlow,
    AddCollection,
    AddFlowRun,
    AddSpecificUse,
    AddUseRun,
    MarkErased,
    PutDataset,
    PutIdentifier,
    PutJob,
    project,
)
from lineage.tracker import Tracker
from tests import factories as f

A, B = "a" * 64, "b" * 64
ORIGIN = Origin("auth:db", f.SECURITY)


def _base(store: GraphStore) -> None:
    store.apply(
        [
            PutDataset("auth:db", "auth", "db"),
            PutDataset("ads:t", "ads", "t"),
            PutJob("sync"),
            PutIdentifier(A, "phone", "+1 ***-***-0100", f.subject("alice")),
            PutIdentifier(B, "email", "b***@example.com"),
        ]
    )


def test_apply_reports_only_changes_and_is_idempotent(store: GraphStore) -> None:
    events: list[Event] = [
        f.collected("c1", "ann", "auth:db", f.SECURITY, 1, owner="ann"),
        f.flowed("f1", "auth:db", "ads:t", 2),
        f.used("u1", "ads:t", f.ADS, 3, who=["ann"]),
    ]
    mutations = [m for e in events for m in project(e)]
    first = store.apply(mutations)
    facts = [m for m in mutations if not isinstance(m, PutIdentifier | PutDataset | PutJob)]
    assert [c.mutation for c in first if c.mutation in facts] == facts
    snapshot = store.snapshot()
    assert store.apply(mutations) == []
    assert store.snapshot() == snapshot


def test_identifier_merges_subjects(store: GraphStore) -> None:
    _base(store)
    store.apply([PutIdentifier(A, "phone", "+1 ***-***-0100", f.subject("bob"))])
    node = store.identifier(A)
    assert node is not None
    assert node.category == "phone" and node.display == "+1 ***-***-0100"
    assert node.subjects == {f.subject("alice"), f.subject("bob")}
    assert store.identifier("c" * 64) is None


def test_runs_report_previous_run_and_ignore_duplicates(store: GraphStore) -> None:
    _base(store)
    first = store.apply([AddFlowRun("auth:db", "ads:t", "sync", Run(10, "r10"))])
    assert first[0].previous_run is None
    later = store.apply([AddFlowRun("auth:db", "ads:t", "sync", Run(30, "r30"))])
    assert later[0].previous_run == 10
    between = store.apply([AddFlowRun("auth:db", "ads:t", "sync", Run(20, "r20"))])
    assert between[0].previous_run == 10
    assert store.apply([AddFlowRun("auth:db", "ads:t", "sync", Run(20, "r20"))]) == []
    (edge,) = store.flows_from("auth:db")
    assert (edge.target, edge.job) == ("ads:t", "sync")
    assert [r.at for r in edge.runs] == [10, 20, 30]
    assert store.flows_from("ads:t") == []


def test_use_runs_round_trip(store: GraphStore) -> None:
    _base(store)
    store.apply([AddUseRun("ads:t", "matcher", f.ADS, Run(5, "u5"))])
    store.apply([AddUseRun("ads:t", "matcher", f.ADS, Run(1, "u1"))])
    (use,) = store.uses_of("ads:t")
    assert (use.job, use.purpose) == ("matcher", f.ADS)
    assert use.runs == (Run(1, "u1"), Run(5, "u5"))


def test_collection_keeps_the_earliest(store: GraphStore) -> None:
    _base(store)
    late = Collection(A, "auth:db", f.SECURITY, 50, "late")
    early = Collection(A, "auth:db", f.SECURITY, 40, "early")
    assert len(store.apply([AddCollection(late)])) == 1
    assert len(store.apply([AddCollection(early)])) == 1
    assert store.apply([AddCollection(late)]) == []
    assert store.collections_of(A) == [early]


def test_copies_upsert_and_range_reads(store: GraphStore) -> None:
    _base(store)
    store.put_copies(
        [
            Copy(A, "auth:db", ORIGIN, 10, "c1"),
            Copy(B, "auth:db", ORIGIN, 20, "c2"),
            Copy(A, "ads:t", ORIGIN, 30, "f1", source="auth:db", job="sync"),
        ]
    )
    assert {c.identifier for c in store.copies_in("auth:db", None, 20)} == {A, B}
    assert {c.identifier for c in store.copies_in("auth:db", 10, 20)} == {B}
    assert list(store.copies_in("auth:db", 20, 100)) == []
    improved = Copy(B, "auth:db", ORIGIN, 5, "c0")
    store.put_copies([improved])
    assert store.copies_of(B, "auth:db") == [improved]
    store.put_copies([Copy(B, "auth:db", ORIGIN, 7, "late"), Copy(B, "auth:db", ORIGIN, 5, "c1")])
    assert store.copies_of(B, "auth:db") == [improved], "a later arrival must not win"
    assert {c.identifier for c in store.copies_in("auth:db", None, 9)} == {B}
    assert sorted(c.dataset for c in store.copies_of_identifier(A)) == ["ads:t", "auth:db"]
    (hop,) = store.copies_of(A, "ads:t")
    assert (hop.source, hop.job, hop.origin) == ("auth:db", "sync", ORIGIN)


def test_carried_flows_and_specific_uses(store: GraphStore) -> None:
    _base(store)
    flow = CarriedFlow(A, "auth:db", "ads:t", "sync", 7, "f7")
    use = SpecificUse(A, "ads:t", "matcher", f.ADS, 8, "u8")
    assert len(store.apply([AddCarriedFlow(flow), AddSpecificUse(use)])) == 2
    assert store.apply([AddCarriedFlow(flow), AddSpecificUse(use)]) == []
    facts = store.identifier_facts([A, B])
    assert (facts[A].carried, facts[B].carried) == ((flow,), ())
    assert store.specific_uses(A, "ads:t") == [use]


def test_identifier_facts_agree_with_the_single_reads(store: GraphStore) -> None:
    _base(store)
    store.apply(
        [
            AddCarriedFlow(CarriedFlow(A, "auth:db", "ads:t", "sync", 7, "f7")),
            AddSpecificUse(SpecificUse(A, "ads:t", "matcher", f.ADS, 8, "u8")),
        ]
    )
    store.put_copies(
        [Copy(A, "auth:db", ORIGIN, 1, "c1"), Copy(A, "ads:t", ORIGIN, 7, "f7", "auth:db", "sync")]
    )
    facts = store.identifier_facts([A, B, "c" * 64])
    assert set(facts) == {A, B}
    assert facts[A].node == store.identifier(A)
    assert set(facts[A].copies) == set(store.copies_of_identifier(A))
    assert facts[A].carried == (CarriedFlow(A, "auth:db", "ads:t", "sync", 7, "f7"),)
    assert facts[A].specific == tuple(store.specific_uses(A, "ads:t"))
    assert facts[B].node == store.identifier(B) and facts[B].copies == ()
    assert store.identifier_facts([]) == {}


def test_erasure_keeps_the_earliest_time(store: GraphStore) -> None:
    _base(store)
    assert len(store.apply([MarkErased(A, 100, "e1")])) == 1
    assert store.apply([MarkErased(A, 200, "e2")]) == []
    node = store.identifier(A)
    assert node is not None and node.erased_at == 100


def test_tracker_alerts_once_with_evidence(store: GraphStore, policy: Policy) -> None:
    tracker = Tracker(store, policy)
    events: list[Event] = [
        f.collected("c1", "ann", "auth:db", f.SECURITY, 1, owner="ann"),
        f.flowed("f1", "auth:db", "ads:t", 2, job="sync"),
        f.used("u1", "ads:t", f.ADS, 3, job="matcher"),
    ]
    (alert,) = tracker.apply(events)
    assert [s.kind for s in alert.evidence] == ["collected", "flowed", "used"]
    assert [s.event_id for s in alert.evidence] == ["c1", "f1", "u1"]
    assert alert.subjects == [f.subject("ann")]
    assert tracker.apply(events) == []
    assert [a.alert_id for a in store.alerts()] == [alert.alert_id]
    assert store.alert(alert.alert_id) == alert


def test_alert_outbox(store: GraphStore, policy: Policy) -> None:
    tracker = Tracker(store, policy)
    raised = tracker.apply(
        [
            f.collected("c1", "ann", "auth:db", f.SECURITY, 1),
            f.collected("c2", "bob", "auth:db", f.RECOVERY, 1),
            f.used("u1", "auth:db", f.ADS, 3),
        ]
    )
    assert len(raised) == 2
    assert {a.alert_id for a in store.unpublished_alerts()} == {a.alert_id for a in raised}
    assert len(store.unpublished_alerts(limit=1)) == 1
    store.mark_published([raised[0].alert_id])
    assert [a.alert_id for a in store.unpublished_alerts()] == [raised[1].alert_id]
    assert tracker.apply([f.used("u1", "auth:db", f.ADS, 3)]) == []
    store.mark_published([raised[1].alert_id, "unknown-id"])
    assert store.unpublished_alerts() == []
    assert len(store.alerts()) == 2


def test_same_events_give_the_same_graph_as_networkx(store: GraphStore, policy: Policy) -> None:
    events: list[Event] = [
        f.collected("c1", "ann", "auth:db", f.SECURITY, 1, owner="ann"),
        f.collected("c2", "bob", "crm:news", f.NEWSLETTER, 1, owner="bob"),
        f.flowed("f1", "auth:db", "ads:t", 2, who=["ann"]),
        f.flowed("f2", "crm:news", "ads:t", 2),
        f.used("u1", "ads:t", f.ADS, 3),
        f.erased("e1", "bob", 4),
    ]
    reference = NetworkxStore()
    Tracker(reference, policy).apply(events)
    Tracker(store, policy).apply(events)
    assert store.snapshot() == reference.snapshot()
    assert store.alerts() == reference.alerts()


def test_clear_empties_everything(store: GraphStore, policy: Policy) -> None:
    Tracker(store, policy).apply([f.collected("c1", "ann", "auth:db", f.SECURITY, 1)])
    store.clear()
    assert store.snapshot().counts() == {name: 0 for name in store.snapshot().counts()}
