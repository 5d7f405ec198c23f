"""Prometheus metrics of one serving process (``/metrics``): the ones shared with the worker
(:mod:`runtime.metrics`) and those only HTTP ingest has."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import Counter, Gauge, Histogram

from runtime.metrics import CONTENT_TYPE_LATEST, LineageMetrics

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]


class Metrics(LineageMetrics):
    def __init__(self) -> None:
        super().__init__()
        self.rejected = Counter(
            "lineage_requests_rejected",
            "Ingest requests answered with an error, by status (400: invalid and dead-lettered; "
            "401: key; 413/415/411/408: the body; 503: the queue was full or the log failed)",
            ["status"],
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
