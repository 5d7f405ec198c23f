"""The GraphStore contract: every backend (embedded SQLite, Neo4j) must pass each test here.

The store only answers keyed reads and applies rows (``lineage.ports``); the merge rules live
in ``lineage.planner``, so these tests drive a store exactly as the tracker does.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from graph.dataset_graph import build, downstream
from graph.sqlite_store import SqliteStore
from graph.store import GraphStore
from lineage.alerts import Alert, EvidenceStep
from lineage.event_identity import Claim
from lineage.events import Event, from_micros, micros
from lineage.model import CarriedFlow, Collection, Copy, Origin, ReadEdge, Run, SpecificUse
from lineage.policy import Policy
from lineage.ports import FirstRun, Request, Window, Writes
from lineage.projection import (
    AddCarriedFlow,
    AddCollection,
    AddFlowRun,
    AddSpecificUse,
    AddUseRun,
    Change,
    MarkErased,
    Mutation,
    PutDataset,
    PutIdentifier,
    PutJob,
)
from lineage.report import report_from, summarize
from lineage.tracker import Tracker, merge_facts
from tests import factories as f

A, B = "a" * 64, "b" * 64
ORIGIN = Origin("auth:db", f.SECURITY)


def apply(store: GraphStore, mutations: Sequence[Mutation]) -> list[Change]:
    """What the tracker does before propagation, as one unit."""
    return store.atomically(lambda: merge_facts(store, mutations))


def basics() -> list[Mutation]:
    return [
        PutIdentifier(A, "phone", "+1 ***-***-0100", f.subject("ann")),
        PutDataset("auth:db", "auth", "db"),
        PutDataset("ads:t", "ads", "t"),
        PutJob("sync"),
    ]


def test_applying_twice_changes_nothing(store: GraphStore) -> None:
    mutations = [*basics(), AddCollection(Collection(A, "auth:db", f.SECURITY, 5, "c1"))]
    assert len(apply(store, mutations)) == len(mutations)
    snapshot = store.snapshot()
    assert apply(store, mutations) == []
    assert store.snapshot() == snapshot


def test_identifier_node_keeps_subjects_and_every_erasure(store: GraphStore) -> None:
    apply(store, basics())
    apply(store, [PutIdentifier(A, "phone", None, f.subject("bob")), MarkErased(A, 30, "e2")])
    assert apply(store, [MarkErased(A, 10, "e1"), MarkErased(A, 30, "e2")]) != []
    node = store.fetch(Request(identifiers={A, B})).identifiers
    assert set(node) == {A}
    assert node[A].subjects == {f.subject("ann"), f.subject("bob")}
    assert node[A].erasures == (10, 30)
    assert node[A].display == "+1 ***-***-0100"


def test_runs_report_the_latest_earlier_run(store: GraphStore) -> None:
    apply(store, basics())
    (first,) = apply(store, [AddFlowRun("auth:db", "ads:t", "sync", Run(10, "r10"))])
    assert first.previous_run is None
    (later,) = apply(store, [AddFlowRun("auth:db", "ads:t", "sync", Run(30, "r30"))])
    assert later.previous_run == 10
    (between,) = apply(store, [AddFlowRun("auth:db", "ads:t", "sync", Run(20, "r20"))])
    assert between.previous_run == 10
    assert apply(store, [AddFlowRun("auth:db", "ads:t", "sync", Run(20, "r20"))]) == []
    found = store.fetch(Request(flows={("auth:db", 11), ("auth:db", 31), ("ads:t", 0)}))
    assert found.flows[("auth:db", 11)] == [FirstRun("ads:t", "sync", Run(20, "r20"))]
    assert found.flows.get(("auth:db", 31), []) == []
    assert found.flows.get(("ads:t", 0), []) == []
    (flow,) = store.snapshot().flows
    assert [r.at for r in flow.runs] == [10, 20, 30]


def test_use_runs_answer_the_first_run_from_a_time(store: GraphStore) -> None:
    apply(store, [*basics(), PutJob("matcher")])
    apply(store, [AddUseRun("ads:t", "matcher", f.ADS, Run(5, "u5"))])
    apply(store, [AddUseRun("ads:t", "matcher", f.ADS, Run(1, "u1"))])
    found = store.fetch(Request(uses={("ads:t", 0), ("ads:t", 2), ("ads:t", 6)})).uses
    assert found[("ads:t", 0)] == [FirstRun(f.ADS, "matcher", Run(1, "u1"))]
    assert found[("ads:t", 2)] == [FirstRun(f.ADS, "matcher", Run(5, "u5"))]
    assert found.get(("ads:t", 6), []) == []


def test_every_collection_is_kept(store: GraphStore) -> None:
    early = Collection(A, "auth:db", f.SECURITY, 5, "c1")
    late = Collection(A, "auth:db", f.SECURITY, 9, "c2")
    apply(store, basics())
    assert len(apply(store, [AddCollection(late)])) == 1
    assert len(apply(store, [AddCollection(early)])) == 1
    assert apply(store, [AddCollection(late)]) == []
    history = store.fetch(Request(histories={A})).histories[A]
    assert sorted(history.collections, key=lambda c: c.at) == [early, late]


def test_arrival_windows_filter_on_origin_purpose(store: GraphStore) -> None:
    """A use reads only the origins it could violate; the filter is the store's."""
    apply(store, [*basics(), PutIdentifier(B, "email", "b***@x.org")])
    security = Copy(A, "auth:db", ORIGIN, 10, "c1")
    newsletter = Copy(B, "auth:db", Origin("auth:db", f.NEWSLETTER), 12, "c2")
    store.atomically(lambda: store.write(Writes(copies=[security, newsletter])))
    windows: list[Window] = [
        ("auth:db", None, 20, None),
        ("auth:db", None, 20, (f.SECURITY,)),
        ("auth:db", None, 20, (f.ADS, f.NEWSLETTER)),
        ("auth:db", None, 20, ()),
    ]
    found = store.fetch(Request(arrivals=set(windows))).arrivals
    assert [sorted(found.get(w, []), key=lambda c: c.since) for w in windows] == [
        [security, newsletter],
        [security],
        [newsletter],
        [],
    ]


