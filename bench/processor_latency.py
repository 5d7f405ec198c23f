"""Alert latency with an idle ``lineage processor``, beside an idle ``lineage worker`` on the
same set-up, in one run (``bench.alert_latency``'s probes and arrivals).

Needs the services (``eval "$(services/svc env)"``); it empties that Neo4j database (the
worker's store). Run: ``python -m bench.processor_latency --probes 200``.

The set-up (a whole-dataset sync into the ads table and a Tailored-Audiences match of it,
dated 2099) is produced through ``KafkaEventLog``, so each whole-dataset event reaches every
partition. Each probe is a new security collection, produced alone; latency runs from the
producer's ``send`` to the alert's arrival at a consumer of the alerts topic. The processor
reads no Neo4j; the worker reads and writes it in every unit.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.alert_latency import (
    KEY,
    ROOT,
    Arrivals,
    _create_topics,
    _measure,
    _percentiles,
    _probe,
    _records,
    _ref_of_alert,
)
from graph.neo4j_store import Neo4jStore
from lineage.identifiers import Pseudonymizer
from lineage.inbound import InboundParser
from runtime.settings import Settings
from streams.kafka_log import KafkaEventLog


def _run(
    command: str, settings: Settings, env: dict[str, str], setup: list[Any], probes: list[Any],
    gap: float, warmup: int, log: Path,
) -> dict[str, float]:  # fmt: skip
    bootstrap = settings.require_kafka()
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "cli.main", command], cwd=ROOT,
                                   env=env, stdout=out, stderr=out)  # fmt: skip
        alerts = Arrivals(bootstrap, settings.alerts_topic, _ref_of_alert)
        try:
            events = KafkaEventLog(settings)
            try:
                events.append(setup)
            finally:
                events.close()
            time.sleep(3.0)  # joined, and the set-up applied
            return _percentiles(_measure(bootstrap, settings.events_topic, alerts, probes,
                                         gap, warmup))  # fmt: skip
        finally:
            alerts.close()
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--probes", type=int, default=200)
    parser.add_argument("--gap", type=float, default=0.2, help="seconds between probes")
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args()
    inbound = InboundParser(Pseudonymizer(KEY.encode()))
    now = datetime.now(UTC)
    total = args.probes + args.warmup
    setup = [inbound.parse_record(r, now) for r in _records()]
    probes = [inbound.parse_record(_probe(n), now) for n in range(2 * total)]
    store = Neo4jStore(
        os.environ["LINEAGE_NEO4J_URI"],
        os.environ.get("LINEAGE_NEO4J_USER", "neo4j"),
        os.environ["LINEAGE_NEO4J_PASSWORD"],
    )
    store.clear()
    result: dict[str, Any] = {"probes": args.probes, "gap_s": args.gap}
    with tempfile.TemporaryDirectory(prefix="lineage-bench-") as home:
        for n, command in enumerate(("worker", "processor")):
            stamp = f"bench.plat.{int(time.time())}.{n}"
            names = {"events_topic": f"{stamp}.events", "alerts_topic": f"{stamp}.alerts",
                     "deadletter_topic": f"{stamp}.dead", "changes_topic": f"{stamp}.changes",
                     "incidents_topic": f"{stamp}.incidents"}  # fmt: skip
            _create_topics(Settings().require_kafka(), list(names.values()))
            routing = "partitioned" if command == "processor" else "keyed"
            settings = Settings().model_copy(update={**names, "event_routing": routing})
            env = {**os.environ, "LINEAGE_KEY": KEY, "LINEAGE_HOME": home,
                   "LINEAGE_STATE_DIR": str(Path(home) / command)}  # fmt: skip
            env |= {f"LINEAGE_{k.upper()}": v for k, v in names.items()}
            env["LINEAGE_EVENT_ROUTING"] = routing
            batch = probes[:total] if command == "worker" else probes[total:]
            result[command] = _run(command, settings, env, setup, batch, args.gap,
                                   args.warmup, Path(home) / f"{command}.log")  # fmt: skip
    store.clear()
    store.close()
    result["processor_p99_vs_worker"] = round(
        result["processor"]["p99_ms"] / result["worker"]["p99_ms"], 2
    )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
