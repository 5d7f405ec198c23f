"""Alert latency with an idle worker, beside a plain consume -> produce relay, in one run.

Needs the services' variables (``eval "$(services/svc env)"``); it empties that Neo4j database
and creates its own topics. Run: ``python -m bench.alert_latency --probes 200``.

Set-up: a whole-dataset sync from ``auth:contact_points`` to the ads table and a
Tailored-Audiences match of that table, both dated 2099, so every later security collection
into ``auth:contact_points`` is a violation. With ``lineage worker`` running and idle, each
probe produces one such collection (a new identifier) and waits for its alert on the alerts
topic: latency is from the producer's ``send`` to the alert's arrival at a consumer. The
baseline is the same path without the tracker: a separate process that consumes one topic and
produces every record to another (kafka-python, the worker's client), measured the same way.
Probes are spaced ``--gap`` seconds apart, so the worker is idle when each arrives.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError

from graph.neo4j_store import Neo4jStore
from lineage.events import dump_event
from lineage.identifiers import Pseudonymizer
from lineage.inbound import InboundParser
from streams.kafka_log import partition_key

ROOT = Path(__file__).resolve().parent.parent
KEY = "bench-key-0123456789abcdef"
AUTH = {"system": "auth", "name": "contact_points"}
ADS = {"system": "ads", "name": "matchable_identifiers"}


def _records() -> list[dict[str, Any]]:
    return [
        {"type": "DataFlowed", "event_id": "lat-sync", "event_time": "2099-01-01T00:00:00Z",
         "producer": "bench", "source": AUTH, "target": ADS, "job": "ads-identity-sync"},
        {"type": "DataUsed", "event_id": "lat-match", "event_time": "2099-01-02T00:00:00Z",
         "producer": "bench", "dataset": ADS, "job": "tailored-audiences-matcher",
         "purpose": "marketing.advertising.third_party.targeted"},
    ]  # fmt: skip


def _probe(index: int) -> dict[str, Any]:
    return {
        "type": "IdentifierCollected", "event_id": f"lat-probe-{index}",
        "event_time": "2026-01-01T00:00:00Z", "producer": "bench", "dataset": AUTH,
        "purpose": "essential.service.authentication",
        "identifier": {"email": f"probe{index}@example.org"},
    }  # fmt: skip


def _assigned(bootstrap: str, topic: str, reset: str, timeout_s: float = 30.0) -> KafkaConsumer:
    """A consumer holding every partition of ``topic`` (no group: a group's join can settle on
    an empty assignment when the topic's metadata reaches it late, and then waits minutes for
    the next metadata refresh), its start offsets resolved before it returns, so no record
    produced afterwards is missed."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset=reset,
                             enable_auto_commit=False)  # fmt: skip
    deadline = time.monotonic() + timeout_s
    while not (partitions := consumer.partitions_for_topic(topic)):
        if time.monotonic() > deadline:
            consumer.close()
            raise RuntimeError(f"no partition of {topic} known within {timeout_s:.0f} s")
        consumer.topics()  # a metadata request
        time.sleep(0.1)
    assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
    consumer.assign(assigned)
    for tp in assigned:
        consumer.position(tp)
    return consumer


class Arrivals:
    """A consumer thread noting when each awaited key first shows up on a topic."""

    def __init__(self, bootstrap: str, topic: str, key_of: Any) -> None:
        self._consumer = _assigned(bootstrap, topic, "latest")
        self._key_of = key_of
        self.seen: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            polled = self._consumer.poll(timeout_ms=100)
            now = time.perf_counter()
            for records in polled.values():
                for record in records:
                    self.seen.setdefault(self._key_of(record), now)

    def wait(self, key: str, timeout: float = 30.0) -> float | None:
        deadline = time.perf_counter() + timeout
        while key not in self.seen and time.perf_counter() < deadline:
            time.sleep(0.001)
        return self.seen.get(key)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._consumer.close()


def _percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p99 = ordered[max(0, int(len(ordered) * 0.99 + 0.5) - 1)]
    return {"p50_ms": round(statistics.median(ordered) * 1000, 1),
            "p99_ms": round(p99 * 1000, 1), "max_ms": round(ordered[-1] * 1000, 1)}  # fmt: skip


def _measure(
    bootstrap: str, topic_in: str, out: Arrivals, events: list[Any], gap: float, warmup: int
) -> list[float]:
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=0, acks="all")
    samples: list[float] = []
    try:
        for n, event in enumerate(events):
            ref = event.identifier.ref
            sent = time.perf_counter()
            producer.send(topic_in, key=partition_key(event), value=dump_event(event).encode())
            producer.flush()
            arrived = out.wait(ref)
            if arrived is None:
                raise RuntimeError(f"no output for probe {n} within 30 s")
            if n >= warmup:
                samples.append(arrived - sent)
            time.sleep(gap)
    finally:
        producer.close()
    return samples


