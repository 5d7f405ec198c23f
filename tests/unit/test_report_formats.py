"""``lineage report --format md|html|json`` rendered from a hand-filled report (people per job
included, which the store fills in elsewhere), and the report and graph commands end to end."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.graph_commands import FORMAT_NAMES
from cli.main import app
from cli.report_formats import to_html, to_json, to_markdown
from graph.drawing import to_mermaid
from graph.sqlite_store import SqliteStore
from lineage.identifiers import normalize_phone
from lineage.policy import Policy
from lineage.reference_case import AUTH, MATCH_JOB, generate
from lineage.report import ViolationReport
from lineage.tracker import Tracker
from runtime.audit import AuditReport, build_audit
from tests import factories as f

GENERATED = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
RULE = "security-origin-to-advertising"


def audit(policy: Policy) -> AuditReport:
    store = SqliteStore(":memory:")
    Tracker(store, policy).apply(
        [
            f.collected("c1", "ann", "auth:db", f.SECURITY, 0, owner="ann"),
            f.collected("c2", "bob", "auth:db", f.SECURITY, 0, owner="bob"),
            f.flowed("f1", "auth:db", "ads:t", 1, job="sync"),
            f.used("u1", "ads:t", f.ADS, 2, job="matcher"),
        ]
    )
    built = build_audit(store, policy)
    at = f.at(2)
    summary = ViolationReport(
        alerts=2,
        affected_identifiers=2,
        affected_subjects=2,
        first_violation=at,
        last_violation=at,
        by_rule={RULE: 2},
        by_category={"email": 2},
        by_year={"2015": 2},
        datasets={"auth:db": 2, "ads:t": 4},
        jobs={"sync": 2, "matcher": 2},
        systems=["ads", "auth"],
        people_by_job={"matcher": 2},
    )
    assert built.summary == summary  # what the store counted
    return replace(built, generated_at=GENERATED, summary=summary)


def test_markdown_has_summary_rules_jobs_routes_and_a_mermaid_picture(policy: Policy) -> None:
    report = audit(policy)
    (route,) = report.routes
    example = route.example
    # of two alerts at one time, ann's has the smaller id
    assert example.display == "a***@example.com"
    description = policy.rules[0].description
    assert to_markdown(report) == "\n".join(
        [
            "# Audit report: purpose-limitation violations",
            "",
            "Generated 2024-01-02 03:04:05 UTC; all recorded violations.",
            "",
            "## Summary",
            "",
            "|  |  |",
            "|---|---|",
            "| alerts | 2 |",
            "| distinct people affected | 2 |",
            "| identifiers affected | 2 |",
            "| identifiers by category | email: 2 |",
            "| violation window | 2015-01-01 to 2015-01-01 |",
            "| first violation | 2015-01-01 02:00:00 UTC |",
            "| last violation | 2015-01-01 02:00:00 UTC |",
            "| systems on evidence paths | ads, auth |",
            "",
            "## Rules",
            "",
            "| rule | severity | alerts | description |",
            "|---|---|---|---|",
            f"| {RULE} | critical | 2 | {description} |",
            "",
            "## People per violating job",
            "",
            "| job | alerts | people |",
            "|---|---|---|",
            "| matcher | 2 | 2 |",
            "",
            "## Routes, with one evidence example each",
            "",
            f"### 1. auth:db → sync → ads:t → matcher → {f.ADS}",
            "",
            f"2 alert(s); origin purpose `{f.SECURITY}`, use purpose `{f.ADS}`. "
            "Example: a***@example.com "
            f"(ref `{example.identifier[:16]}…`), alert `{example.alert_id}`, rule `{RULE}`, "
            "first violating use 2015-01-01 02:00:00 UTC.",
            "",
            "| step | time | event id | dataset | job | purpose |",
            "|---|---|---|---|---|---|",
            f"| collected | 2015-01-01 00:00:00 UTC | c1 | auth:db |  | {f.SECURITY} |",
            "| flowed | 2015-01-01 01:00:00 UTC | f1 | auth:db → ads:t | sync |  |",
            f"| used | 2015-01-01 02:00:00 UTC | u1 | ads:t | matcher | {f.ADS} |",
            "",
            "## Picture",
            "",
            "```mermaid",
            to_mermaid(report.picture).rstrip("\n"),
            "```",
            "",
        ]
    )


class Tables(HTMLParser):
    """Rows of each table by class, and whether an inline SVG is there."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.current: str | None = None
        self.cell: list[str] | None = None
        self.svg = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self.current = dict(attrs).get("class") or ""
            self.tables[self.current] = []
        elif tag == "tr" and self.current is not None:
            self.tables[self.current].append([])
        elif tag in ("td", "th"):
            self.cell = []
        elif tag == "svg":
            self.svg += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self.cell is not None and self.current is not None:
            self.tables[self.current][-1].append("".join(self.cell))
            self.cell = None
        elif tag == "table":
            self.current = None

    def handle_data(self, data: str) -> None:
        if self.cell is not None:
            self.cell.append(data)


