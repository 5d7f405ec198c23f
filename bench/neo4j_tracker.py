"""The tracker on the real Neo4j store against a plain ``UNWIND … MERGE`` script, in one run.

Needs LINEAGE_NEO4J_URI / LINEAGE_NEO4J_PASSWORD (``eval "$(services/svc env)"``); it empties
that database. Run: ``python -m bench.neo4j_tracker --users 20000``.

For each batch size (events per ``Tracker.apply``, one store transaction each) it reports the
tracker's events/s and relationships/s, relationships per event, and the statements and round
trips each batch costs. The baseline writes a graph of the same shape — the same number of
nodes, and one relationship for each of the tracker's, between the same pairs of nodes — with
one ``UNWIND $rows MERGE (a) MERGE (b) MERGE (a)-[r]->(b)`` statement per chunk of 1k, 5k and
20k rows (each its own transaction), and the best of those is the database's own rate the
tracker is compared with. Then it writes the tracker's own graph again — every node and
relationship with its properties, under the tracker's constraints and indexes, with plain
``UNWIND`` statements and nothing else in between — which bounds what any code writing this
graph model can reach (``same_graph_ratio_to_baseline``). ``--embedded`` adds the embedded
SQLite store on the same events.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

if "--no-rust-ext" in sys.argv:  # before the driver loads: its pure-Python PackStream codec
    sys.modules["neo4j._rust"] = None  # type: ignore[assignment]
from collections.abc import Callable
from typing import Any, LiteralString, TypeVar

from neo4j._codec.packstream import v1 as packstream

from bench.propagation import _events
from graph.neo4j_alerts import alert_of, alert_props
from graph.neo4j_store import Neo4jStore
from graph.sqlite_store import SqliteStore
from graph.store import GraphStore
from lineage.events import Event
from lineage.policy import Policy
from lineage.tracker import Tracker
from runtime.wiring import default_policy, default_taxonomy

T = TypeVar("T")

BASELINE_CHUNKS = (1_000, 5_000, 20_000)
BASELINE_SCHEMA: LiteralString = (
    "CREATE CONSTRAINT bench_node_key IF NOT EXISTS FOR (n:BenchNode) REQUIRE n.key IS UNIQUE"
)
BASELINE_DROP: LiteralString = "DROP CONSTRAINT bench_node_key IF EXISTS"
#: One row per relationship: both ends MERGEd on a unique key, the relationship MERGEd with a
#: property that keeps parallel relationships apart (as event ids do in the tracker's graph).
BASELINE_WRITE: LiteralString = """
UNWIND $rows AS row
MERGE (a:BenchNode {key: row[0]})
MERGE (b:BenchNode {key: row[1]})
MERGE (a)-[:BENCH {n: row[2]}]->(b)
"""
BASELINE_NODES: LiteralString = "UNWIND $rows AS key MERGE (:BenchNode {key: key})"
SHAPE: LiteralString = """
MATCH (a)-[r]->(b)
RETURN id(a) AS a, id(b) AS b
"""
BY_TYPE: LiteralString = """
MATCH ()-[r]->()
RETURN type(r) AS type, count(*) AS n ORDER BY n DESC
"""
#: Copies with no source: each repeats a collection (its dataset, purpose, time and event id).
#: The outbox marks, set only while an alert waits to be published.
QUEUE_KEYS = frozenset({"queued_at", "queued_index"})
SEED_COPIES: LiteralString = "MATCH ()-[c:COPY_IN]->() WHERE c.source IS NULL RETURN count(c) AS n"
#: The unique key of each label, to find a node again when its graph is written plainly.
NODE_KEYS = {
    "Identifier": "ref",
    "Subject": "ref",
    "Dataset": "key",
    "Job": "name",
    "Purpose": "key",
    "Alert": "alert_id",
    "EventClaim": "key",
}
EXPORT_NODES: LiteralString = (
    "MATCH (n) RETURN elementId(n) AS id, labels(n)[0] AS label, properties(n) AS p"
)
EXPORT_RELATIONSHIPS: LiteralString = """
MATCH (a)-[r]->(b)
RETURN elementId(a) AS a, elementId(b) AS b, type(r) AS type, properties(r) AS p
"""
COUNTS: LiteralString = """
CALL () { MATCH (n) RETURN count(n) AS nodes }
CALL () { MATCH ()-[r]->() RETURN count(r) AS relationships }
RETURN nodes, relationships
"""


class CountingStore(Neo4jStore):
    """The real store, counting units of work and the statements run inside them, and timing
    where a unit's wall time goes: reads (``fetch``), writes, the commit (from the end of the
    unit's work to ``execute_write``'s return) and the rest (the core, in this process)."""

    units = 0
    statements = 0

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.seconds = dict.fromkeys(("unit", "read", "write", "commit"), 0.0)

    def atomically(self, work: Callable[[], T]) -> T:
        if self._current() is not None:
            return super().atomically(work)
        self.units += 1
        done = 0.0

        def timed() -> T:
            nonlocal done
            result = work()
            done = time.perf_counter()
            return result

        started = time.perf_counter()
        result = super().atomically(timed)
        ended = time.perf_counter()
        self.seconds["unit"] += ended - started
        self.seconds["commit"] += ended - done
        return result

    def _read(self, action: str, query: LiteralString, **params: Any) -> Any:
        self.statements += 1
        started = time.perf_counter()
        try:
            return super()._read(action, query, **params)
        finally:
            self.seconds["read"] += time.perf_counter() - started

    def _write(self, action: str, query: LiteralString, **params: Any) -> None:
        self.statements += 1
        started = time.perf_counter()
        try:
            super()._write(action, query, **params)
        finally:
            self.seconds["write"] += time.perf_counter() - started

    def breakdown(self) -> dict[str, float]:
        """Shares of the units' wall time."""
        unit = self.seconds["unit"] or 1.0
        parts = {k: self.seconds[k] for k in ("read", "write", "commit")}
        parts["core_in_this_process"] = unit - sum(parts.values())
        return {k: round(v / unit, 3) for k, v in parts.items()}


