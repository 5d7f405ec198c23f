"""The partitioned topology (issue 17) against today's worker and the plain-write ceiling, in
one run, on the reference case at ``--users`` users.

Needs the services (``eval "$(services/svc env)"``); it empties that Neo4j database. Run:
``python -m bench.scale_out --users 20000``.

1. **Work divides by partitions** (no Kafka): the events are routed as the Kafka log routes
   them (:mod:`streams.partitioning`) into P = 1, 2, 4 partitions, and each partition is
   applied by its own process, one after another, in a ``PartitionStore`` (state, journal,
   changes outbox, position), 8,000 messages per unit. Reported: the CPU seconds of each
   partition's apply, their sum against P = 1's, and the broadcast share (the copies of
   whole-dataset events beyond the first, among all messages applied).
2. **Kafka**, each variant on its own fresh topics (4 partitions), the workers started and
   joined before the events are produced, timed from the first produce to the last event
   applied:
   - ``worker``: today's ``lineage worker`` (state and view in one Neo4j), the baseline
     (``--old COMMIT``: that commit's worker too, from a git worktree, same run); the
     workers' log is keyed (each event once), the processors' partitioned;
   - ``processors_1`` / ``processors_2``: ``lineage processor`` processes, sink apart;
   - ``sink``: ``lineage sink`` alone on the changes ``processors_2`` left, into an empty
     Neo4j, beside ``bench.neo4j_tracker``'s "the same graph written plainly" of that graph;
   - ``end_to_end``: 2 processors and a sink running together.
   The view after ``sink`` and after ``end_to_end`` must equal the one-store graph
   (``GraphSnapshot``) or the harness fails. Each variant also reports the CPU seconds its
   processes and the servers (Kafka, Neo4j) used: the sum, against the two cores, is the
   ceiling this machine puts on the end-to-end rate.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.neo4j_tracker import _export, _same_graph
from bench.propagation import _events
from graph.neo4j_store import Neo4jStore
from graph.partition_store import PartitionStore
from graph.sqlite_store import SqliteStore
from lineage.event_identity import claims_of
from lineage.events import IdentifierCollected
from lineage.tracker import Tracker
from runtime.settings import Settings
from runtime.wiring import default_policy, default_taxonomy
from streams.consumer_group import processor_group_id, projector_group_id, sink_group_id
from streams.kafka_log import KafkaEventLog, rewind_group
from streams.partitioning import dataset_level, route

ROOT = Path(__file__).resolve().parents[1]
UNIT = 8_000
PARTITIONS = 4
TIMEOUT_S = 1_800.0


# -- 1. CPU per partition ---------------------------------------------------------------------
def _child(users: int, partitions: int, partition: int, directory: str) -> None:
    """One partition's apply, in its own process; prints its CPU seconds."""
    policy = default_policy(default_taxonomy())
    mine = [r for e in _events(users) for r in route(e, partitions) if r.partition == partition]
    store = PartitionStore(Path(directory) / f"p{partition}.sqlite", partition)
    tracker = Tracker(store, policy)
    started, wall = time.process_time(), time.perf_counter()
    for start in range(0, len(mine), UNIT):
        unit = mine[start : start + UNIT]
        store.stage_position(start + len(unit))
        tracker.apply_claimed([(r.event, claims_of(r.event, r.part)) for r in unit])
    cpu, seconds = time.process_time() - started, time.perf_counter() - wall
    store.close()
    print(json.dumps({"messages": len(mine), "cpu_s": cpu, "wall_s": seconds}))


def _divide(users: int, events: int, broadcast_events: int) -> dict[str, Any]:
    rows: dict[str, Any] = {}
    for p in (1, 2, 4):
        parts = []
        with tempfile.TemporaryDirectory() as directory:
            for partition in range(p):
                out = subprocess.run(
                    [sys.executable, "-m", "bench.scale_out", "--child", str(users), str(p),
                     str(partition), directory],
                    cwd=ROOT, check=True, capture_output=True, text=True,
                )  # fmt: skip
                parts.append(json.loads(out.stdout.strip().splitlines()[-1]))
        cpu = sum(x["cpu_s"] for x in parts)
        messages = sum(x["messages"] for x in parts)
        rows[f"P={p}"] = {
            "cpu_s_per_partition": [round(x["cpu_s"], 2) for x in parts],
            "cpu_s_sum": round(cpu, 2),
            "slowest_partition_s": round(max(x["wall_s"] for x in parts), 2),
            "messages": messages,
            "broadcast_share": round(broadcast_events * (p - 1) / messages, 4),
        }
    single = rows["P=1"]["cpu_s_sum"]
    for row in rows.values():
        row["cpu_sum_vs_P1"] = round(row["cpu_s_sum"] / single, 3)
    return {"events": events, "whole_dataset_events": broadcast_events, **rows}


