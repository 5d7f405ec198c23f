"""The read API and the officers' console on the demo's data, against the CLI's own answers.

Embedded mode: ``lineage demo`` fills a fresh home, ``lineage serve`` (a subprocess, with a
read token) serves it, and the console is driven in Debian's chromium by Playwright
(``executable_path``: no browser is downloaded). Screenshots go to ``$LINEAGE_TEST_ARTIFACTS``
(default ``.artifacts/``) under ``console/``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from bench.serve_ingest import API_KEY, Served, environment, serving
from lineage.reference_case import ADS, AUTH, MATCH_JOB, SYNC_JOB, generate
from tests.browser import chromium

ROOT = Path(__file__).resolve().parents[2]
USERS = 300
READ_TOKEN = "console-test-read-token"
AS_OF = "2014-01-01"
ARTIFACTS = Path(os.environ.get("LINEAGE_TEST_ARTIFACTS", ROOT / ".artifacts")) / "console"


def cli(home: Path, *args: str, stdin: str | None = None) -> Any:
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", *args, "--json"],
        env=environment(home), cwd=ROOT, input=stdin, capture_output=True, text=True,
        timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("console") / "home"
    cli(home, "demo", "--users", str(USERS))
    return home


@pytest.fixture(scope="module")
def server(demo: Path) -> Iterator[Served]:
    with serving(demo, env={"LINEAGE_READ_TOKEN": READ_TOKEN}) as served:
        yield served


def get(served: Served, path: str, **params: str) -> Any:
    answer = requests.get(
        served.url + path, params=params, timeout=60,
        headers={"Authorization": f"Bearer {READ_TOKEN}"},
    )  # fmt: skip
    assert answer.status_code == 200, answer.text
    return answer.json()


def same_times(summary: dict[str, Any]) -> dict[str, Any]:
    """``report --json`` spells UTC ``Z``, ``--format json`` ``+00:00``: compare instants."""
    return {
        k: datetime.fromisoformat(v) if k.endswith("_violation") and v else v
        for k, v in summary.items()
    }


def raw_affected() -> str:
    """A phone number the demo's history leaks to ad matching, as its users typed it."""
    truth = generate(users=USERS).truth
    return sorted(i for i in truth.affected_identifiers if "@" not in i)[0]


def test_reads_need_the_read_token_and_the_ingest_key_is_not_it(server: Served) -> None:
    url = server.url + "/api/v1/report"
    assert requests.get(url, timeout=30).status_code == 401
    ingest_key = {"Authorization": f"Bearer {API_KEY}"}
    assert requests.get(url, headers=ingest_key, timeout=30).status_code == 401
    token = {"Authorization": f"Bearer {READ_TOKEN}"}
    assert requests.get(url, headers=token, timeout=30).status_code == 200
    posted = requests.post(server.endpoint, data="{}", headers=token, timeout=30)
    assert posted.status_code == 401  # the read token records nothing
    schema = requests.get(server.url + "/openapi.json", timeout=30).json()
    assert {"/api/v1/lineage", "/api/v1/trace", "/api/v1/queries/{name}", "/api/v1/report",
            "/api/v1/alerts"} <= set(schema["paths"])  # fmt: skip
    assert set(schema["paths"]["/api/v1/lineage"]) == {"get", "post"}
    assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"


def test_the_api_answers_what_the_cli_answers(demo: Path, server: Served) -> None:
    for as_of in (None, AS_OF):
        when = {"as_of": as_of} if as_of else {}
        options = ("--as-of", as_of) if as_of else ()
        summary = same_times(get(server, "/api/v1/report", **when)["summary"])
        expected = same_times(cli(demo, "report", *options))
        assert {k: summary[k] for k in expected} == expected
        for name in ("paths", "affected", "collections", "erasure-gaps"):
            assert (
                get(server, f"/api/v1/queries/{name}", **when)["rows"]
                == cli(demo, "query", name, *options)["rows"]
            ), name
        assert get(server, "/api/v1/alerts", **when)["total"] == expected["alerts"]
    assert (
        get(server, "/api/v1/report", as_of=AS_OF)["summary"]["alerts"]
        < get(server, "/api/v1/report")["summary"]["alerts"]
    )  # the date matters: fewer violations then


def test_lineage_follows_marquez_shape_around_a_node(server: Served) -> None:
    around = get(server, "/api/v1/lineage", nodeId=f"dataset:{AUTH}", depth="1")["graph"]
    by_id = {node["id"]: node for node in around}
    assert by_id[f"dataset:{AUTH}"]["type"] == "DATASET"
    assert f"dataset:{ADS}" in by_id  # one step: through the sync job
    assert by_id[f"job:{SYNC_JOB}"]["type"] == "JOB"
    assert f"job:{MATCH_JOB}" not in by_id  # two steps away
    out = by_id[f"dataset:{AUTH}"]["outEdges"]
    assert out and all(e["origin"] == f"dataset:{AUTH}" for e in out)
    assert {o for e in out for o in e["origins"]} >= {"essential.service.authentication"}
    whole = get(server, "/api/v1/lineage")["graph"]
    assert f"job:{MATCH_JOB}" in {n["id"] for n in whole}
    missing = requests.get(
        server.url + "/api/v1/lineage", params={"nodeId": "dataset:no:such"}, timeout=30,
        headers={"Authorization": f"Bearer {READ_TOKEN}"},
    )  # fmt: skip
    assert missing.status_code == 404


