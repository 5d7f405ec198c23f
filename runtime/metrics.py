"""The Prometheus metrics that ``lineage serve`` (``web.metrics``) and ``lineage worker``
(:mod:`streams.projector`) both expose: one definition of each shared name, so a dashboard
reads either process the same way. Each process (each app, in the tests) keeps a registry of
its own, so two of them in one process never share counters."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST, start_http_server

from lineage.alerts import Alert

__all__ = ["CONTENT_TYPE_LATEST", "LineageMetrics", "WorkerMetrics"]

#: A unit is one commit: from a few milliseconds (one RunEvent) to seconds (a worker's batch
#: of thousands of events into Neo4j).
UNIT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class LineageMetrics:
    """What both processes count: events recorded, dead letters, alerts by rule, units."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.events = Counter(
            "lineage_events",
            "Tracker events recorded, by outcome (accepted: recorded; duplicate: already "
            "recorded, told apart by the service only: the worker counts a redelivered event "
            "as accepted again, its apply being a no-op)",
            ["outcome"],
            registry=self.registry,
        )
        self.dead_letters = Counter(
            "lineage_dead_letters",
            "Messages (a RunEvent, a record) dead-lettered: invalid, reusing an event id that "
            "other content owns, or refused by the graph store (the worker)",
            registry=self.registry,
        )
        self.alerts = Counter(
            "lineage_alerts",
            "Alerts raised or revised, by rule",
            ["rule"],
            registry=self.registry,
        )
        self.unit_seconds = Histogram(
            "lineage_unit_seconds",
            "Time to record one unit: one store transaction (the service's group commit of "
            "queued RunEvents, the worker's apply of a batch)",
            buckets=UNIT_BUCKETS,
            registry=self.registry,
        )

    def count_alerts(self, alerts: Iterable[Alert]) -> None:
        for alert in alerts:
            self.alerts.labels(alert.rule).inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class WorkerMetrics(LineageMetrics):
    """The worker's queue is the events topic: its depth is the consumer lag."""

    def __init__(self) -> None:
        super().__init__()
        self.consumer_lag = Gauge(
            "lineage_consumer_lag",
            "Records of the worker's assigned partitions not yet applied and committed: those "
            "in hand and those up to each partition's high watermark as of the last fetch "
            "(a partition not fetched yet counts 0)",
            registry=self.registry,
        )

    def serve(self, port: int) -> None:
        """``/metrics`` on localhost only, from a daemon thread of prometheus-client's; the
        gauge is set by the consume loop (the Kafka consumer is not thread-safe)."""
        start_http_server(port, addr="127.0.0.1", registry=self.registry)