# -- 2. Kafka ---------------------------------------------------------------------------------
def _settings(run: str, state: Path, routing: str = "partitioned") -> Settings:
    base = Settings()
    return base.model_copy(
        update={
            "events_topic": f"{run}.events",
            "alerts_topic": f"{run}.alerts",
            "incidents_topic": f"{run}.incidents",
            "deadletter_topic": f"{run}.deadletter",
            "changes_topic": f"{run}.changes",
            "state_dir": state,
            "topic_partitions": PARTITIONS,
            "event_routing": routing,
        }
    )


def _env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    for name in ("events_topic", "alerts_topic", "incidents_topic", "deadletter_topic",
                 "changes_topic", "state_dir", "event_routing"):  # fmt: skip
        env[f"LINEAGE_{name.upper()}"] = str(getattr(settings, name))
    env["LINEAGE_KEY"] = "bench-key-0123456789abcdef"
    return env


def _committed(settings: Settings, group: str, topic: str) -> tuple[int, int, int]:
    """(partitions with a commit, sum committed, sum of the ends)."""
    from kafka import KafkaAdminClient, OffsetSpec, TopicPartition
    from kafka.errors import KafkaError

    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    try:
        parts = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        try:
            ends = admin.list_partition_offsets({tp: OffsetSpec.LATEST for tp in parts})
            committed = admin.list_group_offsets(group)[group]
        except KafkaError:
            return 0, 0, 0
        have = [tp for tp in parts if tp in committed]
        return (len(have), sum(committed[tp].offset for tp in have),
                sum(ends[tp].offset for tp in parts))  # fmt: skip
    finally:
        admin.close()


def _members(settings: Settings, group: str) -> int:
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    try:
        described = admin.describe_groups([group])[group]
        stable = str(described.get("group_state", described.get("state", ""))) == "Stable"
        return len(described.get("members", ())) if stable else 0
    except KafkaError:
        return 0
    finally:
        admin.close()


def _wait(settings: Settings, group: str, topic: str, what: str, joined: int = 0) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        have, done, total = _committed(settings, group, topic)
        if joined and have == PARTITIONS and _members(settings, group) == joined:
            return
        if not joined and total > 0 and done >= total:
            return
        time.sleep(0.1)
    raise SystemExit(f"timed out waiting for {what}")


def _start(
    command: str, settings: Settings, log: Path, cwd: Path = ROOT, *extra: str
) -> subprocess.Popen[bytes]:
    out = log.open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "cli.main", command, "--loglevel", "warn", *extra],
        cwd=cwd, env=_env(settings), stdout=out, stderr=out,
    )  # fmt: skip


def _server_cpu() -> dict[str, float]:
    """CPU seconds Kafka and Neo4j have used so far (``services/svc``'s pids; absent when the
    servers were started otherwise)."""
    used = {}
    for name in ("kafka", "neo4j"):
        pid_file = Path(os.environ.get("LINEAGE_SERVICES_DIR", ROOT / ".services")) / name
        try:
            pid = (pid_file / f"{name}.pid").read_text().strip()
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        used[name] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return used


def _stop(processes: list[subprocess.Popen[bytes]]) -> list[float]:
    """Stop them; their CPU seconds (user + system, from the kernel's accounting)."""
    cpu = []
    for p in processes:
        p.terminate()
        _, status, usage = os.wait4(p.pid, 0)
        p.returncode = status
        cpu.append(usage.ru_utime + usage.ru_stime)
    return cpu


