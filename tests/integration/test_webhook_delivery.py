"""``lineage webhook --follow`` against a real HTTP server that goes down and comes back.

Embedded mode, no mocks: the reference case is ingested into a home (its writers append every
alert revision to ``alerts.jsonl``), the follower is the real CLI in a subprocess, and the
receiver is ``http.server`` on 127.0.0.1 in a thread. While the receiver answers 503, then
hangs up after reading (the alert reached it but the answer did not: a duplicate to come),
then is not listening at all, more alerts are ingested: the ingest never waits for the
webhook, and once the receiver is back every alert revision arrives, signed, with duplicates
told apart only by ``Idempotency-Key``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from lineage.alerts import Alert, EvidenceStep
from lineage.reference_case import generate
from runtime.service import LineageService
from runtime.settings import Settings
from runtime.sinks import JsonlFileSink
from runtime.webhook import IDEMPOTENCY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from tests.conftest import require_service

ROOT = Path(__file__).resolve().parents[2]
SECRET = "integration-webhook-secret-0123456789"
KEY = "webhook-integration-key-0123456789"
WAIT_S = 90.0


@dataclass(frozen=True)
class Received:
    key: str | None
    timestamp: str | None
    signature: str | None
    body: bytes
    answered: int | None  # None: read, then hung up without an answer


class Receiver:
    """A webhook endpoint: ``mode`` is ``ok`` (200), ``unavailable`` (503) or ``hang-up``
    (reads the request, records it as received, closes the connection without answering)."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.delay_s = 0.0  # before answering
        self.received: list[Received] = []
        self.lock = threading.Lock()
        self.port = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                mode = receiver.mode
                answered = {"ok": 200, "unavailable": 503}.get(mode)
                with receiver.lock:
                    receiver.received.append(
                        Received(
                            self.headers.get(IDEMPOTENCY_HEADER),
                            self.headers.get(TIMESTAMP_HEADER),
                            self.headers.get(SIGNATURE_HEADER),
                            body,
                            answered,
                        )
                    )
                if answered is None:
                    self.close_connection = True
                    return
                time.sleep(receiver.delay_s)
                self.send_response(answered)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=10)

    def snapshot(self) -> list[Received]:
        with self.lock:
            return list(self.received)

    def accepted_keys(self) -> set[str]:
        return {r.key for r in self.snapshot() if r.answered == 200 and r.key}

    def count(self, mode_answer: int | None) -> int:
        return sum(1 for r in self.snapshot() if r.answered == mode_answer)


def _recorded_keys(alerts_jsonl: Path) -> set[str]:
    """Every alert revision the home's writers recorded."""
    keys = set()
    for line in alerts_jsonl.read_bytes().splitlines():
        alert = Alert.model_validate_json(line)
        keys.add(f"{alert.alert_id}:{alert.revision}")
    return keys


def _embedded(home: Path) -> Settings:
    """Embedded whatever the shell exports (the services' LINEAGE_* are removed as well by
    the ``embedded_environment`` fixture): never the shared Kafka topics or Neo4j."""
    return Settings(home=home, key=KEY, log="local", store="sqlite")


@pytest.fixture
def embedded_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("LINEAGE_")]:
        monkeypatch.delenv(name)


def _ingest(home: Path, seed: int, users: int = 40) -> float:
    """The reference case's small demo, recorded as the CLI records it (alerts.jsonl);
    returns the seconds it took."""
    lines = [json.dumps(r) for r in generate(users=users, seed=seed).records]
    started = time.monotonic()
    sink = JsonlFileSink(home / "alerts.jsonl")
    with LineageService.open(_embedded(home), [sink]) as service:
        report = service.ingest(lines, origin="demo")
        assert report.accepted == len(lines) and not report.rejected
    sink.close()
    return time.monotonic() - started


