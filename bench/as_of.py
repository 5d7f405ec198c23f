"""Time travel's cost, in one run: as-of queries vs the same queries now vs rebuilding from the log.

Run: ``python -m bench.as_of --users 20000``. The generated reference case is applied to an
in-memory embedded store (the tracker, in batches). Then, for a date D in the middle of the
history (default 2016-01-01):

- plain: every query of ``lineage.queries`` plus the report's tally, without ``as_of``;
- as-of: the same with ``as_of = D`` (what docs/time-travel.md chose: filter stored facts by
  their event times);
- rebuild: the alternative, a fresh store built from the events with ``event_time <= D`` (the
  events already parsed in memory: reading and parsing the log, which a real rebuild also
  pays, is left out, so this baseline is a lower bound), then the same queries without
  ``as_of``.

Each figure is the best of ``--repeat`` runs; printed as ratios against the plain queries.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from graph.sqlite_store import SqliteStore
from lineage import queries as q
from lineage.events import Event, micros
from lineage.identifiers import Pseudonymizer
from lineage.inbound import InboundParser
from lineage.reference_case import AUTH, generate
from lineage.tracker import Tracker
from runtime.wiring import default_policy, default_taxonomy

BATCH = 1_000


def _events(users: int) -> list[Event]:
    parser = InboundParser(Pseudonymizer(b"bench-key-0123456789abcdef"))
    now = datetime.now(UTC)
    return [parser.parse_record(r, now) for r in generate(users=users, seed=11).records]


def _build(events: list[Event]) -> SqliteStore:
    store = SqliteStore(":memory:")
    tracker = Tracker(store, default_policy(default_taxonomy()))
    for start in range(0, len(events), BATCH):
        tracker.apply(events[start : start + BATCH])
    return store


def _all_queries(store: SqliteStore, as_of: int | None) -> list[Any]:
    return [
        q.paths(store, as_of),
        q.affected(store, as_of),
        q.collections(store, as_of),
        q.erasure_gaps(store, as_of),
        q.blast_radius(store, AUTH, as_of),
        store.tally(as_of),
    ]


def _best(repeat: int, work: Callable[[], Any]) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = work()
        best = min(best, time.perf_counter() - start)
    return best, result


def run(users: int, as_of: datetime, repeat: int) -> dict[str, Any]:
    events = _events(users)
    store = _build(events)
    when = micros(as_of)
    plain_s, _ = _best(repeat, lambda: _all_queries(store, None))
    as_of_s, then = _best(repeat, lambda: _all_queries(store, when))

    def rebuild() -> list[Any]:
        return _all_queries(_build([e for e in events if micros(e.event_time) <= when]), None)

    rebuild_s, rebuilt = _best(repeat, rebuild)
    paths_then, paths_rebuilt = then[0], rebuilt[0]
    return {
        "users": users,
        "events": len(events),
        "as_of": as_of.isoformat(),
        "alerts_as_of": then[-1].alerts,
        "same_paths_as_rebuild": [(r.route, r.alerts, r.identifiers) for r in paths_then.rows]
        == [(r.route, r.alerts, r.identifiers) for r in paths_rebuilt.rows],
        "plain_s": round(plain_s, 4),
        "as_of_s": round(as_of_s, 4),
        "rebuild_s": round(rebuild_s, 4),
        "as_of_vs_plain": round(as_of_s / plain_s, 2),
        "rebuild_vs_plain": round(rebuild_s / plain_s, 2),
        "rebuild_vs_as_of": round(rebuild_s / as_of_s, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, action="append")
    parser.add_argument("--as-of", default="2016-01-01", help="ISO date (UTC)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    as_of = datetime.fromisoformat(args.as_of).replace(tzinfo=UTC)
    for users in args.users or [20_000]:
        result = run(users, as_of, args.repeat)
        print(json.dumps(result))
        print(
            f"{users} users ({result['events']} events), as of {args.as_of}: all queries "
            f"{result['plain_s']:.3f} s now, {result['as_of_s']:.3f} s as of "
            f"({result['as_of_vs_plain']}x), rebuild from events {result['rebuild_s']:.3f} s "
            f"({result['rebuild_vs_plain']}x plain, {result['rebuild_vs_as_of']}x as-of)"
        )


if __name__ == "__main__":
    main()
