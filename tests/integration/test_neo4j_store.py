"""Neo4j-only checks the shared contract cannot make: schema, batching against the reference,
query plans, error translation and concurrent writers. Real server from ``services/svc``."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from neo4j import Driver, GraphDatabase
from neo4j.exceptions import AuthError, DriverError, ServiceUnavailable

import graph.neo4j_store as neo4j_store_module
from graph import neo4j_cypher as cypher
from graph.neo4j_store import Neo4jStore
from graph.networkx_store import NetworkxStore
from lineage.alerts import Alert, EvidenceStep
from lineage.errors import StoreError
from lineage.model import CarriedFlow, Collection, Copy, Origin, Run, SpecificUse
from lineage.projection import (
    AddCarriedFlow,
    AddCollection,
    AddFlowRun,
    AddSpecificUse,
    AddUseRun,
    MarkErased,
    Mutation,
    PutDataset,
    PutIdentifier,
    PutJob,
)
from tests.conftest import require_service

pytestmark = pytest.mark.neo4j

A, B, C = "a" * 64, "b" * 64, "c" * 64


@pytest.fixture(scope="module")
def credentials() -> tuple[str, str, str]:
    uri = require_service("LINEAGE_NEO4J_URI")
    password = require_service("LINEAGE_NEO4J_PASSWORD")
    return uri, os.environ.get("LINEAGE_NEO4J_USER", "neo4j"), password


@pytest.fixture(scope="module")
def shared(credentials: tuple[str, str, str]) -> Iterator[Neo4jStore]:
    """One store for the property test, whose examples cannot take function fixtures."""
    store = Neo4jStore(*credentials)
    yield store
    store.close()


@pytest.fixture
def store(shared: Neo4jStore) -> Neo4jStore:
    shared.clear()
    return shared


@pytest.fixture(scope="module")
def driver(credentials: tuple[str, str, str]) -> Iterator[Driver]:
    uri, user, password = credentials
    with GraphDatabase.driver(uri, auth=(user, password)) as raw:
        yield raw


def _put_nodes(*refs: str) -> list[Mutation]:
    return [
        PutDataset("auth:db", "auth", "db"),
        PutDataset("ads:t", "ads", "t"),
        *(PutIdentifier(ref, "email", f"{ref[0]}***") for ref in refs),
    ]


def _alert(aid: str, minutes: int, rule: str = "r") -> Alert:
    at = datetime(2020, 1, 1, tzinfo=UTC) + timedelta(minutes=minutes)
    return Alert(
        alert_id=aid,
        rule=rule,
        severity="high",
        identifier=A,
        category="email",
        origin_dataset="auth:db",
        origin_purpose="essential.service.authentication",
        use_dataset="ads:t",
        use_job="matcher",
        use_purpose="marketing.advertising.third_party.targeted",
        occurred_at=at,
        evidence=[EvidenceStep(kind="used", event_id="u", at=at, dataset="ads:t")],
    )


# -- schema ------------------------------------------------------------------------------------


def test_constraints_and_indexes_exist_and_survive_clear(
    credentials: tuple[str, str, str], driver: Driver
) -> None:
    again = Neo4jStore(*credentials)  # creating the schema twice is a no-op
    again.clear()
    again.close()
    constraints = {
        (tuple(r["labelsOrTypes"]), tuple(r["properties"]))
        for r in driver.execute_query("SHOW CONSTRAINTS", database_="neo4j").records
        if r["type"] == "UNIQUENESS"
    }
    assert {
        (("Identifier",), ("ref",)),
        (("Subject",), ("ref",)),
        (("Dataset",), ("key",)),
        (("Job",), ("name",)),
        (("Purpose",), ("key",)),
        (("Alert",), ("alert_id",)),
    } <= constraints
    indexes = {
        (r["entityType"], tuple(r["labelsOrTypes"]), tuple(r["properties"])): r["state"]
        for r in driver.execute_query("SHOW INDEXES", database_="neo4j").records
        if r["labelsOrTypes"]
    }
    assert indexes[("RELATIONSHIP", ("COPY_IN",), ("dataset", "since"))] == "ONLINE"
    outbox = ("NODE", ("Alert",), ("published", "raised_at", "raised_index"))
    assert indexes[outbox] == "ONLINE"


def _operators(plan: Any) -> list[str]:
    found = [plan["operatorType"].split("@")[0]]
    for child in plan.get("children", []):
        found += _operators(child)
    return found


@pytest.mark.parametrize(
    ("query", "params", "expected"),
    [
        (cypher.COPIES_IN_BETWEEN, {"dataset": "d", "after": 1, "upto": 2}, "IndexSeek"),
        (cypher.COPIES_IN_UPTO, {"dataset": "d", "upto": 2}, "IndexSeek"),
        (cypher.COPIES_OF, {"identifier": A, "dataset": "d"}, "Expand(Into)"),
        (cypher.IDENTIFIER, {"ref": A}, "NodeUniqueIndexSeek"),
        (cypher.FLOWS_FROM, {"dataset": "d"}, "NodeUniqueIndexSeek"),
        (cypher.IDENTIFIER_FACTS, {"refs": [A]}, "NodeUniqueIndexSeek"),
    ],
)
def test_hot_path_reads_seek_indexes(
    store: Neo4jStore, driver: Driver, query: str, params: dict[str, Any], expected: str
) -> None:
    summary = driver.execute_query("EXPLAIN " + query, params, database_="neo4j").summary
    operators = _operators(summary.plan)
    assert any(expected in op for op in operators), operators
    assert not any("AllNodesScan" in op or "LabelScan" in op for op in operators), operators


# -- apply against the reference ---------------------------------------------------------------


def test_one_batch_with_repeated_keys_reports_what_networkx_reports(store: Neo4jStore) -> None:
    batch: list[Mutation] = [
        *_put_nodes(A, B),
        PutJob("sync"),
        PutIdentifier(A, "phone", "other display is ignored", "s1"),
        PutIdentifier(A, "email", "a***", "s2"),
        PutIdentifier(A, "email", "a***", "s1"),
        AddFlowRun("auth:db", "ads:t", "sync", Run(30, "r30")),
        AddFlowRun("auth:db", "ads:t", "sync", Run(10, "r10")),
        AddFlowRun("auth:db", "ads:t", "sync", Run(20, "r20")),
        AddFlowRun("auth:db", "ads:t", "sync", Run(20, "r20")),
        AddFlowRun("auth:db", "ads:t", "sync", Run(20, "r19")),
        AddUseRun("ads:t", "matcher", "p", Run(5, "u5")),
        AddUseRun("ads:t", "matcher", "p", Run(1, "u1")),
        PutJob("matcher"),  # already created by the use run: no change
        AddCollection(Collection(A, "auth:db", "sec", 50, "late")),
        AddCollection(Collection(A, "auth:db", "sec", 40, "early")),
        AddCollection(Collection(A, "auth:db", "sec", 45, "middle")),
        AddCarriedFlow(CarriedFlow(B, "auth:db", "ads:t", "sync", 7, "f7")),
        AddCarriedFlow(CarriedFlow(B, "auth:db", "ads:t", "other-job", 8, "f7")),
        AddSpecificUse(SpecificUse(B, "ads:t", "matcher", "p", 9, "u9")),
        AddSpecificUse(SpecificUse(B, "ads:t", "matcher", "p", 9, "u9")),
        MarkErased(B, 100, "e1"),
        MarkErased(B, 90, "e0"),
        MarkErased(B, 95, "e2"),
    ]
    reference = NetworkxStore()
    expected = reference.apply(batch)
    assert store.apply(batch) == expected
    assert store.snapshot() == reference.snapshot()
    assert store.apply(batch) == reference.apply(batch) == []
    (flow,) = store.flows_from("auth:db")
    assert [r.event_id for r in flow.runs] == ["r10", "r19", "r20", "r30"]


MUTATION_REFS = [A, B, C]
MUTATION_DATASETS = ["auth:db", "ads:t", "lake:raw"]


@st.composite
def _mutations(draw: st.DrawFn) -> list[Mutation]:
    """Mutations in projection's shape (nodes put before edges) with many repeated keys."""
    ref = st.sampled_from(MUTATION_REFS)
    dataset = st.sampled_from(MUTATION_DATASETS)
    at = st.integers(min_value=0, max_value=6)
    eid = st.sampled_from(["e1", "e2", "e3"])
    job = st.sampled_from(["j1", "j2"])
    purpose = st.sampled_from(["p1", "p2"])
    made: list[Mutation] = []
    for _ in range(draw(st.integers(min_value=1, max_value=12))):
        kind = draw(
            st.sampled_from(["ident", "collect", "flow", "use", "carry", "specific", "erase"])
        )
        r, d, t = draw(ref), draw(dataset), draw(dataset)
        put_r = PutIdentifier(
            r,
            draw(st.sampled_from(["phone", "email"])),
            None,
            draw(st.none() | st.sampled_from(["s1", "s2"])),
        )
        put_d = [PutDataset(d, "sys", d), PutDataset(t, "sys", t)]
        match kind:
            case "ident":
                made.append(put_r)
            case "collect":
                made += [
                    *put_d,
                    put_r,
                    AddCollection(Collection(r, d, draw(purpose), draw(at), draw(eid))),
                ]
            case "flow":
                made += [
                    *put_d,
                    PutJob(draw(job)),
                    AddFlowRun(d, t, draw(job), Run(draw(at), draw(eid))),
                ]
            case "use":
                made += [*put_d, AddUseRun(d, draw(job), draw(purpose), Run(draw(at), draw(eid)))]
            case "carry":
                flow = CarriedFlow(r, d, t, draw(job), draw(at), draw(eid))
                made += [*put_d, put_r, AddCarriedFlow(flow)]
            case "specific":
                use = SpecificUse(r, d, draw(job), draw(purpose), draw(at), draw(eid))
                made += [put_r, AddSpecificUse(use)]
            case _:
                made += [put_r, MarkErased(r, draw(at), draw(eid))]
    return made


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batches=st.lists(_mutations(), min_size=1, max_size=4))
def test_random_batches_report_and_store_what_networkx_does(
    shared: Neo4jStore, batches: list[list[Mutation]]
) -> None:
    shared.clear()
    reference = NetworkxStore()
    for batch in batches:
        assert shared.apply(batch) == reference.apply(batch)
    assert shared.snapshot() == reference.snapshot()