def test_a_trace_takes_the_identifier_in_the_body_and_answers_masked(
    demo: Path, server: Served
) -> None:
    raw = raw_affected()
    answer = requests.post(
        server.url + "/api/v1/trace", json={"identifier": raw}, timeout=60,
        headers={"Authorization": f"Bearer {READ_TOKEN}"},
    )  # fmt: skip
    assert answer.status_code == 200
    digits = "".join(c for c in raw if c.isdigit())
    assert raw not in answer.text and digits not in answer.text.replace("-", "")
    body = answer.json()
    assert body["found"] and "***" in body["identifier"]["display"]
    assert body["trace"] == cli(demo, "trace", "-", stdin=raw)


# -- the console in a real browser ------------------------------------------------------------
def test_the_console_in_chromium(demo: Path, server: Served) -> None:
    from playwright.sync_api import sync_playwright

    executable = chromium()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    raw = raw_affected()
    report = cli(demo, "report")
    then = cli(demo, "report", "--as-of", AS_OF)
    blast = cli(demo, "query", "blast-radius", AUTH)["rows"]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1400})
            urls: list[str] = []
            errors: list[str] = []
            page.on("request", lambda request: urls.append(request.url))
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(server.url + "/")
            page.wait_for_selector("#status.error", timeout=30_000)  # no token yet: 401
            assert "read token" in page.inner_text("#status")
            page.fill("#token", READ_TOKEN)
            page.click("#token-form button")
            page.wait_for_selector("body[data-ready='now']", timeout=60_000)

            def summary(field: str) -> str:
                return page.inner_text(f"#summary tr[data-field='{field}'] td")

            assert summary("alerts") == str(report["alerts"])
            assert summary("distinct people affected") == str(report["affected_subjects"])
            assert summary("identifiers affected") == str(report["affected_identifiers"])
            assert summary("first violation").startswith(report["first_violation"][:10])
            assert summary("last violation").startswith(report["last_violation"][:10])
            routes = page.inner_text("#routes tbody")
            assert MATCH_JOB in routes and AUTH in routes
            page.screenshot(path=str(ARTIFACTS / "console.png"), full_page=True)

            # search: typed, posted, shown masked with the tree's dates and evidence
            page.fill("#identifier", raw)
            page.click("#search-form button")
            page.wait_for_selector("body[data-traced='now']", timeout=30_000)
            shown = page.inner_text("#trace")
            assert "***" in shown and "VIOLATES" in shown and "event " in shown
            assert AUTH in shown and ADS in shown
            assert raw not in page.content()
            assert page.input_value("#identifier") == ""
            assert not any(raw in u or "".join(c for c in raw if c.isdigit()) in u for u in urls)
            page.screenshot(path=str(ARTIFACTS / "trace.png"), full_page=True)

            # the graph: a real click on the auth dataset's node shows what lies downstream
            node = f"dataset:{AUTH}"
            x, y = page.evaluate(
                "id => { const p = window.lineageConsole.cy().getElementById(id)"
                ".renderedPosition(); return [p.x, p.y]; }",
                node,
            )
            box = page.locator("#graph").bounding_box()
            assert box is not None
            page.mouse.click(box["x"] + x, box["y"] + y)
            page.wait_for_selector(f"body[data-selected='{node}']", timeout=30_000)
            panel = page.inner_text("#node-panel")
            assert ADS in panel and MATCH_JOB in panel
            held = {
                (r["kind"], r["name"], r["dataset"], r["origin"], str(r["people"])) for r in blast
            }
            rows = page.locator("#node-panel table.downstream tr[data-kind]")
            seen = {
                (cells[0], cells[1], cells[2], None if cells[4] == "nothing held" else cells[4],
                 cells[6])
                for cells in (rows.nth(i).locator("td").all_inner_texts()
                              for i in range(rows.count()))
            }  # fmt: skip
            assert seen == held
            downstream = page.evaluate(
                "id => window.lineageConsole.cy().getElementById(id).successors().nodes()"
                ".filter(n => n.hasClass('downstream')).map(n => n.id())",
                node,
            )
            assert f"dataset:{ADS}" in downstream
            page.screenshot(path=str(ARTIFACTS / "graph-click.png"), full_page=True)

            # the as-of picker changes every view
            page.fill("#as-of", AS_OF)
            page.wait_for_selector(f"body[data-ready='{AS_OF}']", timeout=60_000)
            assert summary("alerts") == str(then["alerts"]) != str(report["alerts"])
            assert summary("distinct people affected") == str(then["affected_subjects"])
            assert AS_OF in page.inner_text("#summary-when")
            assert page.inner_text("#trace")  # re-traced as of the date
            page.screenshot(path=str(ARTIFACTS / "as-of.png"), full_page=True)
            assert errors == []
        finally:
            browser.close()
