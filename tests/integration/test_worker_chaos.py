"""The real worker (``lineage worker`` in a subprocess) against real Kafka and Neo4j, under
shutdown, outages and poison.

This module starts its own Kafka and Neo4j with ``services/svc`` (own state directory, own
ports): the shared servers are never stopped, and other people's test runs, which empty the
shared graph, cannot disturb the graph comparisons here. Neo4j goes "down" through
:class:`Gate`, a TCP proxy in this process that can be cut (its port refuses connections and
open ones are closed, which is what a stopped server looks like to the driver); Kafka goes down
for real (the private broker is stopped by its pid, and started again on the same state).

What must hold: a batch is committed only once applied, the worker waits outages out (bounded,
logged retries), a SIGTERM lets the batch in hand finish or commits nothing, a permanently
failing event is dead-lettered with its reason while everything else is applied, and after a
restart the graph equals a clean run's, with every alert published.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from lineage.events import Event, IdentifierErased
from lineage.inbound import InboundParser
from streams.consumer_group import processor_group_id
from streams.projector import RETRY_BUDGET_S
from tests.conftest import require_service
from tests.integration.conftest import ROOT, Pipeline, Reference, Services

pytestmark = [pytest.mark.kafka, pytest.mark.neo4j]
SVC = ROOT / "services" / "svc"

#: How long Neo4j stays away in the outage test (the issue asks for two minutes; set
#: LINEAGE_CHAOS_NEO4J_DOWN_S lower for a quick local run). Must stay under the retry budget.
NEO4J_DOWN_S = float(os.environ.get("LINEAGE_CHAOS_NEO4J_DOWN_S", "120"))
assert NEO4J_DOWN_S < RETRY_BUDGET_S


class Gate:
    """A TCP proxy to ``target`` that can be cut (``down``) and restored (``up``)."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self.up()

    def up(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def down(self) -> None:
        """Refuse new connections and drop the open ones."""
        if self._listener is not None:
            with contextlib.suppress(OSError):  # wakes the accepting thread (close would not)
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        with self._lock:
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self._open.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed by down()
            try:
                server = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            with self._lock:
                self._open |= {client, server}
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class PrivateServices:
    """Kafka and Neo4j of this test module's own, started by ``services/svc`` in their own
    state directory, on their own ports: the shared servers are never stopped, and other
    people's tests (which empty the shared graph) cannot touch this module's graph. Stopped
    by their own pids only."""

    def __init__(self, state: Path) -> None:
        self.state = state
        kafka, controller, bolt = _free_port(), _free_port(), _free_port()
        self.password = secrets.token_urlsafe(16)
        self.env = {
            **os.environ,
            "LINEAGE_SERVICES_DIR": str(state),
            "LINEAGE_KAFKA_PORT": str(kafka),
            "LINEAGE_KAFKA_CONTROLLER_PORT": str(controller),
            "LINEAGE_NEO4J_BOLT_PORT": str(bolt),
            "LINEAGE_NEO4J_PASSWORD": self.password,
        }
        self.services = Services(
            bootstrap=f"127.0.0.1:{kafka}",
            neo4j_uri=f"bolt://127.0.0.1:{bolt}",
            neo4j_user="neo4j",
            neo4j_password=self.password,
        )

    def start(self, name: str) -> None:
        subprocess.run(
            ["bash", str(SVC), "start", name],
            env=self.env,
            check=True,
            capture_output=True,
            timeout=300,
        )

    def stop(self, name: str) -> None:
        pid_file = self.state / name / f"{name}.pid"
        if not pid_file.exists():
            return
        pid = int(pid_file.read_text().strip())
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 60
        while Path(f"/proc/{pid}").exists():
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
            time.sleep(0.2)
        pid_file.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def private(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateServices]:
    require_service("LINEAGE_KAFKA_BOOTSTRAP")  # like every service test: skip, or fail in CI
    own = PrivateServices(tmp_path_factory.mktemp("private-services"))
    try:
        own.start("kafka")
        own.start("neo4j")
        yield own
    finally:
        own.stop("kafka")
        own.stop("neo4j")


@pytest.fixture(scope="module")
def services(private: PrivateServices) -> Services:
    """This module's pipelines run on the private servers."""
    return private.services


@pytest.fixture
def gate(services: Services) -> Iterator[Gate]:
    host_port = services.neo4j_uri.split("://", 1)[1]
    host, port = host_port.rsplit(":", 1)
    proxy = Gate((host, int(port)))
    yield proxy
    proxy.down()


def through(pipeline: Pipeline, gate: Gate) -> None:
    """The workers started from now on reach Neo4j through the gate."""
    pipeline.env["LINEAGE_NEO4J_URI"] = f"bolt://127.0.0.1:{gate.port}"


def wait_for(condition: object, what: str, pipeline: Pipeline, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, (
            f"timed out waiting for {what}:\n{pipeline.worker_output()}"
        )
        time.sleep(0.05)


def assert_clean(pipeline: Pipeline, reference: Reference) -> None:
    assert pipeline.store.snapshot() == reference.snapshot
    published = pipeline.published_alert_ids()
    assert set(published) == {alert.alert_id for alert in reference.alerts}
    assert pipeline.store.unpublished_alerts() == []
    assert "Traceback" not in pipeline.worker_output()


def test_sigterm_mid_batch_then_restart_gives_the_clean_graph(
    pipeline: Pipeline, case_events: list[Event], reference: Reference
) -> None:
    pipeline.produce(case_events)
    worker = pipeline.start_worker()
    wait_for(
        lambda: pipeline.cypher("MATCH (i:Identifier) RETURN i LIMIT 1"),
        "the first batch",
        pipeline,
    )
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0  # the batch in hand finished, then a clean exit
    committed, total = pipeline.lag()
    assert committed < total, "the whole log was applied before the signal: nothing to test"
    assert "finishing the batch in hand" in pipeline.worker_output()

    pipeline.start_worker()
    pipeline.wait_caught_up()
    assert_clean(pipeline, reference)


def test_neo4j_outage_is_waited_out_and_nothing_is_committed_meanwhile(
    pipeline: Pipeline, gate: Gate, case_events: list[Event], reference: Reference
) -> None:
    half = len(case_events) // 2
    through(pipeline, gate)
    pipeline.produce(case_events[:half])
    pipeline.start_worker()
    pipeline.wait_caught_up()

    gate.down()
    pipeline.produce(case_events[half:])
    down_at = time.monotonic()
    wait_for(lambda: "retrying in" in pipeline.worker_output(), "a logged retry", pipeline)
    while time.monotonic() - down_at < NEO4J_DOWN_S:
        assert pipeline.workers[-1].poll() is None, pipeline.worker_output()
        assert pipeline.lag()[0] == half  # nothing acknowledged while Neo4j is away
        time.sleep(1)
    gate.up()
    pipeline.wait_caught_up()
    assert pipeline.workers[-1].poll() is None
    assert_clean(pipeline, reference)


def test_sigterm_during_an_outage_commits_nothing(
    pipeline: Pipeline, gate: Gate, case_events: list[Event], reference: Reference
) -> None:
    through(pipeline, gate)
    pipeline.produce(case_events[:10])
    worker = pipeline.start_worker()
    pipeline.wait_caught_up()
    gate.down()
    pipeline.produce(case_events[10:])
    wait_for(lambda: "retrying in" in pipeline.worker_output(), "a logged retry", pipeline)
    signalled = time.monotonic()
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0
    assert time.monotonic() - signalled < 20  # the retry wait ends at the signal
    assert pipeline.lag()[0] == 10
    assert "was not committed" in pipeline.worker_output()

    gate.up()
    pipeline.start_worker()
    pipeline.wait_caught_up()
    assert_clean(pipeline, reference)


def test_a_permanently_failing_event_is_dead_lettered_and_the_rest_applied(
    pipeline: Pipeline, parser: InboundParser, case_events: list[Event], reference: Reference
) -> None:
    """The erasure of an identifier whose stored node is corrupt (its ``erasures`` a string,
    as a stray manual edit could leave it) makes Neo4j refuse the write with a real client
    error (a mixed-type list property): only that event may go, with the server's code."""
    erasure = parser.parse_record(
        {
            "type": "IdentifierErased",
            "event_id": "poison-erasure-1",
            "event_time": "2020-01-01T00:00:00Z",
            "producer": "privacy",
            "identifier": {"email": "corrupt.node@example.com"},
        },
        datetime.now(UTC),
    )
    assert isinstance(erasure, IdentifierErased)
    ref = erasure.identifier.ref
    pipeline.cypher(
        "CREATE (:Identifier {ref: $ref, category: 'email', display: 'c***@example.com', "
        "erasures: 'corrupt'})",
        ref=ref,
    )
    middle = len(case_events) // 2
    pipeline.produce([*case_events[:middle], erasure, *case_events[middle:]])
    pipeline.start_worker()
    pipeline.wait_caught_up()
    assert pipeline.workers[-1].poll() is None

    (letter,) = pipeline.read_topic(pipeline.settings.deadletter_topic)
    headers = dict(letter.headers)
    assert headers["reason"] == (
        b"apply failed: refused by the graph store (Neo.ClientError.Statement.TypeError)"
    )
    assert headers["origin"].startswith(pipeline.settings.events_topic.encode() + b":")
    assert b"poison-erasure-1" in letter.value
    assert letter.key == ref.encode()
    pipeline.cypher("MATCH (i:Identifier {ref: $ref}) DETACH DELETE i", ref=ref)
    assert_clean(pipeline, reference)


# -- Kafka down ---------------------------------------------------------------------------------

#: How long the private broker stays down (the issue asks for one minute).
KAFKA_DOWN_S = float(os.environ.get("LINEAGE_CHAOS_KAFKA_DOWN_S", "60"))


def test_kafka_outage_mid_stream_is_waited_out(
    pipeline: Pipeline, private: PrivateServices, case_events: list[Event], reference: Reference
) -> None:
    pipeline.produce(case_events)
    worker = pipeline.start_worker()
    wait_for(
        lambda: pipeline.cypher("MATCH (i:Identifier) RETURN i LIMIT 1"),
        "the first batch",
        pipeline,
    )
    private.stop("kafka")
    time.sleep(KAFKA_DOWN_S)  # the worker's batch in hand cannot be published
    assert worker.poll() is None, pipeline.worker_output()
    private.start("kafka")
    pipeline.wait_caught_up()
    assert worker.poll() is None
    assert_clean(pipeline, reference)


#: The producer's own timeouts in the stuck-producer test: a batch expires well within the outage.
SHORT_PRODUCER = {"delivery_timeout_ms": 8_000, "request_timeout_ms": 3_000}
OUTLET_OUTAGE_S = 15.0
#: After the broker is back, sends must go through again within this long.
RECOVERY_S = 30.0


def test_a_producer_stuck_after_an_outage_is_replaced(private: PrivateServices) -> None:
    """The CI failure of stop 22: a batch expired while the broker was away, and kafka-python's
    idempotent producer then timed out on every send with the broker back, until the worker's
    retry budget ran out. The outlet sends each retry through a new producer, so sends go
    through again soon after the broker's return. The loop is the worker's: send, wait for the
    acks, retry with backoff; the timeouts are short so that a batch expires during the outage."""
    from runtime.settings import Settings
    from streams.projector import KafkaOutlet, Retry

    topic = f"outlet-{secrets.token_hex(4)}.alerts"
    outlet = KafkaOutlet(
        Settings(kafka_bootstrap=private.services.bootstrap),
        incidents=False,
        producer_config=SHORT_PRODUCER,
        timeout_s=4.0,
    )
    retry = Retry(budget_s=OUTLET_OUTAGE_S + 120.0, max_s=1.0)
    sent: list[float] = []
    failures: list[BaseException] = []

    def send_loop() -> None:
        n = 0
        try:
            while not retry.stop.is_set():
                records = [(f"{n}-{i}".encode(), b"x" * 200, None) for i in range(50)]
                retry("publishing", outlet.send, topic, records, "publish alerts")
                sent.append(time.monotonic())
                n += 1
                time.sleep(0.05)
        except BaseException as exc:  # reported by the test
            failures.append(exc)

    sender = threading.Thread(target=send_loop, daemon=True)
    sender.start()
    kafka_down = False
    try:
        deadline = time.monotonic() + 30
        while len(sent) < 5:
            assert not failures and time.monotonic() < deadline, failures
            time.sleep(0.1)
        private.stop("kafka")
        kafka_down = True
        time.sleep(OUTLET_OUTAGE_S)
        private.start("kafka")
        kafka_down = False
        back = time.monotonic()
        while not [t for t in sent if t > back]:
            assert not failures, failures
            assert time.monotonic() - back < RECOVERY_S, (
                f"no send went through in {RECOVERY_S:.0f} s with the broker back "
                f"({outlet.renewals} producer renewal(s))"
            )
            time.sleep(0.2)
        assert outlet.renewals >= 1
    finally:
        retry.stop.set()
        sender.join(timeout=60)
        outlet.close()
        if kafka_down:
            private.start("kafka")


# -- the partitioned topology (``lineage processor`` + ``lineage sink``) ----------------------
def test_neo4j_outage_stops_only_the_sink(
    pipeline: Pipeline, gate: Gate, case_events: list[Event], reference: Reference
) -> None:
    """Neo4j away for ``NEO4J_DOWN_S``: the processors read no Neo4j, so they apply every
    event meanwhile; the sink waits the outage out and then writes the view of a clean run."""
    from tests.integration.test_partitioned_pipeline import (
        PROCESSOR,
        SINK,
        ScaleOut,
        assert_reference,
        partitioned,
    )

    scale = ScaleOut(partitioned(pipeline))
    through(pipeline, gate)
    half = len(case_events) // 2
    pipeline.produce(case_events[:half])
    scale.start("processor", PROCESSOR)
    scale.start("sink", SINK)
    scale.wait_done()

    gate.down()
    pipeline.produce(case_events[half:])
    down_at = time.monotonic()
    settings = pipeline.settings
    wait_for(
        lambda: (
            scale.lag(processor_group_id(settings), settings.events_topic)[0]
            == scale.lag(processor_group_id(settings), settings.events_topic)[1]
        ),
        "the processors to apply everything with Neo4j away",
        pipeline,
    )
    wait_for(lambda: "retrying in" in pipeline.worker_output(), "the sink's retry", pipeline)
    while time.monotonic() - down_at < NEO4J_DOWN_S:
        assert all(p.poll() is None for p in scale.processes.values()), pipeline.worker_output()
        time.sleep(1)
    gate.up()
    scale.wait_done()
    assert_reference(scale, reference)
    assert "Traceback" not in pipeline.worker_output()


def test_kafka_outage_is_waited_out_by_processor_and_sink(
    pipeline: Pipeline, private: PrivateServices, case_events: list[Event], reference: Reference
) -> None:
    from tests.integration.test_partitioned_pipeline import (
        PROCESSOR,
        SINK,
        ScaleOut,
        assert_reference,
        partitioned,
    )

    scale = ScaleOut(partitioned(pipeline))
    pipeline.produce(case_events)
    scale.start("processor", PROCESSOR)
    scale.start("sink", SINK)
    wait_for(
        lambda: pipeline.cypher("MATCH (i:Identifier) RETURN i LIMIT 1"),
        "the first changes in the view",
        pipeline,
    )
    private.stop("kafka")
    time.sleep(KAFKA_DOWN_S)
    assert all(p.poll() is None for p in scale.processes.values()), pipeline.worker_output()
    private.start("kafka")
    scale.wait_done()
    assert_reference(scale, reference)
