"""The privacy officer's summary: how many people, since when, through which systems."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from lineage.alerts import Alert


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


def summarize(alerts: Iterable[Alert]) -> ViolationReport:
    """People are counted by pseudonymized account; an identifier with none counts as one."""
    report = ViolationReport()
    identifiers: set[str] = set()
    people: set[str] = set()
    by_rule: Counter[str] = Counter()
    by_category: Counter[str] = Counter()
    by_year: Counter[str] = Counter()
    datasets: Counter[str] = Counter()
    jobs: Counter[str] = Counter()
    for alert in alerts:
        report.alerts += 1
        by_rule[alert.rule] += 1
        by_year[str(alert.occurred_at.year)] += 1
        if alert.identifier not in identifiers:
            identifiers.add(alert.identifier)
            by_category[alert.category] += 1
        people.update(alert.subjects or [f"identifier:{alert.identifier}"])
        for step in alert.evidence:
            datasets[step.dataset] += 1
            if step.job:
                jobs[step.job] += 1
        if report.first_violation is None or alert.occurred_at < report.first_violation:
            report.first_violation = alert.occurred_at
        if report.last_violation is None or alert.occurred_at > report.last_violation:
            report.last_violation = alert.occurred_at
    report.affected_identifiers = len(identifiers)
    report.affected_subjects = len(people)
    report.by_rule = dict(by_rule.most_common())
    report.by_category = dict(by_category.most_common())
    report.by_year = dict(sorted(by_year.items()))
    report.datasets = dict(datasets.most_common())
    report.jobs = dict(jobs.most_common())
    report.systems = sorted({name.split(":", 1)[0] for name in datasets})
    return report
