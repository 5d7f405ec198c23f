"""The production pipeline end to end, on the real broker and the real Neo4j (no mocks):
producer (kafka-python) -> events topic -> ``lineage worker`` (a subprocess) ->
Neo4j -> alerts topic. Each pipeline has its own topics and starts from an empty graph.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType
from kafka.errors import KafkaError

from lineage.alerts import Alert
from lineage.events import Event, IdentifierCollected, dump_event, parse_event
from lineage.identifiers import Pseudonymizer, guess_category
from lineage.inbound import InboundParser
from lineage.policy import Policy
from lineage.reference_case import (
    AD_PURPOSE,
    ADS,
    AUTH,
    BACKUP,
    MATCH_JOB,
    SECURITY_PURPOSES,
    SYNC_JOB,
    ReferenceCase,
)
from streams.alerts_follow import follow_alerts
from streams.consumer_group import projector_group_id
from streams.kafka_log import ensure_topics, partition_key
from streams.projector import OUTBOX_BATCH
from tests.integration.conftest import ROOT, Pipeline, Reference, reference_of

pytestmark = [pytest.mark.kafka, pytest.mark.neo4j, pytest.mark.timeout(180)]

LINEAGE = str(Path(sys.executable).parent / "lineage")
EMIT = [sys.executable, "-m", "cli.main", "emit", "--json"]
#: The design target is ~100 ms; the bound leaves room for a loaded CI machine.
LATENCY_BOUND_S = 2.0


class TestReferenceRun:
    """The synthetic reference case (150 users) projected by one worker into Neo4j."""

    def test_every_collected_identifier_is_a_node(
        self, reference_run: Pipeline, case_events: list[Event]
    ) -> None:
        expected = {e.identifier.ref for e in case_events if isinstance(e, IdentifierCollected)}
        rows = reference_run.cypher("MATCH (i:Identifier) RETURN i.ref AS ref")
        assert {row["ref"] for row in rows} == expected

    def test_security_identifiers_reached_ad_matching(
        self, reference_run: Pipeline, case: ReferenceCase, pseudonymizer: Pseudonymizer
    ) -> None:
        rows = reference_run.cypher(
            "MATCH (i:Identifier)-[c:COPY_IN]->(:Dataset {key: $ads}) "
            "WHERE c.origin IN $origins RETURN DISTINCT i.ref AS ref",
            ads=ADS,
            origins=[f"{purpose}@{AUTH}" for purpose in SECURITY_PURPOSES],
        )
        expected = {
            pseudonymizer.identifier(guess_category(raw), raw).ref
            for raw in case.truth.affected_identifiers
        }
        assert {row["ref"] for row in rows} == expected

    def test_graph_equals_a_clean_in_process_run(
        self, reference_run: Pipeline, reference: Reference
    ) -> None:
        assert reference_run.store.snapshot() == reference.snapshot

    def test_first_alert_has_its_evidence_path_in_the_graph(
        self, reference_run: Pipeline, case: ReferenceCase
    ) -> None:
        first = reference_run.store.alerts()[0]
        collected, flowed, used = first.evidence
        assert first.occurred_at == case.truth.first_violation
        assert (collected.kind, collected.dataset) == ("collected", AUTH)
        assert collected.purpose in SECURITY_PURPOSES
        assert (flowed.kind, flowed.source, flowed.dataset, flowed.job) == (
            "flowed",
            AUTH,
            ADS,
            SYNC_JOB,
        )
        assert (used.kind, used.job, used.purpose) == ("used", MATCH_JOB, AD_PURPOSE)
        rows = reference_run.cypher(
            "MATCH (:Alert {alert_id: $id})-[:ABOUT]->(i:Identifier) "
            "MATCH (i)-[c:COLLECTED_INTO]->(:Dataset {key: $auth}) "
            "MATCH (i)-[f:CARRIED_TO {job: $sync}]->(:Dataset {key: $ads}) "
            "MATCH (i)-[u:USED_IN {job: $match}]->(:Purpose {key: $ad}) "
            "RETURN c.event_id AS c, f.event_id AS f, u.event_id AS u",
            id=first.alert_id,
            auth=AUTH,
            ads=ADS,
            sync=SYNC_JOB,
            match=MATCH_JOB,
            ad=AD_PURPOSE,
        )
        paths = {(row["c"], row["f"], row["u"]) for row in rows}
        assert (collected.event_id, flowed.event_id, used.event_id) in paths

    def test_affected_people_match_the_ground_truth(
        self, reference_run: Pipeline, case: ReferenceCase
    ) -> None:
        rows = reference_run.cypher(
            "MATCH (:Alert)-[:ABOUT]->(:Identifier)-[:BELONGS_TO]->(s:Subject) "
            "RETURN count(DISTINCT s) AS affected"
        )
        assert rows == [{"affected": len(case.truth.affected_subjects)}]

    def test_alerts_topic_carries_every_stored_alert_once(
        self, reference_run: Pipeline, reference: Reference
    ) -> None:
        published = reference_run.published_alert_ids()
        stored = {alert.alert_id for alert in reference_run.store.alerts()}
        assert len(published) == len(set(published))
        assert set(published) == stored == {alert.alert_id for alert in reference.alerts}
        assert reference_run.store.unpublished_alerts() == []

    def test_follow_alerts_yields_the_published_alerts(self, reference_run: Pipeline) -> None:
        followed = follow_alerts(reference_run.settings, from_beginning=True, timeout_s=5)
        assert {alert.alert_id for alert in followed} == set(reference_run.published_alert_ids())

    def test_trace_cli_finds_a_demo_email_in_neo4j(
        self, reference_run: Pipeline, case: ReferenceCase, pseudonymizer: Pseudonymizer
    ) -> None:
        email = min(raw for raw in case.truth.affected_identifiers if "@" in raw)
        result = subprocess.run(
            [LINEAGE, "trace", email, "--json"],
            cwd=ROOT,
            env=reference_run.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        assert email.lower() not in (result.stdout + result.stderr).lower()
        trace = json.loads(result.stdout)
        assert trace["identifier"]["ref"] == pseudonymizer.identifier("email", email).ref
        violations = [
            use["violates"]
            for origin in trace["origins"]
            if origin["origin"]["purpose"] in SECURITY_PURPOSES
            for node in _nodes(origin["root"])
            if node["dataset"] == ADS
            for use in node["uses"]
            if use["purpose"] == AD_PURPOSE
        ]
        assert violations and all(violations)

    def test_incidents_cli_on_neo4j_adds_up_to_the_ground_truth(
        self, reference_run: Pipeline, case: ReferenceCase, reference: Reference
    ) -> None:
        from lineage.incidents import incident_id, key_of, people_total

        result = subprocess.run(
            [LINEAGE, "incidents", "--json", "--all"],
            cwd=ROOT,
            env=reference_run.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        found = json.loads(result.stdout)
        assert found["people"] == len(case.truth.affected_subjects)
        assert found["people"] == people_total(reference_run.store.incident_members(None))
        ids = {incident_id(key_of(alert)) for alert in reference.alerts}
        assert {i["incident_id"] for i in found["incidents"]} == ids
        assert sum(i["alerts"] for i in found["incidents"]) == len(reference.alerts)
        first = min(datetime.fromisoformat(i["first_violation"]) for i in found["incidents"])
        last = max(datetime.fromisoformat(i["last_violation"]) for i in found["incidents"])
        assert (first, last) == (case.truth.first_violation, case.truth.last_violation)


def _nodes(node: dict[str, Any]) -> list[dict[str, Any]]:
    return [node, *(n for child in node["children"] for n in _nodes(child))]


def test_redelivered_events_change_nothing(
    pipeline: Pipeline, case_events: list[Event], reference: Reference
) -> None:
    pipeline.produce(case_events)
    pipeline.produce(case_events)
    pipeline.start_worker()
    pipeline.wait_caught_up()
    assert pipeline.lag() == (2 * len(case_events), 2 * len(case_events))
    assert pipeline.store.snapshot() == reference.snapshot
    published = pipeline.published_alert_ids()
    assert sorted(published) == sorted(alert.alert_id for alert in reference.alerts)


def test_a_killed_worker_resumes_without_loss(
    pipeline: Pipeline, case_events: list[Event], reference: Reference
) -> None:
    pipeline.produce(case_events)
    pipeline.start_worker()
    deadline = time.monotonic() + 60
    while not pipeline.cypher("MATCH (i:Identifier) RETURN i LIMIT 1"):
        assert time.monotonic() < deadline, pipeline.worker_output()
        time.sleep(0.05)
    pipeline.kill_worker()
    assert pipeline.workers[-1].returncode == -signal.SIGKILL
    committed, total = pipeline.lag()
    assert committed < total  # work was in flight: the restart must redeliver it

    pipeline.start_worker()
    pipeline.wait_caught_up()
    assert pipeline.store.snapshot() == reference.snapshot
    published = pipeline.published_alert_ids()
    assert set(published) == {alert.alert_id for alert in reference.alerts}
    # At-least-once: only a kill between Kafka's ack and mark_published re-sends, one batch.
    assert len(published) - len(set(published)) <= OUTBOX_BATCH
    assert max(Counter(published).values()) <= 2


def test_cli_ingest_to_kafka_feeds_the_worker(
    pipeline: Pipeline, case: ReferenceCase, reference: Reference, tmp_path: Path
) -> None:
    """`lineage ingest FILE --kafka` (raw records, bad lines among them) -> worker -> Neo4j."""
    source = tmp_path / "events.jsonl"
    lines = [json.dumps(record) for record in case.records]
    source.write_text("\n".join([*lines[:10], "{broken", *lines[10:]]) + "\n")
    ingested = subprocess.run(
        [sys.executable, "-m", "cli.main", "ingest", str(source), "--kafka", "--json"],
        cwd=ROOT,
        env=pipeline.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert ingested.returncode == 0, ingested.stderr
    result = json.loads(ingested.stdout)
    assert result["accepted"] == len(lines)
    assert [r["line"] for r in result["rejected"]] == [11]
    assert result["alerts"] == 0  # producing only: the worker raises them
    pipeline.start_worker()
    pipeline.wait_caught_up()
    assert pipeline.store.snapshot() == reference.snapshot
    assert set(pipeline.published_alert_ids()) == {a.alert_id for a in reference.alerts}
    (letter,) = pipeline.read_topic(pipeline.settings.deadletter_topic)
    assert letter.value == b"{broken"


#: Whole-dataset uses of the backup for ad targeting, spread over the history: each is keyed by
#: the backup dataset while collections are keyed by identifier, so two workers race on the
#: backup (one propagates a copy into it and reads its uses, the other adds a use and reads its
#: copies): only the store's locks make every violation found (graph/neo4j_store.py).
BACKUP_EXPORT_JOB = "warehouse-audience-export"


def _backup_exports(parser: InboundParser, count: int = 12) -> list[Event]:
    first, last = datetime(2013, 6, 1, tzinfo=UTC), datetime(2019, 6, 1, tzinfo=UTC)
    step = (last - first) / (count - 1)
    observed = datetime.now(UTC)
    return [
        parser.parse_record(
            {
                "type": "DataUsed",
                "event_id": f"backup-export-{n}",
                "event_time": (first + n * step).isoformat().replace("+00:00", "Z"),
                "producer": "warehouse",
                "dataset": BACKUP,
                "job": BACKUP_EXPORT_JOB,
                "purpose": AD_PURPOSE,
            },
            observed,
        )
        for n in range(count)
    ]


def test_two_workers_split_the_partitions_and_build_the_same_graph(
    pipeline: Pipeline, case_events: list[Event], parser: InboundParser, policy: Policy
) -> None:
    """Scale-out: two workers in one consumer group, each applying its partitions
    concurrently into the one Neo4j, end with exactly the graph and alerts of one worker,
    including the violations of whole-dataset uses racing with the copies they reach."""
    events = sorted(
        [*case_events, *_backup_exports(parser)], key=lambda e: (e.event_time, e.event_id)
    )
    reference = reference_of(events, policy)
    assert any(a.use_job == BACKUP_EXPORT_JOB for a in reference.alerts)
    pipeline.start_worker()
    pipeline.start_worker()
    group = projector_group_id(pipeline.settings)
    deadline = time.monotonic() + 90
    while True:
        try:
            info = pipeline.admin.describe_groups([group])[group]
        except KafkaError as exc:  # a fresh broker may still be electing the coordinator
            if not exc.retriable:
                raise
            info = {}
        if info.get("group_state") == "Stable" and len(info.get("members", [])) == 2:
            break
        assert time.monotonic() < deadline, f"group never had two members: {info}"
        time.sleep(0.5)
    pipeline.produce(events)
    pipeline.wait_caught_up()
    assert all(worker.poll() is None for worker in pipeline.workers), pipeline.worker_output()
    assert pipeline.store.snapshot() == reference.snapshot
    published = pipeline.published_alert_ids()
    assert set(published) == {alert.alert_id for alert in reference.alerts}
    stored = pipeline.store.alerts()
    assert [a.content() for a in stored] == [a.content() for a in reference.alerts]


def test_from_beginning_replays_the_log_into_an_emptied_graph(
    pipeline: Pipeline, case_events: list[Event], reference: Reference
) -> None:
    pipeline.produce(case_events)
    pipeline.start_worker()
    pipeline.wait_caught_up()
    pipeline.stop_workers()
    pipeline.cypher("CREATE (:Identifier {ref: 'stray', category: 'email'})")

    pipeline.start_worker(["--from-beginning"])
    deadline = time.monotonic() + 60
    while pipeline.cypher("MATCH (i:Identifier {ref: 'stray'}) RETURN i"):
        assert time.monotonic() < deadline, pipeline.worker_output()
        time.sleep(0.1)  # gone: the offsets were rewound, then the graph emptied
    pipeline.wait_caught_up()
    assert pipeline.store.snapshot() == reference.snapshot


def _probe_records() -> list[dict[str, Any]]:
    """A security phone copied into ad matching and used there: one violation."""
    phone = {"phone": "+1 650 253 0000"}
    return [
        {
            "type": "IdentifierCollected",
            "event_time": "2020-01-06T09:00:00Z",
            "producer": "auth-service",
            "dataset": AUTH,
            "purpose": SECURITY_PURPOSES[0],
            "identifier": phone,
            "subject": "acct-probe",
        },
        {
            "type": "DataFlowed",
            "event_time": "2020-01-06T10:00:00Z",
            "producer": "ads-platform",
            "source": AUTH,
            "target": ADS,
            "job": SYNC_JOB,
            "identifiers": [phone],
        },
        {
            "type": "DataUsed",
            "event_time": "2020-01-06T11:00:00Z",
            "producer": "ads-platform",
            "dataset": ADS,
            "job": MATCH_JOB,
            "purpose": AD_PURPOSE,
            "identifiers": [phone],
        },
    ]


def _emit(pipeline: Pipeline, record: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*EMIT, json.dumps(record)],
        cwd=ROOT,
        env=pipeline.env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_malformed_messages_are_dead_lettered_and_the_worker_goes_on(
    pipeline: Pipeline, parser: InboundParser, record_property: Any
) -> None:
    """Two bad messages first, then the probe (collection and flow through ``lineage emit``,
    the use appended here); its alert must arrive, which also measures the latency from the
    broker's ack of the violating use to the alert on the alerts topic, on an idle worker."""
    probe = [parser.parse_record(r, datetime.now(UTC)) for r in _probe_records()]
    collected = probe[0]
    assert isinstance(collected, IdentifierCollected)
    unknown_purpose = json.loads(dump_event(collected))
    unknown_purpose["purpose"] = "marketing.advertizing"
    bad = [b'{"type": "IdentifierCollected", "event_id": ', json.dumps(unknown_purpose).encode()]
    ensure_topics(pipeline.settings)
    producer = KafkaProducer(bootstrap_servers=pipeline.settings.kafka_bootstrap)
    for raw in bad:
        producer.send(pipeline.settings.events_topic, raw, key=partition_key(collected))
    producer.flush()
    producer.close()
    pipeline.start_worker()
    pipeline.wait_caught_up()

    alerts = _tail(pipeline, pipeline.settings.alerts_topic)
    for record in _probe_records()[:-1]:
        sent = _emit(pipeline, record)
        assert sent.returncode == 0, sent.stderr
        assert json.loads(sent.stdout)["sent"] is True
    pipeline.produce(probe[-1:])  # in-process, so the clock starts at the broker's ack
    acked_at = time.monotonic()
    alert = _next_alert(alerts, timeout_s=30)
    latency = time.monotonic() - acked_at
    alerts.close()
    record_property("alert_latency_ms", round(latency * 1000))
    print(f"event-to-alert latency: {latency * 1000:.0f} ms")

    assert alert.identifier == collected.identifier.ref
    assert latency < LATENCY_BOUND_S
    letters = pipeline.read_topic(pipeline.settings.deadletter_topic)
    headers = {letter.value: dict(letter.headers) for letter in letters}
    assert len(letters) == len(headers) == 2
    assert "JSON" in headers[bad[0]]["reason"].decode()
    assert headers[bad[1]]["reason"].decode().startswith("unknown purpose 'marketing.advertizing'")
    events_topic = pipeline.settings.events_topic.encode()
    assert all(h["origin"].startswith(events_topic + b":") for h in headers.values())


