"""Incident latency beside alert latency, embedded and on Kafka, in one run.

Run: ``python -m bench.incident_latency --probes 200`` (the Kafka half needs the services'
variables, ``eval "$(services/svc env)"``, and empties that Neo4j database; ``--embedded-only``
skips it).

Set-up: one security collection into ``auth:lat_contact_points`` and a whole-dataset sync of
it to ``ads:lat_matchable`` (2099). Each probe is a whole-dataset Tailored-Audiences use of
that table by a new job (``lat-matcher-N``): one violation, and, the use job being part of an
incident's key, one new incident. So each probe measures an alert and its incident's *first*
message (``opened``, sent at once, not rate-limited). The probes run in their own datasets, so
``--users`` adds a reference case to the embedded home first (a graph of realistic size)
without raising more alerts per probe.

- embedded: ``LineageService.ingest`` of the probe's line (parse, SQLite log append with fsync,
  projection, commit) until the alert's line and then the incident's line are written by the
  stdout sinks ``lineage ingest`` uses (``StreamSink``, ``IncidentStreamSink``);
- Kafka: from the producer's ``send`` of the probe to the event topic until a consumer of the
  alerts topic, and one of the incidents topic, sees the probe's alert and incident (as
  ``bench.alert_latency``), with ``lineage worker`` idle between probes (``--gap``).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO, cast

from bench.alert_latency import Arrivals, _create_topics, _percentiles
from lineage.events import Event, dump_event
from lineage.identifiers import Pseudonymizer
from lineage.inbound import InboundParser
from streams.kafka_log import partition_key

ROOT = Path(__file__).resolve().parent.parent
KEY = "bench-key-0123456789abcdef"
AUTH = {"system": "auth", "name": "lat_contact_points"}
ADS = {"system": "ads", "name": "lat_matchable"}
AD_PURPOSE = "marketing.advertising.third_party.targeted"
INTERVAL_S = 60.0  # the default: updates are rate-limited, an incident's first message is not


def _setup() -> list[dict[str, Any]]:
    return [
        {"type": "IdentifierCollected", "event_id": "ilat-collect",
         "event_time": "2026-01-01T00:00:00Z", "producer": "bench", "dataset": AUTH,
         "purpose": "essential.service.authentication",
         "identifier": {"email": "incident-probe@example.org"}},
        {"type": "DataFlowed", "event_id": "ilat-sync", "event_time": "2099-01-01T00:00:00Z",
         "producer": "bench", "source": AUTH, "target": ADS, "job": "ads-identity-sync"},
    ]  # fmt: skip


def _probe(index: int) -> dict[str, Any]:
    return {"type": "DataUsed", "event_id": f"ilat-use-{index}",
            "event_time": "2099-01-02T00:00:00Z", "producer": "bench", "dataset": ADS,
            "job": f"lat-matcher-{index}", "purpose": AD_PURPOSE}  # fmt: skip


class TimedLines(io.TextIOBase):
    """A text stream noting when each JSON line naming a use job is written, per job."""

    def __init__(self, job_of: Any) -> None:
        self._job_of = job_of
        self.seen: dict[str, float] = {}

    def write(self, text: str) -> int:
        now = time.perf_counter()
        for line in text.splitlines():
            if line.strip():
                self.seen.setdefault(self._job_of(json.loads(line)), now)
        return len(text)


def embedded(probes: int, warmup: int, users: int) -> dict[str, Any]:
    from lineage.reference_case import generate
    from runtime.service import LineageService
    from runtime.settings import Settings
    from runtime.sinks import AlertSink, IncidentStreamSink, StreamSink

    alerts = TimedLines(lambda body: body["use_job"])
    incidents = TimedLines(lambda body: body["incident"]["use_job"])
    sinks: list[AlertSink] = [
        StreamSink(cast(TextIO, alerts), as_json=True),
        IncidentStreamSink(cast(TextIO, incidents), True, INTERVAL_S, timedelta(days=30)),
    ]
    alert_s: list[float] = []
    incident_s: list[float] = []
    with tempfile.TemporaryDirectory(prefix="lineage-ilat-") as home:
        settings = Settings(home=Path(home), key=KEY, log="local", store="sqlite")
        with LineageService.open(settings, sinks) as service:
            if users:
                service.ingest([json.dumps(r) for r in generate(users=users).records],
                               keep_alerts=False)  # fmt: skip
            service.ingest([json.dumps(r) for r in _setup()])
            for n in range(probes + warmup):
                began = time.perf_counter()
                service.ingest([json.dumps(_probe(n))])
                job = f"lat-matcher-{n}"
                if job not in alerts.seen or job not in incidents.seen:
                    raise RuntimeError(f"probe {n}: no alert or no incident message")
                if n >= warmup:
                    alert_s.append(alerts.seen[job] - began)
                    incident_s.append(incidents.seen[job] - began)
    return {"users": users, "alert": _percentiles(alert_s),
            "incident_first_message": _percentiles(incident_s)}  # fmt: skip


def _job_of_alert(record: Any) -> str:
    return str(json.loads(record.value)["use_job"])


def _job_of_incident(record: Any) -> str:
    return str(json.loads(record.value)["incident"]["use_job"])


def kafka(probes: int, warmup: int, gap: float) -> dict[str, Any]:
    from kafka import KafkaAdminClient, KafkaProducer
    from kafka.errors import KafkaError

    from graph.neo4j_store import Neo4jStore

    bootstrap = os.environ["LINEAGE_KAFKA_BOOTSTRAP"]
    inbound = InboundParser(Pseudonymizer(KEY.encode()))
    now = datetime.now(UTC)
    setup = [inbound.parse_record(r, now) for r in _setup()]
    events: list[Event] = [inbound.parse_record(_probe(n), now) for n in range(probes + warmup)]
    stamp = f"{int(time.time())}"
    topics = {name: f"bench.ilat.{stamp}.{name}"
              for name in ("events", "alerts", "incidents", "deadletter")}  # fmt: skip
    _create_topics(bootstrap, list(topics.values()))
    store = Neo4jStore(os.environ["LINEAGE_NEO4J_URI"],
                       os.environ.get("LINEAGE_NEO4J_USER", "neo4j"),
                       os.environ["LINEAGE_NEO4J_PASSWORD"])  # fmt: skip
    store.clear()
    env = {**os.environ, "LINEAGE_KEY": KEY, "LINEAGE_EVENTS_TOPIC": topics["events"],
           "LINEAGE_ALERTS_TOPIC": topics["alerts"],
           "LINEAGE_INCIDENTS_TOPIC": topics["incidents"],
           "LINEAGE_DEADLETTER_TOPIC": topics["deadletter"],
           "LINEAGE_INCIDENT_INTERVAL_SECONDS": str(INTERVAL_S)}  # fmt: skip
    alert_s: list[float] = []
    incident_s: list[float] = []
    with tempfile.TemporaryDirectory(prefix="lineage-ilat-") as home:
        env["LINEAGE_HOME"] = home
        log = Path(home) / "worker.log"
        with log.open("wb") as sink:
            worker = subprocess.Popen([sys.executable, "-m", "cli.main", "worker"], cwd=ROOT,
                                      env=env, stdout=sink, stderr=sink)  # fmt: skip
            alerts = Arrivals(bootstrap, topics["alerts"], _job_of_alert)
            incidents = Arrivals(bootstrap, topics["incidents"], _job_of_incident)
            producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=0, acks="all")
            try:
                for event in setup:
                    producer.send(topics["events"], key=partition_key(event),
                                  value=dump_event(event).encode())  # fmt: skip
                producer.flush()
                for n, event in enumerate(events):
                    job = f"lat-matcher-{n}"
                    sent = time.perf_counter()
                    producer.send(topics["events"], key=partition_key(event),
                                  value=dump_event(event).encode())  # fmt: skip
                    producer.flush()
                    alert_at = alerts.wait(job, timeout=60)
                    incident_at = incidents.wait(job, timeout=60)
                    if alert_at is None or incident_at is None:
                        raise RuntimeError(f"probe {n}: no alert or incident within 60 s; "
                                           f"worker log: {log.read_text()[-2000:]}")  # fmt: skip
                    if n >= warmup:
                        alert_s.append(alert_at - sent)
                        incident_s.append(incident_at - sent)
                    time.sleep(gap)
            finally:
                producer.close()
                alerts.close()
                incidents.close()
                worker.terminate()
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
    return {"gap_s": gap, "alert": _percentiles(alert_s),
            "incident_first_message": _percentiles(incident_s)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--probes", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--gap", type=float, default=0.2, help="Kafka: seconds between probes")
    parser.add_argument("--users", type=int, default=2_000,
                        help="embedded: a reference case ingested first")  # fmt: skip
    parser.add_argument("--embedded-only", action="store_true")
    args = parser.parse_args()
    result: dict[str, Any] = {"probes": args.probes, "load_average": os.getloadavg()}
    result["embedded"] = embedded(args.probes, args.warmup, args.users)
    if not args.embedded_only:
        result["kafka"] = kafka(args.probes, args.warmup, args.gap)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
