"""Incidents: one open violation per (rule, origin, route, use), not one message per identifier.

An incident is a pure function of the *active* alerts (as stored: already order-independent and
replay-stable) and of the officers' actions (events in the log), so it is order-independent and
replay-stable by construction. ``fold`` computes every incident from the rows a store reads
(:class:`Member`, one per active alert) and the actions; nothing here does I/O.

Status (docs/incidents.md): walking the actions in time order, a resolve at or after the last
violation makes the incident ``resolved``, otherwise an acknowledge at or after it makes it
``acknowledged``, otherwise it is ``open``. When ``watermark`` (the latest event time the
tracker has seen, an input) is at least ``last_violation + quiet_period``, an incident not
resolved by an officer is ``resolved`` by "quiet period". A violation after a resolution
reopens the incident (``reopened`` counts the resolutions a later violation undid).

People are counted as ``lineage.report.tally`` counts them: by account, an identifier with none
as one person, a dataset-level pseudo-identifier (OpenLineage input) as no person and no
identifier.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any, Literal, Protocol

from lineage.alerts import Alert
from lineage.events import IncidentAcknowledged, IncidentEvent, from_micros, micros
from lineage.identifiers import DATASET_LEVEL_SUBJECT
from lineage.report import Route, route_of

Status = Literal["open", "acknowledged", "resolved"]
ActionKind = Literal["acknowledge", "resolve"]

#: Who resolved an incident that saw no violation for the quiet period.
QUIET_PERIOD = "quiet period"


@dataclass(frozen=True, slots=True)
class IncidentKey:
    rule: str
    origin_dataset: str
    origin_purpose: str
    route: Route
    use_dataset: str
    use_job: str
    use_purpose: str

    def fields(self) -> tuple[str, ...]:
        steps = "\x1e".join(f"{dataset}\x1d{job or ''}" for dataset, job in self.route)
        return (self.rule, self.origin_dataset, self.origin_purpose, steps, self.use_dataset,
                self.use_job, self.use_purpose)  # fmt: skip


def incident_id(key: IncidentKey) -> str:
    """Like ``lineage.alerts.alert_id``: the first 32 hex digits of a SHA-256 of the key."""
    return hashlib.sha256("\x1f".join(key.fields()).encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class Member:
    """One active alert as incidents need it. ``people``: the identifier's accounts, or
    ``("identifier:<ref>",)`` when it has none; empty for a dataset-level pseudo-identifier."""

    key: IncidentKey
    alert_id: str
    identifier: str
    people: tuple[str, ...]
    dataset_level: bool
    at: int  # occurred_at, event-time microseconds


@dataclass(frozen=True, slots=True)
class Action:
    """An officer's acknowledge or resolve (an event in the log: ``event_id``, event time)."""

    event_id: str
    incident_id: str
    kind: ActionKind
    by: str
    why: str
    at: int


@dataclass(frozen=True)
class Incident:
    incident_id: str
    key: IncidentKey
    status: Status
    alerts: int
    identifiers: int
    people: int
    first_violation: datetime
    last_violation: datetime
    example: str  # the earliest alert's id (ties: the smaller id)
    reopened: int = 0
    acknowledged_by: str | None = None
    acknowledged_at: datetime | None = None
    resolved_by: str | None = None
    resolved_at: datetime | None = None
    why: str | None = None

    def as_json(self) -> dict[str, Any]:
        k = self.key
        return {
            "incident_id": self.incident_id,
            "rule": k.rule,
            "status": self.status,
            "origin_dataset": k.origin_dataset,
            "origin_purpose": k.origin_purpose,
            "route": [[dataset, job] for dataset, job in k.route],
            "use_dataset": k.use_dataset,
            "use_job": k.use_job,
            "use_purpose": k.use_purpose,
            "alerts": self.alerts,
            "people": self.people,
            "identifiers": self.identifiers,
            "first_violation": self.first_violation.isoformat(),
            "last_violation": self.last_violation.isoformat(),
            "example": self.example,
            "reopened": self.reopened,
            "acknowledged_by": self.acknowledged_by,
            "acknowledged_at": _iso(self.acknowledged_at),
            "resolved_by": self.resolved_by,
            "resolved_at": _iso(self.resolved_at),
            "why": self.why,
        }


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


@dataclass
class _Acc:
    alerts: int = 0
    identifiers: set[str] = field(default_factory=set)
    people: set[str] = field(default_factory=set)
    times: set[int] = field(default_factory=set)
    example: tuple[int, str] | None = None


