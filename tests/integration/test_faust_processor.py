"""``lineage processor --engine faust`` against real Kafka and Neo4j: the partitioned processor
as a faust-streaming agent, each partition's stored position the offset of record (faust's
commits are hints). Each case ends on the one-store reference (``assert_reference``: the view
in Neo4j equals it, every active alert on the alerts topic), so no event was lost and none was
applied twice:

- an agent that raises on its first batch: the process exits non-zero (mode's
  ``CrashingSupervisor``: faust does not restart the agent and ack past the batch), nothing is
  committed; restarted, it applies everything (offsets 0.. are not skipped);
- ``take_events``' case, an agent raising on every batch: it crashes each time without moving
  a position or a commit; restarted without the fault, everything is applied;
- ``kill -9`` mid-batch, then a restart;
- a rebalance mid-batch: a second processor joins mid-stream, then the first one stops.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lineage.events import Event
from streams.consumer_group import processor_group_id
from streams.faust_processor import FAIL_BATCHES_ENV, MID_BATCH_MARK, SLOW_BATCH_ENV, SOUGHT
from streams.kafka_log import rewind_group
from tests.integration.conftest import ROOT, Reference, open_pipeline
from tests.integration.test_partitioned_pipeline import (
    SINK,
    ScaleOut,
    assert_reference,
    partitioned,
)

pytestmark = [pytest.mark.kafka, pytest.mark.neo4j]

FAUST = [sys.executable, "-m", "cli.main", "processor", "--engine", "faust", "--loglevel", "warn"]
EXIT_TIMEOUT_S = 90.0


class FaustScale(ScaleOut):
    def start_faulty(self, name: str, fault: str) -> subprocess.Popen[bytes]:
        """A faust processor whose agent raises on batches (``LINEAGE_TEST_FAIL_BATCHES``)."""
        process = self.start_hooked(name, {FAIL_BATCHES_ENV: fault})
        self.processes.pop(name)  # it is meant to exit: wait_done does not watch it
        return process

    def start_hooked(self, name: str, hooks: dict[str, str]) -> subprocess.Popen[bytes]:
        out = (self.pipe.logs / f"{name}.log").open("ab")
        process = subprocess.Popen(
            FAUST, cwd=ROOT, env={**self.pipe.env, **hooks}, stdout=out, stderr=out
        )
        self.processes[name] = process
        self.pipe.workers.append(process)  # stopped by the fixture
        return process

    def wait_mid_batch(self, name: str, times: int = 1) -> None:
        """Until the processor's log shows it blocked mid-batch ``times`` times."""
        self.wait_logged(name, MID_BATCH_MARK, times)

    def wait_logged(self, name: str, text: str, times: int) -> list[str]:
        """Until ``text`` is on ``times`` lines of the processor's log; those lines."""
        path = self.pipe.logs / f"{name}.log"
        deadline = time.monotonic() + EXIT_TIMEOUT_S
        while True:
            lines = [line for line in path.read_text(errors="replace").splitlines() if text in line]
            if len(lines) >= times:
                return lines
            if time.monotonic() > deadline:
                pytest.fail(f"{name} never logged {text!r} {times} times:\n"
                            f"{self.pipe.worker_output()}")  # fmt: skip
            time.sleep(0.1)

    def wait_exit(self, process: subprocess.Popen[bytes]) -> int:
        try:
            return process.wait(timeout=EXIT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the faulty processor did not stop:\n{self.pipe.worker_output()}")

    def committed(self) -> int:
        """The processor group's committed offsets, summed (0 when it committed nothing)."""
        settings = self.pipe.settings
        return self.lag(processor_group_id(settings), settings.events_topic)[0]


@pytest.fixture
def scale(services: object, tmp_path: Path) -> Iterator[FaustScale]:
    with open_pipeline(services, tmp_path) as pipe:  # type: ignore[arg-type]
        yield FaustScale(partitioned(pipe))


def test_a_faust_processor_and_a_sink_give_the_reference_graph(
    scale: FaustScale, case_events: list[Event], reference: Reference
) -> None:
    scale.pipe.produce(case_events)
    scale.start("processor", FAUST)
    scale.start("sink", SINK)
    scale.wait_done()
    assert_reference(scale, reference)


def test_faust_commits_decide_nothing(
    scale: FaustScale, case_events: list[Event], reference: Reference
) -> None:
    """The group's offsets (faust's commits) rewound to 0 after a full run: the restarted
    processor seeks to the stored positions; no change is produced again."""
    scale.pipe.produce(case_events)
    scale.start("processor", FAUST)
    scale.start("sink", SINK)
    scale.wait_done()
    changes = len(scale.pipe.read_topic(scale.pipe.settings.changes_topic))
    scale.stop("processor")
    rewind_group(scale.pipe.settings, processor_group_id(scale.pipe.settings))
    assert scale.committed() == 0
    scale.start("processor", FAUST)
    scale.wait_done()
    assert len(scale.pipe.read_topic(scale.pipe.settings.changes_topic)) == changes
    assert_reference(scale, reference)


def test_an_agent_raising_on_its_first_batch_stops_and_loses_nothing(
    scale: FaustScale, case_events: list[Event], reference: Reference
) -> None:
    """The reproduction: faust's default supervisor restarted the agent, whose next batch
    was acked past the failed one (offsets 0-4 never applied). Here the process exits."""
    scale.pipe.produce(case_events)
    scale.start("sink", SINK)
    faulty = scale.start_faulty("processor-faulty", "1")
    assert scale.wait_exit(faulty) != 0
    assert "the agent raises on a batch" in scale.pipe.worker_output()
    assert scale.committed() == 0  # nothing was acked past the failed batch
    scale.start("processor", FAUST)
    scale.wait_done()
    assert_reference(scale, reference)


def test_an_agent_raising_on_every_batch_commits_no_progress(
    scale: FaustScale, case_events: list[Event], reference: Reference
) -> None:
    """``take_events``' case: a batch that raised was acked in a ``finally`` and committed.
    Here each run crashes on its first batch, twice, and commits nothing."""
    scale.pipe.produce(case_events)
    scale.start("sink", SINK)
    for attempt in range(2):
        faulty = scale.start_faulty(f"processor-faulty-{attempt}", "all")
        assert scale.wait_exit(faulty) != 0
        assert scale.committed() == 0
    scale.start("processor", FAUST)
    scale.wait_done()
    assert_reference(scale, reference)


def test_an_agent_raising_after_applying_a_batch_loses_nothing(
    scale: FaustScale, case_events: list[Event], reference: Reference
) -> None:
    """The agent applies its first batch, then raises on every later one (``after:1``):
    the restart re-applies nothing of the first batch and applies the rest."""
    half = len(case_events) // 2
    scale.start("sink", SINK)
    scale.pipe.produce(case_events[:half])
    faulty = scale.start_faulty("processor-faulty", "after:1")
    deadline = time.monotonic() + EXIT_TIMEOUT_S
    while scale.committed() == 0 and faulty.poll() is None:  # the first batch's acks
        assert time.monotonic() < deadline, scale.pipe.worker_output()
        time.sleep(0.2)
    scale.pipe.produce(case_events[half:])
    assert scale.wait_exit(faulty) != 0
    settings = scale.pipe.settings
    done, total = scale.lag(processor_group_id(settings), settings.events_topic)
    assert 0 < done < total  # the first batch applied and acked, the failed one not
    scale.start("processor", FAUST)
    scale.wait_done()
    assert_reference(scale, reference)


def test_an_exception_the_agent_lets_out_stops_the_process_and_loses_nothing(
    scale: FaustScale, case_events: list[Event], reference: Reference
) -> None:
    """An exception out of the agent (a bug) reaches faust: ``CrashingSupervisor`` does not
    restart the agent, the app's error handler stops the worker. faust turns the stream's
    acks back on once ``noack_take`` is closed and may commit what it fetched meanwhile,
    unapplied: the stored positions decide, so the restart still applies everything."""
    scale.pipe.produce(case_events)
    scale.start("sink", SINK)
    faulty = scale.start_faulty("processor-faulty", "uncaught")
    assert scale.wait_exit(faulty) != 0
    assert "uncaught in the agent" in scale.pipe.worker_output()
    scale.start("processor", FAUST)
    scale.wait_done()
    assert_reference(scale, reference)


def test_kill_9_mid_batch_then_restart_gives_the_reference_graph(
    scale: FaustScale, case_events: list[Event], reference: Reference
) -> None:
    """SIGKILL while the agent is blocked mid-batch (a test hook, after applying one
    partition's share: that one's position moved, the others' not, nothing acked)."""
    scale.start("sink", SINK)
    scale.pipe.produce(case_events[: len(case_events) // 2])
    scale.start_hooked("processor", {SLOW_BATCH_ENV: "30"})
    scale.wait_mid_batch("processor")
    scale.pipe.produce(case_events[len(case_events) // 2 :])
    scale.kill("processor")
    scale.kill("sink")
    scale.start("processor", FAUST)
    scale.start("sink", SINK)
    scale.wait_done()
    assert_reference(scale, reference)


def test_a_rebalance_mid_batch_gives_the_reference_graph(
    scale: FaustScale, case_events: list[Event], reference: Reference
) -> None:
    """1 -> 2 -> 1 faust processors while events stream in, each rebalance while the first
    one is blocked mid-batch (a test hook): its revoked partitions close only once the batch
    is done, the second processor waits for their stores (the state directory is shared here,
    as one host's disk), then goes on from their positions."""
    third = len(case_events) // 3
    scale.start("sink", SINK)
    scale.start_hooked("processor-a", {SLOW_BATCH_ENV: "3"})
    scale.pipe.produce(case_events[:third])
    scale.wait_mid_batch("processor-a")
    scale.start("processor-b", [*FAUST, "--loglevel", "info"])  # 1 -> 2 while a is mid-batch
    b_sought = scale.wait_logged("processor-b", SOUGHT, 1)
    marks = (scale.pipe.logs / "processor-a.log").read_text().count(MID_BATCH_MARK)
    scale.pipe.produce(case_events[third : 2 * third])
    scale.wait_mid_batch("processor-a", marks + 1)
    scale.stop("processor-a")  # 2 -> 1 mid-batch: a's partitions move to b
    scale.pipe.produce(case_events[2 * third :])
    scale.wait_done()
    assert_reference(scale, reference)
    # b had a share of the partitions while a lived, then all of them
    partitions = scale.pipe.settings.topic_partitions
    assert 0 < b_sought[0].count("@") < partitions, b_sought
    assert scale.wait_logged("processor-b", SOUGHT, 2)[-1].count("@") == partitions