def _apply_all(store: GraphStore, policy: Policy, events: list[Event], batch: int) -> float:
    tracker = Tracker(store, policy)
    started = time.perf_counter()
    for offset in range(0, len(events), batch):
        tracker.apply(events[offset : offset + batch])
    return time.perf_counter() - started


def _query(store: Neo4jStore, query: LiteralString, **params: Any) -> list[Any]:
    return store._read("benchmark", query, **params)


def _write_chunks(
    store: Neo4jStore, what: str, query: LiteralString, rows: list[Any], chunk: int
) -> None:
    """``rows`` through ``query`` (as ``$rows``), ``chunk`` per statement, each its own
    transaction."""
    for offset in range(0, len(rows), chunk):
        store._write(what, query, rows=rows[offset : offset + chunk])


def _rate(chunk: int, seconds: float, relationships: int) -> dict[str, Any]:
    return {"rows_per_statement": chunk, "seconds": round(seconds, 2),
            "relationships_per_s": round(relationships / seconds)}  # fmt: skip


def _baseline(store: Neo4jStore, shape: list[tuple[int, int]], nodes: int, chunk: int) -> float:
    """Seconds to write ``nodes`` nodes and one relationship per ``shape`` pair, ``chunk``
    rows per statement and transaction."""
    store.clear()
    rows = [[a, b, n] for n, (a, b) in enumerate(shape)]
    linked = {key for pair in shape for key in pair}
    lonely = sorted(set(range(nodes)) - linked)
    started = time.perf_counter()
    _write_chunks(store, "baseline", BASELINE_WRITE, rows, chunk)
    _write_chunks(store, "baseline", BASELINE_NODES, lonely, chunk)
    return time.perf_counter() - started


Exported = tuple[dict[str, list[dict[str, Any]]], dict[tuple[str, str, str], list[list[Any]]]]


