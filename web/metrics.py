"""Prometheus metrics of one serving process (``/metrics``), in a registry of its own so that
two apps in one process (the tests) never share counters."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from lineage.alerts import Alert

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]

#: A unit is one commit: from a few milliseconds (one RunEvent) to a second (a large unit).
UNIT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.events = Counter(
            "lineage_events",
            "Tracker events recorded from RunEvents, by outcome (accepted: new; duplicate: "
            "already recorded)",
            ["outcome"],
            registry=self.registry,
        )
        self.rejected = Counter(
            "lineage_requests_rejected",
            "Ingest requests answered with an error, by status (400: invalid and dead-lettered; "
            "401: key; 413/415/411/408: the body; 503: the queue was full or the log failed)",
            ["status"],
            registry=self.registry,
        )
        self.alerts = Counter(
            "lineage_alerts",
            "Alerts raised or revised by ingest, by rule",
            ["rule"],
            registry=self.registry,
        )
        self.unit_seconds = Histogram(
            "lineage_unit_seconds",
            "Time to record one unit (a group commit of queued RunEvents)",
            buckets=UNIT_BUCKETS,
            registry=self.registry,
        )
        self.unit_size = Histogram(
            "lineage_unit_requests",
            "RunEvents per unit",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "lineage_queue_depth",
            "RunEvents waiting for the writer",
            registry=self.registry,
        )

    def watch_queue(self, depth: Callable[[], int]) -> None:
        self.queue_depth.set_function(lambda: float(depth()))

    def count_alerts(self, alerts: Iterable[Alert]) -> None:
        for alert in alerts:
            self.alerts.labels(alert.rule).inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
