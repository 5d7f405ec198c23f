"""Tracker throughput on the real Neo4j store vs the embedded store, in the same run.

Needs LINEAGE_NEO4J_URI / LINEAGE_NEO4J_PASSWORD (``eval "$(services/svc env)"``); it empties
that database. Run: ``python -m bench.neo4j_tracker --users 1000``. Reports events/s for
several batch sizes (the worker hands the tracker batches of up to 500) and the ratio
to the embedded SQLite store on the same events.
"""

from __future__ import annotations

import argparse
import json
import os
import time

from bench.propagation import _events
from graph.neo4j_store import Neo4jStore
from graph.sqlite_store import SqliteStore
from graph.store import GraphStore
from lineage.events import Event
from lineage.policy import Policy
from lineage.tracker import Tracker
from runtime.wiring import default_policy, default_taxonomy


def _rate(store: GraphStore, policy: Policy, events: list[Event], batch: int) -> float:
    tracker = Tracker(store, policy)
    started = time.perf_counter()
    for offset in range(0, len(events), batch):
        tracker.apply(events[offset : offset + batch])
    return len(events) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=1_000)
    parser.add_argument("--batch", type=int, action="append")
    args = parser.parse_args()
    policy = default_policy(default_taxonomy())
    events = _events(args.users)
    neo4j = Neo4jStore(
        os.environ["LINEAGE_NEO4J_URI"],
        os.environ.get("LINEAGE_NEO4J_USER", "neo4j"),
        os.environ["LINEAGE_NEO4J_PASSWORD"],
    )
    results = []
    for batch in args.batch or [1, 100, 500]:
        baseline = _rate(SqliteStore(":memory:"), policy, events, batch)
        neo4j.clear()
        rate = _rate(neo4j, policy, events, batch)
        results.append(
            {
                "events": len(events),
                "batch": batch,
                "neo4j_events_per_s": round(rate),
                "sqlite_events_per_s": round(baseline),
                "neo4j_over_sqlite": round(rate / baseline, 4),
            }
        )
    neo4j.clear()
    neo4j.close()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
