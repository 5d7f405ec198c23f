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
``lineage incidents`` gives the totals from the store. The counts are kept per incident as
alerts arrive and leave (``_Tally``), so an emission does not refold the incident's alerts: a
publisher's cost is linear in the alerts it observes, not in alerts x emissions. Messages are
keyed by incident id, so
on the compacted ``lineage.incidents`` topic a consumer keeps the latest one per incident.
"""

from __future__ import annotations

import bisect
import heapq
import json
import math
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

from lineage.alerts import Alert
from lineage.events import from_micros
from lineage.incidents import (
    Incident,
    IncidentKey,
    Member,
    alertmanager_payload,
    incident_id,
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


class _Tally:
    """An incident's counts kept as its alerts come and go, so an emission costs the same
    whatever the number of alerts (``fold`` over every member would be linear in them): the
    same incident ``lineage.incidents.fold`` gives for these members with no officer action
    and no watermark (tests/unit/test_incident_publisher.py checks it)."""

    def __init__(self, key: IncidentKey, quiet: int) -> None:
        self.key = key
        self._quiet = quiet
        self.members: dict[str, Member] = {}  # by alert id: a revision replaces, a withdrawal drops
        self._identifiers: Counter[str] = Counter()
        self._people: Counter[str] = Counter()
        self._times: Counter[int] = Counter()
        self._distinct: list[int] = []  # sorted distinct violation times
        self._gaps = 0  # consecutive distinct times at least a quiet period apart (reopened)
        self._earliest: list[tuple[int, str]] = []  # heap of (at, alert id), stale entries too

    def put(self, member: Member) -> None:
        self.drop(member.alert_id)
        self.members[member.alert_id] = member
        if not member.dataset_level:
            self._identifiers[member.identifier] += 1
            self._people.update(member.people)
        if self._times[member.at] == 0:
            self._insert(member.at)
        self._times[member.at] += 1
        heapq.heappush(self._earliest, (member.at, member.alert_id))

    def drop(self, alert_id: str) -> None:
        member = self.members.pop(alert_id, None)
        if member is None:
            return
        if not member.dataset_level:
            _decrement(self._identifiers, member.identifier)
            for person in member.people:
                _decrement(self._people, person)
        _decrement(self._times, member.at)
        if member.at not in self._times:
            self._remove(member.at)

    def _gap(self, before: int, after: int) -> int:
        return 1 if after - before >= self._quiet else 0

    def _insert(self, at: int) -> None:
        times = self._distinct
        i = bisect.bisect_left(times, at)
        before = times[i - 1] if i > 0 else None
        after = times[i] if i < len(times) else None
        if before is not None and after is not None:
            self._gaps -= self._gap(before, after)
        if before is not None:
            self._gaps += self._gap(before, at)
        if after is not None:
            self._gaps += self._gap(at, after)
        times.insert(i, at)

    def _remove(self, at: int) -> None:
        times = self._distinct
        i = bisect.bisect_left(times, at)
        before = times[i - 1] if i > 0 else None
        after = times[i + 1] if i + 1 < len(times) else None
        if before is not None:
            self._gaps -= self._gap(before, at)
        if after is not None:
            self._gaps -= self._gap(at, after)
        if before is not None and after is not None:
            self._gaps += self._gap(before, after)
        del times[i]

    def _example(self) -> str:
        heap = self._earliest
        while True:  # drop entries of alerts withdrawn or revised since they were pushed
            at, alert_id = heap[0]
            member = self.members.get(alert_id)
            if member is not None and member.at == at:
                return alert_id
            heapq.heappop(heap)

    def incident(self, iid: str) -> Incident:
        return Incident(
            incident_id=iid, key=self.key, status="open", alerts=len(self.members),
            identifiers=len(self._identifiers), people=len(self._people),
            first_violation=from_micros(self._distinct[0]),
            last_violation=from_micros(self._distinct[-1]),
            example=self._example(), reopened=self._gaps,
        )  # fmt: skip


def _decrement(counts: Counter[Any], item: Any) -> None:
    counts[item] -= 1
    if counts[item] <= 0:
        del counts[item]


@dataclass(frozen=True)
class Published:
    """An incident's latest message on the incidents topic, as a restart reads it back."""

    sequence: int
    incident: dict[str, Any]  # ``Incident.as_json``

    @classmethod
    def of(cls, body: bytes) -> Published:
        message = json.loads(body)
        return cls(int(message["sequence"]), message["incident"])