def test_copies_keep_the_lowest_rank_and_answer_arrival_windows(store: GraphStore) -> None:
    apply(store, [*basics(), PutIdentifier(B, "email", "b***@x.org")])
    a_auth = Copy(A, "auth:db", ORIGIN, 10, "c1")
    b_auth = Copy(B, "auth:db", ORIGIN, 20, "c2")
    a_ads = Copy(A, "ads:t", ORIGIN, 15, "r15", "auth:db", "sync")
    store.atomically(lambda: store.write(Writes(copies=[a_auth, b_auth, a_ads])))
    asked: set[Window] = {
        ("auth:db", None, 20, None),
        ("auth:db", 10, 20, None),
        ("auth:db", 20, 99, None),
    }
    windows = store.fetch(Request(arrivals=asked)).arrivals
    assert {c.identifier for c in windows[("auth:db", None, 20, None)]} == {A, B}
    assert windows[("auth:db", 10, 20, None)] == [b_auth]
    assert windows.get(("auth:db", 20, 99, None), []) == []
    improved = Copy(B, "auth:db", ORIGIN, 7, "c0")
    same_time_more_hops = Copy(B, "auth:db", ORIGIN, 7, "a", "x:y", "j", hops=1)
    store.atomically(lambda: store.write(Writes(copies=[improved])))
    store.atomically(lambda: store.write(Writes(copies=[same_time_more_hops])))
    assert store.fetch(Request(copies={(B, "auth:db")})).copies[(B, "auth:db")] == [improved]
    other_life = Copy(B, "auth:db", ORIGIN, 50, "c9", epoch=40)
    store.atomically(lambda: store.write(Writes(copies=[other_life])))
    held = store.fetch(Request(copies={(B, "auth:db")})).copies[(B, "auth:db")]
    assert sorted(held, key=lambda c: c.epoch) == [improved, other_life]
    store.atomically(lambda: store.write(Writes(dropped={B})))
    assert store.fetch(Request(histories={B})).histories[B].copies == ()
    assert set(store.fetch(Request(histories={A})).histories[A].copies) == {a_auth, a_ads}


def test_carried_flows_and_specific_uses_are_read_by_pair(store: GraphStore) -> None:
    apply(store, [*basics(), PutIdentifier(B, "email", None)])
    flow = CarriedFlow(A, "auth:db", "ads:t", "sync", 12, "f1")
    use = SpecificUse(A, "ads:t", "matcher", f.ADS, 13, "u1")
    assert len(apply(store, [AddCarriedFlow(flow), AddSpecificUse(use)])) == 2
    assert apply(store, [AddCarriedFlow(flow), AddSpecificUse(use)]) == []
    found = store.fetch(Request(carried={(A, "auth:db"), (B, "auth:db"), (A, "ads:t")},
                                specific={(A, "ads:t"), (A, "auth:db")}))  # fmt: skip
    assert found.carried[(A, "auth:db")] == [flow]
    assert found.carried.get((B, "auth:db"), []) == []
    assert found.carried.get((A, "ads:t"), []) == []
    assert found.specific[(A, "ads:t")] == [use]
    assert found.specific.get((A, "auth:db"), []) == []


