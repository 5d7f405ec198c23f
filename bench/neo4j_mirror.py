"""A design experiment for the production path: propagation state held by the worker, Neo4j
written only, against today's tracker on Neo4j, in one run.

Needs LINEAGE_NEO4J_URI / LINEAGE_NEO4J_PASSWORD (``eval "$(services/svc env)"``); it empties
that database. Run: ``python -m bench.neo4j_mirror --users 20000``.

Today every unit reads what it needs from Neo4j (the state of its keys, then one fetch per
propagation wave) before it writes, and the worker's Python and the database take turns. Here
the same ``Tracker`` runs on an embedded SQLite store that answers every read, and each unit's
``Writes`` (the port's own type, unchanged) also go to Neo4j:

- ``mirrored``: in the same unit, after the SQLite writes (Neo4j commits first, then SQLite);
- ``pipelined``: a second thread writes each committed unit's ``Writes`` to Neo4j, one Neo4j
  transaction per unit and in order, while the next unit is computed.

Each variant starts from an empty graph; the graph it leaves (``GraphSnapshot``: identifiers,
collections, copies, flows, uses, alerts) is compared whole with today's. This is one process
and one writer: several workers would each need the state of their partitions, with events
about whole datasets sent to every partition, which this experiment does not build.
"""

from __future__ import annotations

import argparse
import json
import queue
import threading
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, TypeVar

from bench.neo4j_worker import _store
from bench.propagation import _events
from graph.neo4j_store import Neo4jStore
from graph.sqlite_store import SqliteStore
from graph.store import GraphSnapshot
from lineage.event_identity import Claim
from lineage.events import Event
from lineage.ports import Facts, Request, Writes
from lineage.tracker import Tracker
from runtime.wiring import default_policy, default_taxonomy

T = TypeVar("T")


class Mirrored:
    """A ``LineageStore`` whose reads come from SQLite and whose writes go to both stores. With
    ``sink`` set, a unit's Neo4j writes are handed to it once SQLite has committed, instead of
    being made inside the unit."""

    def __init__(
        self,
        state: SqliteStore,
        graph: Neo4jStore,
        sink: Callable[[list[Writes]], None] | None = None,
    ) -> None:
        self.state, self.graph, self.sink = state, graph, sink
        self._unit: list[Writes] | None = None

    def atomically(self, work: Callable[[], T]) -> T:
        if self._unit is not None:
            return work()
        self._unit = []
        try:
            if self.sink is None:
                return self.graph.atomically(lambda: self.state.atomically(work))
            result = self.state.atomically(work)
            self.sink(self._unit)
            return result
        finally:
            self._unit = None

    def fetch(self, request: Request) -> Facts:
        return self.state.fetch(request)

    def write(self, writes: Writes) -> None:
        self.state.write(writes)
        if self.sink is None:
            self.graph.write(writes)
        elif self._unit is not None:
            self._unit.append(writes)

    def read_claims(self, keys: Sequence[str]) -> dict[str, str]:
        return self.state.read_claims(keys)

    def write_claims(self, fresh: Sequence[Claim], absent: Sequence[str]) -> None:
        self.state.write_claims(fresh, absent)


class GraphWriter(threading.Thread):
    """Writes each unit's ``Writes`` to Neo4j in order, one transaction per unit."""

    def __init__(self, graph: Neo4jStore) -> None:
        super().__init__(daemon=True)
        self.graph = graph
        self.units: queue.Queue[list[Writes] | None] = queue.Queue(maxsize=2)
        self.error: BaseException | None = None

    def run(self) -> None:
        while (unit := self.units.get()) is not None:
            try:
                self.graph.atomically(partial(self._write, unit))
            except BaseException as exc:  # reported by finish()
                self.error = exc
                return

    def _write(self, unit: list[Writes]) -> None:
        for writes in unit:
            self.graph.write(writes)

    def finish(self) -> None:
        self.units.put(None)
        self.join()
        if self.error is not None:
            raise self.error


def _run(variant: str, events: list[Event], batch: int) -> tuple[float, GraphSnapshot]:
    graph = _store()
    graph.clear()
    policy = default_policy(default_taxonomy())
    writer: GraphWriter | None = None
    store: Any = graph
    if variant == "mirrored":
        store = Mirrored(SqliteStore(":memory:"), graph)
    elif variant == "pipelined":
        writer = GraphWriter(graph)
        writer.start()
        store = Mirrored(SqliteStore(":memory:"), graph, sink=writer.units.put)
    tracker = Tracker(store, policy)
    started = time.perf_counter()
    for offset in range(0, len(events), batch):
        tracker.apply(events[offset : offset + batch])
    if writer is not None:
        writer.finish()
    seconds = time.perf_counter() - started
    snapshot = graph.snapshot()
    graph.close()
    return seconds, snapshot


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=8_000, help="events per unit")
    args = parser.parse_args()
    events = _events(args.users)
    rows: list[dict[str, Any]] = []
    graphs: dict[str, GraphSnapshot] = {}
    for variant in ("neo4j", "mirrored", "pipelined"):
        seconds, graphs[variant] = _run(variant, events, args.batch)
        rows.append({"variant": variant, "seconds": round(seconds, 2),
                     "events_per_s": round(len(events) / seconds)})  # fmt: skip
    today = rows[0]["events_per_s"]
    for row in rows:
        row["ratio_to_neo4j"] = round(row["events_per_s"] / today, 2)
        row["same_graph_as_neo4j"] = graphs[row["variant"]] == graphs["neo4j"]
    print(json.dumps({"users": args.users, "events": len(events), "batch": args.batch,
                      "variants": rows}, indent=2))  # fmt: skip
    if not all(row["same_graph_as_neo4j"] for row in rows):
        raise SystemExit("a variant left another graph than the tracker on Neo4j")


if __name__ == "__main__":
    main()
