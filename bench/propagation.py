"""Embedded-mode benchmark: incremental propagation vs full recomputation, in one run.

Claims are ratios against a baseline measured in the same process, never absolute timings in
a test. Run: ``python -m bench.propagation --users 20000 --users 100000``.

Reported per graph size:
- ingest rate of the incremental tracker, in events/s and in graph mutations/s (sync events
  carry more identifiers as users grow, so mutations are the unit of work), and the mutation
  rate's ratio to the smallest size (~1.0 means the cost of a change does not grow with the
  graph);
- the baseline: one full rebuild of the graph (what a re-scan per event would cost), and how
  many times cheaper one incremental event is than that rebuild;
- latency of the event that raises an alert (p50/p99), and of a trace (p50/p99);
- peak resident memory.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import statistics
import time
from datetime import UTC, datetime, timedelta

from graph.sqlite_store import SqliteStore
from lineage.events import DataFlowed, DatasetRef, DataUsed, Event, IdentifierCollected
from lineage.identifiers import Pseudonymizer
from lineage.inbound import InboundParser
from lineage.ports import Request, Window
from lineage.projection import project
from lineage.reference_case import ADS, AUTH, generate
from lineage.trace import build_trace
from lineage.tracker import Tracker
from runtime.wiring import default_policy, default_taxonomy

BATCH = 1_000


def _events(users: int) -> list[Event]:
    parser = InboundParser(Pseudonymizer(b"bench-key-0123456789abcdef"))
    now = datetime.now(UTC)
    return [parser.parse_record(r, now) for r in generate(users=users, seed=11).records]


def _percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[int(len(ordered) * 0.99) - 1]


def _violation_probe(index: int, base: datetime) -> list[Event]:
    """A new security collection, its sync and the ad match that must alert."""
    ref = Pseudonymizer(b"bench-key-0123456789abcdef").identifier(
        "email", f"probe{index}@example.org"
    )
    when = base + timedelta(minutes=index)
    common = {"producer": "bench", "observed_time": when}
    auth = DatasetRef(system="auth", name="contact_points")
    ads = DatasetRef(system="ads", name="matchable_identifiers")
    return [
        IdentifierCollected(
            event_id=f"p-c{index}",
            event_time=when,
            dataset=auth,
            purpose="essential.service.authentication",
            identifier=ref,
            **common,
        ),
        DataFlowed(
            event_id=f"p-f{index}",
            event_time=when + timedelta(seconds=1),
            source=auth,
            target=ads,
            job="ads-identity-sync",
            identifiers=[ref],
            **common,
        ),
        DataUsed(
            event_id=f"p-u{index}",
            event_time=when + timedelta(seconds=2),
            dataset=ads,
            job="tailored-audiences-matcher",
            purpose="marketing.advertising.third_party.targeted",
            identifiers=[ref],
            **common,
        ),
    ]


def measure(users: int) -> dict[str, float]:
    policy = default_policy(default_taxonomy())
    events = _events(users)
    store = SqliteStore(":memory:")
    tracker = Tracker(store, policy)
    started = time.perf_counter()
    for offset in range(0, len(events), BATCH):
        tracker.apply(events[offset : offset + BATCH])
    incremental_s = time.perf_counter() - started
    per_event_s = incremental_s / len(events)
    mutations = sum(len(project(e)) for e in events)

    started = time.perf_counter()
    Tracker(SqliteStore(":memory:"), policy).apply(events)  # baseline: a full rebuild (re-scan)
    rebuild_s = time.perf_counter() - started

    alert_ms: list[float] = []
    base = datetime(2019, 1, 1, tzinfo=UTC)
    for index in range(300):
        collect, flow, use = _violation_probe(index, base)
        tracker.apply([collect, flow])
        started = time.perf_counter()
        raised = tracker.apply([use])
        alert_ms.append((time.perf_counter() - started) * 1000)
        assert len(raised) == 1, "probe use must raise exactly one alert"

    refs = [e.identifier.ref for e in events if isinstance(e, IdentifierCollected)]
    rng = random.Random(5)
    trace_ms: list[float] = []
    for ref in rng.sample(refs, min(300, len(refs))):
        started = time.perf_counter()
        assert build_trace(store, policy, ref) is not None
        trace_ms.append((time.perf_counter() - started) * 1000)

    alert_p50, alert_p99 = _percentiles(alert_ms)
    trace_p50, trace_p99 = _percentiles(trace_ms)
    everything: set[Window] = {(ADS, None, 2**62, None), (AUTH, None, 2**62, None)}
    counts = store.fetch(Request(arrivals=everything)).arrivals
    copies_in_ads = len(counts.get((ADS, None, 2**62, None), []))
    return {
        "users": users,
        "events": len(events),
        "identifiers": len({*refs}),
        "copies_in_" + ADS.split(":")[0]: copies_in_ads,
        "collections_in_" + AUTH.split(":")[0]: len(counts.get((AUTH, None, 2**62, None), [])),
        "events_per_s": round(len(events) / incremental_s),
        "mutations_per_s": round(mutations / incremental_s),
        "rebuild_s": round(rebuild_s, 3),
        "rebuild_over_one_event": round(rebuild_s / per_event_s),
        "alert_latency_ms_p50": round(alert_p50, 3),
        "alert_latency_ms_p99": round(alert_p99, 3),
        "trace_ms_p50": round(trace_p50, 3),
        "trace_ms_p99": round(trace_p99, 3),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, action="append", help="graph sizes (repeatable)")
    args = parser.parse_args()
    sizes = args.users or [5_000, 50_000]
    results = [measure(size) for size in sorted(sizes)]
    smallest = results[0]
    for result in results:
        result["mutation_rate_vs_smallest"] = round(
            result["mutations_per_s"] / smallest["mutations_per_s"], 2
        )
        result["alert_p50_vs_smallest"] = round(
            result["alert_latency_ms_p50"] / smallest["alert_latency_ms_p50"], 2
        )
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
