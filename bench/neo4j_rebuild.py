"""``lineage rebuild --neo4j`` (bulk import) beside the tracker's Neo4j writes, in one run.

Needs the services (``eval "$(services/svc env)"``, this checkout's ``services/svc`` Neo4j:
the rebuild stops and starts it to swap the database) and empties that database. Run:
``python -m bench.neo4j_rebuild --users 20000``.

On the same events it measures: the tracker writing Neo4j (in-process ``Tracker.apply`` of
``--batch`` events per unit, as ``bench.neo4j_tracker``); the same graph written plainly
(``bench.neo4j_tracker``'s ceiling for any code that writes this graph model with Cypher, the
one the sink must reach 0.7 of; the sink itself is not measured here); and the bulk rebuild
from the events topic: replay into memory, CSVs, ``neo4j-admin database import full``, swap,
schema, offsets, each step timed. The rebuilt graph is checked equal to the tracker's.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.neo4j_tracker import COUNTS, _apply_all, _export, _query, _same_graph
from bench.propagation import _events
from cli.rebuild_commands import REPO, admin_libs, services_home
from graph.neo4j_bulk import svc_control
from graph.neo4j_store import Neo4jStore
from runtime.neo4j_rebuild import RebuildReport, rebuild_neo4j
from runtime.settings import Settings
from runtime.wiring import default_policy, default_taxonomy
from streams.kafka_log import KafkaEventLog

KEY = "bench-neo4j-rebuild-key-0123456789"


def _rebuild(settings: Settings) -> tuple[RebuildReport, float]:
    libs = admin_libs()
    with tempfile.TemporaryDirectory(prefix="bench-rebuild-") as where:
        control = (svc_control(REPO, "stop"), svc_control(REPO, "start"))
        started = time.perf_counter()
        report = rebuild_neo4j(settings, libs, Path(where), services_home(), control)
        return report, time.perf_counter() - started


def _bulk_rates(
    report: RebuildReport, total: float, events: int, nodes: int, relationships: int
) -> dict[str, Any]:
    offline = sum(v for k, v in report.seconds.items() if k not in ("swap", "schema"))
    load = sum(v for k, v in report.seconds.items() if k not in ("read_live", "replay"))
    return {
        "seconds": round(total, 2),
        "seconds_by_step": {k: round(v, 2) for k, v in report.seconds.items()},
        "events_per_s": round(events / total),
        "nodes_and_relationships_per_s": round((nodes + relationships) / total),
        "relationships_per_s": round(relationships / total),
        # the in-memory replay alone (the core, as the embedded replay runs it)
        "replay_events_per_s": round(events / report.seconds["replay"]),
        # loading Neo4j once the state is computed (CSVs, import, swap, schema, offsets): the
        # part that compares with a sink, which writes changes the processors computed
        "load_seconds": round(load, 2),
        "load_nodes_and_relationships_per_s": round((nodes + relationships) / load),
        # without the server's stop/start and the index build (a fixed ~20-35 s here)
        "events_per_s_without_swap": round(events / offline),
        "import_nodes_and_relationships_per_s": round(
            (nodes + relationships) / report.seconds["import"]
        ),
    }


def _bulk_only(settings: Settings, events: int) -> None:
    report, total = _rebuild(settings)
    store = Neo4jStore(*settings.require_neo4j())
    try:
        ((nodes, relationships),) = [tuple(r) for r in _query(store, COUNTS)]
        store.clear()
    finally:
        store.close()
    print(json.dumps({"events": events, "nodes": nodes, "relationships": relationships,
                      "bulk_rebuild": _bulk_rates(report, total, events, nodes, relationships)},
                     indent=2))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=8_000, help="events per tracker unit")
    parser.add_argument("--chunk", type=int, default=5_000, help="rows per plain statement")
    parser.add_argument(
        "--bulk-only", action="store_true",
        help="only the bulk rebuild (how it scales; no tracker run, no plain write, no check)",
    )  # fmt: skip
    args = parser.parse_args()
    uri, user = os.environ["LINEAGE_NEO4J_URI"], os.environ.get("LINEAGE_NEO4J_USER", "neo4j")
    password = os.environ["LINEAGE_NEO4J_PASSWORD"]
    run = f"bench-rebuild-{uuid.uuid4().hex[:8]}"
    settings = Settings(
        kafka_bootstrap=os.environ["LINEAGE_KAFKA_BOOTSTRAP"], events_topic=f"{run}.events",
        alerts_topic=f"{run}.alerts", incidents_topic=f"{run}.incidents",
        deadletter_topic=f"{run}.deadletter", key=KEY, store="neo4j", neo4j_uri=uri,
        neo4j_user=user, neo4j_password=password,
    )  # fmt: skip
    policy = default_policy(default_taxonomy())
    events = _events(args.users)
    log = KafkaEventLog.from_settings(settings)
    try:
        log.append(events)
    finally:
        log.close()

    store = Neo4jStore(uri, user, password)
    store.clear()
    if args.bulk_only:
        store.close()
        _bulk_only(settings, len(events))
        return
    seconds = _apply_all(store, policy, events, args.batch)
    ((nodes, relationships),) = [tuple(r) for r in _query(store, COUNTS)]
    tracker = {
        "batch": args.batch, "seconds": round(seconds, 2),
        "events_per_s": round(len(events) / seconds),
        "relationships_per_s": round(relationships / seconds),
        "nodes_and_relationships_per_s": round((nodes + relationships) / seconds),
    }  # fmt: skip
    expected = store.snapshot()
    exported = _export(store)
    plain_seconds, _ = _same_graph(store, exported, args.chunk)
    plain = {
        "rows_per_statement": args.chunk, "seconds": round(plain_seconds, 2),
        "relationships_per_s": round(relationships / plain_seconds),
        "nodes_and_relationships_per_s": round((nodes + relationships) / plain_seconds),
        # the events/s a writer at this ceiling would reach on these events
        "events_per_s_equivalent": round(len(events) / plain_seconds),
    }  # fmt: skip
    store.clear()
    store.close()

    report, total = _rebuild(settings)
    store = Neo4jStore(uri, user, password)  # a new driver: the old bookmarks name the old db
    try:
        same = store.snapshot() == expected
        ((got_nodes, got_relationships),) = [tuple(r) for r in _query(store, COUNTS)]
        store.clear()
    finally:
        store.close()
    bulk = _bulk_rates(report, total, len(events), got_nodes, got_relationships)
    result = {
        "users": args.users,
        "events": len(events),
        "nodes": nodes,
        "relationships": relationships,
        "rebuilt_graph_equals_tracker_graph": same,
        # the rebuild replays the topic as the worker does, so it also holds the event-id
        # claims (EventClaim nodes) that the in-process tracker above does not write
        "rebuilt_nodes": got_nodes,
        "rebuilt_relationships": got_relationships,
        "tracker": tracker,
        "same_graph_written_plainly": plain,
        "bulk_rebuild": bulk,
        "bulk_to_tracker_events": round(bulk["events_per_s"] / tracker["events_per_s"], 2),
        "bulk_to_plain_write": round(
            bulk["nodes_and_relationships_per_s"] / plain["nodes_and_relationships_per_s"], 2
        ),
        "load_to_plain_write": round(
            bulk["load_nodes_and_relationships_per_s"] / plain["nodes_and_relationships_per_s"], 2
        ),
    }
    print(json.dumps(result, indent=2))
    if not same:  # a figure of a wrong graph is no figure (and bench-smoke fails on it)
        raise SystemExit("the rebuilt graph differs from the tracker's")


if __name__ == "__main__":
    main()
