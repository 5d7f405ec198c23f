"""The rate-limited incident publisher (runtime/incident_publisher.py): an incident opens at
once with one example, then at most one update per interval and per unit, never one per
identifier; pending updates go out at close."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from lineage.alerts import Alert
from lineage.identifiers import DATASET_LEVEL_SUBJECT
from lineage.incidents import fold, member_of
from runtime.incident_publisher import IncidentMessage, IncidentPublisher
from tests.unit.test_incidents import _alert


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


QUIET_30 = timedelta(days=30)  # the publisher's default quiet period


def _publisher(interval: float) -> tuple[IncidentPublisher, list[IncidentMessage], Clock]:
    sent: list[IncidentMessage] = []
    clock = Clock()

    def sink(batch: Sequence[IncidentMessage]) -> None:
        sent.extend(batch)

    return IncidentPublisher(sink, interval=interval, clock=clock), sent, clock


def test_opens_at_once_then_updates_at_most_once_per_interval() -> None:
    publisher, sent, clock = _publisher(interval=10)
    alerts = [_alert(n, f"i{n}", n % 50, [f"p{n % 70}"], route=n % 2) for n in range(1_000)]
    for unit in range(100):  # 100 units of 10 alerts, one second apart
        first = publisher.observe(alerts[unit * 10 : unit * 10 + 10])
        if unit == 0:  # both routes appear in the first unit: both open at once
            assert [m.kind for m in first] == ["opened", "opened"]
            assert all(m.evidence is not None for m in first)
            assert all(m.sequence == 0 for m in first)
        clock.now += 1
        assert len({m.incident.incident_id for m in first}) == len(first)  # one per unit
    publisher.close()
    per_incident: dict[str, list[IncidentMessage]] = {}
    for m in sent:
        per_incident.setdefault(m.incident.incident_id, []).append(m)
    assert len(per_incident) == 2
    for messages in per_incident.values():
        assert 2 <= len(messages) <= 1 + 100 // 10 + 1
        assert [m.sequence for m in messages] == list(range(len(messages)))
        assert all(m.evidence is None for m in messages[1:])
    final = {ms[-1].incident.incident_id: ms[-1].incident for ms in per_incident.values()}
    assert sum(i.alerts for i in final.values()) == 1_000
    assert publisher.emitted == len(sent) < publisher.observed // 40
    body = sent[0].body()
    assert b"alertmanager" in body and b'"version": "4"' in body


def test_a_unit_emits_an_incident_once_and_tick_flushes_due_updates() -> None:
    publisher, sent, clock = _publisher(interval=5)
    publisher.observe([_alert(1, "a", 1, ["p"])])
    assert publisher.observe([_alert(2, "b", 2, ["q"])]) == []  # within the interval: pending
    assert publisher.tick() == []
    clock.now = 5
    (update,) = publisher.tick()
    assert (update.kind, update.incident.alerts, update.incident.people) == ("updated", 2, 2)
    assert publisher.close() == []  # nothing pending any more
    withdrawn = _alert(2, "b", 2, ["q"]).model_copy(update={"status": "withdrawn"})
    clock.now = 20
    (after,) = publisher.observe([withdrawn])
    assert after.incident.alerts == 1 and len(sent) == 3


def test_the_stdout_sink_prints_incident_messages_bounded_like_the_topic() -> None:
    """Embedded ingest's stdout (runtime.sinks.IncidentStreamSink): JSON lines of the same
    messages the worker puts on the incidents topic, at most one per incident per interval and
    per unit; close prints what is pending."""
    import io
    import json
    from datetime import timedelta

    from runtime.sinks import IncidentStreamSink

    stream, clock = io.StringIO(), Clock()
    sink = IncidentStreamSink(stream, True, 10.0, timedelta(days=30), clock)
    alerts = [_alert(n, f"i{n}", n % 50, [f"p{n % 70}"], route=n % 2) for n in range(1_000)]
    for unit in range(100):
        sink.emit(alerts[unit * 10 : unit * 10 + 10])
        clock.now += 1
    sink.emit([])  # a unit without alerts prints nothing
    sink.close()
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [m["kind"] for m in lines[:2]] == ["opened", "opened"]
    per_incident: dict[str, int] = {}
    for m in lines:
        per_incident[m["incident"]["incident_id"]] = (
            per_incident.get(m["incident"]["incident_id"], 0) + 1
        )
    assert len(per_incident) == 2 and all(
        2 <= n <= 1 + 100 // 10 + 1 for n in per_incident.values()
    )
    assert sum(m["incident"]["alerts"] for m in lines[-2:]) == 1_000


_REVISION = st.tuples(
    st.integers(0, 12),  # which alert (its id; its route, so its incident, is n % 2)
    st.integers(0, 4),  # its identifier
    st.floats(0, 120, allow_nan=False),  # days: gaps over the 30-day quiet period happen
    st.sampled_from([[], ["p1"], ["p1", "p2"], ["p3"], [DATASET_LEVEL_SUBJECT]]),
    st.booleans(),  # withdrawn
)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(_REVISION, max_size=6), min_size=1, max_size=8))
def test_incremental_counts_equal_the_fold_of_the_alerts_observed(
    units: list[list[tuple[int, int, float, list[str], bool]]],
) -> None:
    """Each message's incident is what ``lineage.incidents.fold`` gives for the alerts the
    publisher holds (revisions replace, withdrawals drop), however they came and went."""
    publisher, _, clock = _publisher(interval=0)
    active: dict[str, Alert] = {}
    for unit in units:
        alerts = []
        for n, ident, days, subjects, withdrawn in unit:
            alert = _alert(n, f"i{ident}", days, subjects, route=n % 2)
            if withdrawn:
                alert = alert.model_copy(update={"status": "withdrawn"})
                active.pop(alert.alert_id, None)
            else:
                active[alert.alert_id] = alert
            alerts.append(alert)
        expected = {
            i.incident_id: i
            for i in fold([member_of(a) for a in active.values()], [], QUIET_30, None)
        }
        for message in publisher.observe(alerts):
            assert message.incident == expected[message.incident.incident_id]
        clock.now += 1
