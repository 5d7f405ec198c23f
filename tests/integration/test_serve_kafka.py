"""``lineage serve`` in production mode: each unit is produced to the events topic (nothing is
applied in the serving process) and the worker builds from it the graph the embedded home
builds from the same RunEvents."""

from __future__ import annotations

from pathlib import Path

from bench.serve_ingest import post_all, run_events, serving, snapshot
from tests.integration.conftest import Pipeline


def test_served_run_events_reach_the_events_topic_and_the_worker(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    bodies = run_events(120)
    env = {k: v for k, v in pipeline.env.items() if k.startswith("LINEAGE_")}
    with serving(tmp_path / "kafka-home", env=env) as served:
        result = post_all(served.url, bodies, 10)
        assert served.stop() == 0
    assert (result.connection_errors, result.unanswered, result.statuses[200]) == (0, 0, 120)
    declared = sum(1 for b in bodies if b'"personalData"' in b)
    records = pipeline.read_topic(pipeline.settings.events_topic)
    assert len(records) == 120 + declared  # a flow or a use each, and the declared collections
    assert pipeline.store.snapshot().flows == frozenset()  # serve only produced

    with serving(tmp_path / "embedded") as served:
        assert post_all(served.url, bodies, 1).statuses[200] == 120
        assert served.stop() == 0
    pipeline.start_worker()
    pipeline.wait_caught_up()
    expected = snapshot(tmp_path / "embedded")
    found = pipeline.store.snapshot()
    assert (found.flows, found.uses, found.copies, found.alerts) == (
        expected.flows,
        expected.uses,
        expected.copies,
        expected.alerts,
    )