def test_a_large_batch_is_one_apply(store: Neo4jStore) -> None:
    batch: list[Mutation] = [*_put_nodes(), PutJob("sync")]
    for n in range(1_500):
        ref = f"{n:064d}"
        batch += [
            PutIdentifier(ref, "email", None, f"s{n % 7}"),
            AddCollection(Collection(ref, "auth:db", "sec", n, f"c{n}")),
            AddFlowRun("auth:db", "ads:t", "sync", Run(n % 50, f"r{n % 50}")),
        ]
    reference = NetworkxStore()
    assert store.apply(batch) == reference.apply(batch)
    assert store.snapshot() == reference.snapshot()


def test_erasing_an_unknown_identifier_fails_and_writes_nothing(store: Neo4jStore) -> None:
    with pytest.raises(StoreError, match="never stored"):
        store.apply([PutDataset("auth:db", "auth", "db"), MarkErased(A, 1, "e1")])
    assert store.snapshot().counts() == {name: 0 for name in store.snapshot().counts()}


# -- copies and alerts -------------------------------------------------------------------------


def test_put_copies_keeps_the_last_of_a_key_and_copies_in_is_ordered(store: Neo4jStore) -> None:
    origin = Origin("auth:db", "sec")
    other = Origin("crm:news", "news")
    store.put_copies(
        [
            Copy(A, "auth:db", origin, 50, "first"),
            Copy(A, "auth:db", origin, 30, "second"),
            Copy(C, "auth:db", other, 20, "c"),
            Copy(B, "auth:db", origin, 20, "b"),
            Copy(A, "ads:t", origin, 10, "elsewhere", source="auth:db", job="sync"),
        ]
    )
    assert store.copies_of(A, "auth:db") == [Copy(A, "auth:db", origin, 30, "second")]
    in_auth = store.copies_in("auth:db", None, 100)
    assert [(c.since, c.identifier) for c in in_auth] == [(20, B), (20, C), (30, A)]
    assert [c.event_id for c in store.copies_in("auth:db", 20, 30)] == ["second"]
    assert store.copies_in("ads:t", 10, 100) == []


