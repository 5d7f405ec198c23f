"""A restarted incident publisher (streams/incident_follow.py): its state comes back from the
compacted topics, so it re-opens nothing, loses no pending update, and numbers on."""

from __future__ import annotations

from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

from runtime.incident_publisher import IncidentMessage, Published
from streams.incident_follow import latest_messages
from tests.unit.test_incident_publisher import Clock, _publisher
from tests.unit.test_incidents import _alert


def _topic(messages: Sequence[IncidentMessage]) -> dict[str, Published]:
    """What reading the incidents topic back gives (the latest message per key)."""
    records = [SimpleNamespace(key=m.key, value=m.body(), topic="t", partition=0, offset=n)
               for n, m in enumerate(messages)]  # fmt: skip
    return latest_messages(iter([records]))


def _restart(alerts: Sequence[Any], topic: dict[str, Published]) -> tuple[Any, list[Any], Clock]:
    publisher, sent, clock = _publisher(interval=60)
    publisher.load(alerts)
    publisher.resume(topic)
    return publisher, sent, clock


def test_a_restart_with_everything_published_sends_nothing_and_numbers_on() -> None:
    alerts = [_alert(n, f"i{n}", n % 5, [f"p{n % 7}"], route=n % 2) for n in range(40)]
    first, sent, clock = _publisher(interval=60)
    first.observe(alerts[:20])
    clock.now = 100
    first.observe(alerts[20:])  # an update per incident: the interval has passed
    assert [m.kind for m in sent] == ["opened", "opened", "updated", "updated"]
    again, resent, clock2 = _restart(alerts, _topic(sent))
    assert resent == []  # nothing re-opened, nothing repeated
    clock2.now = 5
    (update,) = again.observe([_alert(99, "new", 9, ["q"])])
    assert (update.kind, update.sequence, update.incident.alerts) == ("updated", 2, 21)


def test_a_restart_sends_the_update_that_was_pending_and_opens_the_unannounced() -> None:
    alerts = [_alert(n, f"i{n}", n, [f"p{n}"]) for n in range(10)]
    first, sent, _ = _publisher(interval=60)
    first.observe(alerts[:4])
    first.observe(alerts[4:])  # within the interval: pending, never sent (the process died)
    assert [(m.kind, m.incident.alerts) for m in sent] == [("opened", 4)]
    other = _alert(50, "x", 3, ["z"], route=1)  # an incident the first run never announced
    _, resent, _ = _restart([*alerts, other], _topic(sent))
    assert sorted((m.kind, m.sequence, m.incident.alerts) for m in resent) == [
        ("opened", 0, 1),
        ("updated", 1, 10),
    ]
    opened = next(m for m in resent if m.kind == "opened")
    assert opened.evidence is not None and opened.evidence.alert_id == other.alert_id


def test_the_replay_keeps_each_alerts_latest_revision() -> None:
    """The alerts topic before compaction: an alert withdrawn later leaves its incident."""
    a, b = _alert(1, "a", 1, ["p"]), _alert(2, "b", 2, ["q"])
    withdrawn = b.model_copy(update={"status": "withdrawn"})
    _, resent, _ = _restart([a, b, a, withdrawn], {})
    ((kind, incident),) = [(m.kind, m.incident) for m in resent]
    assert (kind, incident.alerts, incident.people, incident.example) == ("opened", 1, 1, "a0001")


def test_latest_messages_keep_the_last_per_key_and_skip_what_is_not_ours() -> None:
    alerts = [_alert(1, "a", 1, ["p"])]
    first, sent, _ = _publisher(interval=0)
    first.observe(alerts)
    first.observe([_alert(2, "b", 2, ["q"])])
    records = [SimpleNamespace(key=m.key, value=m.body(), topic="t", partition=0, offset=n)
               for n, m in enumerate(sent)]  # fmt: skip
    records.append(SimpleNamespace(key=b"junk", value=b"not json", topic="t", partition=0,
                                   offset=9))  # fmt: skip
    records.append(SimpleNamespace(key=None, value=None, topic="t", partition=0, offset=10))
    (only,) = latest_messages(iter([records[:1], records[1:]])).items()
    assert only[0] == sent[-1].incident.incident_id and only[1].sequence == 1