def _export(store: Neo4jStore) -> Exported:
    """The tracker's whole graph: node properties by label, and relationships (both ends' keys
    and properties) by type and end labels."""
    nodes: dict[str, list[dict[str, Any]]] = {}
    where: dict[str, tuple[str, Any]] = {}
    for r in _query(store, EXPORT_NODES):
        nodes.setdefault(r["label"], []).append(r["p"])
        where[r["id"]] = (r["label"], r["p"][NODE_KEYS[r["label"]]])
    relationships: dict[tuple[str, str, str], list[list[Any]]] = {}
    for r in _query(store, EXPORT_RELATIONSHIPS):
        (a_label, a), (b_label, b) = where[r["a"]], where[r["b"]]
        relationships.setdefault((r["type"], a_label, b_label), []).append([a, b, r["p"]])
    return nodes, relationships


def _same_graph(store: Neo4jStore, graph: Exported, chunk: int) -> tuple[float, dict[str, float]]:
    """Seconds to write the tracker's own graph again — every node and relationship with its
    properties, under the tracker's constraints and indexes — with plain ``UNWIND`` statements
    of ``chunk`` rows (nodes MERGEd on their unique key, relationships CREATEd between them),
    one transaction each: the fastest this graph model can be written, with no reads and no
    core in between. Also the seconds spent on each label and relationship type."""
    store.clear()
    nodes, relationships = graph
    spent: dict[str, float] = {}
    started = time.perf_counter()
    for label, properties in nodes.items():
        since = time.perf_counter()
        key = NODE_KEYS[label]
        query = f"UNWIND $rows AS p MERGE (n:{label} {{{key}: p.{key}}}) SET n = p"
        _write_chunks(store, "same graph", query, properties, chunk)
        spent[label] = time.perf_counter() - since
    for (kind, a_label, b_label), rows in relationships.items():
        since = time.perf_counter()
        query = (
            f"UNWIND $rows AS row MATCH (a:{a_label} {{{NODE_KEYS[a_label]}: row[0]}}) "
            f"MATCH (b:{b_label} {{{NODE_KEYS[b_label]}: row[1]}}) "
            f"CREATE (a)-[r:{kind}]->(b) SET r = row[2]"
        )
        _write_chunks(store, "same graph", query, rows, chunk)
        spent[kind] = spent.get(kind, 0.0) + time.perf_counter() - since
    return time.perf_counter() - started, spent


def _size(props: dict[str, Any]) -> int:
    """Bytes of a node's property values as stored (UTF-8 strings, 8-byte numbers; a null is
    no property), the same count for either model."""
    values = [v for k, v in props.items() if v is not None and k not in QUEUE_KEYS]
    flat = [x for v in values for x in (v if isinstance(v, list) else [v])]
    return sum(len(x.encode()) if isinstance(x, str) else 8 for x in flat)