def test_emit_rejects_and_dead_letters_an_invalid_record(pipeline: Pipeline) -> None:
    record = {**_probe_records()[0], "identifier": {"phone": "not a phone"}}
    result = _emit(pipeline, record)
    assert result.returncode == 1
    assert "not a phone" not in result.stdout + result.stderr
    (letter,) = pipeline.read_topic(pipeline.settings.deadletter_topic)
    assert json.loads(letter.value) == record
    assert dict(letter.headers)["reason"].decode().startswith("invalid phone number")
    assert dict(letter.headers)["origin"] == b"emit"


def _tail(pipeline: Pipeline, topic: str) -> KafkaConsumer:
    """A consumer positioned at the current end of ``topic``: it sees only what comes next."""
    consumer = KafkaConsumer(bootstrap_servers=pipeline.settings.kafka_bootstrap, group_id=None)
    parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
    consumer.assign(parts)
    consumer.seek_to_end(*parts)
    for tp in parts:
        consumer.position(tp)  # resolve the lazy seek now, before anything is produced
    return consumer


def _next_alert(consumer: KafkaConsumer, timeout_s: float) -> Alert:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for batch in consumer.poll(timeout_ms=20).values():
            return Alert.model_validate_json(batch[0].value)
    raise AssertionError("no alert arrived")