def _accumulate(members: Iterable[Member]) -> dict[IncidentKey, _Acc]:
    groups: dict[IncidentKey, _Acc] = {}
    for m in members:
        acc = groups.setdefault(m.key, _Acc())
        acc.alerts += 1
        if not m.dataset_level:
            acc.identifiers.add(m.identifier)
            acc.people.update(m.people)
        acc.times.add(m.at)
        if acc.example is None or (m.at, m.alert_id) < acc.example:
            acc.example = (m.at, m.alert_id)
    return groups


def _status(
    iid: str,
    key: IncidentKey,
    acc: _Acc,
    actions: Sequence[Action],
    quiet: int,
    watermark: int | None,
) -> Incident:
    times = sorted(acc.times)
    first, last = times[0], times[-1]
    ordered = sorted(actions, key=lambda a: (a.at, a.event_id))
    resolves = [a.at for a in ordered if a.kind == "resolve"]
    # a resolution (an officer's, or a quiet period) between two violations was undone
    reopened = sum(
        1
        for before, after in pairwise(times)
        if after - before >= quiet or any(before <= r < after for r in resolves)
    )
    status: Status = "open"
    ack: Action | None = None
    res: Action | None = None
    for action in ordered:
        if action.at < last:
            continue
        if action.kind == "resolve":
            res = action
        elif ack is None:
            ack = action
    why: str | None = None
    resolved_by: str | None = None
    resolved_at: datetime | None = None
    if res is not None:
        status, resolved_by, resolved_at, why = "resolved", res.by, from_micros(res.at), res.why
    elif watermark is not None and watermark >= last + quiet:
        status, resolved_by, resolved_at = "resolved", QUIET_PERIOD, from_micros(last + quiet)
    elif ack is not None:
        status, why = "acknowledged", ack.why
    if ack is not None and why is None:
        why = ack.why
    assert acc.example is not None
    return Incident(
        incident_id=iid,
        key=key,
        status=status,
        alerts=acc.alerts,
        identifiers=len(acc.identifiers),
        people=len(acc.people),
        first_violation=from_micros(first),
        last_violation=from_micros(last),
        example=acc.example[1],
        reopened=reopened,
        acknowledged_by=ack.by if ack is not None else None,
        acknowledged_at=from_micros(ack.at) if ack is not None else None,
        resolved_by=resolved_by,
        resolved_at=resolved_at,
        why=why,
    )


def fold(
    members: Iterable[Member],
    actions: Iterable[Action],
    quiet_period: timedelta,
    watermark: int | None,
) -> list[Incident]:
    """Every incident of the active alerts, earliest first violation first (ties by id)."""
    quiet = int(quiet_period / timedelta(microseconds=1))
    by_incident: dict[str, list[Action]] = {}
    for action in actions:
        by_incident.setdefault(action.incident_id, []).append(action)
    found = []
    for key, acc in _accumulate(members).items():
        iid = incident_id(key)
        found.append(_status(iid, key, acc, by_incident.get(iid, []), quiet, watermark))
    return sorted(found, key=lambda i: (i.first_violation, i.incident_id))


def key_of(alert: Alert) -> IncidentKey:
    return IncidentKey(
        alert.rule,
        alert.origin_dataset,
        alert.origin_purpose,
        route_of(alert),
        alert.use_dataset,
        alert.use_job,
        alert.use_purpose,
    )


def member_of(alert: Alert) -> Member:
    """An alert as a member of its incident, its people counted as ``report.tally`` does."""
    dataset_level = DATASET_LEVEL_SUBJECT in alert.subjects
    people = (
        ()
        if dataset_level
        else tuple(sorted(set(alert.subjects))) or (f"identifier:{alert.identifier}",)
    )
    return Member(
        key_of(alert), alert.alert_id, alert.identifier, people, dataset_level,
        micros(alert.occurred_at),
    )  # fmt: skip


def people_total(members: Iterable[Member]) -> int:
    """Distinct people across every incident (a person in two incidents counts once)."""
    people: set[str] = set()
    for m in members:
        if not m.dataset_level:
            people.update(m.people)
    return len(people)


def members_of(members: Iterable[Member], iid: str) -> list[Member]:
    """The incident's alerts, earliest first (ties by alert id)."""
    ids: dict[IncidentKey, str] = {}  # few distinct keys: one digest each
    chosen = []
    for m in members:
        if m.key not in ids:
            ids[m.key] = incident_id(m.key)
        if ids[m.key] == iid:
            chosen.append(m)
    return sorted(chosen, key=lambda m: (m.at, m.alert_id))


def action_of(event: IncidentEvent) -> Action:
    kind: ActionKind = "acknowledge" if isinstance(event, IncidentAcknowledged) else "resolve"
    return Action(
        event.event_id, event.incident_id, kind, event.by, event.why, micros(event.event_time)
    )


# -- payloads for existing alerting tools (docs/incidents.md) -----------------------------------


