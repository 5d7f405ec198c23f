"""``lineage worker --metrics-port``: the worker's Prometheus metrics, scraped over HTTP while it
projects real Kafka records into the real Neo4j (the names it shares with ``lineage serve``
come from ``runtime.metrics``)."""

from __future__ import annotations

import socket
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest
import requests
from kafka import KafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from lineage.events import Event
from lineage.inbound import InboundParser
from lineage.reference_case import ADS
from streams.kafka_log import ensure_topics
from tests.integration.conftest import Pipeline
from tests.integration.test_kafka_pipeline import _probe_records

pytestmark = [pytest.mark.kafka, pytest.mark.neo4j, pytest.mark.timeout(180)]
READ = {"type": "DataRead", "event_time": "2020-01-07T00:00:00Z", "producer": "bi",
        "dataset": ADS, "job": "weekly-report"}  # fmt: skip
PROBES = (({"phone": "+1 650 253 0000"}, "acct-m1"), ({"email": "probe@example.com"}, "acct-m2"))


def _violation(identifier: dict[str, str], subject: str) -> list[dict[str, Any]]:
    """The pipeline tests' probe (collected for security, copied into ad matching, used
    there: one alert) for another identifier and person."""
    records = _probe_records()
    records[0] |= {"identifier": identifier, "subject": subject}
    for record in records[1:]:
        record["identifiers"] = [identifier]
    return records


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _samples(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = requests.get(url, timeout=10).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_worker_metrics_count_accepted_dead_lettered_and_alerts_by_rule(
    pipeline: Pipeline, parser: InboundParser
) -> None:
    observed = datetime.now(UTC)
    events: list[Event] = [
        parser.parse_record(record, observed)
        for identifier, subject in PROBES
        for record in _violation(identifier, subject)
    ]
    events.append(parser.parse_record(READ, observed))  # a job that read ads and wrote none
    ensure_topics(pipeline.settings)
    producer = KafkaProducer(bootstrap_servers=pipeline.settings.kafka_bootstrap)
    producer.send(pipeline.settings.events_topic, b'{"type": "DataUsed", "event_id": ')
    producer.flush()
    producer.close()
    pipeline.produce(events)

    port = _free_port()
    pipeline.start_worker(["--metrics-port", str(port)])
    pipeline.wait_caught_up()
    url = f"http://127.0.0.1:{port}/metrics"
    deadline = time.monotonic() + 30
    while True:  # the gauge is set right after the commit that wait_caught_up saw
        try:
            samples = _samples(url)
        except requests.ConnectionError:
            samples = {}
        if samples.get(("lineage_consumer_lag", ())) == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.2)

    stored = Counter(alert.rule for alert in pipeline.store.alerts())
    assert sum(stored.values()) == 2, pipeline.worker_output()
    assert samples[("lineage_events_total", (("outcome", "accepted"),))] == len(events) == 7
    assert samples[("lineage_dead_letters_total", ())] == 1
    by_rule = {
        dict(labels)["rule"]: value
        for (name, labels), value in samples.items()
        if name == "lineage_alerts_total"
    }
    assert by_rule == stored
    assert samples[("lineage_unit_seconds_count", ())] >= 1
    assert samples[("lineage_consumer_lag", ())] == 0
    assert len(pipeline.read_topic(pipeline.settings.deadletter_topic)) == 1
    assert ("read", ADS, "weekly-report", "weekly-report") in pipeline.store.edges()