@dataclass
class _State:
    tally: _Tally
    sent: int = -1  # sequence of the last emission, -1: never announced
    last_sent: float = 0.0
    pending: bool = False
    example: Alert | None = None  # :meth:`IncidentPublisher.load`'s earliest active alert

    @property
    def members(self) -> dict[str, Member]:
        return self.tally.members


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
        self._quiet_us = int(quiet_period / timedelta(microseconds=1))
        self._states: dict[str, _State] = {}
        self._ids: dict[IncidentKey, str] = {}  # few distinct keys: one digest each
        self.emitted = 0  # messages handed to the sink
        self.observed = 0  # alerts observed

    def observe(self, alerts: Sequence[Alert]) -> list[IncidentMessage]:
        """One unit's alerts; returns (and sends) the messages this unit emits."""
        now = self._clock()
        touched: dict[str, Alert | None] = {}
        for alert in alerts:
            self.observed += 1
            member = member_of(alert)
            iid = self._ids.get(member.key)
            if iid is None:
                iid = self._ids[member.key] = incident_id(member.key)
            state = self._states.get(iid)
            if state is None:
                state = self._states[iid] = _State(_Tally(member.key, self._quiet_us))
            if alert.status == "active":
                state.tally.put(member)
            else:
                state.tally.drop(alert.alert_id)
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
            elif now - state.last_sent >= self._interval and state.members:
                messages.append(self._message(iid, state, now, None))
        return self._send(messages)

    def load(self, alerts: Sequence[Alert]) -> None:
        """Fold alerts in without emitting anything (a restart's replay of the alerts topic,
        ``streams.incident_follow``); :meth:`resume` then decides what to send."""
        for alert in alerts:
            self.observed += 1
            member = member_of(alert)
            iid = self._ids.get(member.key)
            if iid is None:
                iid = self._ids[member.key] = incident_id(member.key)
            state = self._states.get(iid)
            if state is None:
                state = self._states[iid] = _State(_Tally(member.key, self._quiet_us))
            if alert.status == "active":
                state.tally.put(member)
                best = state.example
                if best is None or (alert.occurred_at, alert.alert_id) < (
                    best.occurred_at,
                    best.alert_id,
                ):
                    state.example = alert
            else:
                state.tally.drop(alert.alert_id)

    def resume(self, published: Mapping[str, Published]) -> list[IncidentMessage]:
        """After :meth:`load`: take over the sequences of what a previous run published (the
        latest message per incident, read back from the compacted incidents topic) and send
        only what it had not: an ``opened`` for an incident never announced, an ``updated``
        (its sequence continuing) for one whose folded state differs from its last message
        (an update pending when that run died). An incident whose last message is current
        is not sent again. Returns (and sends) those messages."""
        now = self._clock()
        messages = []
        for iid, last in published.items():
            state = self._states.get(iid)
            if state is None:  # its alerts are gone from the topic: nothing to say of it
                continue
            state.sent = max(state.sent, last.sequence)
            state.last_sent = -math.inf  # the next update is not held back by this restart
        for iid in sorted(self._states):
            state = self._states[iid]
            if not state.members:
                continue
            if state.sent < 0:
                example = state.example
                if example is not None and example.alert_id not in state.members:
                    example = None  # withdrawn since: no evidence rather than a stale one
                messages.append(self._message(iid, state, now, example))
            elif (prior := published.get(iid)) is None or (
                prior.incident != state.tally.incident(iid).as_json()
            ):
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
        incident = state.tally.incident(iid)
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
