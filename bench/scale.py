"""Embedded mode at scale, through the real path (parse -> SQLite log -> graph -> alerts).

Run: ``python -m bench.scale --users 850000`` (about a million identifiers). Reports the ingest
rate per chunk in events/s and in identifier-touches/s (a sync event carries thousands of
identifiers, a collection one, so touches are the unit of work), the ratio of the last chunks'
touch rate to the first (flat ~1.0 means a change costs the same in a big graph as in a small
one), memory, home size, close and reopen times, and at full size the latency of an event that
raises an alert (log append with fsync included) and of a trace, both against the 100 ms /
"milliseconds" budgets.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from graph.sqlite_store import SqliteStore
from lineage.reference_case import generate
from runtime.service import LineageService
from runtime.settings import Settings

CHUNK = 50_000


def _rss_mb() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * 4096 / 2**20


def _probe(index: int) -> list[str]:
    when = datetime(2019, 1, 1, tzinfo=UTC) + timedelta(minutes=index)
    email = {"email": f"probe{index}@example.org"}
    base = {"producer": "bench", "event_time": when.isoformat()}
    return [
        json.dumps(
            {
                **base,
                "type": "IdentifierCollected",
                "event_id": f"pc{index}",
                "dataset": "auth:contact_points",
                "identifier": email,
                "purpose": "essential.service.authentication",
            }
        ),
        json.dumps(
            {
                **base,
                "type": "DataFlowed",
                "event_id": f"pf{index}",
                "source": "auth:contact_points",
                "target": "ads:matchable_identifiers",
                "job": "ads-identity-sync",
                "identifiers": [email],
            }
        ),
        json.dumps(
            {
                **base,
                "type": "DataUsed",
                "event_id": f"pu{index}",
                "dataset": "ads:matchable_identifiers",
                "job": "tailored-audiences-matcher",
                "purpose": "marketing.advertising.third_party.targeted",
                "identifiers": [email],
            }
        ),
    ]


def touches(record: dict[str, object]) -> int:
    """Identifiers an event concerns: its unit of work (whole-dataset events count one)."""
    listed = record.get("identifiers")
    return len(listed) if isinstance(listed, list) else 1


def _p(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50": round(statistics.median(ordered), 3),
        "p99": round(ordered[max(0, int(len(ordered) * 0.99) - 1)], 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--home", type=Path, default=None)
    args = parser.parse_args()
    home = args.home or Path(tempfile.mkdtemp(prefix="lineage-scale-"))
    settings = Settings(home=home, key="scale-bench-key-0123456789")
    case = generate(users=args.users, seed=21)
    lines = [json.dumps(r) for r in case.records]
    work = [touches(r) for r in case.records]
    collected = sorted(
        {r["identifier"]["email"] for r in case.records if "email" in r.get("identifier", {})}
    )
    del case
    rates: list[float] = []
    touch_rates: list[float] = []
    service = LineageService.open(settings)
    started = time.perf_counter()
    for offset in range(0, len(lines), CHUNK):
        chunk_started = time.perf_counter()
        service.ingest(lines[offset : offset + CHUNK])
        elapsed = time.perf_counter() - chunk_started
        rates.append(len(lines[offset : offset + CHUNK]) / elapsed)
        touch_rates.append(sum(work[offset : offset + CHUNK]) / elapsed)
        print(
            f"{offset + CHUNK} events, {rates[-1]:.0f}/s, {touch_rates[-1]:.0f} touches/s, "
            f"rss {_rss_mb():.0f} MB",
            flush=True,
        )
    ingest_s = time.perf_counter() - started
    assert service.home is not None
    identifiers = service.home.store.counts()["identifiers"]

    alert_ms: list[float] = []
    for index in range(200):
        collect, flow, use = _probe(index)
        service.ingest([collect, flow])
        began = time.perf_counter()
        raised = service.ingest([use]).alerts
        alert_ms.append((time.perf_counter() - began) * 1000)
        assert len(raised) == 1
    trace_ms: list[float] = []
    for email in collected[:: max(1, len(collected) // 200)][:200]:
        began = time.perf_counter()
        found = service.trace(email)
        trace_ms.append((time.perf_counter() - began) * 1000)
        assert found is not None and found.origins
    rss = _rss_mb()
    began = time.perf_counter()
    service.close()
    save_s = time.perf_counter() - began
    began = time.perf_counter()
    reopened = LineageService.open(settings)
    if isinstance(reopened.store, SqliteStore):  # a writer loads its state before it applies
        reopened.store.working_state()
    reopened.close()
    load_s = time.perf_counter() - began
    first, last = statistics.mean(touch_rates[:2]), statistics.mean(touch_rates[-2:])
    print(
        json.dumps(
            {
                "users": args.users,
                "events": len(lines),
                "identifiers": identifiers,
                "ingest_s": round(ingest_s, 1),
                "events_per_s": round(len(lines) / ingest_s),
                "touches": sum(work),
                "first_chunks_touches_per_s": round(first),
                "last_chunks_touches_per_s": round(last),
                "last_over_first": round(last / first, 2),
                "alert_event_ms": _p(alert_ms),
                "trace_ms": _p(trace_ms),
                "rss_mb": round(rss),
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                "home_mb": round(
                    sum(p.stat().st_size for p in home.iterdir() if p.is_file()) / 2**20
                ),
                "close_s": round(save_s, 1),
                "reopen_s": round(load_s, 1),
                "home": str(home),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
