"""The producer side on the real broker (issue 8), no mocks: ``lineage ingest --kafka`` with a
line over Kafka's 1 MiB limit, ``lineage dead-letters`` reading the dead-letter topic masked,
and a broker outage during ``ingest --kafka`` (on a private broker this test starts and stops:
the shared one is never touched).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from graph.sqlite_store import SqliteStore
from lineage.events import parse_event
from lineage.inbound import MAX_LINE_BYTES
from lineage.policy import Policy
from lineage.tracker import Tracker
from runtime.service import LineageService
from runtime.settings import Settings
from streams.kafka_log import EVENT_MAX_BYTES, crc32c_accelerated
from streams.topics import (
    DEADLETTER_MAX_BYTES,
    ORIGIN_HEADER,
    PART_HEADER,
    REASON_HEADER,
    TRUNCATED_HEADER,
)
from tests.conftest import TEST_KEY, require_service, without_lineage_settings
from tests.integration.test_svc_start import (
    ROOT,
    SVC,
    free_ports,
    require_installed_kafka,
    stop_private_kafka,
)

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(300)]

CLI = [sys.executable, "-m", "cli.main"]
RAW_EMAIL = "Jane.Roe@Example.com"


def record(n: int, **extra: Any) -> str:
    return json.dumps(
        {
            "type": "IdentifierCollected",
            "event_time": "2015-01-01T00:00:00Z",
            "producer": "auth-service",
            "dataset": "auth:contact_points",
            "purpose": "essential.service.security",
            "identifier": {"email": f"user{n}@example.com"},
            "subject": f"account-{n}",
            **extra,
        }
    )


def cli_env(bootstrap: str, run: str, tmp_path: Path) -> dict[str, str]:
    """The CLI's settings as an operator sets them: its own topics, the shared Neo4j (the
    Kafka-mode service opens it, the producer writes nothing there)."""
    env = without_lineage_settings()
    return env | {
        "LINEAGE_KAFKA_BOOTSTRAP": bootstrap,
        "LINEAGE_EVENTS_TOPIC": f"{run}.events",
        "LINEAGE_ALERTS_TOPIC": f"{run}.alerts",
        "LINEAGE_DEADLETTER_TOPIC": f"{run}.deadletter",
        "LINEAGE_KEY": TEST_KEY.decode(),
        "LINEAGE_HOME": str(tmp_path / "home"),
        "LINEAGE_NEO4J_URI": require_service("LINEAGE_NEO4J_URI"),
        "LINEAGE_NEO4J_USER": os.environ.get("LINEAGE_NEO4J_USER", "neo4j"),
        "LINEAGE_NEO4J_PASSWORD": require_service("LINEAGE_NEO4J_PASSWORD"),
    }


def read_topic(bootstrap: str, topic: str) -> list[Any]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    try:
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        ends = consumer.end_offsets(parts)
        found: list[Any] = []
        deadline = time.monotonic() + 30
        while any(consumer.position(tp) < ends[tp] for tp in parts):
            assert time.monotonic() < deadline, f"could not read {topic} to its end"
            for batch in consumer.poll(timeout_ms=500).values():
                found += batch
        return found
    finally:
        consumer.close()


def topic_size(bootstrap: str, topic: str) -> int:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    try:
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        return sum(consumer.end_offsets(parts).values()) if parts else 0
    finally:
        consumer.close()


def test_kafka_python_uses_the_crc32c_extension() -> None:
    """kafka-python checks record-batch CRCs with the crc32c package (a dependency) when it is
    importable; without it, in pure Python (measured ~10x slower consuming)."""
    from kafka.record import util

    assert crc32c_accelerated()
    assert util._crc32c is util.crc32c_c


class TestOnTheSharedBroker:
    @pytest.fixture
    def env(self, tmp_path: Path) -> dict[str, str]:
        bootstrap = require_service("LINEAGE_KAFKA_BOOTSTRAP")
        return cli_env(bootstrap, f"in-{uuid.uuid4().hex[:10]}", tmp_path)

    def run(self, env: dict[str, str], *args: str, stdin: bytes | None = None) -> Any:
        return subprocess.run(
            [*CLI, *args], cwd=ROOT, env=env, input=stdin, capture_output=True, timeout=120
        )

    def test_a_2mb_line_is_dead_lettered_truncated_and_ingest_goes_on(
        self, env: dict[str, str], tmp_path: Path
    ) -> None:
        huge = record(1, padding="x" * 2_000_000)
        source = tmp_path / "events.jsonl"
        source.write_text("\n".join([record(0), huge, record(2)]) + "\n")
        result = self.run(env, "ingest", str(source), "--kafka", "--json")
        assert result.returncode == 0, result.stderr.decode()[-3000:]
        report = json.loads(result.stdout)
        assert report["accepted"] == 2
        assert [r["line"] for r in report["rejected"]] == [2]
        assert report["rejected"][0]["reason"].startswith("record too large: 2,000,")
        assert b"Traceback" not in result.stderr

        bootstrap = env["LINEAGE_KAFKA_BOOTSTRAP"]
        (letter,) = read_topic(bootstrap, env["LINEAGE_DEADLETTER_TOPIC"])
        headers = dict(letter.headers)
        original = len(huge.encode())
        assert len(letter.value) == DEADLETTER_MAX_BYTES
        assert letter.value == huge.encode()[:DEADLETTER_MAX_BYTES]
        assert headers[TRUNCATED_HEADER] == str(original).encode()
        assert headers[REASON_HEADER].startswith(b"record too large")
        assert headers[ORIGIN_HEADER] == f"{source}:2".encode()
        assert len(read_topic(bootstrap, env["LINEAGE_EVENTS_TOPIC"])) == 2

    def test_a_flow_over_the_message_limit_goes_in_parts_and_gives_the_same_graph(
        self, env: dict[str, str], tmp_path: Path, policy: Policy, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The reference case's first weekly sync lists 11,777 identifiers at 60k users: 1.4 MB
        once pseudonymized. It goes to the topic in parts under its own event_id, and the
        graph projected from the topic equals the embedded one from the same file."""
        users = 9_000
        emails = [{"email": f"user{n}@example.com"} for n in range(users)]
        lines = [record(n) for n in range(users)]
        lines.append(json.dumps({
            "type": "DataFlowed", "event_id": "weekly-sync-1",
            "event_time": "2015-01-08T00:00:00Z", "producer": "ads-platform",
            "source": "auth:contact_points", "target": "ads:matchable", "job": "identity-sync",
            "identifiers": emails,
        }))  # fmt: skip
        lines.append(json.dumps({
            "type": "DataUsed", "event_time": "2015-01-09T00:00:00Z", "producer": "ads-platform",
            "dataset": "ads:matchable", "job": "audiences-matcher",
            "purpose": "marketing.advertising.third_party.targeted",
        }))  # fmt: skip
        assert len(lines[-2].encode()) < MAX_LINE_BYTES  # the raw line is accepted
        source = tmp_path / "events.jsonl"
        source.write_text("\n".join(lines) + "\n")
        result = self.run(env, "ingest", str(source), "--kafka", "--json")
        assert result.returncode == 0, result.stderr.decode()[-3000:]
        assert json.loads(result.stdout)["accepted"] == users + 2

        messages = read_topic(env["LINEAGE_KAFKA_BOOTSTRAP"], env["LINEAGE_EVENTS_TOPIC"])
        events = [parse_event(message.value) for message in messages]
        parts = [m for m, e in zip(messages, events, strict=True) if e.event_id == "weekly-sync-1"]
        assert len(parts) >= 2
        assert all(len(m.value) <= EVENT_MAX_BYTES for m in parts)
        count = len(parts)
        assert sorted(dict(m.headers)[PART_HEADER] for m in parts) == sorted(
            f"{i}/{count}".encode() for i in range(1, count + 1)
        )
        listed = [
            ref.ref for e in events if e.event_id == "weekly-sync-1"
            for ref in e.identifiers or ()  # type: ignore[union-attr]
        ]  # fmt: skip
        assert len(listed) == len(set(listed)) == users

        for name in [n for n in os.environ if n.startswith("LINEAGE_")]:
            monkeypatch.delenv(name)  # the comparison runs embedded, in this process
        from_topic = SqliteStore(":memory:")
        Tracker(from_topic, policy).apply(events)
        settings = Settings(home=tmp_path / "embedded", key=TEST_KEY.decode())
        with LineageService.open(settings) as embedded:
            assert embedded.ingest(lines).accepted == users + 2
            assert from_topic.snapshot() == embedded.store.snapshot()
            alerts = [a.content() for a in embedded.alerts()]
        assert len(alerts) == users
        assert [a.content() for a in from_topic.alerts()] == alerts

    def test_dead_letters_reads_the_topic_masked(self, env: dict[str, str], tmp_path: Path) -> None:
        pseudonymized = record(
            3, identifier={"category": "email", "ref": "ab" * 32, "display": RAW_EMAIL}
        )
        lines = [record(0), "{not json " + RAW_EMAIL, pseudonymized]
        source = tmp_path / "events.jsonl"
        source.write_text("\n".join(lines) + "\n")
        ingest = self.run(env, "ingest", str(source), "--kafka", "--json")
        assert ingest.returncode == 0, ingest.stderr.decode()[-3000:]
        assert [r["line"] for r in json.loads(ingest.stdout)["rejected"]] == [2, 3]
        # a hostile or older writer of the dead-letter topic, with a raw value in its reason
        producer = KafkaProducer(bootstrap_servers=env["LINEAGE_KAFKA_BOOTSTRAP"])
        producer.send(
            env["LINEAGE_DEADLETTER_TOPIC"],
            value=b"{}",
            headers=[
                (REASON_HEADER, f"bad identifier {RAW_EMAIL} / +1 415 555 0100".encode()),
                (ORIGIN_HEADER, b"other:0:12345678"),
            ],
        ).get(timeout=30)
        producer.close()

        shown = self.run(env, "dead-letters", "--json")
        assert shown.returncode == 0, shown.stderr.decode()[-3000:]
        entries = json.loads(shown.stdout)
        assert [e["origin"] for e in entries] == [
            f"{source}:2",
            f"{source}:3",
            "other:0:12345678",
        ]
        assert entries[0]["reason"].startswith("not valid JSON")
        assert entries[1]["reason"].startswith("identifier.display: not a masked form")
        assert entries[2]["reason"] == "bad identifier J***@Example.com / +***-***-0100"
        assert all(
            set(e) == {"id", "at", "origin", "reason", "bytes", "truncated_from"} for e in entries
        )
        for output in (shown.stdout, self.run(env, "dead-letters").stdout):
            assert RAW_EMAIL.lower().encode() not in output.lower()
            assert b"415 555" not in output
        human = self.run(env, "dead-letters").stdout.decode()
        assert human.strip().endswith(f"3 dead letter(s) on {env['LINEAGE_DEADLETTER_TOPIC']}.")

    def test_dead_letters_of_a_topic_never_written(self, env: dict[str, str]) -> None:
        shown = self.run(env, "dead-letters", "--json")
        assert shown.returncode == 0, shown.stderr.decode()[-3000:]
        assert json.loads(shown.stdout) == []


