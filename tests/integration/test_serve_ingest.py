"""``lineage serve`` as a fleet of pipelines uses it: concurrent clients, a full queue, a client
that stalls. The real command in a subprocess on 127.0.0.1 (embedded mode, a temporary home);
the clients are ``bench.serve_ingest``'s keep-alive HTTP/1.1 connections."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import requests

from bench.serve_ingest import (
    API_KEY,
    ENDPOINT,
    Connection,
    post_all,
    run_events,
    serving,
    slow_client_delay,
    snapshot,
)

AUTH = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}


def test_fifty_clients_lose_nothing_and_build_the_graph_one_client_builds(tmp_path: Path) -> None:
    bodies = run_events(300)
    with serving(tmp_path / "one") as served:
        one = post_all(served.url, bodies, 1)
        assert served.stop() == 0
    with serving(tmp_path / "many") as served:
        many = post_all(served.url, bodies, 50)
        metrics = requests.get(f"{served.url}/metrics", timeout=10).text
        assert served.stop() == 0
    assert (one.connection_errors, one.unanswered, dict(one.statuses)) == (0, 0, {200: 300})
    assert (many.connection_errors, many.unanswered) == (0, 0)
    assert set(many.statuses) <= {200, 503} and many.statuses[200] == 300
    graph = snapshot(tmp_path / "one")
    assert graph.alerts and graph.flows  # the RunEvents make violations: a graph worth comparing
    assert snapshot(tmp_path / "many") == graph
    # a RunEvent gives a flow or a use, and one declaring personal data its collection too
    declared = sum(1 for b in bodies if b'"personalData"' in b)
    assert 0 < declared < 300
    assert _sample(metrics, 'lineage_events_total{outcome="accepted"}') == 300 + declared
    assert _sample(metrics, "lineage_unit_requests_count") < 300  # units grouped requests


def _sample(exposition: str, name: str) -> float:
    [line] = [x for x in exposition.splitlines() if x.startswith(name + " ")]
    return float(line.split()[-1])


def test_a_full_queue_answers_503_with_retry_after_and_never_resets(tmp_path: Path) -> None:
    bodies = run_events(200)
    with serving(tmp_path / "home", "--queue-size", "1") as served:
        result = post_all(served.url, bodies, 50)
        metrics = requests.get(f"{served.url}/metrics", timeout=10).text
        assert served.stop() == 0
    assert result.connection_errors == 0 and result.unanswered == 0
    assert result.statuses[503] > 0  # 50 clients, room for 1 waiting: some were told to wait
    assert result.statuses[200] == 200  # ... and every RunEvent was recorded on a retry
    assert _sample(metrics, 'lineage_requests_rejected_total{status="503"}') == result.statuses[503]


def test_a_client_sending_one_byte_a_second_delays_nobody(tmp_path: Path) -> None:
    [body] = run_events(1)
    with serving(tmp_path / "home") as served:
        status, waited, cut = slow_client_delay(served, body)
        assert (status, cut) == (200, False)
        assert waited < 1.0, f"a normal POST waited {waited:.2f} s behind a slow client"
        assert served.stop() == 0
    assert len(snapshot(tmp_path / "home").flows) == 1  # recorded; the slow one never was


def test_keep_alive_serves_several_requests_on_one_connection(tmp_path: Path) -> None:
    bodies = run_events(3)

    async def post_three(url: str) -> list[tuple[int, int]]:
        connection = Connection(url)
        answers = [
            await connection.post(ENDPOINT, body, {"Authorization": f"Bearer {API_KEY}"})
            for body in bodies
        ]
        still_open = connection._streams is not None
        await connection.close()
        assert still_open  # no "Connection: close" was answered
        return [(a.status, json.loads(a.body)["accepted"]) for a in answers]

    with serving(tmp_path / "home") as served:
        assert asyncio.run(post_three(served.url)) == [(200, 2), (200, 2), (200, 2)]
        again = requests.post(served.endpoint, data=bodies[0], headers=AUTH, timeout=10)
        assert again.json() == {"accepted": 0, "duplicates": 2, "alerts": 0}
        assert served.stop() == 0


def test_an_officer_acknowledges_an_incident_through_the_api_into_the_log(
    tmp_path: Path,
) -> None:
    """``POST /api/v1/incidents/{id}/acknowledge`` behind the ingest key: the action is an
    event in the home's log (``lineage replay`` keeps it), answered with the incident."""
    import subprocess
    import sys

    from bench.serve_ingest import environment
    from lineage.events import IncidentAcknowledged
    from runtime.home import database
    from streams.local_log import LocalEventLog

    home = tmp_path / "home"
    quiet = {"LINEAGE_INCIDENT_QUIET_DAYS": "100000"}  # none resolves by itself

    def lineage(*args: str) -> object:
        done = subprocess.run([sys.executable, "-m", "cli.main", *args, "--json"],
                              env=environment(home, **quiet), capture_output=True, text=True,
                              timeout=300, check=True)  # fmt: skip
        return json.loads(done.stdout)

    lineage("demo", "--users", "40")
    incidents = lineage("incidents")
    assert isinstance(incidents, dict)
    target = incidents["incidents"][0]["incident_id"]
    body = {"by": "dpo@example.com", "why": "looking at the sync"}
    with serving(home, env=quiet) as served:
        url = f"{served.url}/api/v1/incidents/{target[:10]}/acknowledge"
        assert requests.post(url, json=body, timeout=30).status_code == 401  # no ingest key
        reader = {"Authorization": "Bearer not-the-key"}
        assert requests.post(url, json=body, headers=reader, timeout=30).status_code == 401
        missing = f"{served.url}/api/v1/incidents/{'f' * 32}/acknowledge"
        assert requests.post(missing, json=body, headers=AUTH, timeout=30).status_code == 404
        answer = requests.post(url, json=body, headers=AUTH, timeout=30)
        assert answer.status_code == 200, answer.text
        found = answer.json()
        assert (found["incident_id"], found["status"], found["acknowledged_by"]) == (
            target, "acknowledged", "dpo@example.com"
        )  # fmt: skip
        assert served.stop() == 0
    log = LocalEventLog(database(home), read_only=True)
    try:
        logged = [e for _, e in log.read() if isinstance(e, IncidentAcknowledged)]
    finally:
        log.close()
    assert [(e.incident_id, e.by, e.why) for e in logged] == [(target, body["by"], body["why"])]
    lineage("replay")
    after = lineage("incidents")
    assert isinstance(after, dict)
    mine = next(i for i in after["incidents"] if i["incident_id"] == target)
    assert (mine["status"], mine["why"]) == ("acknowledged", "looking at the sync")
