"""``lineage report --format md|html|json``: the audit report as a document.

Markdown carries the picture as a Mermaid block (rendered by GitHub, GitLab and most wikis);
HTML is one self-contained page with the picture as inline SVG; JSON has everything, the
picture as nodes and edges. Identifiers appear masked, with their keyed-hash ref.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from datetime import datetime
from html import escape
from typing import Any

from graph.drawing import html_page, to_mermaid, to_svg
from lineage.alerts import EvidenceStep
from lineage.audit import RouteExample
from runtime.audit import AuditReport

TITLE = "Audit report: purpose-limitation violations"


def _day(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d") if moment else "-"


def _time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def window_text(report: AuditReport) -> str:
    if report.since is None and report.until is None:
        return "all recorded violations"
    since = _time(report.since) if report.since else "the first"
    until = f"before {_time(report.until)}" if report.until else "to the last"
    return f"violations from {since} {until}"


def summary_rows(report: AuditReport) -> list[tuple[str, str]]:
    s = report.summary
    return [
        ("alerts", f"{s.alerts:,}"),
        ("distinct people affected", f"{s.affected_subjects:,}"),
        ("identifiers affected", f"{s.affected_identifiers:,}"),
        ("identifiers by category", ", ".join(f"{k}: {v:,}" for k, v in s.by_category.items())),
        ("violation window", f"{_day(s.first_violation)} to {_day(s.last_violation)}"),
        ("first violation", _time(s.first_violation) if s.first_violation else "-"),
        ("last violation", _time(s.last_violation) if s.last_violation else "-"),
        ("systems on evidence paths", ", ".join(s.systems) or "-"),
    ]


def rule_rows(report: AuditReport) -> list[tuple[str, str, str, str]]:
    return [
        (r.id, r.severity, f"{report.summary.by_rule.get(r.id, 0):,}", r.description)
        for r in report.rules
    ]


def job_rows(report: AuditReport) -> list[tuple[str, str, str]]:
    """Each violating job (the job of a violating use), its alerts, and its people when the
    store counted them (``ViolationReport.people_by_job``)."""
    alerts: dict[str, int] = {}
    for route in report.routes:
        job = route.example.use_job
        alerts[job] = alerts.get(job, 0) + route.alerts
    counted = report.summary.people_by_job
    for job in counted:
        alerts.setdefault(job, 0)
    return [
        (job, f"{alerts[job]:,}", f"{counted[job]:,}" if job in counted else "not counted")
        for job in sorted(alerts, key=lambda j: (-counted.get(j, 0), -alerts[j], j))
    ]


def route_title(route: RouteExample) -> str:
    alert = route.example
    path = " → ".join(
        step.dataset if step.kind == "collected" else f"{step.job} → {step.dataset}"
        for step in alert.evidence
        if step.kind != "used"
    )
    return f"{path} → {alert.use_job} → {alert.use_purpose}"


def step_row(step: EvidenceStep) -> tuple[str, str, str, str, str, str]:
    where = f"{step.source} → {step.dataset}" if step.source else step.dataset
    return (step.kind, _time(step.at), step.event_id, where, step.job or "", step.purpose or "")


STEP_HEADER = ("step", "time", "event id", "dataset", "job", "purpose")


# -- Markdown ---------------------------------------------------------------------------------
def _md_cell(value: str) -> str:
    return value.replace("|", "\\|").replace("\n", " ")


def _md_table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
    return lines


def to_markdown(report: AuditReport) -> str:
    lines = [f"# {TITLE}", "", f"Generated {_time(report.generated_at)}; {window_text(report)}."]
    lines += ["", "## Summary", "", *_md_table(("", ""), summary_rows(report))]
    lines += ["", "## Rules", "", *_md_table(("rule", "severity", "alerts", "description"),
                                              rule_rows(report))]  # fmt: skip
    lines += ["", "## People per violating job", ""]
    lines += _md_table(("job", "alerts", "people"), job_rows(report))
    lines += ["", "## Routes, with one evidence example each", ""]
    if not report.routes:
        lines.append("No violation in this window.")
    for number, route in enumerate(report.routes, start=1):
        alert = route.example
        lines += [
            f"### {number}. {_md_cell(route_title(route))}",
            "",
            f"{route.alerts:,} alert(s); origin purpose `{route.origin_purpose}`, use purpose "
            f"`{route.use_purpose}`. Example: {alert.display or alert.category} "
            f"(ref `{alert.identifier[:16]}…`), alert `{alert.alert_id}`, rule `{alert.rule}`, "
            f"first violating use {_time(alert.occurred_at)}.",
            "",
            *_md_table(STEP_HEADER, [step_row(s) for s in alert.evidence]),
            "",
        ]
    lines += ["## Picture", ""]
    if not report.whole_graph:
        lines += ["The dataset graph is large: the picture shows the violations' routes and "
                  "what lies one step from them.", ""]  # fmt: skip
    lines += ["```mermaid", to_mermaid(report.picture).rstrip("\n"), "```", ""]
    return "\n".join(lines)


# -- HTML -------------------------------------------------------------------------------------
def _html_table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]], cls: str = "") -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    attribute = f' class="{cls}"' if cls else ""
    return f"<table{attribute}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def to_html(report: AuditReport) -> str:
    parts = [
        f"<h1>{escape(TITLE)}</h1>",
        f"<p>Generated {escape(_time(report.generated_at))}; {escape(window_text(report))}.</p>",
        "<h2>Summary</h2>",
        _html_table(("", ""), summary_rows(report), "summary"),
        "<h2>Rules</h2>",
        _html_table(("rule", "severity", "alerts", "description"), rule_rows(report), "rules"),
        "<h2>People per violating job</h2>",
        _html_table(("job", "alerts", "people"), job_rows(report), "jobs"),
        "<h2>Routes, with one evidence example each</h2>",
    ]
    if not report.routes:
        parts.append("<p>No violation in this window.</p>")
    for number, route in enumerate(report.routes, start=1):
        alert = route.example
        parts += [
            f'<section class="route"><h3>{number}. {escape(route_title(route))}</h3>',
            f"<p>{route.alerts:,} alert(s); origin purpose <code>{escape(route.origin_purpose)}"
            f"</code>, use purpose <code>{escape(route.use_purpose)}</code>. Example: "
            f"{escape(alert.display or alert.category)} (ref <code>{alert.identifier[:16]}…"
            f"</code>), alert <code>{alert.alert_id}</code>, rule <code>{escape(alert.rule)}"
            f"</code>, first violating use {escape(_time(alert.occurred_at))}.</p>",
            _html_table(STEP_HEADER, [step_row(s) for s in alert.evidence], "evidence"),
            "</section>",
        ]
    parts.append("<h2>Picture</h2>")
    if not report.whole_graph:
        parts.append("<p>The dataset graph is large: the picture shows the violations' routes "
                     "and what lies one step from them.</p>")  # fmt: skip
    parts.append(f'<figure class="lineage-picture">{to_svg(report.picture)}</figure>')
    return html_page(TITLE, "".join(parts))


# -- JSON -------------------------------------------------------------------------------------
def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def to_json(report: AuditReport) -> str:
    summary: dict[str, Any] = asdict(report.summary)
    summary["first_violation"] = _iso(report.summary.first_violation)
    summary["last_violation"] = _iso(report.summary.last_violation)
    document = {
        "generated_at": _iso(report.generated_at),
        "since": _iso(report.since),
        "until": _iso(report.until),
        "summary": summary,
        "rules": [asdict(r) for r in report.rules],
        "routes": [
            {
                "route": [list(step) for step in r.route],
                "origin_purpose": r.origin_purpose,
                "use_purpose": r.use_purpose,
                "alerts": r.alerts,
                "example": r.example.model_dump(mode="json"),
            }
            for r in report.routes
        ],
        "picture": {
            "title": report.picture.title,
            "whole_graph": report.whole_graph,
            "nodes": [asdict(n) for n in report.picture.nodes],
            "edges": [asdict(e) for e in report.picture.edges],
            "restricted_origins": sorted(report.picture.restricted),
        },
    }
    return json.dumps(document, indent=2) + "\n"


FORMATS = {"md": to_markdown, "html": to_html, "json": to_json}