def _alert(revision: int, status: str = "active", hours: float = 1) -> Alert:
    step = EvidenceStep(kind="collected", event_id="c1", at=from_micros(0), dataset="auth:db",
                        purpose=f.SECURITY)  # fmt: skip
    return Alert.model_validate(
        {"alert_id": "x" * 32, "revision": revision, "status": status, "rule": "r",
         "severity": "critical", "identifier": A, "category": "phone",
         "origin_dataset": "auth:db", "origin_purpose": f.SECURITY, "use_dataset": "ads:t",
         "use_job": "m", "use_purpose": f.ADS, "occurred_at": f.at(hours),
         "evidence": [step.model_dump()]}
    )  # fmt: skip


def test_alerts_keep_the_highest_revision_and_pass_through_the_outbox(store: GraphStore) -> None:
    apply(store, basics())
    first, revised = _alert(0, hours=5), _alert(1, hours=2)
    store.atomically(lambda: store.write(Writes(alerts=[first])))
    assert store.unpublished_alerts() == [first]
    store.atomically(lambda: store.write(Writes(alerts=[revised])))
    store.mark_published([first])  # an older revision: the newer one stays pending
    assert store.unpublished_alerts() == [revised]
    store.atomically(lambda: store.write(Writes(alerts=[first])))  # stale: ignored
    assert store.alert(first.alert_id) == revised
    store.mark_published([revised])
    assert store.unpublished_alerts() == []
    assert store.fetch(Request(alerts={first.alert_id})).alerts == {first.alert_id: revised}
    assert store.fetch(Request(histories={A})).histories[A].alert_ids == (first.alert_id,)
    withdrawn = _alert(2, "withdrawn", hours=2)
    store.atomically(lambda: store.write(Writes(alerts=[withdrawn])))
    assert store.alerts() == []
    assert store.alerts(include_withdrawn=True) == [withdrawn]
    assert store.snapshot().alerts == frozenset()


def test_same_events_give_the_same_graph_and_alerts_as_the_embedded_store(
    store: GraphStore, policy: Policy
) -> None:
    events: list[Event] = [
        f.collected("c1", "ann", "auth:db", f.SECURITY, 0, owner="ann"),
        f.collected("c2", "bob", "auth:db", f.RECOVERY, 1, owner="bob"),
        f.flowed("f1", "auth:db", "lake:raw", 2),
        f.flowed("f2", "lake:raw", "ads:t", 3, who=["ann"]),
        f.used("u1", "ads:t", f.ADS, 4),
        f.used("u2", "lake:raw", "marketing.advertising.profiling", 5, who=["bob"]),
        f.erased("e1", "bob", 6),
    ]
    Tracker(store, policy).apply(events[:3])
    Tracker(store, policy).apply(events[3:])
    reference = SqliteStore(":memory:")
    Tracker(reference, policy).apply(events)
    assert store.snapshot() == reference.snapshot()
    assert [a.content() for a in store.alerts()] == [a.content() for a in reference.alerts()]
    assert len(store.alerts()) == 2


def test_the_dataset_graph_names_every_flow_and_use_once(store: GraphStore, policy: Policy) -> None:
    Tracker(store, policy).apply(
        [
            f.collected("c1", "ann", "auth:db", f.SECURITY, 0),
            f.flowed("f1", "auth:db", "lake:raw", 1),
            f.flowed("f2", "auth:db", "lake:raw", 2),
            f.flowed("f3", "lake:raw", "ads:t", 3, who=["ann"]),
            f.used("u1", "ads:t", f.ADS, 4, who=["ann"]),
            f.used("u2", "lake:raw", f.ANALYTICS, 5),
        ]
    )
    assert sorted(store.edges()) == [
        ("carried", "lake:raw", "ads:t", "copy-job"),
        ("flow", "auth:db", "lake:raw", "copy-job"),
        ("specific", "ads:t", f.ADS, "use-job"),
        ("use", "lake:raw", f.ANALYTICS, "use-job"),
    ]
    found = downstream(build(store.edges()), "auth:db")
    assert found.datasets == ["ads:t", "lake:raw"]
    assert found.uses == [("ads:t", "use-job", f.ADS), ("lake:raw", "use-job", f.ANALYTICS)]
    assert downstream(build(store.edges()), "nowhere:x").datasets == []