# -- a broker outage, on a private broker ------------------------------------------------------


class PrivateBroker:
    def __init__(self, state: Path) -> None:
        broker, controller, bolt = free_ports(3)
        self.state = state
        self.bootstrap = f"127.0.0.1:{broker}"
        self.env = without_lineage_settings()
        if "LINEAGE_SERVICES_CACHE" in os.environ:
            self.env["LINEAGE_SERVICES_CACHE"] = os.environ["LINEAGE_SERVICES_CACHE"]
        self.env |= {
            "LINEAGE_SERVICES_DIR": str(state),
            "LINEAGE_KAFKA_PORT": str(broker),
            "LINEAGE_KAFKA_CONTROLLER_PORT": str(controller),
            "LINEAGE_NEO4J_BOLT_PORT": str(bolt),
        }

    def start(self) -> None:
        result = subprocess.run(
            ["bash", str(SVC), "start", "kafka"],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=200,
        )
        assert result.returncode == 0, result.stderr[-3000:]

    def kill(self) -> None:
        """The outage: SIGKILL, as a crashed broker or a pulled cable looks to a producer."""
        pid = int((self.state / "kafka" / "kafka.pid").read_text().split()[0])
        assert str(self.state).encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.1)

    def stop(self) -> None:
        stop_private_kafka(self.state)


