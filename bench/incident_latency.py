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
  ``bench.alert_latency``), with ``lineage worker`` idle between probes (``--gap``);
- Kafka, ``--topology partitioned``: the same probes through two ``lineage processor`` and one
  ``lineage incident-publisher`` (which follows the alerts topic); ``incident_behind_alert``
  is the alert's arrival on the alerts topic to its incident's (both topologies report it).
  ``--topology worker --topology partitioned`` runs both, one after the other, in one run.
  ``--burst-users N`` then produces that reference case at once and counts its incident
  messages per alert (the processes are stopped when its alerts are all out, so pending
  updates are flushed and counted).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import signal
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
from runtime.settings import Settings
from streams.kafka_log import partition_key, partitioned_messages

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


def _send_probe(producer: Any, topic: str, event: Event, partitions: int | None) -> None:
    """``partitions``: the partitioned topology's routing (a whole-dataset use goes to every
    partition); None: the worker's (one message, keyed)."""
    if partitions is None:
        producer.send(topic, key=partition_key(event), value=dump_event(event).encode())
        return
    for partition, body, part in partitioned_messages(event, partitions):
        assert part is None  # the probes and the set-up list no identifier
        producer.send(topic, value=body, partition=partition)


def _burst_events(users: int, now: datetime) -> tuple[list[Event], int]:
    """The reference case of ``users`` users (its own datasets: none of the probes') and how
    many active alerts one store raises for it (``lineage worker``'s)."""
    from graph.sqlite_store import SqliteStore
    from lineage.reference_case import generate
    from lineage.tracker import Tracker
    from runtime.wiring import build_policy

    inbound = InboundParser(Pseudonymizer(KEY.encode()))
    events = [inbound.parse_record(r, now) for r in generate(users=users).records]
    store = SqliteStore()
    Tracker(store, build_policy(Settings(key=KEY))).apply(events)
    return events, sum(1 for a in store.alerts() if a.status == "active")


def kafka(
    probes: int, warmup: int, gap: float, topology: str = "worker", burst_users: int = 0
) -> dict[str, Any]:
    """``topology``: ``worker`` (one ``lineage worker`` on Neo4j, which publishes incidents
    itself) or ``partitioned`` (two ``lineage processor`` and one ``lineage incident-publisher``
    following the alerts topic; no sink: the view plays no part in either latency).
    ``burst_users``: after the probes, that reference case is produced at once, the processes
    stopped once its alerts are all on the alerts topic (the publisher flushes its pending
    updates), and its incident messages counted against its alerts."""
    from kafka import KafkaAdminClient, KafkaProducer
    from kafka.errors import KafkaError

    from graph.neo4j_store import Neo4jStore
    from streams.kafka_log import KafkaEventLog

    bootstrap = os.environ["LINEAGE_KAFKA_BOOTSTRAP"]
    inbound = InboundParser(Pseudonymizer(KEY.encode()))
    now = datetime.now(UTC)
    setup = [inbound.parse_record(r, now) for r in _setup()]
    events: list[Event] = [inbound.parse_record(_probe(n), now) for n in range(probes + warmup)]
    burst, burst_alerts = _burst_events(burst_users, now) if burst_users else ([], 0)
    partitioned = topology == "partitioned"
    stamp = f"{int(time.time())}.{topology}"
    topics = {name: f"bench.ilat.{stamp}.{name}"
              for name in ("events", "alerts", "incidents", "deadletter", "changes")}  # fmt: skip
    _create_topics(bootstrap, list(topics.values()))
    store = Neo4jStore(os.environ["LINEAGE_NEO4J_URI"],
                       os.environ.get("LINEAGE_NEO4J_USER", "neo4j"),
                       os.environ["LINEAGE_NEO4J_PASSWORD"])  # fmt: skip
    store.clear()
    env = {**os.environ, "LINEAGE_KEY": KEY, "LINEAGE_EVENTS_TOPIC": topics["events"],
           "LINEAGE_ALERTS_TOPIC": topics["alerts"],
           "LINEAGE_INCIDENTS_TOPIC": topics["incidents"],
           "LINEAGE_DEADLETTER_TOPIC": topics["deadletter"],
           "LINEAGE_CHANGES_TOPIC": topics["changes"],
           "LINEAGE_EVENT_ROUTING": "partitioned" if partitioned else "keyed",
           "LINEAGE_INCIDENT_INTERVAL_SECONDS": str(INTERVAL_S)}  # fmt: skip
    commands = (
        [["processor"], ["processor"], ["incident-publisher"]] if partitioned else [["worker"]]
    )
    settings = Settings(
        kafka_bootstrap=bootstrap, key=KEY, events_topic=topics["events"],
        event_routing="partitioned" if partitioned else "keyed",
    )  # fmt: skip
    alert_s: list[float] = []
    incident_s: list[float] = []
    behind_s: list[float] = []
    counted: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="lineage-ilat-") as home:
        env["LINEAGE_HOME"] = home
        env["LINEAGE_STATE_DIR"] = str(Path(home) / "state")
        log = Path(home) / "processes.log"
        with log.open("wb") as sink:
            processes = [
                subprocess.Popen(
                    [sys.executable, "-m", "cli.main", *command],
                    cwd=ROOT,
                    env=env,
                    stdout=sink,
                    stderr=sink,
                )
                for command in commands
            ]
            alerts = Arrivals(bootstrap, topics["alerts"], _job_of_alert)
            incidents = Arrivals(bootstrap, topics["incidents"], _job_of_incident)
            producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=0, acks="all")
            parts = 4 if partitioned else None  # bench.alert_latency's topics have 4
            try:
                for event in setup:
                    _send_probe(producer, topics["events"], event, parts)
                producer.flush()
                for n, event in enumerate(events):
                    job = f"lat-matcher-{n}"
                    sent = time.perf_counter()
                    _send_probe(producer, topics["events"], event, parts)
                    producer.flush()
                    alert_at = alerts.wait(job, timeout=60)
                    incident_at = incidents.wait(job, timeout=60)
                    if alert_at is None or incident_at is None:
                        raise RuntimeError(f"probe {n}: no alert or incident within 60 s; "
                                           f"log: {log.read_text()[-2000:]}")  # fmt: skip
                    if n >= warmup:
                        alert_s.append(alert_at - sent)
                        incident_s.append(incident_at - sent)
                        behind_s.append(incident_at - alert_at)
                    time.sleep(gap)
                if burst:
                    counted = _burst(settings, topics, burst, burst_alerts, processes,
                                     KafkaEventLog, log)  # fmt: skip
            finally:
                producer.close()
                alerts.close()
                incidents.close()
                for process in processes:
                    process.terminate()
                for process in processes:
                    process.wait(timeout=60)
    store.clear()
    store.close()
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.delete_topics(list(topics.values()))
    except KafkaError:
        pass  # best effort: bench topics only
    finally:
        admin.close()
    result = {"topology": topology, "gap_s": gap, "alert": _percentiles(alert_s),
              "incident_first_message": _percentiles(incident_s),
              "incident_behind_alert": _percentiles(behind_s)}  # fmt: skip
    if counted:
        result["burst"] = counted
    return result


