"""The CLI as a user drives it, in embedded mode with a temporary home."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from lineage.identifiers import normalize_phone
from lineage.reference_case import FIX, MATCH_JOB, generate

USERS = 120


@pytest.fixture
def cli(tmp_path: Path) -> CliRunner:
    unset = dict.fromkeys(
        [
            "LINEAGE_KEY",
            "LINEAGE_CONFIG",
            "LINEAGE_KAFKA_BOOTSTRAP",
            "LINEAGE_NEO4J_URI",
            "LINEAGE_STORE",
            "LINEAGE_LOG",
        ]
    )
    return CliRunner(env={"LINEAGE_HOME": str(tmp_path / "home"), **unset})


def invoke(cli: CliRunner, *args: str) -> tuple[int, str]:
    result = cli.invoke(app, list(args))
    return result.exit_code, result.stdout


def test_demo_reports_alerts_matching_the_generator(cli: CliRunner) -> None:
    code, out = invoke(cli, "demo", "--users", str(USERS), "--json")
    assert code == 0, out
    result = json.loads(out)
    truth = generate(users=USERS).truth
    assert result["alerts"] >= 1
    assert result["affected_subjects"] == len(truth.affected_subjects)
    assert result["alerts_after_fix"] == 0
    alert = result["sample_alerts"][0]
    kinds = [step["kind"] for step in alert["evidence"]]
    assert kinds[0] == "collected" and kinds[-1] == "used"
    assert alert["evidence"][0]["purpose"].startswith("essential.service")
    assert alert["use_purpose"].startswith("marketing.advertising")
    assert result["last_violation"] < FIX.isoformat()
    # the officer's answers equal the generator's truth: people per violating job, the window
    assert result["people_by_job"] == {MATCH_JOB: len(truth.affected_subjects)}
    assert result["people_by_job"] == result["expected_people_by_job"]
    assert truth.first_violation is not None and truth.last_violation is not None
    assert result["first_violation"] == truth.first_violation.isoformat()
    assert result["last_violation"] == truth.last_violation.isoformat()
    code, human = invoke(cli, "demo", "--users", str(USERS))
    assert code == 0 and "after the fix: 0" in human
    assert "DIFFERS" not in human and human.count("matches the generator") == 3


def test_trace_finds_a_demo_email_typed_any_way(cli: CliRunner) -> None:
    invoke(cli, "demo", "--users", str(USERS), "--json")
    case = generate(users=USERS)
    collected = {r["identifier"].get("email") for r in case.records if "identifier" in r}
    email = next(e for e in case.emails if e in collected)
    code, out = invoke(cli, "trace", "  " + email.upper() + " ", "--json")
    assert code == 0, out
    trace = json.loads(out)
    assert trace["identifier"]["category"] == "email" and trace["origins"]
    code, human = invoke(cli, "trace", email.swapcase())
    assert code == 0 and "collected into" in human


def test_trace_phone_typed_with_spaces(cli: CliRunner) -> None:
    invoke(cli, "demo", "--users", str(USERS), "--json")
    case = generate(users=USERS)
    collected = {r["identifier"].get("phone") for r in case.records if "identifier" in r}
    phone = next(p for p in case.phones if p in collected)
    code, out = invoke(cli, "trace", *phone.split(" "), "--json")
    assert code == 0, out
    assert json.loads(out)["identifier"]["category"] == "phone"


def test_trace_unknown_says_so_with_exit_1(cli: CliRunner) -> None:
    invoke(cli, "demo", "--users", "20", "--json")
    result = cli.invoke(app, ["trace", "Nobody.Here@Example.org"])
    assert result.exit_code == 1
    assert "No lineage recorded for n***@example.org" in result.output
    result = cli.invoke(app, ["trace", "not a phone"])
    assert result.exit_code == 2 and "invalid phone" in result.output


def test_ingest_reports_bad_lines_and_keeps_good_ones(cli: CliRunner, tmp_path: Path) -> None:
    good = {
        "type": "IdentifierCollected",
        "event_time": "2015-01-01T00:00:00Z",
        "producer": "auth",
        "dataset": "auth:db",
        "purpose": "essential.service.security",
        "identifier": {"phone": "+1 415 555 0100"},
    }
    lines = [
        json.dumps(good),
        "{oops",
        json.dumps({**good, "purpose": "essential.secure"}),
        json.dumps({**good, "identifier": {"phone": "+1 415"}}),
        json.dumps({**good, "identifier": {"email": "ok@example.com"}}),
    ]
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(lines))
    code, out = invoke(cli, "ingest", str(path), "--json")
    assert code == 0
    result = json.loads(out)
    assert result["accepted"] == 2
    assert [r["line"] for r in result["rejected"]] == [2, 3, 4]
    assert "unknown purpose" in result["rejected"][1]["reason"]
    code, out = invoke(cli, "ingest", str(path), "--strict")
    assert code == 1 and "2 already known" in out
    code, out = invoke(cli, "dead-letters", "--json")
    assert len(json.loads(out)) == 6


def test_alerts_report_and_replay_commands(cli: CliRunner) -> None:
    invoke(cli, "demo", "--users", str(USERS), "--json")
    code, out = invoke(cli, "alerts", "--json", "--limit", "5")
    listed = json.loads(out)
    assert code == 0 and len(listed["alerts"]) == 5 and listed["truncated"] is True
    total = listed["total"]
    assert total > 5
    for args in (("--all",), ("--limit", "0")):
        code, out = invoke(cli, "alerts", "--json", *args)
        listed = json.loads(out)
        shown = (listed["total"], len(listed["alerts"]), listed["truncated"])
        assert shown == (total, total, False)
    code, out = invoke(cli, "alerts", "--json")
    assert len(json.loads(out)["alerts"]) == min(20, total)
    code, out = invoke(cli, "alerts", "--limit", "2")
    assert code == 0 and f"showing 2 of {total}, use --all" in out
    code, out = invoke(cli, "report", "--json")
    report = json.loads(out)
    code, out = invoke(cli, "replay", "--json")
    assert code == 0
    replayed = json.loads(out)
    assert replayed["alerts"] == report["alerts"]
    assert replayed["affected_subjects"] == report["affected_subjects"]


def test_no_raw_identifier_reaches_store_log_alerts_or_logs(
    cli: CliRunner, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    outputs = [invoke(cli, "demo", "--users", str(USERS), "--json")[1]]
    case = generate(users=USERS)
    outputs += [
        invoke(cli, *args)[1]
        for args in (
            ("alerts", "--json", "--all"),
            ("report", "--json"),
            ("trace", case.emails[0], "--json"),
            ("demo", "--users", str(USERS)),
            ("alerts", "--all"),
        )
    ]
    home = tmp_path / "home"
    blobs = {p.name: p.read_bytes() for p in home.iterdir() if p.is_file()}
    assert {"events.db", "alerts.jsonl"} <= set(blobs)
    blobs["cli output"] = "\n".join(outputs).encode()
    blobs["logs"] = caplog.text.encode()
    raw_values = {e for e in case.emails} | {e.lower() for e in case.emails}
    raw_values |= set(case.phones) | {normalize_phone(p) for p in case.phones}
    for name, blob in blobs.items():
        text = blob.decode("latin-1").lower()
        leaked = [v for v in raw_values if v.lower() in text]
        assert not leaked, f"raw identifiers in {name}: {leaked[:3]}"
