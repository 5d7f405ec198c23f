"""The privacy officer's summary: how many people, since when, through which systems."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from lineage.alerts import Alert
from lineage.identifiers import DATASET_LEVEL_SUBJECT


@dataclass
class ViolationReport:
    alerts: int = 0
    affected_identifiers: int = 0
    affected_subjects: int = 0
    first_violation: datetime | None = None
    last_violation: datetime | None = None
    by_rule: dict[str, int] = field(default_factory=dict)
    by_category: dict[str, int] = field(default_factory=dict)
    by_year: dict[str, int] = field(default_factory=dict)
    datasets: dict[str, int] = field(default_factory=dict)
    jobs: dict[str, int] = field(default_factory=dict)
    systems: list[str] = field(default_factory=list)
    people_by_job: dict[str, int] = field(default_factory=dict)


Route = tuple[tuple[str, str | None], ...]  # the (dataset, job) of each evidence step


@dataclass
class Tally:
    """What a report is computed from: few numbers and few distinct routes however many alerts,
    so a store can aggregate it in its own query language (SQL) instead of reading every alert."""

    alerts: int = 0
    identifiers_by_category: dict[str, int] = field(default_factory=dict)
    people: int = 0
    first: datetime | None = None
    last: datetime | None = None
    by_rule: dict[str, int] = field(default_factory=dict)
    by_year: dict[str, int] = field(default_factory=dict)
    routes: dict[Route, int] = field(default_factory=dict)
    people_by_job: dict[str, int] = field(default_factory=dict)


def route_of(alert: Alert) -> Route:
    return tuple((step.dataset, step.job) for step in alert.evidence)


def tally(alerts: Iterable[Alert]) -> Tally:
    """People are counted by pseudonymized account; an identifier with none counts as one.
    A dataset-level pseudo-identifier (OpenLineage input) is no person and no identifier: its
    alerts count as alerts, in rules, years and routes, but not in people or categories."""
    counted = Tally()
    categories: dict[str, str] = {}
    people: set[str] = set()
    by_rule: Counter[str] = Counter()
    by_year: Counter[str] = Counter()
    routes: Counter[Route] = Counter()
    by_job: dict[str, set[str]] = {}
    for alert in alerts:
        counted.alerts += 1
        by_rule[alert.rule] += 1
        by_year[str(alert.occurred_at.year)] += 1
        if DATASET_LEVEL_SUBJECT not in alert.subjects:  # OpenLineage: not a person
            categories[alert.identifier] = alert.category
            owners = alert.subjects or [f"identifier:{alert.identifier}"]
            people.update(owners)
            by_job.setdefault(alert.use_job, set()).update(owners)
        routes[route_of(alert)] += 1
        if counted.first is None or alert.occurred_at < counted.first:
            counted.first = alert.occurred_at
        if counted.last is None or alert.occurred_at > counted.last:
            counted.last = alert.occurred_at
    counted.identifiers_by_category = dict(Counter(categories.values()))
    counted.people = len(people)
    counted.by_rule = dict(by_rule)
    counted.by_year = dict(by_year)
    counted.routes = dict(routes)
    counted.people_by_job = {job: len(owners) for job, owners in by_job.items()}
    return counted


def report_from(counted: Tally) -> ViolationReport:
    datasets: Counter[str] = Counter()
    jobs: Counter[str] = Counter()
    for route, count in counted.routes.items():
        for dataset, job in route:
            datasets[dataset] += count
            if job:
                jobs[job] += count
    by_category = Counter(counted.identifiers_by_category)
    return ViolationReport(
        alerts=counted.alerts,
        affected_identifiers=sum(by_category.values()),
        affected_subjects=counted.people,
        first_violation=counted.first,
        last_violation=counted.last,
        by_rule=dict(Counter(counted.by_rule).most_common()),
        by_category=dict(by_category.most_common()),
        by_year=dict(sorted(counted.by_year.items())),
        datasets=dict(datasets.most_common()),
        jobs=dict(jobs.most_common()),
        systems=sorted({name.split(":", 1)[0] for name in datasets}),
        people_by_job=dict(sorted(counted.people_by_job.items(), key=lambda kv: (-kv[1], kv[0]))),
    )


def summarize(alerts: Iterable[Alert]) -> ViolationReport:
    return report_from(tally(alerts))