def test_add_alerts_returns_each_new_id_once_within_and_across_calls(store: Neo4jStore) -> None:
    a1, a2, a3 = _alert("a1", 5), _alert("a2", 1), _alert("a3", 3)
    duplicate = _alert("a1", 9, rule="other")
    assert store.add_alerts([a1, duplicate, a2, a1]) == [a1, a2]
    assert store.add_alerts([a2, a3, a3]) == [a3]
    assert store.alert("a1") == a1  # the first of a call wins
    assert [a.alert_id for a in store.alerts()] == ["a2", "a3", "a1"]
    # the first raised, then by occurrence: the networkx store's outbox order
    assert [a.alert_id for a in store.unpublished_alerts(limit=2)] == ["a2", "a1"]
    store.mark_published(["a2", "nope"])
    assert store.add_alerts([a2]) == []
    assert [a.alert_id for a in store.unpublished_alerts()] == ["a3", "a1"]
    assert store.alert("missing") is None


def test_clear_deletes_in_batches(store: Neo4jStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(neo4j_store_module, "CLEAR_BATCH", 7)
    origin = Origin("auth:db", "sec")
    store.put_copies([Copy(f"{n:064d}", f"d{n % 5}", origin, n, "e") for n in range(60)])
    assert store.snapshot().counts()["copies"] == 60
    store.clear()
    assert store.snapshot().counts() == {name: 0 for name in store.snapshot().counts()}


# -- concurrent writers ------------------------------------------------------------------------


def _in_threads(count: int, work: Any) -> None:
    errors: list[BaseException] = []

    def guarded(n: int) -> None:
        try:
            work(n)
        except BaseException as exc:  # re-raised in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


def test_concurrent_batches_on_one_edge_lose_no_run(store: Neo4jStore) -> None:
    """The PREPARE locks serialise read-modify-write of the run list across transactions."""
    reported: list[Run] = []

    def work(n: int) -> None:
        for k in range(10):
            run = Run(k * 10 + n, f"t{n}-{k}")
            changes = store.apply([*_put_nodes(), AddFlowRun("auth:db", "ads:t", "sync", run)])
            reported.extend(c.mutation.run for c in changes if isinstance(c.mutation, AddFlowRun))

    _in_threads(4, work)
    (flow,) = store.flows_from("auth:db")
    assert len(flow.runs) == 40
    assert sorted(reported) == list(flow.runs)


def test_concurrent_add_alerts_return_each_id_once(store: Neo4jStore) -> None:
    alerts = [_alert(f"a{n}", n) for n in range(30)]
    returned: list[str] = []

    def work(n: int) -> None:
        returned.extend(a.alert_id for a in store.add_alerts(alerts[n:] + alerts[:n]))

    _in_threads(3, work)
    assert sorted(returned) == sorted(a.alert_id for a in alerts)


# -- errors ------------------------------------------------------------------------------------


def test_a_wrong_password_is_a_clear_store_error(credentials: tuple[str, str, str]) -> None:
    uri, user, password = credentials
    with pytest.raises(StoreError, match="rejected the credentials") as caught:
        Neo4jStore(uri, user, password + "-wrong")
    assert isinstance(caught.value.__cause__, AuthError)
    assert password not in str(caught.value)


def test_an_unreachable_server_is_a_store_error() -> None:
    with pytest.raises(StoreError, match="unreachable") as caught:
        Neo4jStore("bolt://127.0.0.1:1", "neo4j", "secret")
    assert isinstance(caught.value.__cause__, ServiceUnavailable)


@pytest.mark.parametrize("uri", ["http://127.0.0.1:7474", "127.0.0.1:7687", "bolt://:x"])
def test_an_invalid_uri_is_a_store_error(uri: str) -> None:
    with pytest.raises(StoreError, match="invalid Neo4j settings"):
        Neo4jStore(uri, "neo4j", "secret")


def test_a_missing_database_is_a_store_error(credentials: tuple[str, str, str]) -> None:
    uri, user, password = credentials
    with pytest.raises(StoreError, match="no-such-db"):
        Neo4jStore(uri, user, password, database="no-such-db")


def test_using_a_closed_store_is_a_store_error(credentials: tuple[str, str, str]) -> None:
    closed = Neo4jStore(*credentials)
    closed.close()
    with pytest.raises(StoreError) as caught:
        closed.identifier(A)
    assert isinstance(caught.value.__cause__, DriverError)