@pytest.fixture
def private_broker(tmp_path: Path) -> Iterator[PrivateBroker]:
    require_installed_kafka()
    broker = PrivateBroker(tmp_path / "services")
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.mark.slow
def test_broker_outage_during_ingest_reports_counts_in_one_line(
    private_broker: PrivateBroker, tmp_path: Path
) -> None:
    env = cli_env(private_broker.bootstrap, "outage", tmp_path) | {"LINEAGE_BATCH": "5"}
    ingest = subprocess.Popen(
        [*CLI, "ingest", "-", "--kafka"],
        cwd=ROOT,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert ingest.stdin is not None
    try:
        ingest.stdin.write("".join(record(n) + "\n" for n in range(10)).encode())
        ingest.stdin.flush()
        deadline = time.monotonic() + 60
        while topic_size(private_broker.bootstrap, "outage.events") < 10:
            assert ingest.poll() is None, ingest.communicate()[1].decode()[-3000:]
            assert time.monotonic() < deadline, "the first 10 events never arrived"
            time.sleep(0.2)

        private_broker.kill()
        started = time.monotonic()
        rest = "".join(record(n) + "\n" for n in range(10, 17)).encode()
        out, err = ingest.communicate(rest, timeout=150)  # writes, closes stdin, waits
    finally:
        if ingest.poll() is None:
            ingest.kill()
            ingest.wait()
    took = time.monotonic() - started
    lines = [line for line in err.decode().splitlines() if line.strip()]
    assert ingest.returncode == 2, err.decode()[-3000:]
    assert "Traceback" not in err.decode()
    assert len(lines) == 1, err.decode()[-3000:]
    (line,) = lines
    print(f"after {took:.1f} s: {line}")  # shown with -s / on failure
    assert line.startswith("error: Kafka stopped acknowledging at line 15: 10 event(s) sent, 5 ")
    assert "could not be delivered" in line
    assert out == b""
    assert took < 120, f"took {took:.0f} s to give up"

    # back up: the same records again are delivered (re-sent ones are no-ops for the graph)
    private_broker.start()
    again = subprocess.run(
        [*CLI, "ingest", "-", "--kafka", "--json"],
        cwd=ROOT,
        env=env,
        input="".join(record(n) + "\n" for n in range(17)).encode(),
        capture_output=True,
        timeout=120,
    )
    assert again.returncode == 0, again.stderr.decode()[-3000:]
    assert json.loads(again.stdout)["accepted"] == 17


@pytest.mark.slow
def test_an_unreachable_broker_is_one_line(tmp_path: Path) -> None:
    (port,) = free_ports(1)
    env = cli_env(f"127.0.0.1:{port}", "nowhere", tmp_path)
    result = subprocess.run(
        [*CLI, "ingest", "-", "--kafka"],
        cwd=ROOT,
        env=env,
        input=(record(0) + "\n").encode(),
        capture_output=True,
        timeout=120,
    )
    lines = [line for line in result.stderr.decode().splitlines() if line.strip()]
    assert result.returncode == 2
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr.decode()[-3000:]