def _variant(
    name: str,
    events: list[Any],
    work: Path,
    processors: int,
    sink: bool,
    worker: bool = False,
    cwd: Path = ROOT,
    engine: str = "kafka",
) -> tuple[dict[str, Any], Settings]:
    routing = "keyed" if worker else "partitioned"
    settings = _settings(f"bench-{uuid.uuid4().hex[:8]}", work / name, routing)
    log = work / f"{name}.log"
    KafkaEventLog.from_settings(settings).close()  # the topics, created before anyone joins
    running: list[subprocess.Popen[bytes]] = []
    try:
        if worker:
            running.append(_start("worker", settings, log, cwd))
            group, topic = projector_group_id(settings), settings.events_topic
        for _ in range(processors):
            running.append(_start("processor", settings, log, ROOT, "--engine", engine))
            group, topic = processor_group_id(settings), settings.events_topic
        if processors:
            _wait(settings, group, topic, f"{name}: processors to join", joined=processors)
            time.sleep(2.0)  # the last joiner's partitions: opened and sought
        if sink:
            running.append(_start("sink", settings, log))
        if worker:
            time.sleep(5.0)  # the worker commits only applied batches: give it time to join
        started, servers = time.perf_counter(), _server_cpu()
        produced = KafkaEventLog.from_settings(settings)
        try:
            produced.append(events)
        finally:
            produced.close()
        _wait(settings, group, topic, f"{name}: the events applied")
        if sink:
            _wait(settings, sink_group_id(settings), settings.changes_topic, f"{name}: the view")
        seconds = time.perf_counter() - started
        after = _server_cpu()
    finally:
        cpu = _stop(running)
    return {
        "seconds": round(seconds, 2),
        "events_per_s": round(len(events) / seconds),
        "process_cpu_s": [round(c, 2) for c in cpu],
        "server_cpu_s": {k: round(after[k] - servers[k], 2) for k in after if k in servers},
    }, settings


def _sink_alone(settings: Settings, work: Path, events: int) -> dict[str, Any]:
    log = work / "sink.log"
    started, servers = time.perf_counter(), _server_cpu()
    process = _start("sink", settings, log)
    try:
        _wait(settings, sink_group_id(settings), settings.changes_topic, "sink: the view")
        seconds = time.perf_counter() - started
        after = _server_cpu()
    finally:
        cpu = _stop([process])
    return {
        "seconds": round(seconds, 2),
        "events_per_s": round(events / seconds),
        "process_cpu_s": [round(c, 2) for c in cpu],
        "server_cpu_s": {k: round(after[k] - servers[k], 2) for k in after if k in servers},
    }


def _recovery(users: int, work: Path) -> dict[str, Any]:
    """A processor taking over partitions that hold ``users``' identifiers: from an empty
    state directory (a new host: its partitions of the log replayed), then from the state
    the first one left (the same host, or a moved disk: loaded)."""
    events = _events(users)
    identifiers = len({e.identifier.ref for e in events if isinstance(e, IdentifierCollected)})
    replayed, settings = _variant("recovery", events, work, 1, False)
    # the hints back at 0: the wait below ends only once the new process hinted its positions
    rewind_group(settings, processor_group_id(settings))
    log = work / "recovery-load.log"
    started = time.perf_counter()
    process = _start("processor", settings, log)
    try:
        _wait(settings, processor_group_id(settings), settings.events_topic, "the state loaded")
        loaded = time.perf_counter() - started
    finally:
        _stop([process])
    return {
        "users": users,
        "identifiers": identifiers,
        "events": len(events),
        "replay_from_the_log_s": replayed["seconds"],
        "load_from_local_state_s": round(loaded, 2),
        "note": "both include starting the process and joining the group",
    }


def _neo4j() -> Neo4jStore:
    return Neo4jStore(
        os.environ["LINEAGE_NEO4J_URI"],
        os.environ.get("LINEAGE_NEO4J_USER", "neo4j"),
        os.environ["LINEAGE_NEO4J_PASSWORD"],
    )


