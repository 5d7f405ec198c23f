"""Incident messages for real-time consumers, bounded in rate (docs/incidents.md).

After each unit the projector (or an embedded writer) hands the unit's alerts to
:meth:`IncidentPublisher.observe`. They are grouped by incident (``lineage.incidents.key_of``):

* an incident never announced by this publisher is emitted at once (``opened``), with one
  evidence example (its earliest alert of the unit);
* an announced one is emitted (``updated``) at most once per ``interval`` seconds and at most
  once per unit; what arrives in between is pending and goes out with the next emission, or
  at :meth:`close` (``flush``).

So the number of incident messages is bounded by incidents x (1 + run time / interval), never
by the number of identifiers. A message carries the incident as this publisher has seen it
(alerts, identifiers, people, window from the alerts it observed; withdrawn alerts leave it);
``lineage incidents`` gives the totals from the store. Messages are keyed by incident id, so
on the compacted ``lineage.incidents`` topic a consumer keeps the latest one per incident.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal

from lineage.alerts import Alert
from lineage.incidents import (
    Incident,
    Member,
    alertmanager_payload,
    fold,
    incident_id,
    key_of,
    member_of,
    pagerduty_event,
)

Kind = Literal["opened", "updated"]


@dataclass(frozen=True)
class IncidentMessage:
    kind: Kind
    sequence: int  # 0 for "opened", +1 per update of the incident
    incident: Incident
    evidence: Alert | None  # the opening message's one example (masked display only)

    @property
    def key(self) -> bytes:
        return self.incident.incident_id.encode()

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "sequence": self.sequence,
            "incident": self.incident.as_json(),
            "evidence": self.evidence.model_dump(mode="json") if self.evidence else None,
            "alertmanager": alertmanager_payload([self.incident]),
            # the webhook fills in the PagerDuty integration's routing key
            "pagerduty": pagerduty_event(self.incident, routing_key=""),
        }

    def body(self) -> bytes:
        return json.dumps(self.as_json(), sort_keys=True).encode()


@dataclass
class _State:
    members: dict[str, Member] = field(default_factory=dict)
    sent: int = -1  # sequence of the last emission, -1: never announced
    last_sent: float = 0.0
    pending: bool = False


class IncidentPublisher:
    """Rate-limited incident messages to ``sink`` (a callable taking a batch of messages)."""

    def __init__(
        self,
        sink: Callable[[Sequence[IncidentMessage]], None],
        interval: float = 60.0,
        quiet_period: timedelta = timedelta(days=30),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sink = sink
        self._interval = interval
        self._quiet = quiet_period
        self._clock = clock
        self._states: dict[str, _State] = {}
        self.emitted = 0  # messages handed to the sink
        self.observed = 0  # alerts observed

    def observe(self, alerts: Sequence[Alert]) -> list[IncidentMessage]:
        """One unit's alerts; returns (and sends) the messages this unit emits."""
        now = self._clock()
        touched: dict[str, Alert | None] = {}
        for alert in alerts:
            self.observed += 1
            iid = incident_id(key_of(alert))
            state = self._states.setdefault(iid, _State())
            if alert.status == "active":
                state.members[alert.alert_id] = member_of(alert)
            else:
                state.members.pop(alert.alert_id, None)
            state.pending = True
            best = touched.get(iid)
            if alert.status == "active" and (
                best is None
                or (alert.occurred_at, alert.alert_id) < (best.occurred_at, best.alert_id)
            ):
                touched[iid] = alert
            else:
                touched.setdefault(iid, None)
        messages = []
        for iid in sorted(touched):
            state = self._states[iid]
            if state.sent < 0:
                if state.members:
                    messages.append(self._message(iid, state, now, touched[iid]))
            elif now - state.last_sent >= self._interval:
                messages.append(self._message(iid, state, now, None))
        return self._send(messages)

    def tick(self) -> list[IncidentMessage]:
        """Emit the pending updates whose interval has passed (a worker calls it when idle)."""
        now = self._clock()
        due = [
            self._message(iid, s, now, None)
            for iid, s in sorted(self._states.items())
            if s.pending and s.sent >= 0 and now - s.last_sent >= self._interval and s.members
        ]
        return self._send(due)

    def close(self) -> list[IncidentMessage]:
        """Flush every pending update (at the end of an ingest, or when a worker stops)."""
        now = self._clock()
        pending = [
            self._message(iid, s, now, None)
            for iid, s in sorted(self._states.items())
            if s.pending and s.members
        ]
        return self._send(pending)

    def _message(
        self, iid: str, state: _State, now: float, example: Alert | None
    ) -> IncidentMessage:
        (incident,) = fold(state.members.values(), [], self._quiet, None)
        state.sent += 1
        state.last_sent = now
        state.pending = False
        kind: Kind = "opened" if state.sent == 0 else "updated"
        return IncidentMessage(kind, state.sent, incident, example if kind == "opened" else None)

    def _send(self, messages: list[IncidentMessage]) -> list[IncidentMessage]:
        if messages:
            self._sink(messages)
            self.emitted += len(messages)
        return messages