def _wait(condition: Callable[[], bool], what: str, follower: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if condition():
            return
        if follower.poll() is not None:
            pytest.fail(f"the follower exited ({follower.returncode}) while waiting for {what}")
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _env(home: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("LINEAGE_") and k.lower() not in ("http_proxy", "https_proxy")
    }
    return env | {
        "LINEAGE_HOME": str(home),
        "LINEAGE_KEY": KEY,
        "HOOK_SECRET": SECRET,
        "NO_PROXY": "127.0.0.1,localhost",
    }


@pytest.mark.usefixtures("embedded_environment")
def test_every_alert_arrives_signed_through_an_outage(tmp_path: Path, receiver: Receiver) -> None:
    home = tmp_path / "home"
    demo = subprocess.run(  # the CLI's writers append every alert revision to alerts.jsonl
        [sys.executable, "-m", "cli.main", "demo", "--users", "40", "--seed", "3", "--json"],
        cwd=ROOT,
        env=_env(home),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert demo.returncode == 0, demo.stderr
    assert json.loads(demo.stdout)["alerts"] > 0
    url = f"http://127.0.0.1:{receiver.port}/hooks/lineage?token=abc"
    command = [sys.executable, "-m", "cli.main", "webhook", url, "--secret-env", "HOOK_SECRET",
               "--send", "alerts"]  # fmt: skip
    options = ["--name", "it", "--follow", "--json", "--max-backoff", "0.2", "--poll", "0.1"]
    stdout, stderr = (tmp_path / "follower.out").open("wb"), (tmp_path / "follower.err").open("wb")
    follower = subprocess.Popen(
        [*command, *options], cwd=ROOT, env=_env(home), stdout=stdout, stderr=stderr
    )
    try:
        # 1. Everything recorded so far arrives.
        first = _recorded_keys(home / "alerts.jsonl")
        assert first
        _wait(lambda: receiver.accepted_keys() >= first, "the first alerts", follower)

        # 2. The endpoint answers 503 while new alerts are recorded: the ingest does not wait.
        receiver.mode = "unavailable"
        _ingest(home, seed=5)
        _wait(lambda: receiver.count(503) >= 3, "retries against a 503", follower)

        # 3. It reads the request but hangs up: the alert got there, the answer did not.
        receiver.mode = "hang-up"
        _wait(lambda: receiver.count(None) >= 2, "requests read without an answer", follower)

        # 4. Nothing listens at all while more alerts are recorded.
        receiver.stop()
        _ingest(home, seed=11)
        time.sleep(1.0)  # several connection-refused attempts

        # 5. Back: every alert revision ever recorded arrives.
        receiver.mode = "ok"
        receiver.start()
        everything = _recorded_keys(home / "alerts.jsonl")
        assert len(everything) > len(first)
        _wait(lambda: receiver.accepted_keys() >= everything, "every alert", follower)
    finally:
        follower.send_signal(signal.SIGTERM)
        try:
            follower.wait(timeout=30)
        finally:
            if follower.poll() is None:
                follower.kill()
            stdout.close()
            stderr.close()
    assert follower.returncode == 0, (tmp_path / "follower.err").read_text()[-3000:]

    received = receiver.snapshot()
    secret = SECRET.encode()
    for request in received:
        # Signed over the timestamp and the exact body; the key names the body's revision.
        assert verify(secret, request.timestamp, request.signature, request.body)
        assert not verify(
            b"another-secret-0123456789", request.timestamp, request.signature, request.body
        )
        alert = Alert.model_validate_json(request.body)
        assert request.key == f"{alert.alert_id}:{alert.revision}"
    # The same key always carries the same alert: deduplicating by key loses nothing...
    by_key: dict[str, set[bytes]] = {}
    for request in received:
        assert request.key is not None
        by_key.setdefault(request.key, set()).add(request.body)
    assert all(len(bodies) == 1 for bodies in by_key.values())
    # ... and there were duplicates to tell apart (a hung-up request was sent again).
    hung_up = {r.key for r in received if r.answered is None}
    assert hung_up and hung_up <= receiver.accepted_keys()
    processed = [r.key for r in received if r.answered in (200, None)]
    assert len(processed) > len(set(processed))
    assert receiver.accepted_keys() == everything

    # The latest revision of every alert of the home is what the receiver keeps.
    with LineageService.open(_embedded(home), writer=False) as service:
        final = service.alerts()
    kept: dict[str, Alert] = {}
    for request in received:
        alert = Alert.model_validate_json(request.body)
        if alert.alert_id not in kept or kept[alert.alert_id].revision < alert.revision:
            kept[alert.alert_id] = alert
    assert {a.alert_id: a for a in final} == {a.alert_id: kept[a.alert_id] for a in final}

    # One line per retry on stderr; JSON lines on stdout, the summary last.
    err = (tmp_path / "follower.err").read_text()
    assert "HTTP 503" in err and "Connection refused" in err
    out = [json.loads(line) for line in (tmp_path / "follower.out").read_text().splitlines()]
    summary = out[-1]["summary"]
    assert summary["stopped"] and summary["retries"] >= 5
    assert {d["delivered"] for d in out if "delivered" in d} == everything
    cursor = home / "webhook.it.offset"
    assert cursor.stat().st_mode & 0o777 == 0o600
    assert json.loads(cursor.read_text())["offset"] == (home / "alerts.jsonl").stat().st_size

    # A new run with the same name has nothing left to send.
    again = subprocess.run(
        [*command, "--name", "it", "--once", "--json"],
        cwd=ROOT,
        env=_env(home),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout.splitlines()[-1])["summary"]["delivered"] == 0


@pytest.mark.usefixtures("embedded_environment")
def test_a_killed_follower_resumes_from_its_cursor(tmp_path: Path, receiver: Receiver) -> None:
    """SIGKILL at any moment (here: mid-backlog, POSTs under way) loses nothing: the next
    run starts after the last alert whose POST succeeded *and* was recorded in the cursor."""
    home = tmp_path / "home"
    _ingest(home, seed=3)
    everything = _recorded_keys(home / "alerts.jsonl")
    receiver.delay_s = 0.02
    url = f"http://127.0.0.1:{receiver.port}/hook"
    command = [sys.executable, "-m", "cli.main", "webhook", url, "--secret-env", "HOOK_SECRET",
               "--send", "alerts"]  # fmt: skip
    follower = subprocess.Popen(
        [*command, "--follow", "--json"],
        cwd=ROOT,
        env=_env(home),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait(lambda: len(receiver.accepted_keys()) >= 10, "some deliveries", follower)
    finally:
        follower.kill()
        follower.wait(timeout=30)
    assert receiver.accepted_keys() < everything  # killed mid-backlog
    receiver.delay_s = 0.0
    rest = subprocess.run(
        [*command, "--once", "--json"],
        cwd=ROOT,
        env=_env(home),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert rest.returncode == 0, rest.stderr
    assert receiver.accepted_keys() == everything
    keys = [r.key for r in receiver.snapshot()]
    assert len(keys) - len(set(keys)) <= 1  # at most the one in flight when killed


# -- Kafka: the alerts topic in the follower's own consumer group -----------------------------
def _synthetic_alert(number: int, revision: int = 0) -> Alert:
    at = datetime(2014, 1, 1, tzinfo=UTC)
    return Alert(
        alert_id=f"{number:032x}",
        revision=revision,
        rule="security-to-ads",
        severity="high",
        identifier="f" * 64,
        category="email",
        display="u***@example.net",
        origin_dataset="auth:contact_points",
        origin_purpose="essential.service.security",
        use_dataset="ads:matchable_identifiers",
        use_job="tailored-audiences-matcher",
        use_purpose="marketing.advertising.third_party.targeted",
        occurred_at=at,
        evidence=[EvidenceStep(kind="collected", event_id=f"c-{number}", at=at, dataset="a:b")],
    )


def _publish(settings: Settings, alerts: list[Alert]) -> set[str]:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    try:
        for alert in alerts:
            producer.send(
                settings.alerts_topic,
                key=alert.alert_id.encode(),
                value=alert.model_dump_json().encode(),
            )
        producer.flush(timeout=30)
    finally:
        producer.close()
    return {f"{a.alert_id}:{a.revision}" for a in alerts}


@pytest.mark.kafka
def test_kafka_alerts_reach_the_webhook_after_an_outage(tmp_path: Path, receiver: Receiver) -> None:
    from streams.kafka_log import ensure_topics

    run = f"it-wh-{uuid.uuid4().hex[:10]}"
    settings = Settings(
        kafka_bootstrap=require_service("LINEAGE_KAFKA_BOOTSTRAP"),
        events_topic=f"{run}.events",
        alerts_topic=f"{run}.alerts",
        deadletter_topic=f"{run}.deadletter",
        key=KEY,
        home=tmp_path / "home",
    )
    ensure_topics(settings)
    env = _env(settings.home) | {
        "LINEAGE_KAFKA_BOOTSTRAP": str(settings.kafka_bootstrap),
        "LINEAGE_EVENTS_TOPIC": settings.events_topic,
        "LINEAGE_ALERTS_TOPIC": settings.alerts_topic,
        "LINEAGE_DEADLETTER_TOPIC": settings.deadletter_topic,
    }
    url = f"http://127.0.0.1:{receiver.port}/hook"
    command = [sys.executable, "-m", "cli.main", "webhook", url, "--secret-env", "HOOK_SECRET",
               "--send", "alerts"]  # fmt: skip
    options = ["--name", run, "--json", "--max-backoff", "0.2", "--poll", "0.2"]

    first = _publish(settings, [_synthetic_alert(n) for n in range(30)])
    receiver.mode = "unavailable"
    stdout, stderr = (tmp_path / "follower.out").open("wb"), (tmp_path / "follower.err").open("wb")
    follower = subprocess.Popen(
        [*command, *options, "--follow"], cwd=ROOT, env=env, stdout=stdout, stderr=stderr
    )
    try:
        _wait(lambda: receiver.count(503) >= 3, "retries against a 503", follower)
        receiver.mode = "ok"
        _wait(lambda: receiver.accepted_keys() >= first, "the first alerts", follower)
        second = _publish(settings, [_synthetic_alert(n, revision=1) for n in range(0, 30, 3)])
        _wait(lambda: receiver.accepted_keys() >= first | second, "the revisions", follower)
    finally:
        follower.send_signal(signal.SIGTERM)
        try:
            follower.wait(timeout=30)
        finally:
            if follower.poll() is None:
                follower.kill()
            stdout.close()
            stderr.close()
    assert follower.returncode == 0, (tmp_path / "follower.err").read_text()[-3000:]
    for request in receiver.snapshot():
        assert verify(SECRET.encode(), request.timestamp, request.signature, request.body)
        alert = Alert.model_validate_json(request.body)
        assert request.key == f"{alert.alert_id}:{alert.revision}"

    # The group's commits are the cursor: a later run sends only what came since.
    third = _publish(settings, [_synthetic_alert(n) for n in range(100, 105)])
    before = len(receiver.snapshot())
    again = subprocess.run(
        [*command, *options, "--once"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert again.returncode == 0, again.stderr
    assert {r.key for r in receiver.snapshot()[before:]} == third
    assert json.loads(again.stdout.splitlines()[-1])["summary"]["delivered"] == len(third)
