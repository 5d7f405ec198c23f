"""End to end: Kafka -> ``lineage worker`` -> Neo4j, beside a plain consumer of the same topic.

Needs the services' variables (``eval "$(services/svc env)"``); it empties that Neo4j database
and creates its own topics (``bench.<tree>.<stamp>.*``). Run:
``python -m bench.neo4j_worker --users 20000 [--old 0386860 --old-python /path/to/venv/python]``.

For each tree (this one, and ``--old`` from a git worktree run with ``--old-python``, a venv
holding that commit's dependencies): its own ``lineage ingest --kafka`` produces the reference
case (``lineage.reference_case.generate``) to a fresh events topic; a plain kafka-python
consumer reads that topic from start to end (the baseline: what Kafka and the client give);
then the tree's ``lineage worker`` starts on an empty graph and the harness waits until the
worker's consumer group has committed every partition's end offset. Reported: events/s from
the worker's launch (start-up included) and from its first committed offset, the baseline's
messages/s, the ratio, and how many distinct alerts the worker published.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from bench.embedded_scale import _write_input_elsewhere
from graph.neo4j_store import Neo4jStore
from graph.store import GraphSnapshot

ROOT = Path(__file__).resolve().parent.parent
KEY = "bench-key-0123456789abcdef"
#: Every partition's committed offset is checked this often.
POLL_S = 0.2
#: A worker that has not caught up by then is reported as such.
TIMEOUT_S = 3_600.0


def _store() -> Neo4jStore:
    return Neo4jStore(
        os.environ["LINEAGE_NEO4J_URI"],
        os.environ.get("LINEAGE_NEO4J_USER", "neo4j"),
        os.environ["LINEAGE_NEO4J_PASSWORD"],
    )


def _reset_neo4j(drop_schema: bool) -> None:
    """An empty graph; with ``drop_schema`` also no constraint or index (another commit's
    schema must not meet this one's)."""
    store = _store()
    try:
        store.clear()
        if drop_schema:
            for row in store._read("listing constraints", "SHOW CONSTRAINTS YIELD name"):
                store._write("dropping", f"DROP CONSTRAINT `{row['name']}` IF EXISTS")
            for row in store._read(
                "listing indexes", "SHOW INDEXES YIELD name, type WHERE type <> 'LOOKUP'"
            ):
                store._write("dropping", f"DROP INDEX `{row['name']}` IF EXISTS")
    finally:
        store.close()


def _alerts_published(bootstrap: str, topic: str) -> int:
    """Distinct alert ids on the alerts topic (revisions share their alert's key)."""
    ends = _ends(bootstrap, topic)
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    consumer.assign(list(ends))
    consumer.seek_to_beginning()
    keys: set[bytes] = set()
    while any(consumer.position(tp) < end for tp, end in ends.items()):
        for records in consumer.poll(timeout_ms=1000).values():
            keys.update(r.key for r in records)
    consumer.close()
    return len(keys)


def _ends(bootstrap: str, topic: str) -> dict[TopicPartition, int]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        return dict(consumer.end_offsets(partitions))
    finally:
        consumer.close()


def _plain_consumer(bootstrap: str, topic: str, ends: dict[TopicPartition, int]) -> float:
    """Messages/s of a bare kafka-python consumer reading the topic from start to end."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    consumer.assign(list(ends))
    consumer.seek_to_beginning()
    total = sum(ends.values())
    seen = 0
    started = time.perf_counter()
    while seen < total:
        for records in consumer.poll(timeout_ms=1000, max_records=10_000).values():
            seen += len(records)
    seconds = time.perf_counter() - started
    consumer.close()
    return total / seconds


def _committed(admin: KafkaAdminClient, group: str) -> dict[TopicPartition, int]:
    try:
        offsets = admin.list_group_offsets(group).get(group, {})
    except KafkaError:  # the group does not exist yet
        return {}
    return {tp: meta.offset for tp, meta in offsets.items() if meta.offset >= 0}


def _delete_topics(admin: KafkaAdminClient, topics: list[str]) -> None:
    """The harness's own topics, so repeated runs leave nothing behind (best effort)."""
    with contextlib.suppress(KafkaError):
        admin.delete_topics(topics)


def _run_tree(
    name: str,
    tree: Path,
    python: str,
    lines: Path,
    bootstrap: str,
    drop_schema: bool,
    workers: int = 1,
    graphs: dict[str, GraphSnapshot] | None = None,
) -> dict[str, Any]:
    """``workers`` processes of the tree's worker share one consumer group (the topic has
    ``LINEAGE_TOPIC_PARTITIONS`` partitions, 4 by default); with ``graphs``, the graph they
    left is kept there under ``name`` for comparison."""
    stamp = f"{name}.{int(time.time())}"
    topic = f"bench.{stamp}.events"
    env = {
        **os.environ,
        "LINEAGE_KEY": KEY,
        "LINEAGE_EVENTS_TOPIC": topic,
        "LINEAGE_ALERTS_TOPIC": f"bench.{stamp}.alerts",
        "LINEAGE_DEADLETTER_TOPIC": f"bench.{stamp}.deadletter",
    }
    with tempfile.TemporaryDirectory(prefix="lineage-bench-") as home:
        env["LINEAGE_HOME"] = home
        started = time.perf_counter()
        subprocess.run(
            [python, "-m", "cli.main", "ingest", str(lines), "--kafka"],
            cwd=tree, env=env, check=True, capture_output=True,
        )  # fmt: skip
        produce_s = time.perf_counter() - started
        ends = _ends(bootstrap, topic)
        events = sum(ends.values())
        plain = _plain_consumer(bootstrap, topic, ends)
        _reset_neo4j(drop_schema)
        group = f"lineage-projector-{topic}"
        admin = KafkaAdminClient(bootstrap_servers=bootstrap)
        log = Path(home) / "worker.log"
        with log.open("wb") as sink:
            launched = time.perf_counter()
            command = [python, "-m", "cli.main", "worker"]
            running = [
                subprocess.Popen(command, cwd=tree, env=env, stdout=sink, stderr=sink)
                for _ in range(workers)
            ]
            first: float | None = None
            done = False
            try:
                while time.perf_counter() - launched < TIMEOUT_S:
                    if any(worker.poll() is not None for worker in running):
                        raise RuntimeError(f"{name} worker exited: {log.read_text()[-2000:]}")
                    committed = _committed(admin, group)
                    if committed and first is None:
                        first = time.perf_counter()
                    # faust commits the last processed offset, the loop the next one: both
                    # are done when every partition is within one of its end
                    if all(committed.get(tp, -1) >= end - 1 for tp, end in ends.items() if end):
                        done = True
                        break
                    time.sleep(POLL_S)
                finished = time.perf_counter()
            finally:
                for worker in running:
                    worker.send_signal(signal.SIGTERM)
                for worker in running:
                    try:
                        worker.wait(timeout=60)
                    except subprocess.TimeoutExpired:
                        worker.kill()
                        worker.wait()
                if graphs is not None and done:
                    store = _store()
                    try:
                        graphs[name] = store.snapshot()
                    finally:
                        store.close()
                alerts = _alerts_published(bootstrap, env["LINEAGE_ALERTS_TOPIC"])
                _delete_topics(admin, [topic, env["LINEAGE_ALERTS_TOPIC"],
                                       env["LINEAGE_DEADLETTER_TOPIC"]])  # fmt: skip
                admin.close()
    wall = finished - launched
    # too short to tell when the whole topic fits in the first unit (a smoke size)
    steady = finished - first if first is not None and finished - first > POLL_S else None
    return {
        "tree": name,
        "workers": workers,
        "events": events,
        "caught_up": done,
        "ingest_produce_s": round(produce_s, 1),
        "worker_s_from_launch": round(wall, 1),
        "worker_events_per_s": round(events / wall),
        "worker_events_per_s_from_first_commit": round(events / steady) if steady else None,
        "plain_consumer_msgs_per_s": round(plain),
        "ratio_to_plain_consumer": round(events / wall / plain, 4),
        "alerts_published": alerts,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--old", help="a commit to compare with, from a git worktree")
    parser.add_argument("--old-python", help="a Python whose environment runs --old")
    parser.add_argument(
        "--workers", type=int, action="append",
        help="also run this tree with N workers in one group (repeatable), and compare graphs",
    )  # fmt: skip
    args = parser.parse_args()
    bootstrap = os.environ["LINEAGE_KAFKA_BOOTSTRAP"]
    results = []
    with tempfile.TemporaryDirectory(prefix="lineage-bench-") as work:
        lines = Path(work) / "events.jsonl"
        _write_input_elsewhere(args.users, lines)
        trees: list[tuple[str, Path, str]] = []
        if args.old:
            old = Path(work) / "old"
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(old), args.old],
                check=True, capture_output=True,
            )  # fmt: skip
            trees.append((f"old-{args.old}", old, args.old_python or sys.executable))
        trees.append(("new", ROOT, sys.executable))
        graphs: dict[str, GraphSnapshot] = {}
        try:
            for name, tree, python in trees:
                results.append(_run_tree(name, tree, python, lines, bootstrap, bool(args.old)))
            for count in args.workers or ():
                results.append(
                    _run_tree(f"new-{count}-workers", ROOT, sys.executable, lines, bootstrap,
                              False, count, graphs)
                )  # fmt: skip
        finally:
            if args.old:
                subprocess.run(
                    ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(old)],
                    check=False, capture_output=True,
                )  # fmt: skip
            _reset_neo4j(drop_schema=False)
    if args.old:
        results[1]["new_over_old"] = round(
            results[1]["worker_events_per_s"] / results[0]["worker_events_per_s"], 2
        )
    summary: dict[str, Any] = {"users": args.users, "runs": results}
    if len(graphs) > 1:
        first, *others = graphs.values()
        summary["same_graph_for_every_worker_count"] = all(g == first for g in others)
        summary["graph_counts"] = first.counts()
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