def _alert_bytes(store: Neo4jStore) -> dict[str, Any]:
    """Mean bytes per ``Alert`` node in the lean model (the stored nodes) beside the model
    before it (every field plus the alert's JSON), for the same alerts."""
    nodes = [r["p"] for r in _query(store, "MATCH (a:Alert) RETURN a {.*} AS p")]
    lean = sum(_size(p) for p in nodes)
    whole = sum(_size(alert_props(alert_of(p), lean=False)) for p in nodes)
    count = max(len(nodes), 1)
    return {"alerts": len(nodes), "lean": round(lean / count), "with_json": round(whole / count),
            "ratio": round(lean / max(whole, 1), 3)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--batch", type=int, action="append", help="events per apply")
    parser.add_argument("--embedded", action="store_true", help="also the SQLite store")
    parser.add_argument(
        "--no-rust-ext", action="store_true", help="the driver's pure-Python codec (a baseline)"
    )
    args = parser.parse_args()
    policy = default_policy(default_taxonomy())
    events = _events(args.users)
    store = CountingStore(
        os.environ["LINEAGE_NEO4J_URI"],
        os.environ.get("LINEAGE_NEO4J_USER", "neo4j"),
        os.environ["LINEAGE_NEO4J_PASSWORD"],
    )
    tracker_rows = []
    graph: dict[str, int] = {}
    by_type: dict[str, int] = {}
    alert_bytes: dict[str, Any] = {}
    shape: list[tuple[int, int]] = []
    exported: Exported | None = None
    for batch in args.batch or [500, 8_000]:
        store.clear()
        store.units = store.statements = 0
        store.seconds = dict.fromkeys(store.seconds, 0.0)
        seconds = _apply_all(store, policy, events, batch)
        ((nodes, relationships),) = [tuple(r) for r in _query(store, COUNTS)]
        graph = {"nodes": nodes, "relationships": relationships}
        row: dict[str, Any] = {
            "batch": batch,
            "seconds": round(seconds, 2),
            "events_per_s": round(len(events) / seconds),
            "relationships_per_s": round(relationships / seconds),
            "units": store.units,
            "statements_per_unit": round(store.statements / store.units, 2),
            # a statement in a managed transaction is one round trip (BEGIN rides on the
            # first RUN), plus one for COMMIT
            "round_trips_per_unit": round((store.statements + store.units) / store.units, 2),
            "unit_time_shares": store.breakdown(),
        }
        if args.embedded:
            embedded = _apply_all(SqliteStore(":memory:"), policy, events, batch)
            row["embedded_events_per_s"] = round(len(events) / embedded)
        tracker_rows.append(row)
        if not shape:
            exported = _export(store)
            by_type = {r["type"]: r["n"] for r in _query(store, BY_TYPE)}
            by_type["COPY_IN of a collection itself"] = _query(store, SEED_COPIES)[0]["n"]
            alert_bytes = _alert_bytes(store)
            ids: dict[int, int] = {}
            for r in _query(store, SHAPE):
                shape.append((ids.setdefault(r["a"], len(ids)), ids.setdefault(r["b"], len(ids))))
    same_graph_rows: list[dict[str, Any]] = []
    assert exported is not None
    for chunk in BASELINE_CHUNKS:
        seconds, spent = _same_graph(store, exported, chunk)
        same_graph_rows.append(
            {**_rate(chunk, seconds, len(shape)),
             "seconds_by_kind": {k: round(v, 2) for k, v in spent.items()}}
        )  # fmt: skip
    store._write("baseline schema", BASELINE_SCHEMA)
    baseline_rows: list[dict[str, Any]] = []
    try:
        for chunk in BASELINE_CHUNKS:
            seconds = _baseline(store, shape, graph["nodes"], chunk)
            baseline_rows.append(_rate(chunk, seconds, len(shape)))
    finally:
        store.clear()
        store._write("baseline schema", BASELINE_DROP)
        store.close()
    best = max(r["relationships_per_s"] for r in baseline_rows)
    same_best = max(r["relationships_per_s"] for r in same_graph_rows)
    for row in tracker_rows:
        row["ratio_to_baseline"] = round(row["relationships_per_s"] / best, 3)
        row["ratio_to_same_graph"] = round(row["relationships_per_s"] / same_best, 3)
    result = {
        "driver_codec": "rust" if getattr(packstream, "_rust_pack", None) else "python",
        "users": args.users,
        "events": len(events),
        **graph,
        "relationships_per_event": round(graph["relationships"] / len(events), 2),
        "relationships_per_event_by_type": {
            kind: round(n / len(events), 2) for kind, n in by_type.items()
        },
        "alert_node_bytes": alert_bytes,
        "tracker": tracker_rows,
        "baseline_unwind_merge": baseline_rows,
        "baseline_best_relationships_per_s": best,
        "same_graph_written_plainly": same_graph_rows,
        # the most the tracker could reach against the baseline while it writes this graph
        "same_graph_ratio_to_baseline": round(same_best / best, 3),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
