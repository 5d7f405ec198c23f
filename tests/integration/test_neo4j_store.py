"""Neo4j-only checks the shared contract cannot make: schema, query plans, statements per
fetch and write, planner state against the embedded store, the README's Cypher, error
translation and concurrent writers. Real server from ``services/svc``."""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from neo4j import Driver, GraphDatabase
from neo4j.exceptions import AuthError, DriverError, ServiceUnavailable

import graph.neo4j_store as neo4j_store_module
from graph import neo4j_cypher as cypher
from graph.neo4j_store import Neo4jStore
from graph.sqlite_store import SqliteStore
from graph.store import GraphStore
from lineage.errors import StoreError
from lineage.events import Event
from lineage.inbound import InboundParser
from lineage.model import CarriedFlow, Collection, Copy, Origin, Run, SpecificUse
from lineage.planner import keys_of
from lineage.policy import Policy
from lineage.ports import Request, Writes
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
from lineage.reference_case import generate
from lineage.tracker import Tracker, merge_facts
from tests import factories as f
from tests.conftest import require_service

pytestmark = pytest.mark.neo4j

A, B, C = "a" * 64, "b" * 64, "c" * 64
README = Path(__file__).resolve().parents[2] / "README.md"


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


def _apply(store: GraphStore, mutations: Sequence[Mutation]) -> list[Change]:
    """What the tracker does before propagation, as one unit."""
    return store.atomically(lambda: merge_facts(store, mutations))


def _put_nodes(*refs: str) -> list[Mutation]:
    return [
        PutDataset("auth:db", "auth", "db"),
        PutDataset("ads:t", "ads", "t"),
        *(PutIdentifier(ref, "email", f"{ref[0]}***") for ref in refs),
    ]


def _count(driver: Driver, query: str) -> int:
    return int(driver.execute_query(query, database_="neo4j").records[0][0])


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
        (("EventClaim",), ("key",)),
    } <= constraints
    indexes = {
        (r["entityType"], tuple(r["labelsOrTypes"]), tuple(r["properties"])): r["state"]
        for r in driver.execute_query("SHOW INDEXES", database_="neo4j").records
        if r["labelsOrTypes"]
    }
    run_keys = ("at", "event_id")
    assert indexes[("RELATIONSHIP", ("COPY_IN",), ("dataset", "since"))] == "ONLINE"
    flow_run = ("RELATIONSHIP", ("FLOW_RUN",), ("source", "target", "job", *run_keys))
    assert indexes[flow_run] == "ONLINE"
    use_run = ("RELATIONSHIP", ("USE_RUN",), ("dataset", "purpose", "job", *run_keys))
    assert indexes[use_run] == "ONLINE"
    assert indexes[("NODE", ("Alert",), ("queued_at", "queued_index"))] == "ONLINE"


# -- plans -------------------------------------------------------------------------------------


def _operators(plan: Any) -> list[tuple[str, str]]:
    details = str(plan.get("args", {}).get("Details", ""))
    found = [(plan["operatorType"].split("@")[0], details)]
    for child in plan.get("children", []):
        found += _operators(child)
    return found


@pytest.mark.parametrize(
    "query",
    [
        cypher.FETCH,
        cypher.FETCH_LOCKING,
        cypher.WRITE,
        cypher.UNPUBLISHED_ALERTS,
        cypher.READ_CLAIMS,
        cypher.WRITE_CLAIMS,
    ],
    ids=["fetch", "fetch-locking", "write", "outbox", "read-claims", "write-claims"],
)
def test_hot_statements_only_seek(store: Neo4jStore, driver: Driver, query: str) -> None:
    """Every read starts from a unique-constraint seek or a relationship index seek, whatever
    the statistics (e.g. right after ``clear``); no label or full scan anywhere."""
    params = {"r": {}, "w": {}, "limit": 10, "keys": [], "fresh": [], "absent": []}
    driver.execute_query("CALL db.awaitIndexes(300)")  # an index not yet online is not planned
    operators = _operators(driver.execute_query("EXPLAIN " + query, params).summary.plan)
    names = [name for name, _ in operators]
    assert not any("AllNodesScan" in n or "LabelScan" in n or "RelationshipTypeScan" in n
                   or n.endswith("RelationshipScan") for n in names), names  # fmt: skip
    if query is cypher.WRITE or query.startswith(cypher.FETCH):
        seeks = " ".join(d for n, d in operators if "RelationshipIndexSeek" in n)
        assert "FLOW_RUN(" in seeks and "USE_RUN(" in seeks
    if query in (cypher.READ_CLAIMS, cypher.WRITE_CLAIMS):
        assert any(n.startswith("NodeUniqueIndexSeek") for n in names), names
    elif query is not cypher.WRITE and query is not cypher.UNPUBLISHED_ALERTS:
        seeks = " ".join(d for n, d in operators if "RelationshipIndexSeek" in n)
        assert "COPY_IN(dataset, since)" in seeks  # arrivals
        expands = [d for n, d in operators if n == "Expand(Into)"]
        assert any("COPY_IN" in d for d in expands)  # copies by (identifier, dataset)


