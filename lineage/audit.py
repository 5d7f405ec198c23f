"""What an audit report adds to the summary: one evidence example per route, a time window,
and which origin purposes each edge of the dataset graph carries.

The stores compute these with their own query languages (``GraphStore.route_examples``,
``GraphStore.carried_origins``); the functions here are the reference the contract suite
holds every store to.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from lineage.alerts import Alert
from lineage.report import Route, route_of


@dataclass(frozen=True)
class RouteExample:
    """The active alerts sharing one route, origin purpose and use purpose: how many, and the
    earliest of them, by (``occurred_at``, ``alert_id``), as the evidence example."""

    route: Route
    origin_purpose: str
    use_purpose: str
    alerts: int
    example: Alert


@dataclass(frozen=True)
class CarriedOrigin:
    """Copies of origin (``origin_dataset``, ``origin_purpose``) arrived in ``dataset`` from
    ``source`` by ``job``; ``source`` and ``job`` are None where the data was collected."""

    source: str | None
    dataset: str
    job: str | None
    origin_dataset: str
    origin_purpose: str


def carried_order(c: CarriedOrigin) -> tuple[str, str, str, str, str]:
    """The order stores list carried origins in (a collection, with no source, first)."""
    return (c.source or "", c.dataset, c.job or "", c.origin_dataset, c.origin_purpose)


def in_window(moment: datetime, since: datetime | None, until: datetime | None) -> bool:
    """``since`` is inclusive and ``until`` exclusive, so consecutive windows never overlap."""
    return (since is None or moment >= since) and (until is None or moment < until)


def order_examples(examples: Iterable[RouteExample]) -> list[RouteExample]:
    """Largest group first; ties by route and purposes, so every store lists the same order."""
    return sorted(examples, key=lambda e: (-e.alerts, e.route, e.origin_purpose, e.use_purpose))


def route_examples(alerts: Iterable[Alert]) -> list[RouteExample]:
    """The reference grouping over already-filtered active alerts."""
    groups: dict[tuple[Route, str, str], tuple[int, Alert]] = {}
    for alert in alerts:
        key = (route_of(alert), alert.origin_purpose, alert.use_purpose)
        count, first = groups.get(key, (0, alert))
        if (alert.occurred_at, alert.alert_id) < (first.occurred_at, first.alert_id):
            first = alert
        groups[key] = (count + 1, first)
    return order_examples(
        RouteExample(route, origin, use, count, first)
        for (route, origin, use), (count, first) in groups.items()
    )
