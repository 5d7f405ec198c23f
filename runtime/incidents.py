"""Incidents as an application service: what ``lineage incidents`` / ``lineage incident`` (and
an HTTP API) call. The store reads the active alerts and the officers' actions; the grouping,
the status and the counts are ``lineage.incidents.fold`` (docs/incidents.md)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from lineage import incidents as core
from lineage.errors import StoreError
from lineage.events import (
    IncidentAcknowledged,
    IncidentEvent,
    IncidentResolved,
    from_micros,
    micros,
)

if TYPE_CHECKING:
    from runtime.service import LineageService


@dataclass(frozen=True)
class IncidentPage:
    """Some incidents: ``total`` exist, ``truncated`` says whether some were left out;
    ``people`` are distinct across every incident (a person in two counts once)."""

    as_of: datetime | None
    total: int
    truncated: bool
    people: int
    incidents: list[core.Incident]


@dataclass(frozen=True)
class IncidentDetail:
    """One incident and one page of its alerts (earliest first)."""

    incident: core.Incident
    page: int
    limit: int | None
    total: int
    truncated: bool
    alerts: list[core.Member]


def quiet_period(service: LineageService) -> timedelta:
    return timedelta(days=service.settings.incident_quiet_days)


def _micros(as_of: datetime | None) -> int | None:
    return micros(as_of) if as_of is not None else None


def _fold(
    service: LineageService, as_of: datetime | None, extra: Sequence[core.Action] = ()
) -> tuple[list[core.Member], list[core.Incident]]:
    """``extra``: actions appended to the log that the store may not have applied yet (with
    Kafka the worker applies them); one already applied counts once."""
    when = _micros(as_of)
    store = service.store
    members = store.incident_members(when)
    stored = store.incident_actions()
    known = {a.event_id for a in stored}
    actions = [*stored, *(a for a in extra if a.event_id not in known)]
    actions = [a for a in actions if when is None or a.at <= when]
    watermark = store.incident_watermark(when)
    return members, core.fold(members, actions, quiet_period(service), watermark)


def incidents(
    service: LineageService, as_of: datetime | None = None, limit: int | None = None
) -> IncidentPage:
    members, found = _fold(service, as_of)
    shown = found if limit is None else found[: max(limit, 0)]
    return IncidentPage(
        as_of, len(found), len(shown) < len(found), core.people_total(members), shown
    )


def incident(
    service: LineageService,
    incident_id: str,
    page: int = 1,
    limit: int | None = None,
    as_of: datetime | None = None,
) -> IncidentDetail | None:
    """None when no incident has that id (or a unique prefix of it, at least 6 digits)."""
    members, found = _fold(service, as_of)
    chosen = _find(found, incident_id)
    if chosen is None:
        return None
    alerts = core.members_of(members, chosen.incident_id)
    start = 0 if limit is None else (max(page, 1) - 1) * limit
    shown = alerts[start:] if limit is None else alerts[start : start + limit]
    return IncidentDetail(chosen, max(page, 1), limit, len(alerts), len(shown) < len(alerts), shown)


def _find(found: list[core.Incident], wanted: str) -> core.Incident | None:
    exact = [i for i in found if i.incident_id == wanted]
    if exact:
        return exact[0]
    if len(wanted) < 6:
        return None
    prefixed = [i for i in found if i.incident_id.startswith(wanted)]
    return prefixed[0] if len(prefixed) == 1 else None


def member_json(member: core.Member) -> dict[str, object]:
    """An alert of an incident: ids and the pseudonymized identifier, never a raw value."""
    return {
        "alert_id": member.alert_id,
        "identifier": member.identifier,
        "occurred_at": from_micros(member.at).isoformat(),
        "people": len(member.people),
        "dataset_level": member.dataset_level,
    }


def act(
    service: LineageService,
    incident_id: str,
    kind: core.ActionKind,
    by: str,
    why: str,
    at: datetime | None = None,
) -> core.Incident | None:
    """An officer acknowledges or resolves an incident (or a unique prefix of its id): the
    action becomes an event (``IncidentAcknowledged`` / ``IncidentResolved``, its id derived
    from its content) recorded as this deployment records events: appended to the log and
    applied with it (embedded), or produced to the events topic for the worker to apply
    (Kafka), so replay and a rebuild from the topic keep it. Returns the incident with the
    action counted; None: no such incident."""
    _, found = _fold(service, None)
    chosen = _find(found, incident_id)
    if chosen is None:
        return None
    event = action_event(chosen.incident_id, kind, by, why, at or datetime.now(UTC))
    # The recording alone: an action raises no alert, and ``service.record``'s publish would
    # drain the store's outbox, which with Kafka is the worker's to send.
    appended, _ = service.recording.record([event])
    if appended.conflicts:  # pragma: no cover - the id hashes the content
        raise StoreError(f"event id {event.event_id} is taken by other content")
    _, after = _fold(service, None, [core.action_of(event)])
    return next(i for i in after if i.incident_id == chosen.incident_id)


def action_event(
    incident_id: str, kind: core.ActionKind, by: str, why: str, when: datetime
) -> IncidentEvent:
    """The event of an officer's action; equal actions (same incident, kind, who, why and
    time) get the same id, so re-sending one is a duplicate, not a second action."""
    material = "\x1f".join((kind, incident_id, by, why, when.isoformat()))
    event_id = f"incident-{kind}:{hashlib.sha256(material.encode()).hexdigest()[:32]}"
    model = IncidentAcknowledged if kind == "acknowledge" else IncidentResolved
    return model(
        event_id=event_id, event_time=when, observed_time=when, producer="lineage-officer",
        incident_id=incident_id, by=by, why=why,
    )  # fmt: skip


def acknowledge(
    service: LineageService, incident_id: str, by: str, why: str
) -> core.Incident | None:
    return act(service, incident_id, "acknowledge", by, why)


def resolve(service: LineageService, incident_id: str, by: str, why: str) -> core.Incident | None:
    return act(service, incident_id, "resolve", by, why)