def test_html_tables_and_inline_picture(policy: Policy) -> None:
    report = audit(policy)
    parsed = Tables()
    parsed.feed(to_html(report))
    assert parsed.svg == 1
    assert parsed.tables["summary"][1:4] == [
        ["alerts", "2"],
        ["distinct people affected", "2"],
        ["identifiers affected", "2"],
    ]
    assert parsed.tables["jobs"] == [["job", "alerts", "people"], ["matcher", "2", "2"]]
    assert parsed.tables["rules"][1][:3] == [RULE, "critical", "2"]
    assert [row[2] for row in parsed.tables["evidence"][1:]] == ["c1", "f1", "u1"]


def test_json_has_everything(policy: Policy) -> None:
    report = audit(policy)
    document = json.loads(to_json(report))
    assert document["generated_at"] == GENERATED.isoformat()
    assert (document["since"], document["until"]) == (None, None)
    assert document["summary"]["people_by_job"] == {"matcher": 2}
    assert document["summary"]["affected_subjects"] == 2
    (route,) = document["routes"]
    assert route["route"] == [["auth:db", None], ["ads:t", "sync"], ["ads:t", "matcher"]]
    assert route["alerts"] == 2
    assert route["example"] == report.routes[0].example.model_dump(mode="json")
    assert [e["source"] for e in document["picture"]["edges"] if e["violating"]] == [
        "dataset:ads:t",
        "job:matcher",
    ]
    assert document["picture"]["restricted_origins"] == [f.SECURITY]


def test_people_per_job_say_when_not_counted(policy: Policy) -> None:
    report = audit(policy)
    report = replace(report, summary=replace(report.summary, people_by_job={}))
    assert "| matcher | 2 | not counted |" in to_markdown(report)


# -- the commands, in embedded mode ---------------------------------------------------------
USERS = 150


def embedded(home: Path) -> CliRunner:
    """A module-scoped fixture runs before the autouse one that clears the services' settings
    (tests/unit/conftest.py): the runner unsets them itself, or the demo would go to Kafka."""
    unset = dict.fromkeys(name for name in os.environ if name.startswith("LINEAGE_"))
    return CliRunner(env={**unset, "LINEAGE_HOME": str(home)})


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("report") / "home"
    result = embedded(path).invoke(app, ["demo", "--users", str(USERS), "--json"])
    assert result.exit_code == 0, result.stdout
    return path


def run(home: Path, *args: str, stdin: str | None = None) -> tuple[int, str]:
    result = embedded(home).invoke(app, list(args), input=stdin)
    return result.exit_code, result.stdout


def test_report_windows_bound_the_violations(home: Path) -> None:
    truth = generate(users=USERS).truth
    code, out = run(home, "report", "--json")
    whole = json.loads(out)
    assert code == 0 and whole["affected_subjects"] == len(truth.affected_subjects)
    code, out = run(home, "report", "--json", "--until", "2013-04-30")
    assert code == 0 and json.loads(out)["alerts"] == 0
    code, out = run(home, "report", "--format", "json", "--since", "2014-01-01")
    later = json.loads(out)
    assert code == 0 and later["since"] == "2014-01-01T00:00:00+00:00"
    assert 0 < later["summary"]["alerts"] < whole["alerts"]
    assert later["summary"]["first_violation"] >= "2014-01-01"
    assert sum(r["alerts"] for r in later["routes"]) == later["summary"]["alerts"]
    code, out = run(home, "report", "--json", "--since", "2014-01-01")
    assert json.loads(out)["alerts"] == later["summary"]["alerts"]
    code, _ = run(home, "report", "--format", "pdf")
    assert code == 2