def test_a_first_run_is_one_index_entry_however_many_runs(
    store: Neo4jStore, driver: Driver
) -> None:
    """The runs' index gives (at, event_id) order: LIMIT 1 stops at the first entry."""
    mutations: list[Mutation] = [*_put_nodes(), PutJob("sync"), PutJob("matcher")]
    for n in range(300):
        mutations.append(AddFlowRun("auth:db", "ads:t", "sync", Run(n, f"r{n}")))
        mutations.append(AddUseRun("ads:t", "matcher", f.ADS, Run(n, f"u{n}")))
    _apply(store, mutations)
    found = store.fetch(Request(flows={("auth:db", 100)}, uses={("ads:t", 250)}))
    assert [r.run for r in found.flows[("auth:db", 100)]] == [Run(100, "r100")]
    assert [r.run for r in found.uses[("ads:t", 250)]] == [Run(250, "u250")]
    params = {"r": {**_empty_request(), "flows": [["auth:db", 100]], "uses": [["ads:t", 0]]}}
    profile = driver.execute_query("PROFILE " + cypher.FETCH, params).summary.profile
    seeks = [p for p in _profiles(profile) if "RelationshipIndexSeek" in p["operatorType"]]
    # 300 runs each, and no seek reads past the first entry (how the planner splits the two
    # reads between operators varies with its statistics, so count rows, not operators)
    assert seeks and max(p["rows"] for p in seeks) == 1, seeks


def _profiles(plan: Any) -> list[Any]:
    return [plan, *(p for child in plan.get("children", []) for p in _profiles(child))]


def _empty_request() -> dict[str, Any]:
    state_kinds = ("identifiers", "datasets", "jobs", "collections", "flow_edges", "use_edges",
                   "flow_runs", "use_runs", "carried", "specific")  # fmt: skip
    kinds = ("identifiers", "copies", "carried", "specific", "flows", "uses", "arrivals",
             "histories", "alerts")  # fmt: skip
    state: dict[str, list[Any]] = {kind: [] for kind in state_kinds}
    return {"state": state, **{kind: [] for kind in kinds}}


# -- statements per unit -----------------------------------------------------------------------


