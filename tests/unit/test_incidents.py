"""Incidents (lineage/incidents.py): the fold over active alerts and officer actions, its
status rules, its payloads, and, on the demo, ``lineage incidents`` against the report."""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from cli.main import app
from lineage.alerts import Alert, EvidenceStep
from lineage.events import IncidentAcknowledged, IncidentEvent, IncidentResolved, micros
from lineage.identifiers import DATASET_LEVEL_SUBJECT
from lineage.incidents import (
    QUIET_PERIOD,
    Action,
    ActionKind,
    Incident,
    alertmanager_payload,
    fold,
    incident_id,
    key_of,
    member_of,
    pagerduty_event,
    people_total,
)
from lineage.incidents import (
    incident_id as iid_of,
)
from lineage.reference_case import generate
from lineage.report import tally
from runtime.home import database
from streams.local_log import LocalEventLog
from tests.conftest import TEST_KEY

T0 = datetime(2015, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1)
QUIET = timedelta(days=30)
SEC = "essential.service.authentication"
ADS = "marketing.advertising.third_party.targeted"


def _alert(n: int, ident: str, days: float, subjects: list[str], route: int = 0,
           origin: str = SEC) -> Alert:  # fmt: skip
    when = T0 + timedelta(days=days)
    hops = ["ads:t"] if route == 0 else ["mid:x", "ads:t"]
    evidence = [EvidenceStep(kind="collected", event_id=f"c{n}", at=when, dataset="auth:db",
                             purpose=origin)]  # fmt: skip
    evidence += [EvidenceStep(kind="flowed", event_id=f"f{n}{h}", at=when, dataset=h,
                              source="auth:db", job="sync") for h in hops]  # fmt: skip
    evidence.append(EvidenceStep(kind="used", event_id=f"u{n}", at=when, dataset="ads:t",
                                 job="matcher", purpose=ADS))  # fmt: skip
    return Alert(
        alert_id=f"a{n:04d}", rule="sec-to-ads", severity="high", identifier=ident,
        category="email", display="a***@example.com", subjects=subjects, origin_dataset="auth:db",
        origin_purpose=origin, use_dataset="ads:t", use_job="matcher", use_purpose=ADS,
        occurred_at=when, evidence=evidence,
    )  # fmt: skip


def _act(kind: ActionKind, days: float, target: str, n: int = 0) -> Action:
    when = micros(T0 + timedelta(days=days))
    return Action(f"e{kind}{n}", target, kind, "officer", "looked", when)


def _one(
    alerts: list[Alert], actions: Sequence[Action] = (), watermark_days: float | None = None
) -> Incident:
    mark = None if watermark_days is None else micros(T0 + timedelta(days=watermark_days))
    (found,) = fold([member_of(a) for a in alerts], actions, QUIET, mark)
    return found


ALERTS = [_alert(1, "i1", 3, ["p1"]), _alert(2, "i2", 1, []), _alert(3, "i3", 5, ["p1", "p2"])]
IID = iid_of(key_of(ALERTS[0]))


def test_one_incident_counts_people_like_the_report_and_dates_its_window() -> None:
    found = _one(ALERTS)
    assert (found.alerts, found.identifiers, found.people) == (3, 3, 3)  # p1, p2, identifier:i2
    assert found.first_violation == T0 + DAY and found.last_violation == T0 + 5 * DAY
    assert found.example == "a0002" and found.status == "open" and found.incident_id == IID
    assert found.people == tally(ALERTS).people


def test_dataset_level_pseudo_identifiers_are_no_person_and_no_identifier() -> None:
    found = _one([*ALERTS, _alert(4, "ds", 2, [DATASET_LEVEL_SUBJECT])])
    assert (found.alerts, found.identifiers, found.people) == (4, 3, 3)


def test_status_acknowledged_resolved_reopened_and_quiet_period() -> None:
    assert _one(ALERTS, [_act("acknowledge", 6, IID)]).status == "acknowledged"
    resolved = _one(ALERTS, [_act("acknowledge", 6, IID), _act("resolve", 7, IID)])
    assert (resolved.status, resolved.resolved_by, resolved.reopened) == ("resolved", "officer", 0)
    # an acknowledge before the last violation does not cover it
    assert _one(ALERTS, [_act("acknowledge", 4, IID)]).status == "open"
    # a violation after a resolve reopens the incident
    reopened = _one(ALERTS, [_act("resolve", 4, IID)])
    assert (reopened.status, reopened.reopened) == ("open", 1)
    # no violation for the quiet period: resolved, deterministically from event times
    assert _one(ALERTS, watermark_days=5 + 29).status == "open"
    quiet = _one(ALERTS, watermark_days=5 + 30)
    assert (quiet.status, quiet.resolved_by) == ("resolved", QUIET_PERIOD)
    assert quiet.resolved_at == T0 + 35 * DAY
    # a gap longer than the quiet period between violations was a resolution, then a reopen
    late = _one([*ALERTS, _alert(9, "i9", 100, ["p9"])], watermark_days=101)
    assert (late.status, late.reopened, late.people) == ("open", 1, 4)