def test_a_reused_event_id_is_dead_lettered_by_the_worker(
    pipeline: Pipeline, parser: InboundParser
) -> None:
    """The same id with other content, on another partition: the worker applies the first
    (the log's order) and dead-letters the second with the embedded log's reason; a re-send of
    the first is a no-op. Neo4j holds one collection under the id."""
    first, flow, use = (parser.parse_record(r, datetime.now(UTC)) for r in _probe_records())
    assert isinstance(first, IdentifierCollected)
    other_phone = parser.parse_record(
        {**_probe_records()[0], "identifier": {"phone": "+1 650 253 0001"}}, datetime.now(UTC)
    )
    reused = other_phone.model_copy(update={"event_id": first.event_id})
    pipeline.produce([first])
    pipeline.start_worker()
    pipeline.wait_caught_up()
    pipeline.produce([reused, first, flow, use])
    pipeline.wait_caught_up()

    (letter,) = pipeline.read_topic(pipeline.settings.deadletter_topic)
    assert letter.value == dump_event(reused).encode()
    reason = dict(letter.headers)["reason"].decode()
    assert reason == f"event id {first.event_id!r} reused with other content"
    rows = pipeline.cypher(
        "MATCH (i:Identifier)-[c:COLLECTED_INTO]->() WHERE c.event_id = $id RETURN i.ref AS ref",
        id=first.event_id,
    )
    assert rows == [{"ref": first.identifier.ref}]
    assert [a.identifier for a in pipeline.store.alerts()] == [first.identifier.ref]