def _summary(incident: Incident) -> str:
    k = incident.key
    return (
        f"{k.origin_purpose} identifiers from {k.origin_dataset} reached {k.use_purpose} "
        f"in {k.use_dataset} through {k.use_job}: {incident.people} people, "
        f"{incident.alerts} alerts"
    )


def _route_text(route: Route) -> str:
    return " > ".join(f"{d} ({j})" if j else d for d, j in route)


def alertmanager_payload(
    incidents: Sequence[Incident], receiver: str = "lineage", external_url: str = ""
) -> dict[str, Any]:
    """The Prometheus Alertmanager webhook body (``version: "4"``), one alert per incident:
    what Alertmanager's webhook receivers (and tools that accept it, e.g. Grafana OnCall's
    Alertmanager integration) read as is. No raw identifier: counts and ids only."""
    alerts = []
    for incident in incidents:
        k = incident.key
        resolved = incident.status == "resolved"
        labels = {
            "alertname": "PersonalDataPurposeViolation",
            "incident_id": incident.incident_id,
            "rule": k.rule,
            "origin_dataset": k.origin_dataset,
            "origin_purpose": k.origin_purpose,
            "use_dataset": k.use_dataset,
            "use_job": k.use_job,
            "use_purpose": k.use_purpose,
        }
        alerts.append(
            {
                "status": "resolved" if resolved else "firing",
                "labels": labels,
                "annotations": {
                    "summary": _summary(incident),
                    "route": _route_text(k.route),
                    "people": str(incident.people),
                    "identifiers": str(incident.identifiers),
                    "alerts": str(incident.alerts),
                    "incident_status": incident.status,
                    "example_alert_id": incident.example,
                    "last_violation": incident.last_violation.isoformat(),
                },
                "startsAt": incident.first_violation.astimezone(UTC).isoformat(),
                "endsAt": (
                    (incident.resolved_at or incident.last_violation).astimezone(UTC).isoformat()
                    if resolved
                    else "0001-01-01T00:00:00Z"
                ),
                "generatorURL": external_url,
                "fingerprint": incident.incident_id[:16],
            }
        )
    firing = any(a["status"] == "firing" for a in alerts)
    group = {"alertname": "PersonalDataPurposeViolation"}
    return {
        "version": "4",
        "groupKey": '{}:{alertname="PersonalDataPurposeViolation"}'
        + ("" if len(incidents) != 1 else f":{incidents[0].incident_id}"),
        "truncatedAlerts": 0,
        "status": "firing" if firing else "resolved",
        "receiver": receiver,
        "groupLabels": group,
        "commonLabels": group,
        "commonAnnotations": {},
        "externalURL": external_url,
        "alerts": alerts,
    }


def pagerduty_event(
    incident: Incident, routing_key: str, severity: str = "critical", source: str = "lineage"
) -> dict[str, Any]:
    """A PagerDuty Events API v2 event (POST https://events.pagerduty.com/v2/enqueue):
    ``dedup_key`` is the incident id, so every update lands on the same PagerDuty incident."""
    action = {"open": "trigger", "acknowledged": "acknowledge", "resolved": "resolve"}
    k = incident.key
    return {
        "routing_key": routing_key,
        "event_action": action[incident.status],
        "dedup_key": incident.incident_id,
        "payload": {
            "summary": _summary(incident)[:1024],
            "source": source,
            "severity": severity,
            "timestamp": incident.last_violation.astimezone(UTC).isoformat(),
            "component": k.use_job,
            "group": k.use_dataset,
            "class": k.rule,
            "custom_details": {
                "route": _route_text(k.route),
                "origin": f"{k.origin_purpose}@{k.origin_dataset}",
                "use_purpose": k.use_purpose,
                "people": incident.people,
                "identifiers": incident.identifiers,
                "alerts": incident.alerts,
                "first_violation": incident.first_violation.isoformat(),
                "last_violation": incident.last_violation.isoformat(),
                "example_alert_id": incident.example,
            },
        },
    }


class IncidentReader(Protocol):
    """What a store reads for incidents (graph/sqlite_incidents.py, graph/neo4j_incidents.py)."""

    def incident_members(self, as_of: int | None) -> list[Member]:
        """One row per active alert with ``occurred_at <= as_of`` (None: every one)."""
        ...

    def incident_actions(self) -> list[Action]:
        """Every officer action recorded, in time order."""
        ...

    def incident_watermark(self, as_of: int | None) -> int | None:
        """The latest event time of a collection or a run (at or before ``as_of``)."""
        ...

    def record_incident_actions(self, events: Sequence[IncidentEvent]) -> None:
        """Keep officers' actions, keyed by event id: recording one again changes nothing."""
        ...