def test_other_incidents_actions_do_not_apply() -> None:
    assert _one(ALERTS, [_act("resolve", 9, "0" * 32)]).status == "open"


people = st.sampled_from(["p1", "p2", "p3", "p4", DATASET_LEVEL_SUBJECT])


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 9), st.integers(0, 400), st.lists(people, max_size=2),
                  st.integers(0, 1), st.booleans()),
        min_size=1, max_size=25, unique_by=lambda t: t[0],
    ),
    st.randoms(use_true_random=False),
)
def test_fold_is_order_independent_and_people_equal_the_tally(
    rows: list[tuple[int, int, list[str], int, bool]], rng: random.Random
) -> None:
    alerts = []
    for n, days, owners, route, recovery in rows:
        owners = [DATASET_LEVEL_SUBJECT] if DATASET_LEVEL_SUBJECT in owners else owners
        origin = "essential.service.security" if recovery else SEC
        alerts.append(_alert(n, f"i{n}", days, sorted(set(owners)), route, origin))
    members = [member_of(a) for a in alerts]
    shuffled = members[:]
    rng.shuffle(shuffled)
    mark = micros(T0 + 200 * DAY)
    assert fold(members, [], QUIET, mark) == fold(shuffled, [], QUIET, mark)
    assert people_total(shuffled) == tally(alerts).people
    found = fold(members, [], QUIET, mark)
    assert sum(i.alerts for i in found) == len(alerts)
    assert len({i.incident_id for i in found}) == len(found)


def test_payloads_carry_no_raw_identifier_and_follow_the_tools_formats() -> None:
    incident = _one(ALERTS, [_act("acknowledge", 6, IID)])
    am = alertmanager_payload([incident])
    assert am["version"] == "4" and am["status"] == "firing" and am["groupKey"]
    (alert,) = am["alerts"]
    assert alert["labels"]["incident_id"] == IID and alert["endsAt"] == "0001-01-01T00:00:00Z"
    assert alert["startsAt"] == (T0 + DAY).isoformat()
    pd = pagerduty_event(incident, routing_key="R" * 32)
    assert (pd["event_action"], pd["dedup_key"]) == ("acknowledge", IID)
    assert set(pd["payload"]) >= {"summary", "source", "severity", "timestamp", "custom_details"}
    resolved = _one(ALERTS, watermark_days=60)
    assert pagerduty_event(resolved, "R" * 32)["event_action"] == "resolve"
    assert alertmanager_payload([resolved])["alerts"][0]["status"] == "resolved"
    text = json.dumps([am, pd])
    assert "example.com" not in text and "a***" not in text  # not even the masked form


def test_incident_id_is_a_digest_of_the_key() -> None:
    assert len(IID) == 32 and incident_id(key_of(ALERTS[1])) == IID
    assert iid_of(key_of(_alert(5, "i5", 1, [], route=1))) != IID


# -- on the demo ---------------------------------------------------------------------------------


def _cli(home: Path, **extra: str) -> CliRunner:
    unset = dict.fromkeys(
        ["LINEAGE_CONFIG", "LINEAGE_KAFKA_BOOTSTRAP", "LINEAGE_NEO4J_URI",
         "LINEAGE_STORE", "LINEAGE_LOG"]
    )  # fmt: skip
    # one key for both homes: the same pseudonyms, so the same alert ids and examples
    env = {"LINEAGE_HOME": str(home), "LINEAGE_KEY": TEST_KEY.decode(), **unset, **extra}
    return CliRunner(env=env)


def _json(cli: CliRunner, *args: str) -> Any:
    result = cli.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.stdout
    return json.loads(result.stdout)


