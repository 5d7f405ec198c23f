"""Incident messages beside alerts for the same run: what the topic and the webhook would carry.

The reference case (``--users``, several sizes) is applied in units of ``--batch`` events by
the embedded tracker (SQLite in memory); each unit's alerts go to the rate-limited
``IncidentPublisher`` as the worker hands them over, its clock advanced by the unit's measured
time (``--slow`` multiplies it: a unit that took 10 ms counts as 10 s with ``--slow 1000``, a
run as long as a production backlog). Printed per size and interval: alerts, incidents,
incident messages (opened + updated + flushed at the end), and the bound
incidents x (1 + run time / interval + 1), and the real time the publisher took (``observe``
and ``close``, not the tracker). Run: ``python -m bench.incident_messages``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from datetime import UTC, datetime

from graph.sqlite_store import SqliteStore
from lineage.events import Event
from lineage.identifiers import Pseudonymizer
from lineage.inbound import InboundParser
from lineage.reference_case import generate
from lineage.tracker import Tracker
from runtime.incident_publisher import IncidentMessage, IncidentPublisher
from runtime.wiring import default_policy, default_taxonomy

KEY = b"bench-key-0123456789abcdef"


def _events(users: int) -> list[Event]:
    parser = InboundParser(Pseudonymizer(KEY))
    now = datetime.now(UTC)
    return [parser.parse_record(r, now) for r in generate(users=users).records]


def run(users: int, batch: int, interval: float, slow: float) -> dict[str, float]:
    events = _events(users)
    tracker = Tracker(SqliteStore(":memory:"), default_policy(default_taxonomy()))
    simulated = 0.0
    sent: list[IncidentMessage] = []

    def sink(messages: Sequence[IncidentMessage]) -> None:
        sent.extend(messages)

    publisher = IncidentPublisher(sink, interval=interval, clock=lambda: simulated)
    alerts = 0
    publishing = 0.0
    for start in range(0, len(events), batch):
        began = time.perf_counter()
        raised = tracker.apply(events[start : start + batch])
        simulated += (time.perf_counter() - began) * slow
        alerts += len(raised)
        began = time.perf_counter()
        publisher.observe(raised)
        publishing += time.perf_counter() - began
    began = time.perf_counter()
    publisher.close()
    publishing += time.perf_counter() - began
    incidents = len({m.incident.incident_id for m in sent})
    bound = incidents * (2 + (simulated // interval if interval else len(events) // batch))
    return {
        "users": users,
        "alerts": alerts,
        "incidents": incidents,
        "messages": len(sent),
        "opened": sum(m.kind == "opened" for m in sent),
        "run_s": round(simulated, 1),
        "bound": bound,
        "publisher_s": round(publishing, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, action="append", help="sizes (repeatable)")
    parser.add_argument("--batch", type=int, default=1000, help="events per unit")
    parser.add_argument("--interval", type=float, action="append", help="seconds (repeatable)")
    parser.add_argument("--slow", type=float, default=1000.0, help="simulated s per real s")
    args = parser.parse_args()
    print("users | interval s | alerts | incidents | messages (opened) | run s (simulated) | bound"
          " | publisher s")  # fmt: skip
    for users in args.users or [2_000, 20_000]:
        for interval in args.interval or [60.0, 5.0]:
            r = run(users, args.batch, interval, args.slow)
            print(f"{r['users']} | {interval:g} | {r['alerts']} | {r['incidents']} | "
                  f"{r['messages']} ({r['opened']}) | {r['run_s']} | {r['bound']:g} | "
                  f"{r['publisher_s']}")  # fmt: skip
            assert r["messages"] <= r["bound"], r


if __name__ == "__main__":
    main()