def _counting(store: Neo4jStore, monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    counts = {"fetch": 0, "write": 0}
    read, write = store._read, store._write

    def counted_read(action: str, query: Any, **params: Any) -> Any:
        counts["fetch"] += 1
        return read(action, query, **params)

    def counted_write(action: str, query: Any, **params: Any) -> None:
        counts["write"] += 1
        write(action, query, **params)

    monkeypatch.setattr(store, "_read", counted_read)
    monkeypatch.setattr(store, "_write", counted_write)
    return counts


def _wave_events(people: int) -> list[Event]:
    """``people`` security collections, a whole-dataset flow and a violating use."""
    return [
        *(f.collected(f"c{n}", f"p{n}", "auth:x", f.SECURITY, 1, owner=f"p{n}")
          for n in range(people)),
        f.flowed("sync", "auth:x", "ads:m", 2),
        f.used("match", "ads:m", f.ADS, 3),
    ]  # fmt: skip


def test_statements_per_unit_do_not_grow_with_the_batch(
    store: Neo4jStore, policy: Policy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One statement per fetch (a propagation wave) and per write, for 3 or 300 identifiers."""
    counts = _counting(store, monkeypatch)
    small = Tracker(store, policy).apply(_wave_events(3))
    few = dict(counts)
    store.clear()
    counts.update(fetch=0, write=0)
    large = Tracker(store, policy).apply(_wave_events(300))
    assert (len(small), len(large)) == (3, 300)
    assert counts == few
    assert counts["write"] == 2  # facts, then derived copies and alerts
    assert counts["fetch"] <= 8, counts


# -- the planner's state against the embedded store --------------------------------------------


def test_one_batch_with_repeated_keys_plans_what_sqlite_plans(store: Neo4jStore) -> None:
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
        PutJob("matcher"),
        AddCollection(Collection(A, "auth:db", "sec", 50, "late")),
        AddCollection(Collection(A, "auth:db", "sec", 40, "early")),
        AddCollection(Collection(A, "auth:db", "sec", 40, "early")),
        AddCarriedFlow(CarriedFlow(B, "auth:db", "ads:t", "sync", 7, "f7")),
        AddCarriedFlow(CarriedFlow(B, "auth:db", "ads:t", "other-job", 8, "f7")),
        AddSpecificUse(SpecificUse(B, "ads:t", "matcher", "p", 9, "u9")),
        AddSpecificUse(SpecificUse(B, "ads:t", "matcher", "p", 9, "u9")),
        MarkErased(B, 100, "e1"),
        MarkErased(B, 90, "e0"),
        MarkErased(B, 95, "e2"),
    ]
    reference = SqliteStore(":memory:")
    assert _apply(store, batch) == _apply(reference, batch)
    assert store.snapshot() == reference.snapshot()
    assert _apply(store, batch) == _apply(reference, batch) == []
    (flow,) = store.snapshot().flows
    assert [r.event_id for r in flow.runs] == ["r10", "r19", "r20", "r30"]
    (node,) = (n for n in store.snapshot().identifiers if n.ref == B)
    assert node.erasures == (90, 95, 100)


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
                collection = Collection(r, d, draw(purpose), draw(at), draw(eid))
                made += [*put_d, put_r, AddCollection(collection)]
            case "flow":
                run = Run(draw(at), draw(eid))
                made += [*put_d, PutJob(draw(job)), AddFlowRun(d, t, draw(job), run)]
            case "use":
                made += [*put_d, AddUseRun(d, draw(job), draw(purpose), Run(draw(at), draw(eid)))]
            case "carry":
                flow = CarriedFlow(r, d, t, draw(job), draw(at), draw(eid))
                made += [*put_d, put_r, AddCarriedFlow(flow)]
            case "specific":
                use = SpecificUse(r, d, draw(job), draw(purpose), draw(at), draw(eid))
                made += [*put_d, put_r, AddSpecificUse(use)]
            case _:
                made += [put_r, MarkErased(r, draw(at), draw(eid))]
    return made


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batches=st.lists(_mutations(), min_size=1, max_size=4))
def test_random_batches_plan_and_store_what_sqlite_does(
    shared: Neo4jStore, batches: list[list[Mutation]]
) -> None:
    """The state a fetch answers (existing keys, previous runs) drives the same plan."""
    shared.clear()
    reference = SqliteStore(":memory:")
    for batch in batches:
        assert _apply(shared, batch) == _apply(reference, batch)
    assert shared.snapshot() == reference.snapshot()


def test_erasing_an_unknown_identifier_fails_and_leaves_nothing(
    store: Neo4jStore, driver: Driver
) -> None:
    with pytest.raises(StoreError, match="never stored"):
        _apply(store, [PutDataset("auth:db", "auth", "db"), MarkErased(A, 1, "e1")])
    assert _count(driver, "MATCH (n) RETURN count(n)") == 0  # not even the locked nodes


def test_a_fetch_outside_a_unit_reads_only(store: Neo4jStore, driver: Driver) -> None:
    keys = keys_of([*_put_nodes(A), AddCollection(Collection(A, "auth:db", "p", 1, "c"))])
    state = store.fetch(Request(state=keys, identifiers={A}, copies={(A, "auth:db")})).state
    assert state is not None and not state.identifiers and not state.datasets
    assert _count(driver, "MATCH (n) RETURN count(n)") == 0


def test_fetch_ignores_nodes_only_locked_by_a_unit(store: Neo4jStore) -> None:
    """A unit's state fetch MERGEs the nodes it is about to put (to lock them); a rolled-back
    or still-open unit's bare nodes are invisible to every read."""

    def unit() -> None:
        store.fetch(Request(state=keys_of(_put_nodes(A))))
        found = store.fetch(Request(identifiers={A}, state=keys_of(_put_nodes(A))))
        assert found.identifiers == {} and found.state is not None
        assert not found.state.identifiers and not found.state.datasets
        assert store.snapshot().counts() == {name: 0 for name in store.snapshot().counts()}

    store.atomically(unit)


# -- copies and runs ---------------------------------------------------------------------------


def test_copies_of_one_write_keep_the_lowest_rank_per_key(store: Neo4jStore) -> None:
    origin = Origin("auth:db", "sec")
    _apply(store, _put_nodes(A, B))
    store.write(
        Writes(
            copies=[
                Copy(A, "auth:db", origin, 50, "first"),
                Copy(A, "auth:db", origin, 30, "second"),
                Copy(A, "auth:db", origin, 30, "a", "x:y", "j", hops=1),
                Copy(B, "auth:db", origin, 20, "b"),
                Copy(A, "ads:t", origin, 10, "elsewhere", source="auth:db", job="sync"),
            ]
        )
    )
    assert store.fetch(Request(copies={(A, "auth:db")})).copies[(A, "auth:db")] == [
        Copy(A, "auth:db", origin, 30, "second")
    ]
    window = ("auth:db", 20, 30, None)
    assert store.fetch(Request(arrivals={window})).arrivals[window] == [
        Copy(A, "auth:db", origin, 30, "second")
    ]


def test_each_run_is_its_own_relationship(store: Neo4jStore, driver: Driver) -> None:
    """Adding a run creates one record and rewrites none (no list property grows)."""
    _apply(store, [*_put_nodes(), PutJob("sync")])
    for n in range(5):
        _apply(store, [AddFlowRun("auth:db", "ads:t", "sync", Run(n, f"r{n}"))])
    assert _count(driver, "MATCH ()-[r:FLOW_RUN]->() RETURN count(r)") == 5
    assert _count(driver, "MATCH ()-[r:FLOWS_TO]->() RETURN count(r)") == 1


def test_clear_deletes_in_batches(store: Neo4jStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(neo4j_store_module, "CLEAR_BATCH", 7)
    origin = Origin("auth:db", "sec")
    store.write(Writes(copies=[Copy(f"{n:064d}", f"d{n % 5}", origin, n, "e") for n in range(60)]))
    assert store.snapshot().counts()["copies"] == 60
    store.clear()
    assert store.snapshot().counts() == {name: 0 for name in store.snapshot().counts()}


# -- the README's Cypher -----------------------------------------------------------------------


def _readme_cypher() -> list[str]:
    section = README.read_text().split("### Cypher for privacy officers", 1)[1]
    block = re.search(r"```cypher\n(.*?)```", section, re.S)
    assert block is not None, "the README lost its Cypher block"
    text = "\n".join(line for line in block.group(1).splitlines() if not line.startswith("//"))
    return [q.strip() for q in text.split(";") if q.strip()]


def test_the_readme_cypher_answers_the_reference_case(
    store: Neo4jStore, driver: Driver, parser: InboundParser, policy: Policy
) -> None:
    case = generate(users=60)
    observed = datetime.now(UTC)
    Tracker(store, policy).apply([parser.parse_record(r, observed) for r in case.records])
    people, copies, jobs = _readme_cypher()
    (row,) = driver.execute_query(people).records
    assert row["people"] == len(case.truth.affected_subjects) > 0
    assert case.truth.first_violation is not None and case.truth.last_violation is not None
    assert row["first"] == int(case.truth.first_violation.timestamp() * 1_000_000)
    assert row["last"] == int(case.truth.last_violation.timestamp() * 1_000_000)
    where = {r["dataset"]: r["copies"] for r in driver.execute_query(copies).records}
    assert where.keys() == {
        "auth:contact_points", "warehouse:auth_backup", "ads:matchable_identifiers",
    }  # fmt: skip
    (used,) = driver.execute_query(jobs).records
    assert used["job"] == "tailored-audiences-matcher" and used["alerts"] == len(store.alerts())


# -- concurrent writers ------------------------------------------------------------------------


def _in_threads(count: int, work: Callable[[int], object]) -> None:
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


def test_concurrent_units_on_shared_keys_lose_nothing(
    credentials: tuple[str, str, str], store: Neo4jStore, policy: Policy
) -> None:
    """Four workers (four drivers) add runs of one flow, collections into its source and
    uses of its target at once: deadlocks are retried, and the result is the sequential one."""
    per_worker: list[list[Event]] = [
        [
            event
            for k in range(6)
            for event in (
                f.collected(f"c{n}-{k}", f"p{n}-{k}", "auth:x", f.SECURITY, k + n / 10),
                f.flowed(f"f{n}-{k}", "auth:x", "ads:m", k + 0.5 + n / 10),
                f.used(f"u{n}-{k}", "ads:m", f.ADS, k + 0.7 + n / 10),
            )
        ]
        for n in range(4)
    ]
    workers = [Neo4jStore(*credentials) for _ in per_worker]
    try:
        _in_threads(4, lambda n: [Tracker(workers[n], policy).apply([e]) for e in per_worker[n]])
    finally:
        for worker in workers:
            worker.close()
    reference = SqliteStore(":memory:")
    Tracker(reference, policy).apply([e for events in per_worker for e in events])
    assert store.snapshot() == reference.snapshot()
    assert [a.content() for a in store.alerts()] == [a.content() for a in reference.alerts()]
    (flow,) = store.snapshot().flows
    assert len(flow.runs) == 24


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
        closed.fetch(Request(identifiers={A}))
    assert isinstance(caught.value.__cause__, DriverError)