def test_demo_incidents_add_up_to_the_reports_people_even_shuffled(tmp_path: Path) -> None:
    demo = _cli(tmp_path / "demo")
    _json(demo, "demo")
    report = _json(demo, "report")
    found = _json(demo, "incidents")
    assert report["affected_subjects"] == found["people"] == 1_440
    assert (found["total"], found["truncated"]) == (len(found["incidents"]), False)
    assert 1 <= found["total"] <= 5
    assert sum(i["alerts"] for i in found["incidents"]) == report["alerts"]
    assert sum(i["people"] for i in found["incidents"]) >= found["people"]  # some in two
    for i in found["incidents"]:
        for field in ("incident_id", "rule", "status", "route", "use_job", "people",
                      "identifiers", "first_violation", "last_violation"):  # fmt: skip
            assert field in i
    first = min(datetime.fromisoformat(i["first_violation"]) for i in found["incidents"])
    last = max(datetime.fromisoformat(i["last_violation"]) for i in found["incidents"])
    truth = generate().truth
    assert [first, last] == [truth.first_violation, truth.last_violation]
    assert {i["origin_purpose"] for i in found["incidents"]} == set(report_origins(found))
    # the fix stopped the violations long before the tracker's latest event: resolved
    assert {i["status"] for i in found["incidents"]} == {"resolved"}

    one = found["incidents"][0]
    detail = _json(demo, "incident", one["incident_id"][:12], "--limit", "7", "--page", "2")
    assert (detail["incident_id"], detail["total_alerts"]) == (one["incident_id"], one["alerts"])
    assert len(detail["alert_rows"]) == 7 and detail["truncated"] is True
    times = [r["occurred_at"] for r in detail["alert_rows"]]
    assert times == sorted(times)
    assert _cli(tmp_path / "demo").invoke(app, ["incident", "nope"]).exit_code == 1

    records = [json.dumps(r) for r in generate().records]
    random.Random(19).shuffle(records)
    shuffled = _cli(tmp_path / "shuffled")
    for part in range(3):
        source = tmp_path / f"part{part}.jsonl"
        source.write_text("\n".join(records[part::3]) + "\n")
        _json(shuffled, "ingest", str(source))
    assert _json(shuffled, "incidents") == found


def report_origins(found: dict[str, Any]) -> list[str]:
    return [i["origin_purpose"] for i in found["incidents"]]


def _logged_actions(home: Path) -> list[IncidentEvent]:
    """The officers' actions the home's event log holds (what ``lineage replay`` reads)."""
    log = LocalEventLog(database(home), read_only=True)
    try:
        return [e for _, e in log.read() if isinstance(e, IncidentAcknowledged | IncidentResolved)]
    finally:
        log.close()


def test_an_acknowledge_is_an_event_in_the_log_and_replay_keeps_who_and_why(
    tmp_path: Path,
) -> None:
    cli = _cli(tmp_path / "home", LINEAGE_INCIDENT_QUIET_DAYS="100000")
    _json(cli, "demo", "--users", "60")
    target = _json(cli, "incidents")["incidents"][0]["incident_id"]
    _json(cli, "ack-incident", target, "--by", "dpo@example.com", "--why", "looking at the sync")
    (logged,) = _logged_actions(tmp_path / "home")
    assert isinstance(logged, IncidentAcknowledged)
    assert (logged.incident_id, logged.by, logged.why) == (
        target, "dpo@example.com", "looking at the sync"
    )  # fmt: skip
    before = _json(cli, "incidents")
    _json(cli, "replay")  # empties the projection, incident_actions included, and re-applies
    after = _json(cli, "incidents")
    assert after == before
    mine = next(i for i in after["incidents"] if i["incident_id"] == target)
    assert (mine["status"], mine["acknowledged_by"], mine["why"]) == (
        "acknowledged", "dpo@example.com", "looking at the sync"
    )  # fmt: skip


def test_a_producer_cannot_send_an_officers_action(tmp_path: Path) -> None:
    """Officers' actions enter through ack-incident / resolve-incident (or the API's incident
    endpoints), not through ingest: the producers' schema does not have them."""
    from lineage.errors import InvalidEventError
    from lineage.identifiers import Pseudonymizer
    from lineage.inbound import InboundParser

    record = {"type": "IncidentAcknowledged", "event_time": "2020-01-01T00:00:00Z",
              "producer": "p", "incident_id": "0" * 32, "by": "x", "why": "y"}  # fmt: skip
    parser = InboundParser(Pseudonymizer(TEST_KEY))
    with pytest.raises(InvalidEventError, match="expected tags"):
        parser.parse_record(record, T0)


def test_an_officers_action_is_keyed_by_its_incident_on_kafka() -> None:
    from streams.kafka_log import partition_key

    ack = IncidentAcknowledged(event_id="a-1", event_time=T0, observed_time=T0, producer="p",
                               incident_id=IID, by="dpo", why="seen")  # fmt: skip
    assert partition_key(ack) == IID.encode()