def _create_topics(bootstrap: str, names: list[str]) -> None:
    """Every topic exists before anything subscribes to it: a consumer of a topic created
    later (by the first record produced to it) is assigned it late and, reading from the
    latest offset, can miss that first record."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics({name: {"num_partitions": 4} for name in names},
                            raise_errors=False, wait_for_metadata=False)  # fmt: skip
        admin.wait_for_topics(names, timeout_ms=30_000)
    finally:
        admin.close()


def _wait_ready(process: subprocess.Popen[bytes], timeout_s: float = 60.0) -> None:
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], timeout_s)
    line = process.stdout.readline() if ready else b""
    if line.strip() != b"ready":
        raise RuntimeError(f"the relay did not get ready (exit code {process.poll()})")


def relay(bootstrap: str, topic_in: str, topic_out: str) -> None:
    """The baseline process: every record of ``topic_in`` produced to ``topic_out``."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    consumer = _assigned(bootstrap, topic_in, "earliest")
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=0, acks="all")
    print("ready", flush=True)  # the harness sends its first probe only now
    while not stop.is_set():
        for records in consumer.poll(timeout_ms=100).values():
            for record in records:
                producer.send(topic_out, key=record.key, value=record.value)
            producer.flush()
    producer.close()
    consumer.close()


def _ref_of_alert(record: Any) -> str:
    return str(json.loads(record.value)["identifier"])


def _ref_of_event(record: Any) -> str:
    return str(json.loads(record.value)["identifier"]["ref"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--probes", type=int, default=200)
    parser.add_argument("--gap", type=float, default=0.2, help="seconds between probes")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--relay", nargs=2, metavar=("IN", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    bootstrap = os.environ["LINEAGE_KAFKA_BOOTSTRAP"]
    if args.relay:
        relay(bootstrap, *args.relay)
        return
    inbound = InboundParser(Pseudonymizer(KEY.encode()))
    now = datetime.now(UTC)
    total = args.probes + args.warmup
    setup = [inbound.parse_record(r, now) for r in _records()]
    probes: list[Any] = [inbound.parse_record(_probe(n), now) for n in range(2 * total)]
    stamp = f"{int(time.time())}"
    topics = {"events": f"bench.lat.{stamp}.events", "alerts": f"bench.lat.{stamp}.alerts",
              "dead": f"bench.lat.{stamp}.deadletter", "relay_in": f"bench.lat.{stamp}.relay.in",
              "relay_out": f"bench.lat.{stamp}.relay.out"}  # fmt: skip
    _create_topics(bootstrap, list(topics.values()))
    store = Neo4jStore(
        os.environ["LINEAGE_NEO4J_URI"],
        os.environ.get("LINEAGE_NEO4J_USER", "neo4j"),
        os.environ["LINEAGE_NEO4J_PASSWORD"],
    )
    store.clear()
    env = {**os.environ, "LINEAGE_KEY": KEY, "LINEAGE_EVENTS_TOPIC": topics["events"],
           "LINEAGE_ALERTS_TOPIC": topics["alerts"],
           "LINEAGE_DEADLETTER_TOPIC": topics["dead"]}  # fmt: skip
    result: dict[str, Any] = {"probes": args.probes, "gap_s": args.gap}
    with tempfile.TemporaryDirectory(prefix="lineage-bench-") as home:
        env["LINEAGE_HOME"] = home
        log = Path(home) / "worker.log"
        # the relay first, then the worker: each measured alone, idle
        relay_process = subprocess.Popen(
            [sys.executable, "-m", "bench.alert_latency", "--relay", topics["relay_in"],
             topics["relay_out"]], cwd=ROOT, env=env, stdout=subprocess.PIPE,
        )  # fmt: skip
        out = Arrivals(bootstrap, topics["relay_out"], _ref_of_event)
        try:
            _wait_ready(relay_process)
            samples = _measure(bootstrap, topics["relay_in"], out, probes[:total], args.gap,
                               args.warmup)  # fmt: skip
            result["relay"] = _percentiles(samples)
        finally:
            out.close()
            relay_process.send_signal(signal.SIGTERM)
            relay_process.wait(timeout=30)
        with log.open("wb") as sink:
            worker = subprocess.Popen([sys.executable, "-m", "cli.main", "worker"], cwd=ROOT,
                                      env=env, stdout=sink, stderr=sink)  # fmt: skip
            alerts = Arrivals(bootstrap, topics["alerts"], _ref_of_alert)
            producer = KafkaProducer(bootstrap_servers=bootstrap)
            for event in setup:
                producer.send(topics["events"], key=partition_key(event),
                              value=dump_event(event).encode())  # fmt: skip
            producer.close()
            try:
                samples = _measure(bootstrap, topics["events"], alerts, probes[total:],
                                   args.gap, args.warmup)  # fmt: skip
                result["worker"] = _percentiles(samples)
            finally:
                alerts.close()
                worker.send_signal(signal.SIGTERM)
                worker.wait(timeout=60)
    store.clear()
    store.close()
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.delete_topics(list(topics.values()))
    except KafkaError:
        pass  # best effort: bench topics only
    finally:
        admin.close()
    result["p99_ratio_to_relay"] = round(result["worker"]["p99_ms"] / result["relay"]["p99_ms"], 1)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
