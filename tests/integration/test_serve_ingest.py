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