def _read_all(bootstrap: str, topic: str) -> list[Any]:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    try:
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        ends = consumer.end_offsets(parts)
        records: list[Any] = []
        while any(consumer.position(tp) < ends[tp] for tp in parts):
            for batch in consumer.poll(timeout_ms=500).values():
                records += batch
        return records
    finally:
        consumer.close()


def _burst(
    settings: Settings, topics: dict[str, str], burst: list[Event], expected: int,
    processes: list[subprocess.Popen[bytes]], event_log: Any, log: Path,
) -> dict[str, Any]:  # fmt: skip
    """Produce the burst, wait for its alerts, stop the processes (SIGTERM: the publisher's
    pending updates go out), count its incident messages per alert."""
    bootstrap = settings.require_kafka()
    began = time.perf_counter()
    events = event_log(settings.model_copy(update={"alerts_topic": topics["alerts"]}))
    try:
        events.append(burst)
    finally:
        events.close()
    deadline = time.monotonic() + 600
    while True:
        ids = {json.loads(r.value)["alert_id"] for r in _read_all(bootstrap, topics["alerts"])
               if not json.loads(r.value)["use_job"].startswith("lat-matcher-")}  # fmt: skip
        if len(ids) >= expected:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"burst: {len(ids)}/{expected} alerts; {log.read_text()[-2000:]}")
        time.sleep(1.0)
    raised_s = time.perf_counter() - began
    time.sleep(2.0)  # the publisher polls what the last unit sent
    for process in processes:
        process.send_signal(signal.SIGTERM)
    for process in processes:
        process.wait(timeout=120)
    records = [json.loads(r.value) for r in _read_all(bootstrap, topics["incidents"])]
    mine = [m for m in records if not m["incident"]["use_job"].startswith("lat-matcher-")]
    last: dict[str, Any] = {}
    for m in mine:
        last[m["incident"]["incident_id"]] = m["incident"]
    return {
        "events": len(burst),
        "alerts": len(ids),
        "alert_records": sum(
            1
            for r in _read_all(bootstrap, topics["alerts"])
            if not json.loads(r.value)["use_job"].startswith("lat-matcher-")
        ),
        "incidents": len(last),
        "incident_messages": len(mine),
        "opened": sum(1 for m in mine if m["kind"] == "opened"),
        "messages_per_alert": round(len(mine) / max(1, len(ids)), 5),
        "final_alerts": sorted(i["alerts"] for i in last.values()),
        "alerts_raised_s": round(raised_s, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--probes", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--gap", type=float, default=0.2, help="Kafka: seconds between probes")
    parser.add_argument("--users", type=int, default=2_000,
                        help="embedded: a reference case ingested first")  # fmt: skip
    parser.add_argument("--embedded-only", action="store_true")
    parser.add_argument("--kafka-only", action="store_true")
    parser.add_argument("--topology", action="append", choices=("worker", "partitioned"),
                        help="Kafka: lineage worker, or 2 processors + lineage "
                        "incident-publisher (repeat: both, one run; default: worker)")  # fmt: skip
    parser.add_argument("--burst-users", type=int, default=0,
                        help="Kafka: a reference case produced after the probes, its "
                        "incident messages counted per alert")  # fmt: skip
    args = parser.parse_args()
    result: dict[str, Any] = {"probes": args.probes, "load_average": os.getloadavg()}
    if args.users >= 0 and not args.kafka_only:
        result["embedded"] = embedded(args.probes, args.warmup, args.users)
    if not args.embedded_only:
        for topology in args.topology or ["worker"]:
            result[f"kafka_{topology}"] = kafka(args.probes, args.warmup, args.gap, topology,
                                                args.burst_users)  # fmt: skip
        result["load_average_after"] = os.getloadavg()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
