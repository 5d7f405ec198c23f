"""Embedded mode end to end: durable log and projection, reopen, replay, malformed input."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import pytest

from lineage.alerts import Alert
from lineage.errors import ConfigurationError
from lineage.reference_case import generate
from runtime.service import LineageService
from runtime.settings import Settings

KEY = "embedded-test-key-0123456789"


def _open(home: Path) -> LineageService:
    return LineageService.open(Settings(home=home, key=KEY))


@pytest.fixture(scope="module")
def case_lines() -> list[str]:
    return [json.dumps(r) for r in generate(users=150, seed=3).records]


def test_replay_into_an_empty_graph_reproduces_graph_and_alerts(
    tmp_path: Path, case_lines: list[str]
) -> None:
    with _open(tmp_path) as service:
        report = service.ingest(case_lines)
        assert report.accepted == len(case_lines) and not report.rejected
        snapshot, alerts = service.store.snapshot(), service.alerts()
        assert alerts
        replayed = service.replay()
        assert replayed.events == len(case_lines)
        assert service.store.snapshot() == snapshot
        assert service.alerts() == alerts
        assert replayed.summary == service.report()
        assert replayed.summary.alerts == len(alerts)


def test_reopen_finds_the_graph_the_log_implies(tmp_path: Path, case_lines: list[str]) -> None:
    with _open(tmp_path) as service:
        service.ingest(case_lines)
        snapshot = service.store.snapshot()
        alerts = service.alerts()
    assert not (tmp_path / "graph.pickle").exists()
    with _open(tmp_path) as service:
        assert service.store.snapshot() == snapshot
        service.replay()
        assert service.store.snapshot() == snapshot
        assert [a.content() for a in service.alerts()] == [a.content() for a in alerts]


def test_reingest_is_idempotent(tmp_path: Path, case_lines: list[str]) -> None:
    with _open(tmp_path) as service:
        service.ingest(case_lines)
        snapshot = service.store.snapshot()
        again = service.ingest(case_lines)
        assert (again.accepted, again.duplicates, again.alerts) == (0, len(case_lines), [])
        assert service.store.snapshot() == snapshot


def test_replay_until_gives_the_state_as_of_then(tmp_path: Path, case_lines: list[str]) -> None:
    with _open(tmp_path) as service:
        service.ingest(case_lines[:200])
        assert service.local_log is not None
        cutoff = max(e.observed_time for _, e in service.local_log.read())
        partial = service.store.snapshot()
        service.ingest(case_lines[200:])
        assert service.store.snapshot() != partial
        service.replay(observed_until=cutoff)
        assert service.store.snapshot() == partial
        complete_alerts = len(service.alerts())
    with _open(tmp_path) as service:  # the next writer catches up with the rest of the log
        assert service.store.snapshot() != partial
        assert len(service.alerts()) >= complete_alerts


GOOD = {
    "type": "IdentifierCollected",
    "event_time": "2015-01-01T00:00:00Z",
    "producer": "auth",
    "dataset": "auth:contact_points",
    "purpose": "essential.service.authentication",
    "identifier": {"email": "Good.Person@example.com"},
}


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("{not json", "not valid JSON"),
        (json.dumps({k: v for k, v in GOOD.items() if k != "dataset"}), "dataset: Field required"),
        (
            json.dumps({**GOOD, "purpose": "essential.service.authentification"}),
            "unknown purpose 'essential.service.authentification'; closest known: "
            "essential.service.authentication",
        ),
        (json.dumps({**GOOD, "identifier": {"phone": "+1 555 01"}}), "invalid phone number"),
        (json.dumps({**GOOD, "identifier": {"email": "nobody"}}), "invalid email"),
        (json.dumps({**GOOD, "event_time": "2015-01-01T00:00:00"}), "timezone"),
        (json.dumps({**GOOD, "type": "Teleported"}), "does not match any of the expected tags"),
        (json.dumps([1, 2]), "JSON object"),
    ],
)
def test_malformed_lines_are_rejected_and_good_ones_kept(
    tmp_path: Path, line: str, reason: str
) -> None:
    lines = [json.dumps({**GOOD, "event_id": "g1"}), line, json.dumps({**GOOD, "event_id": "g2"})]
    with _open(tmp_path) as service:
        report = service.ingest(lines)
        assert report.accepted == 2
        (rejection,) = report.rejected
        assert rejection.line == 2 and reason in rejection.reason
        assert "good.person" not in rejection.reason.lower()
        assert service.local_log is not None
        (letter,) = service.local_log.dead_letters()
        assert letter.raw == line.encode() and reason in letter.reason


def test_a_reused_event_id_with_other_content_is_rejected(tmp_path: Path) -> None:
    first = json.dumps({**GOOD, "event_id": "same"})
    other = json.dumps({**GOOD, "event_id": "same", "purpose": "essential.fraud_detection"})
    with _open(tmp_path) as service:
        assert service.ingest([first]).accepted == 1
        again = service.ingest([first, other, first])
        assert (again.accepted, again.duplicates) == (0, 2)
        (rejection,) = again.rejected
        assert rejection.line == 2 and "reused with other content" in rejection.reason
        assert service.local_log is not None and service.local_log.count() == 1


def test_production_without_a_key_fails_loudly(tmp_path: Path) -> None:
    from lineage.errors import ConfigurationError

    settings = Settings(home=tmp_path, neo4j_uri="bolt://127.0.0.1:1")
    with pytest.raises(ConfigurationError, match="pseudonymization key"):
        settings.pseudonymization_key()
    assert Settings(home=tmp_path).pseudonymization_key() == (tmp_path / "key").read_bytes()
    assert (tmp_path / "key").stat().st_mode & 0o077 == 0


class Collecting:
    """A sink that remembers what it was sent (the test's stand-in for a consumer)."""

    def __init__(self) -> None:
        self.sent: list[Alert] = []

    def emit(self, alerts: Sequence[Alert]) -> None:
        self.sent.extend(alerts)

    def close(self) -> None:
        pass


def test_replay_after_a_policy_change_delivers_what_sinks_have_not_seen(
    tmp_path: Path, case_lines: list[str]
) -> None:
    home = tmp_path / "home"
    first = Collecting()
    with LineageService.open(Settings(home=home, key=KEY), [first]) as service:
        service.ingest(case_lines)
    before = {a.alert_id: a for a in first.sent}
    assert before

    stricter = tmp_path / "policy.toml"
    stricter.write_text(
        (Path("lineage/data/policy.toml").read_text())
        + '\n[[rule]]\nid = "security-origin-to-fraud-models"\nseverity = "high"\n'
        'description = "test"\norigins = ["essential.service.security"]\n'
        'forbidden_uses = ["essential.fraud_detection"]\n'
    )
    second = Collecting()
    settings = Settings(home=home, key=KEY, policy_file=stricter)
    with LineageService.open(settings, [second], rebuilding=True) as service:
        service.replay()
        now = {a.alert_id: a for a in service.alerts()}
    new_rule = [a for a in now.values() if a.rule == "security-origin-to-fraud-models"]
    assert new_rule, "the stricter policy must find violations the old one did not"
    assert {a.alert_id for a in second.sent} == {a.alert_id for a in new_rule}
    assert all(a.revision == 0 for a in second.sent)
    assert all(now[aid].revision == before[aid].revision for aid in before)

    third = Collecting()
    with LineageService.open(Settings(home=home, key=KEY), [third], rebuilding=True) as service:
        service.replay()  # back to the default policy: the extra alerts no longer hold
        assert {a.alert_id for a in service.alerts()} == set(before)
    assert {a.alert_id for a in third.sent} == {a.alert_id for a in new_rule}
    assert all(a.status == "withdrawn" and a.revision == 1 for a in third.sent)


def test_the_home_is_private_wal_and_shm_included(tmp_path: Path, case_lines: list[str]) -> None:
    home = tmp_path / "home"
    with _open(home) as service:
        service.ingest(case_lines[:50])
        files = sorted(p.name for p in home.iterdir())
        assert {"events.db", "events.db-wal", "events.db-shm", "lock"} <= set(files)
        modes = {p.name: p.stat().st_mode & 0o777 for p in home.iterdir()}
    assert home.stat().st_mode & 0o777 == 0o700
    assert set(modes.values()) == {0o600}, modes


def test_a_home_of_the_old_format_is_refused_until_replay_rebuilds_it(
    tmp_path: Path, case_lines: list[str]
) -> None:
    home = tmp_path / "home"
    with _open(home) as service:
        service.ingest(case_lines)
        alerts = [a.content() for a in service.alerts()]
    db = sqlite3.connect(home / "events.db")  # what the pickle-checkpoint version left behind
    db.execute("DELETE FROM meta")
    db.commit()
    db.close()
    (home / "graph.pickle").write_bytes(b"not loaded, ever")
    with pytest.raises(ConfigurationError, match="lineage replay"):
        _open(home)
    settings = Settings(home=home, key=KEY)
    with LineageService.open(settings, rebuilding=True) as service:
        service.replay()
    assert not (home / "graph.pickle").exists()
    with _open(home) as service:
        assert [a.content() for a in service.alerts()] == alerts


class _Recorder:
    def __init__(self) -> None:
        self.alerts: list[Alert] = []

    def emit(self, alerts: Sequence[Alert]) -> None:
        self.alerts.extend(alerts)

    def close(self) -> None:
        pass


def test_a_process_that_only_appends_leaves_the_outbox_to_the_worker(
    tmp_path: Path, case_lines: list[str]
) -> None:
    """``lineage ingest --kafka`` appends and the worker applies: the store's outbox (alerts
    the worker committed and has not sent to Kafka yet) is the worker's to drain. Marking them
    published from the appending process would lose them for the alerts topic."""
    from graph.sqlite_store import SqliteStore
    from lineage.tracker import Tracker
    from runtime.recording import AppendOnly
    from runtime.wiring import build_policy, build_pseudonymizer
    from streams.local_log import LocalEventLog

    with _open(tmp_path / "source") as source:
        source.ingest(case_lines)
    settings = Settings(home=tmp_path / "source", key=KEY)
    read = LocalEventLog(tmp_path / "source" / "events.db", read_only=True)
    events = [event for _, event in read.read()]
    read.close()
    store = SqliteStore(":memory:")
    tracker = Tracker(store, build_policy(settings))
    tracker.apply(events)  # the worker's unit, committed; its alerts not yet sent
    waiting = store.unpublished_alerts(10_000)
    assert waiting
    log = LocalEventLog(tmp_path / "appended.db")
    recorder = _Recorder()
    service = LineageService(
        settings, store, log, tracker, AppendOnly(log), build_pseudonymizer(settings), [recorder]
    )
    report = service.ingest(case_lines[:20])
    assert report.accepted == 20
    assert recorder.alerts == []
    assert store.unpublished_alerts(10_000) == waiting
    log.close()
