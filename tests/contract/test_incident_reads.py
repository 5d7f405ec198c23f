"""The incident reads (``incident_members``, ``incident_watermark``, ``incident_actions`` and
``record_incident_actions``): every store gives what ``lineage.incidents`` computes from its
alerts, and officers' actions are kept once however often they are recorded."""

from __future__ import annotations

from datetime import timedelta

from graph.store import GraphStore
from lineage.events import Event, IncidentAcknowledged, IncidentResolved, micros
from lineage.identifiers import DATASET_LEVEL_SUBJECT
from lineage.incidents import action_of, fold, member_of, people_total
from lineage.policy import Policy
from lineage.report import tally
from tests import factories as f
from tests.contract.test_report_reads import history

QUIET = timedelta(days=30)


def _sorted(members: list) -> list:  # type: ignore[type-arg]
    return sorted(members, key=lambda m: m.alert_id)


def test_members_are_the_active_alerts_with_their_people(
    store: GraphStore, policy: Policy
) -> None:
    history(store, policy)
    alerts = store.alerts()
    members = store.incident_members(None)
    assert _sorted(members) == _sorted([member_of(a) for a in alerts])
    assert people_total(members) == tally(alerts).people
    cut = micros(f.at(24))
    early = [member_of(a) for a in alerts if micros(a.occurred_at) <= cut]
    assert early and _sorted(store.incident_members(cut)) == _sorted(early)
    assert store.incident_watermark(None) == micros(f.at(24 * 400))
    assert store.incident_watermark(micros(f.at(1))) == micros(f.at(1))
    found = fold(members, [], QUIET, store.incident_watermark(None))
    assert sum(i.alerts for i in found) == len(alerts)
    assert {i.status for i in found} == {"open", "resolved"}  # hour 2 is long quiet at day 400


def test_actions_are_kept_once_per_event(store: GraphStore, policy: Policy) -> None:
    history(store, policy)
    assert store.incident_actions() == []
    (first, *_) = fold(store.incident_members(None), [], QUIET, None)
    common = {"producer": "test", "incident_id": first.incident_id, "by": "dpo"}
    ack = IncidentAcknowledged(event_id="ack-1", event_time=f.at(24 * 500),
                               observed_time=f.at(24 * 500), why="seen", **common)  # fmt: skip
    res = IncidentResolved(event_id="res-1", event_time=f.at(24 * 501),
                           observed_time=f.at(24 * 501), why="fixed", **common)  # fmt: skip
    store.record_incident_actions([ack])
    store.record_incident_actions([ack, res])
    assert store.incident_actions() == [action_of(ack), action_of(res)]
    again = fold(store.incident_members(None), store.incident_actions(), QUIET, None)
    assert next(i for i in again if i.incident_id == first.incident_id).status == "resolved"


def test_an_identifier_without_account_is_one_person(store: GraphStore, policy: Policy) -> None:
    from lineage.tracker import Tracker

    Tracker(store, policy).apply(
        [
            f.collected("c1", "ds", "auth:db", f.SECURITY, 0),
            f.flowed("f1", "auth:db", "ads:t", 1),
            f.used("u1", "ads:t", f.ADS, 2),
        ]
    )
    (member,) = store.incident_members(None)
    assert not member.dataset_level and member.people == (f"identifier:{member.identifier}",)
    assert DATASET_LEVEL_SUBJECT not in member.people


def test_an_action_before_or_after_its_alerts_gives_the_same_incident(
    store: GraphStore, policy: Policy
) -> None:
    """Order independence: the worker may apply an officer's action (its own partition) before
    the events whose alerts it covers; the incident is the same as in log order."""
    from graph.sqlite_store import SqliteStore
    from lineage.event_identity import claims_of
    from lineage.tracker import Tracker

    lineage: list[Event] = [
        f.collected("c1", "ds", "auth:db", f.SECURITY, 0),
        f.flowed("f1", "auth:db", "ads:t", 1),
        f.used("u1", "ads:t", f.ADS, 2),
    ]
    reference = SqliteStore(":memory:")
    Tracker(reference, policy).apply(lineage)
    (incident,) = fold(reference.incident_members(None), [], QUIET, None)
    ack = IncidentAcknowledged(event_id="ack-1", event_time=f.at(5), observed_time=f.at(5),
                               producer="test", incident_id=incident.incident_id, by="dpo",
                               why="seen")  # fmt: skip
    Tracker(reference, policy).apply([ack])

    tracker = Tracker(store, policy)
    tracker.apply_claimed([(ack, claims_of(ack))])  # the worker's path, before the alerts
    tracker.apply(lineage[2:])
    tracker.apply(lineage[:2])

    def incidents(of: GraphStore) -> list[dict[str, object]]:
        found = fold(of.incident_members(None), of.incident_actions(), QUIET, None)
        return [i.as_json() for i in found]

    assert incidents(store) == incidents(reference)
    assert [(i["status"], i["acknowledged_by"]) for i in incidents(store)] == [
        ("acknowledged", "dpo")
    ]
    # a later violation is not covered by the acknowledge: open again, in either order
    later: list[Event] = [
        f.collected("c2", "ds2", "auth:db", f.SECURITY, 6),
        f.flowed("f2", "auth:db", "ads:t", 6.5, who=["ds2"]),
        f.used("u2", "ads:t", f.ADS, 7, who=["ds2"]),
    ]
    for target in (store, reference):
        Tracker(target, policy).apply(later)
    assert incidents(store) == incidents(reference)
    assert [i["status"] for i in incidents(store)] == ["open"]
