"""``lineage query``, and ``--as-of`` on ``trace``/``report``, as a user drives them (embedded).

A small file of producer records (raw emails, as producers send them): ann and bob collected
for two-factor login, synced to the ads table and matched there; bob erased afterwards; cat
signed up for the newsletter, which the ads table also receives.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cli.main import app
from lineage.reference_case import MATCH_JOB, generate

SEC = "essential.service.authentication"
ADS = "marketing.advertising.third_party.targeted"
RAW = ["ann@example.com", "bob@example.com", "cat@example.com"]


def _record(**fields: object) -> str:
    return json.dumps({"producer": "test", **fields})


RECORDS = [
    _record(type="IdentifierCollected", event_id="c-1", event_time="2015-01-01T00:00:00Z",
            dataset="auth:db", purpose=SEC, identifier={"email": RAW[0]}, subject="acct-ann"),
    _record(type="IdentifierCollected", event_id="c-2", event_time="2015-01-02T00:00:00Z",
            dataset="auth:db", purpose=SEC, identifier={"email": RAW[1]}),
    _record(type="IdentifierCollected", event_id="c-3", event_time="2015-01-03T00:00:00Z",
            dataset="crm:news", purpose="marketing.communications.email",
            identifier={"email": RAW[2]}, subject="acct-cat"),
    _record(type="DataFlowed", event_id="f-1", event_time="2015-02-01T00:00:00Z",
            source="auth:db", target="ads:t", job="sync"),
    _record(type="DataFlowed", event_id="f-2", event_time="2015-02-02T00:00:00Z",
            source="crm:news", target="ads:t", job="sync"),
    _record(type="DataUsed", event_id="u-1", event_time="2015-03-01T00:00:00Z",
            dataset="ads:t", job="matcher", purpose=ADS),
    _record(type="IdentifierErased", event_id="e-1", event_time="2015-04-01T00:00:00Z",
            identifier={"email": RAW[1]}),
]  # fmt: skip


@pytest.fixture
def cli(tmp_path: Path) -> CliRunner:
    unset = dict.fromkeys(
        ["LINEAGE_KEY", "LINEAGE_CONFIG", "LINEAGE_KAFKA_BOOTSTRAP", "LINEAGE_NEO4J_URI",
         "LINEAGE_STORE", "LINEAGE_LOG"]
    )  # fmt: skip
    return CliRunner(env={"LINEAGE_HOME": str(tmp_path / "home"), **unset})


@pytest.fixture
def home(cli: CliRunner, tmp_path: Path) -> CliRunner:
    source = tmp_path / "events.jsonl"
    source.write_text("\n".join(RECORDS) + "\n")
    code, out = run(cli, "ingest", str(source), "--json")
    assert code == 0 and json.loads(out)["accepted"] == len(RECORDS), out
    return cli


def run(cli: CliRunner, *args: str) -> tuple[int, str]:
    result = cli.invoke(app, list(args))
    return result.exit_code, result.stdout


def query(cli: CliRunner, *args: str) -> dict[str, Any]:
    code, out = run(cli, "query", *args, "--json")
    assert code == 0, out
    found: dict[str, Any] = json.loads(out)
    return found


def test_paths_and_affected_as_json(home: CliRunner) -> None:
    paths = query(home, "paths")
    assert {k: paths[k] for k in ("query", "as_of", "total", "truncated", "limit")} == {
        "query": "paths", "as_of": None, "total": 1, "truncated": False, "limit": 20,
    }  # fmt: skip
    assert paths["rows"] == [
        {
            "origin_dataset": "auth:db", "origin_purpose": SEC,
            "route": [["auth:db", None], ["ads:t", "sync"], ["ads:t", "matcher"]],
            "use_dataset": "ads:t", "use_job": "matcher", "use_purpose": ADS,
            "alerts": 2, "identifiers": 2, "people": 2,
            "first": "2015-03-01T00:00:00+00:00", "last": "2015-03-01T00:00:00+00:00",
        }
    ]  # fmt: skip
    affected = query(home, "affected", "--limit", "1")
    assert (affected["total"], affected["truncated"], affected["limit"]) == (2, True, 1)
    everything = query(home, "affected", "--all")
    assert (everything["total"], everything["truncated"], everything["limit"]) == (2, False, None)
    assert [(r["kind"], r["use_job"], r["people"]) for r in everything["rows"]] == [
        ("use", "matcher", 2),
        ("job", "matcher", 2),
    ]
    assert query(home, "affected", "--limit", "0")["rows"] == everything["rows"]


def test_text_output_says_what_was_left_out(home: CliRunner) -> None:
    code, out = run(home, "query", "affected", "--limit", "1")
    assert code == 0 and "matcher" in out and "showing 1 of 2, use --all" in out
    code, out = run(home, "query", "collections")
    assert code == 0 and "auth:db" in out and "crm:news" in out and "2 row(s)." in out
    code, out = run(home, "query", "paths", "--as-of", "2015-02-15")
    assert code == 0 and "paths as of 2015-02-15 00:00: nothing found." in out


def test_blast_radius_and_erasure_gaps(home: CliRunner) -> None:
    blast = query(home, "blast-radius", "auth:db", "--all")
    assert [
        (r["kind"], r["name"], r["origin"], r["identifiers"], r["people"]) for r in blast["rows"]
    ] == [
        ("dataset", "ads:t", f"{SEC}@auth:db", 2, 2),
        ("dataset", "ads:t", "marketing.communications.email@crm:news", 1, 1),
        ("dataset", "auth:db", f"{SEC}@auth:db", 2, 2),
        ("job", "sync", f"{SEC}@auth:db", 2, 2),
        ("use", "matcher", f"{SEC}@auth:db", 2, 2),
        ("use", "matcher", "marketing.communications.email@crm:news", 1, 1),
    ]
    code, _ = run(home, "query", "blast-radius", "nowhere:at-all")
    assert code == 1
    gaps = query(home, "erasure-gaps")
    assert [(r["display"], r["erased_at"], r["dataset"], r["job"]) for r in gaps["rows"]] == [
        ("b***@example.com", "2015-04-01T00:00:00+00:00", "ads:t", "sync")
    ]
    assert query(home, "erasure-gaps", "--as-of", "2015-03-31")["total"] == 0
    code, text = run(home, "query", "erasure-gaps")
    for raw in RAW:
        assert raw not in json.dumps(gaps) and raw not in text
    code, _ = run(home, "query", "no-such-query")
    assert code == 2


def test_as_of_on_trace_and_report(home: CliRunner) -> None:
    code, out = run(home, "report", "--json", "--as-of", "2015-02-28T23:59:59Z")
    assert code == 0 and json.loads(out)["alerts"] == 0
    code, out = run(home, "report", "--json", "--as-of", "2015-03-01")
    report = json.loads(out)
    assert (report["alerts"], report["people_by_job"]) == (2, {"matcher": 2})
    code, out = run(home, "trace", RAW[1], "--json", "--as-of", "2015-01-01T12:00:00")
    assert code == 1 and json.loads(out)["found"] is False
    code, out = run(home, "trace", RAW[1], "--json", "--as-of", "2015-02-15")
    trace = json.loads(out)
    root = trace["origins"][0]["root"]
    assert [c["dataset"] for c in root["children"]] == ["ads:t"]
    assert root["children"][0]["uses"] == [] and trace["identifier"]["erasures"] == []
    code, out = run(home, "trace", RAW[1], "--json")
    now = json.loads(out)
    assert [u["job"] for u in now["origins"][0]["root"]["children"][0]["uses"]] == ["matcher"]
    assert len(now["identifier"]["erasures"]) == 1


def test_demo_as_of_before_and_after_the_first_violation(cli: CliRunner) -> None:
    users = 120
    code, out = run(cli, "demo", "--users", str(users), "--json")
    assert code == 0
    code, out = run(cli, "report", "--json", "--as-of", "2013-04-30")
    assert json.loads(out)["alerts"] == 0
    code, out = run(cli, "report", "--json", "--as-of", "2014-01-01")
    assert json.loads(out)["alerts"] > 0
    code, out = run(cli, "report", "--json")
    report = json.loads(out)
    truth = generate(users=users).truth
    assert report["people_by_job"] == {MATCH_JOB: len(truth.affected_subjects)}
    assert truth.first_violation is not None and truth.last_violation is not None
    window = [datetime.fromisoformat(report[k]) for k in ("first_violation", "last_violation")]
    assert window == [truth.first_violation, truth.last_violation]
    code, text = run(cli, "report")
    assert f"{MATCH_JOB}: {len(truth.affected_subjects)} people" in text