def test_incidents_topic_carries_few_messages_keyed_by_incident(
    pipeline: Pipeline, case_events: list[Event]
) -> None:
    """Compacted, keyed by incident id: an opening message with one example per incident, then
    bounded updates (the default 60 s interval: none in a run this short), the pending ones
    flushed when the worker stops; the last message per incident has every alert."""
    from lineage.incidents import fold, people_total

    pipeline.produce(case_events)
    pipeline.start_worker()
    pipeline.wait_caught_up()
    pipeline.stop_workers()
    records = pipeline.read_topic(pipeline.settings.incidents_topic)
    alerts = pipeline.store.alerts()
    members = pipeline.store.incident_members(None)
    stored = {i.incident_id: i for i in fold(members, [], timedelta(days=30), None)}
    messages = [(r.key.decode(), json.loads(r.value)) for r in records]
    assert {key for key, _ in messages} == set(stored)
    assert all(key == body["incident"]["incident_id"] for key, body in messages)
    assert len(messages) <= 2 * len(stored) < len(alerts)
    opened = [body for _, body in messages if body["kind"] == "opened"]
    assert len(opened) == len(stored) and all(body["evidence"] for body in opened)
    last = {key: body["incident"] for key, body in messages}
    assert {k: (i["alerts"], i["people"]) for k, i in last.items()} == {
        k: (i.alerts, i.people) for k, i in stored.items()
    }
    assert people_total(members) > 0
    admin_configs = pipeline.admin.describe_configs(
        config_resources=[
            ConfigResource(ConfigResourceType.TOPIC, pipeline.settings.incidents_topic)
        ]
    )
    assert "compact" in str(admin_configs)


