"""``lineage rebuild --neo4j`` against the real Kafka and Neo4j: the bulk-imported graph is the
graph the worker wrote for the same events, every query and report answers the same, no alert
is re-sent, and a worker resumes right after the rebuilt point.

It restarts the ``services/svc`` Neo4j (the swap needs it stopped), so it runs only when
that server is the one the tests use.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from neo4j import GraphDatabase
from pydantic import SecretStr

from cli.rebuild_commands import REPO, admin_libs, services_home
from graph.neo4j_bulk import svc_control
from graph.neo4j_store import Neo4jStore
from lineage.alerts import Alert
from lineage.events import Event
from lineage.policy import Policy
from lineage.queries import QUERIES
from lineage.reference_case import AUTH, ReferenceCase
from runtime.neo4j_rebuild import rebuild_neo4j
from runtime.service import LineageService
from runtime.settings import Settings
from tests.conftest import TEST_KEY
from tests.integration.conftest import ROOT, Pipeline, Services, open_pipeline, reference_of


def shape(pipe: Pipeline) -> dict[str, Any]:
    """Counts per label and relationship type, and the property keys each carries."""
    nodes = pipe.cypher(
        "MATCH (n) UNWIND labels(n) AS kind UNWIND CASE WHEN size(keys(n)) = 0 THEN [null] "
        "ELSE keys(n) END AS key RETURN kind, key, count(*) AS n ORDER BY kind, key"
    )
    rels = pipe.cypher(
        "MATCH ()-[r]->() UNWIND CASE WHEN size(keys(r)) = 0 THEN [null] ELSE keys(r) END "
        "AS key RETURN type(r) AS kind, key, count(*) AS n ORDER BY kind, key"
    )
    return {"nodes": nodes, "relationships": rels}


def answers(pipe: Pipeline) -> dict[str, Any]:
    """Every documented query and the report, as the CLI prints them (``--json``)."""

    def cli(*args: str) -> Any:
        done = subprocess.run(
            [sys.executable, "-m", "cli.main", *args, "--json"],
            cwd=ROOT, env=pipe.env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    found = {
        name: cli("query", name, *([AUTH] if name == "blast-radius" else []), "--all")
        for name in QUERIES
    }
    found["report"] = cli("report")
    found["alerts"] = cli("alerts")
    return found


def published(pipe: Pipeline) -> list[tuple[str, int]]:
    """(alert id, revision) of every alert on the alerts topic, in topic order."""
    records = pipe.read_topic(pipe.settings.alerts_topic)
    alerts = [Alert.model_validate_json(r.value) for r in records]
    return [(a.alert_id, a.revision) for a in alerts]


def svc_serves(services: Services) -> bool:
    env = subprocess.run(
        ["bash", str(REPO / "services" / "svc"), "env"], capture_output=True, text=True
    )
    running = subprocess.run(
        ["bash", str(REPO / "services" / "svc"), "status", "neo4j"], capture_output=True
    )
    return running.returncode == 0 and f"LINEAGE_NEO4J_URI={services.neo4j_uri}" in env.stdout


def test_bulk_rebuild_equals_the_tracker_graph(
    services: Services, case_events: list[Event], policy: Policy, tmp_path: Path
) -> None:
    if not svc_serves(services):
        pytest.skip("the tests' Neo4j is not this checkout's services/svc server")
    cut = len(case_events) * 4 // 5
    (tmp_path / "run").mkdir()
    with open_pipeline(services, tmp_path / "run") as pipe:
        pipe.produce(case_events[:cut])
        pipe.start_worker()
        pipe.wait_caught_up()
        pipe.stop_workers()
        before = pipe.store.snapshot()
        edges, alerts = sorted(pipe.store.edges()), pipe.store.alerts(include_withdrawn=True)
        graph, said = shape(pipe), answers(pipe)
        assert before.counts()["copies"] > 0 and alerts
        assert not pipe.store.unpublished_alerts()
        sent = published(pipe)

        control = (svc_control(REPO, "stop"), svc_control(REPO, "start"))
        report = rebuild_neo4j(
            pipe.settings, admin_libs(), tmp_path / "rebuild", services_home(), control
        )
        assert report.events == cut
        # a new database: a client's bookmarks of the old one would wait for its transactions
        pipe.store.close()
        pipe.driver.close()
        auth = (services.neo4j_user, services.neo4j_password)
        pipe.store = Neo4jStore(services.neo4j_uri, *auth)
        pipe.driver = GraphDatabase.driver(services.neo4j_uri, auth=auth)
        assert report.alerts_queued == 0  # the worker sent them all; none is re-sent

        assert pipe.store.snapshot() == before
        assert sorted(pipe.store.edges()) == edges
        assert pipe.store.alerts(include_withdrawn=True) == alerts
        assert not pipe.store.unpublished_alerts()
        assert shape(pipe) == graph
        assert answers(pipe) == said
        done, total = pipe.lag()
        assert done == total == cut  # the worker resumes after the rebuilt point

        pipe.produce(case_events[cut:])
        pipe.start_worker()
        pipe.wait_caught_up()
        pipe.stop_workers()
        assert pipe.store.snapshot() == reference_of(case_events, policy).snapshot
        fresh = Counter(published(pipe)) - Counter(sent)  # what was sent after the rebuild
        assert not set(fresh) & set(sent)  # nothing sent before is sent again


def test_bulk_rebuild_from_the_embedded_log(
    services: Services, case: ReferenceCase, tmp_path: Path
) -> None:
    """The embedded home's SQLite log as the source: Neo4j gets the embedded store's graph."""
    if not svc_serves(services):
        pytest.skip("the tests' Neo4j is not this checkout's services/svc server")
    home = tmp_path / "home"
    embedded = Settings(home=home, key=TEST_KEY.decode(), log="local", store="sqlite")
    with LineageService.open(embedded, []) as service:
        lines = [json.dumps(record).encode() for record in case.records]
        service.ingest(lines, origin="test", complete=True)
        expected = service.store.snapshot()
        edges = sorted(service.store.edges())
        alerts = service.store.alerts(include_withdrawn=True)
    assert expected.counts()["copies"] > 0 and alerts
    auth = (services.neo4j_user, services.neo4j_password)
    store = Neo4jStore(services.neo4j_uri, *auth)
    store.clear()
    store.close()

    settings = embedded.model_copy(
        update={"store": "neo4j", "neo4j_uri": services.neo4j_uri,
                "neo4j_user": services.neo4j_user,
                "neo4j_password": SecretStr(services.neo4j_password)}
    )  # fmt: skip
    control = (svc_control(REPO, "stop"), svc_control(REPO, "start"))
    report = rebuild_neo4j(settings, admin_libs(), tmp_path / "rebuild", services_home(), control)
    assert report.events == len(case.records) and report.source.startswith("local:")
    assert not report.offsets  # no consumer position to set for the embedded log
    store = Neo4jStore(services.neo4j_uri, *auth)
    try:
        assert store.snapshot() == expected
        assert sorted(store.edges()) == edges
        assert store.alerts(include_withdrawn=True) == alerts
        # a Neo4j that never saw them: every alert waits in its outbox, oldest first
        assert [a.alert_id for a in store.unpublished_alerts(limit=10**6)] == [
            a.alert_id for a in alerts
        ]
    finally:
        store.clear()
        store.close()