def _engines(events: list[Any], rounds: int) -> dict[str, Any]:
    """The two engines of ``lineage processor`` on the same events, sink apart: 1 and 2
    processors each, alternating kafka and faust within each round."""
    runs: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for round_ in range(rounds):
            for processors in (1, 2):
                for engine in ("kafka", "faust"):
                    name = f"{engine}_{processors}"
                    row, _ = _variant(
                        f"{name}_{round_}", events, work, processors, False, engine=engine
                    )
                    runs.setdefault(name, []).append(row)
    rates = {name: [r["events_per_s"] for r in rows] for name, rows in runs.items()}
    return {
        "events": len(events),
        "runs": runs,
        "events_per_s": rates,
        "faust_vs_kafka": {
            str(p): [
                round(f / k, 3)
                for f, k in zip(rates[f"faust_{p}"], rates[f"kafka_{p}"], strict=True)
            ]
            for p in (1, 2)
        },
        "two_vs_one": {
            engine: [
                round(t / o, 3)
                for t, o in zip(rates[f"{engine}_2"], rates[f"{engine}_1"], strict=True)
            ]
            for engine in ("kafka", "faust")
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument("--skip-kafka", action="store_true", help="only the CPU division")
    parser.add_argument("--old", metavar="COMMIT", help="also that commit's `lineage worker`")
    parser.add_argument(
        "--recovery", type=int, metavar="USERS", help="only the recovery of USERS' partitions"
    )
    parser.add_argument(
        "--engines",
        type=int,
        metavar="ROUNDS",
        help="only 1 and 2 processors of each engine (kafka loop, faust agent), alternating",
    )
    args = parser.parse_args()
    if args.child:
        users, p, partition, directory = args.child
        _child(int(users), int(p), int(partition), directory)
        return
    if args.recovery:
        with tempfile.TemporaryDirectory() as tmp:
            print(json.dumps(_recovery(args.recovery, Path(tmp)), indent=2))
        return
    events = _events(args.users)
    if args.engines:
        print(json.dumps(_engines(events, args.engines), indent=2))
        return
    policy = default_policy(default_taxonomy())
    result: dict[str, Any] = {
        "users": args.users,
        "events": len(events),
        "cpu_division": _divide(args.users, len(events), sum(map(dataset_level, events))),
    }
    print(json.dumps(result, indent=2), flush=True)
    if args.skip_kafka:
        return
    whole = SqliteStore(":memory:")
    for start in range(0, len(events), UNIT):
        Tracker(whole, policy).apply(events[start : start + UNIT])
    reference = whole.snapshot()
    store = _neo4j()
    kafka: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.old:
            old = work / "old"
            subprocess.run(["git", "worktree", "add", "--detach", str(old), args.old],
                           cwd=ROOT, check=True, capture_output=True)  # fmt: skip
            try:
                store.clear()
                kafka[f"worker_{args.old}"], _ = _variant(
                    "worker_old", events, work, 0, False, worker=True, cwd=old
                )
            finally:
                subprocess.run(["git", "worktree", "remove", "--force", str(old)], cwd=ROOT,
                               check=False, capture_output=True)  # fmt: skip
        store.clear()
        kafka["worker"], _ = _variant("worker", events, work, 0, False, worker=True)
        kafka["processors_1"], _ = _variant("processors_1", events, work, 1, False)
        kafka["processors_2"], two = _variant("processors_2", events, work, 2, False)
        store.clear()
        kafka["sink"] = _sink_alone(two, work, len(events))
        if store.snapshot() != reference:
            raise SystemExit("the view the sink wrote differs from the one-store graph")
        store._write("sink bookkeeping", "MATCH (p:SinkPosition) DELETE p")  # not the graph
        graph = _export(store)
        relationships = sum(len(rows) for rows in graph[1].values())
        plain_s, _ = _same_graph(store, graph, 5_000)
        kafka["same_graph_written_plainly"] = {
            "seconds": round(plain_s, 2), "relationships": relationships,
            "events_per_s": round(len(events) / plain_s),
        }  # fmt: skip
        store.clear()
        kafka["end_to_end"], _ = _variant("end_to_end", events, work, 2, True)
        if store.snapshot() != reference:
            raise SystemExit("the end-to-end view differs from the one-store graph")
        store.clear()
    store.close()
    base = kafka["worker"]["events_per_s"]
    one = kafka["processors_1"]["events_per_s"]
    result["kafka"] = kafka
    result["ratios"] = {
        "two_processors_vs_one": round(kafka["processors_2"]["events_per_s"] / one, 3),
        "sink_vs_same_graph_plainly": round(
            kafka["sink"]["events_per_s"] / kafka["same_graph_written_plainly"]["events_per_s"], 3
        ),
        "end_to_end_vs_worker": round(kafka["end_to_end"]["events_per_s"] / base, 3),
    }
    result["children_cpu_s"] = round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime, 1)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