def test_officers_acknowledge_and_resolve_and_replay_keeps_it(tmp_path: Path) -> None:
    cli = _cli(tmp_path / "home", LINEAGE_INCIDENT_QUIET_DAYS="100000")  # none resolves alone
    _json(cli, "demo", "--users", "120")
    found = _json(cli, "incidents")["incidents"]
    assert {i["status"] for i in found} == {"open"}
    target = found[0]["incident_id"]
    acked = _json(cli, "ack-incident", target[:10], "--by", "dpo", "--why", "looking")
    assert (acked["status"], acked["acknowledged_by"], acked["why"]) == (
        "acknowledged", "dpo", "looking"
    )  # fmt: skip
    done = _json(cli, "resolve-incident", target, "--by", "dpo", "--why", "sync fixed")
    assert (done["status"], done["resolved_by"], done["why"]) == ("resolved", "dpo", "sync fixed")
    _json(cli, "replay")
    after = {i["incident_id"]: i for i in _json(cli, "incidents")["incidents"]}
    assert after[target]["status"] == "resolved" and after[target]["acknowledged_by"] == "dpo"
    assert {i["status"] for k, i in after.items() if k != target} == {"open"}
    assert [type(e).__name__ for e in _logged_actions(tmp_path / "home")] == [
        "IncidentAcknowledged", "IncidentResolved"
    ]  # fmt: skip
    missing = cli.invoke(app, ["ack-incident", "f" * 32, "--by", "x", "--why", "y"])
    assert missing.exit_code == 1


def test_embedded_ingest_prints_incidents_beside_alerts_bounded_in_rate(tmp_path: Path) -> None:
    """``lineage ingest`` (embedded, text) prints each incident's messages, rate-bounded as on
    the incidents topic, after its alerts; ``LINEAGE_STDOUT_SEND`` picks alerts or incidents."""
    source = tmp_path / "demo.jsonl"
    source.write_text("\n".join(json.dumps(r) for r in generate(users=200).records) + "\n")

    def printed(home: str, **extra: str) -> list[str]:
        result = _cli(tmp_path / home, **extra).invoke(app, ["ingest", str(source)])
        assert result.exit_code == 0, result.stdout
        return result.stdout.splitlines()

    both = printed("both")
    alerts = [line for line in both if line.startswith("ALERT ")]
    incidents = [line for line in both if line.startswith("INCIDENT ")]
    found = _json(_cli(tmp_path / "both"), "incidents", "--all")
    assert len(alerts) == sum(i["alerts"] for i in found["incidents"]) > 100
    opened = [line.split()[2] for line in incidents if line.startswith("INCIDENT opened ")]
    assert sorted(opened) == sorted(i["incident_id"][:12] for i in found["incidents"])
    # the 60 s default interval: opened, then at most the update flushed at the end
    assert len(incidents) <= 2 * len(opened)
    assert both.index(incidents[0]) > both.index(alerts[0])  # never ahead of its alerts
    alerts_only = printed("a", LINEAGE_STDOUT_SEND="alerts")
    assert not any(line.startswith("INCIDENT ") for line in alerts_only)
    only = printed("i", LINEAGE_STDOUT_SEND="incidents", LINEAGE_INCIDENT_INTERVAL_SECONDS="0")
    assert not any(line.startswith("ALERT ") for line in only)
    # interval 0: one message per incident per unit that raised its alerts, still not per alert
    assert len(opened) <= len([x for x in only if x.startswith("INCIDENT ")]) < len(alerts)


def test_replay_keeps_an_action_an_older_home_recorded_outside_the_log(tmp_path: Path) -> None:
    """Before actions were logged, a home kept them only in ``incident_actions``; a replay
    (which empties that table) appends them to the log first, so none is lost."""
    from runtime.incidents import action_event
    from runtime.service import LineageService
    from runtime.settings import Settings

    cli = _cli(tmp_path / "home", LINEAGE_INCIDENT_QUIET_DAYS="100000")
    _json(cli, "demo", "--users", "40")
    target = _json(cli, "incidents")["incidents"][0]["incident_id"]
    old = action_event(target, "acknowledge", "dpo", "from before", datetime.now(UTC))
    settings = Settings(home=tmp_path / "home", key=TEST_KEY.decode(), log="local",
                        store="sqlite")  # fmt: skip
    with LineageService.open(settings) as service:
        service.store.record_incident_actions([old])  # the store only, as the old CLI did
    assert _logged_actions(tmp_path / "home") == []
    _json(cli, "replay")
    assert _logged_actions(tmp_path / "home") == [old]
    mine = next(i for i in _json(cli, "incidents")["incidents"] if i["incident_id"] == target)
    assert (mine["status"], mine["why"]) == ("acknowledged", "from before")
