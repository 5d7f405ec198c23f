"""The partitioned topology against real Kafka and Neo4j: ``lineage processor`` workers
(each partition's state on local disk, positions committed with it) and a ``lineage sink``
writing the served view, compared whole with the one-store reference.

- two processors and a sink give the reference graph in Neo4j (``GraphSnapshot``) and on
  the alerts topic every active alert;
- ``kill -9`` of a processor mid-stream, then a restart: the same graph, no alert missing;
- a processor whose group offsets are rewound (faust-style commits ahead or behind decide
  nothing) applies nothing twice and loses nothing;
- 1 -> 2 -> 1 processors: partitions move with their state (the state directory is shared
  by the processors here, as one host's disk), the graph stays the reference's.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka import OffsetSpec, TopicPartition
from kafka.errors import KafkaError

from lineage.alerts import Alert
from lineage.events import Event
from streams.consumer_group import processor_group_id, sink_group_id
from streams.kafka_log import partitioned_messages, rewind_group
from tests.integration.conftest import ROOT, Pipeline, Reference, open_pipeline

pytestmark = [pytest.mark.kafka, pytest.mark.neo4j]

PROCESSOR = [sys.executable, "-m", "cli.main", "processor", "--loglevel", "warn"]
SINK = [sys.executable, "-m", "cli.main", "sink", "--loglevel", "warn"]
TIMEOUT_S = 120.0


class ScaleOut:
    def __init__(self, pipe: Pipeline) -> None:
        self.pipe = pipe
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, command: list[str]) -> None:
        out = (self.pipe.logs / f"{name}.log").open("ab")
        self.processes[name] = subprocess.Popen(
            command, cwd=ROOT, env=self.pipe.env, stdout=out, stderr=out
        )
        self.pipe.workers.append(self.processes[name])  # stopped by the fixture

    def kill(self, name: str) -> None:
        process = self.processes.pop(name)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)

    def stop(self, name: str) -> None:
        process = self.processes.pop(name)
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)

    def lag(self, group: str, topic: str) -> tuple[int, int]:
        admin = self.pipe.admin
        parts = [TopicPartition(topic, p) for p in range(self.pipe.settings.topic_partitions)]
        ends = admin.list_partition_offsets({tp: OffsetSpec.LATEST for tp in parts})
        committed = admin.list_group_offsets(group)[group]
        done = sum(committed[tp].offset for tp in parts if tp in committed)
        return done, sum(ends[tp].offset for tp in parts)

    def wait_done(self) -> None:
        """Every event applied (the processors' position hints at the ends), then every
        change in the view (the sink's commits at the changes topic's end)."""
        settings = self.pipe.settings
        for group, topic in (
            (processor_group_id(settings), settings.events_topic),
            (sink_group_id(settings), settings.changes_topic),
        ):
            deadline = time.monotonic() + TIMEOUT_S
            while True:
                for name, process in self.processes.items():
                    if process.poll() is not None:
                        pytest.fail(f"{name} exited:\n{self.pipe.worker_output()}")
                try:
                    done, total = self.lag(group, topic)
                except KafkaError as exc:  # a fresh broker still creating __consumer_offsets
                    if not exc.retriable:
                        raise
                    done, total = 0, 0
                if total > 0 and done == total:
                    break
                if time.monotonic() > deadline:
                    pytest.fail(f"{group}: {done}/{total}:\n{self.pipe.worker_output()}")
                time.sleep(0.3)


def partitioned(pipe: Pipeline) -> Pipeline:
    """Producers and processors of this pipeline route per partition (docs/scale.md)."""
    pipe.settings = pipe.settings.model_copy(update={"event_routing": "partitioned"})
    pipe.env["LINEAGE_EVENT_ROUTING"] = "partitioned"
    return pipe


@pytest.fixture
def scale(services: object, tmp_path: Path) -> Iterator[ScaleOut]:
    with open_pipeline(services, tmp_path) as pipe:  # type: ignore[arg-type]
        yield ScaleOut(partitioned(pipe))


def assert_reference(scale: ScaleOut, reference: Reference) -> None:
    pipe = scale.pipe
    view = pipe.store.snapshot()
    for name in ("flows", "uses"):
        extra = getattr(view, name) - getattr(reference.snapshot, name)
        missing = getattr(reference.snapshot, name) - getattr(view, name)
        assert not (extra or missing), (name, sorted(map(str, extra))[:3],
                                        sorted(map(str, missing))[:3])  # fmt: skip
    assert view == reference.snapshot
    active = {a.alert_id for a in reference.alerts if a.status == "active"}
    sent = {
        Alert.model_validate_json(r.value).alert_id
        for r in pipe.read_topic(pipe.settings.alerts_topic)
    }
    assert active <= sent
    assert pipe.store.unpublished_alerts() == []  # the view sends nothing


def test_two_processors_and_a_sink_give_the_reference_graph(
    scale: ScaleOut, case_events: list[Event], reference: Reference
) -> None:
    scale.pipe.produce(case_events)
    scale.start("processor-a", PROCESSOR)
    scale.start("processor-b", PROCESSOR)
    scale.start("sink", SINK)
    scale.wait_done()
    assert_reference(scale, reference)


def test_kill_9_mid_stream_then_restart_gives_the_reference_graph(
    scale: ScaleOut, case_events: list[Event], reference: Reference
) -> None:
    half = len(case_events) // 2
    scale.start("sink", SINK)
    scale.start("processor", PROCESSOR)
    scale.pipe.produce(case_events[:half])
    time.sleep(2.0)  # mid-stream: some batches applied, the rest in flight
    scale.pipe.produce(case_events[half:])
    time.sleep(0.5)
    scale.kill("processor")
    scale.kill("sink")
    scale.start("processor", PROCESSOR)
    scale.start("sink", SINK)
    scale.wait_done()
    assert_reference(scale, reference)


def test_group_offsets_decide_nothing(
    scale: ScaleOut, case_events: list[Event], reference: Reference
) -> None:
    """The group's commits rewound to 0 (a commit behind) after everything was applied:
    the positions stored with the state skip what was applied; the graph is unchanged."""
    scale.pipe.produce(case_events)
    scale.start("processor", PROCESSOR)
    scale.start("sink", SINK)
    scale.wait_done()
    changes = len(scale.pipe.read_topic(scale.pipe.settings.changes_topic))
    scale.stop("processor")
    rewind_group(scale.pipe.settings, processor_group_id(scale.pipe.settings))
    scale.start("processor", PROCESSOR)
    scale.wait_done()
    assert len(scale.pipe.read_topic(scale.pipe.settings.changes_topic)) == changes
    assert_reference(scale, reference)


def test_one_two_one_processors_move_partitions_with_their_state(
    scale: ScaleOut, case_events: list[Event], reference: Reference
) -> None:
    third = len(case_events) // 3
    scale.start("sink", SINK)
    scale.start("processor-a", PROCESSOR)
    scale.pipe.produce(case_events[:third])
    scale.start("processor-b", PROCESSOR)  # 1 -> 2: half the partitions move to b
    scale.pipe.produce(case_events[third : 2 * third])
    time.sleep(3.0)
    scale.stop("processor-a")  # 2 -> 1: a's partitions move to b
    scale.pipe.produce(case_events[2 * third :])
    scale.wait_done()
    assert_reference(scale, reference)


def test_processor_metrics_count_every_partitions_messages(
    scale: ScaleOut, case_events: list[Event], reference: Reference
) -> None:
    """``lineage processor --metrics-port``: one set of metrics for all its partitions."""
    from tests.integration.test_worker_metrics import _free_port, _samples

    port = _free_port()
    scale.pipe.produce(case_events)
    scale.start("processor", [*PROCESSOR, "--metrics-port", str(port)])
    scale.start("sink", SINK)
    scale.wait_done()
    samples = _samples(f"http://127.0.0.1:{port}/metrics")
    partitions = scale.pipe.settings.topic_partitions
    messages = sum(len(partitioned_messages(e, partitions)) for e in case_events)
    assert messages > len(case_events)  # the broadcast copies and parts were produced
    assert samples[("lineage_events_total", (("outcome", "accepted"),))] == messages
    raised = sum(v for (name, _), v in samples.items() if name == "lineage_alerts_total")
    assert raised >= len({a.alert_id for a in reference.alerts if a.status == "active"})
    assert samples[("lineage_consumer_lag", ())] == 0
    assert_reference(scale, reference)