def _lineage_json(pipeline: Pipeline, *args: str) -> Any:
    result = subprocess.run(
        [LINEAGE, *args, "--json"], cwd=ROOT, env=pipeline.env, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_an_acknowledge_goes_through_the_topic_and_survives_a_rebuild(
    pipeline: Pipeline, case_events: list[Event]
) -> None:
    """`lineage ack-incident` in Kafka mode produces the action to the events topic (keyed by
    incident id); the worker records it in Neo4j; emptying the graph and projecting the topic
    again (`worker --from-beginning`) gives the same acknowledged incident."""
    pipeline.env["LINEAGE_INCIDENT_QUIET_DAYS"] = "100000"  # none resolves by itself
    pipeline.produce(case_events)
    pipeline.start_worker()
    pipeline.wait_caught_up()
    target = _lineage_json(pipeline, "incidents", "--all")["incidents"][0]["incident_id"]
    acked = _lineage_json(pipeline, "ack-incident", target, "--by", "dpo", "--why", "seen")
    expected = ("acknowledged", "dpo", "seen")
    assert (acked["status"], acked["acknowledged_by"], acked["why"]) == expected
    records = [r for r in pipeline.read_topic(pipeline.settings.events_topic)
               if b'"IncidentAcknowledged"' in r.value]  # fmt: skip
    assert [r.key for r in records] == [partition_key(parse_event(records[0].value))]
    assert records[0].key == target.encode()
    pipeline.wait_caught_up()  # the worker applied the action too
    deadline = time.monotonic() + 30
    while not pipeline.store.incident_actions():
        assert time.monotonic() < deadline, pipeline.worker_output()
        time.sleep(0.1)
    before = _lineage_json(pipeline, "incidents", "--all")
    pipeline.stop_workers()

    pipeline.store.clear()  # a lost graph: everything comes back from the topic
    assert pipeline.store.incident_actions() == []
    pipeline.start_worker(["--from-beginning"])
    pipeline.wait_caught_up()
    deadline = time.monotonic() + 30
    while not pipeline.store.incident_actions():
        assert time.monotonic() < deadline, pipeline.worker_output()
        time.sleep(0.1)
    after = _lineage_json(pipeline, "incidents", "--all")
    assert after == before
    mine = next(i for i in after["incidents"] if i["incident_id"] == target)
    assert (mine["status"], mine["acknowledged_by"], mine["why"]) == expected