def test_graph_command_draws_a_dataset_and_a_masked_identifier(home: Path) -> None:
    code, out = run(home, "graph", AUTH, "--format", "mermaid", "--depth", "1")
    assert code == 0 and out.startswith("flowchart LR")
    assert '"ads-identity-sync"' in out and '"ads:matchable_identifiers"' in out
    assert MATCH_JOB not in out  # two steps away
    case = generate(users=USERS)
    email = case.emails[0]
    code, out = run(home, "graph", "-", "--format", "dot", stdin=email)
    if code == 1:  # not every user gave an email
        email = next(e for e in case.emails if run(home, "trace", e)[0] == 0)
        code, out = run(home, "graph", "-", "--format", "dot", stdin=email)
    assert code == 0 and out.startswith("digraph lineage {")
    assert email.lower() not in out.lower() and email.split("@")[0].lower() not in out.lower()
    assert '"identifier:' in out and "***@example.com" in out
    code, out = run(home, "graph", AUTH, "--json", "--depth", "1")
    drawn = json.loads(out)
    assert code == 0 and drawn["focus"] == f"dataset:{AUTH}"
    assert sorted(n["id"] for n in drawn["nodes"]) == [
        "dataset:ads:matchable_identifiers",
        f"dataset:{AUTH}",
        "dataset:warehouse:auth_backup",
        "job:ads-identity-sync",
        "job:nightly-auth-backup",
    ]
    assert {e["target"] for e in drawn["edges"] if e["on_route"]} == {
        "job:ads-identity-sync",
        "dataset:ads:matchable_identifiers",
    }
    code, _ = run(home, "graph", "nowhere:dataset")
    assert code == 1


def test_no_raw_identifier_in_any_report_or_picture(home: Path) -> None:
    case = generate(users=USERS)
    traced = next(e for e in case.emails if run(home, "trace", e)[0] == 0)
    outputs = [run(home, "report", "--format", form)[1] for form in ("md", "html", "json")]
    outputs += [run(home, "graph", traced, "--format", form)[1] for form in FORMAT_NAMES]
    outputs += [run(home, "graph", traced, "--json")[1]]
    outputs += [run(home, "graph", AUTH, "--format", form)[1] for form in FORMAT_NAMES]
    assert all(outputs)
    text = "\n".join(outputs).lower()
    raw = {e.lower() for e in case.emails} | {p for p in case.phones}
    raw |= {normalize_phone(p) for p in case.phones}
    assert [v for v in raw if v.lower() in text] == []


def test_a_large_graph_is_drawn_around_the_violations(policy: Policy) -> None:
    store = SqliteStore(":memory:")
    unrelated = [
        f.flowed(f"x{i}", f"lake:t{i}", f"lake:t{i + 1}", 1, job=f"copy-{i}") for i in range(45)
    ]
    Tracker(store, policy).apply(
        [
            f.collected("c1", "ann", "auth:db", f.SECURITY, 0),
            f.flowed("f1", "auth:db", "ads:t", 1, job="sync"),
            f.flowed("f2", "auth:db", "lake:t0", 1, job="export"),
            f.used("u1", "ads:t", f.ADS, 2, job="matcher"),
            *unrelated,
        ]
    )
    report = build_audit(store, policy)
    assert not report.whole_graph
    assert report.picture.title == "Lineage of personal data (around the violations)"
    # The route (auth:db -> sync -> ads:t -> matcher -> use) and one step beyond: the export.
    assert {n.id for n in report.picture.nodes} == {
        "dataset:auth:db",
        "job:sync",
        "dataset:ads:t",
        "job:matcher",
        f"use:{f.ADS}",
        "job:export",
        "dataset:lake:t0",
    }
    assert "what lies one step from them" in to_markdown(report)