def test_a_job_that_only_reads_is_an_edge_to_it_downstream_and_as_of(
    store: GraphStore, policy: Policy
) -> None:
    """A ``DataRead`` (the job read the dataset and wrote none) is a read edge dataset -> job:
    the job is downstream of the dataset, from the read's time on; its redelivery and a
    replay change nothing, and it raises no alert (no purpose)."""
    events: list[Event] = [
        f.collected("c1", "ann", "auth:db", f.SECURITY, 0),
        f.flowed("f1", "auth:db", "lake:raw", 1),
        f.read("r1", "lake:raw", 3),
        f.read("r2", "lake:raw", 2),
    ]
    Tracker(store, policy).apply(events)
    snapshot = store.snapshot()
    Tracker(store, policy).apply(events[2:])  # redelivered
    assert store.snapshot() == snapshot
    store.clear()
    Tracker(store, policy).apply(events[::-1])  # a replay, in another order
    assert store.snapshot() == snapshot
    assert snapshot.reads == {
        ReadEdge("lake:raw", "report-job", (Run(micros(f.at(2)), "r2"), Run(micros(f.at(3)), "r1")))
    }
    assert "report-job" in snapshot.jobs
    assert sorted(store.edges()) == [
        ("flow", "auth:db", "lake:raw", "copy-job"),
        ("read", "lake:raw", "report-job", "report-job"),
    ]
    found = downstream(build(store.edges()), "auth:db")
    assert (found.datasets, found.jobs, found.uses) == (
        ["lake:raw"],
        ["copy-job", "report-job"],
        [],
    )
    assert downstream(build(store.edges()), "lake:raw").jobs == ["report-job"]
    assert ("read", "lake:raw", "report-job", "report-job") not in store.dataset_edges(
        micros(f.at(1.5))
    )
    assert ("read", "lake:raw", "report-job", "report-job") in store.dataset_edges(micros(f.at(2)))
    assert store.alerts() == []


def test_the_store_tally_reports_what_the_alerts_say(store: GraphStore, policy: Policy) -> None:
    Tracker(store, policy).apply(
        [
            f.collected("c1", "ann", "auth:db", f.SECURITY, 0, owner="ann"),
            f.collected("c2", "ann-phone", "auth:db", f.RECOVERY, 0, owner="ann"),
            f.collected("c3", "bob", "auth:db", f.SECURITY, 0),
            f.flowed("f1", "auth:db", "ads:t", 1),
            f.used("u1", "ads:t", f.ADS, 24 * 400),
            f.used("u2", "auth:db", "marketing.advertising.profiling", 2, who=["bob"]),
        ]
    )
    assert report_from(store.tally()) == summarize(store.alerts())
    summary = report_from(store.tally())
    assert (summary.alerts, summary.affected_identifiers, summary.affected_subjects) == (4, 3, 2)
    assert summary.by_year == {"2015": 1, "2016": 3}


def test_event_claims_are_kept_and_keys_read_but_not_owned_leave_no_trace(
    store: GraphStore,
) -> None:
    """``read_claims``/``write_claims`` (``lineage.event_identity``), on every store."""
    run = f"claims-{id(store)}"  # the shared Neo4j is not emptied: keys of this run only
    first, second, unowned = (f"{run}-{n}" for n in range(3))

    def claim(keys: list[str], fresh: list[Claim]) -> dict[str, str]:
        def unit() -> dict[str, str]:
            stored = store.read_claims(keys)
            store.write_claims(fresh, [k for k in keys if k not in stored])
            return stored

        return store.atomically(unit)

    assert claim([first, unowned], [Claim(first, "d1")]) == {}
    assert claim([first, second, unowned], [Claim(second, "d2")]) == {first: "d1"}
    assert store.atomically(lambda: store.read_claims([first, second, unowned])) == {
        first: "d1",
        second: "d2",
    }

    def failing() -> None:
        claim([unowned], [Claim(unowned, "d3")])
        raise RuntimeError("the unit fails after claiming")

    with pytest.raises(RuntimeError):  # a unit that fails keeps none of its claims
        store.atomically(failing)
    assert store.atomically(lambda: store.read_claims([unowned])) == {}
