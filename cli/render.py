"""Human (rich) and machine (JSON) renderings of traces, alerts and reports."""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import TypeAdapter
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.tree import Tree

from lineage.alerts import Alert
from lineage.events import from_micros
from lineage.identifiers import mask_email, shown
from lineage.report import ViolationReport
from lineage.trace import Trace, TraceNode

# Free text shown to an operator (dead-letter reasons and origins) should never hold a raw
# identifier: reasons are written without input values, but a dead-letter topic can be written
# by anyone, and file names are free text. Anything shaped like an email or a phone number is
# masked the way identifiers are (j***@example.com, ***-***-0100).
_EMAIL = re.compile(r"([^\s@'\"<>(),;:\[\]/\\]+)@([^\s@'\"<>(),;:\[\]]+\.[^\s@'\"<>(),;:\[\]]+)")
#: 8 digits or more (columns of a 1 MiB line have 7 at most), not an ISO date, not inside a word.
_PHONE = re.compile(r"(?<![\w.:-])(\+?)(?!\d{4}-\d{2}-\d{2})(\(?\d[\d ().-]{6,}\d)(?!\w)")
_MIN_PHONE_DIGITS = 8


def masked_text(text: str, phones: bool = True) -> str:
    """``text`` with email- and phone-shaped substrings masked; ``phones=False`` masks emails
    only (for origins such as ``topic:partition:offset``, whose numbers are not phones)."""
    text = _EMAIL.sub(lambda m: mask_email(f"{m.group(1)}@{m.group(2)}"), text)
    if not phones:
        return text

    def phone(match: re.Match[str]) -> str:
        digits = re.sub(r"\D", "", match.group(2))
        if len(digits) < _MIN_PHONE_DIGITS:
            return match.group(0)
        return f"{match.group(1)}***-***-{digits[-4:]}"

    return _PHONE.sub(phone, text)


def to_json(value: Any) -> str:
    return json.dumps(TypeAdapter(type(value)).dump_python(value, mode="json"), indent=2)


def alerts_json(alerts: list[Alert], limit: int | None = None) -> str:
    """``total`` and ``truncated`` beside the alerts shown: never a silent cut."""
    shown = alerts if limit is None else alerts[:limit]
    return json.dumps(
        {
            "total": len(alerts),
            "truncated": len(shown) < len(alerts),
            "alerts": [a.model_dump(mode="json") for a in shown],
        },
        indent=2,
    )


def _when(node: TraceNode) -> str:
    return node.since.strftime("%Y-%m-%d %H:%M")


def _branch(tree: Tree, node: TraceNode) -> None:
    for use in node.uses:
        style = "bold red" if use.violates else "green"
        flag = f"  VIOLATES {', '.join(use.violates)}" if use.violates else ""
        tree.add(
            f"[{style}]used by {use.job} for {use.purpose}[/] "
            f"({use.at:%Y-%m-%d}, event {use.event_id}){flag}"
        )
    for child in node.children:
        sub = tree.add(
            f"[cyan]{child.dataset}[/] via [magenta]{child.job}[/] "
            f"since {_when(child)} (event {child.event_id})"
        )
        _branch(sub, child)


def print_trace(console: Console, trace: Trace) -> None:
    ident = trace.identifier
    title = f"[bold]{ident.display or ident.ref[:16]}[/] ({ident.category}, ref {ident.ref[:16]}…)"
    if ident.erasures:
        last = from_micros(ident.erasures[-1])
        title += f" [yellow]erased {len(ident.erasures)}x, last {last:%Y-%m-%d}[/]"
    root = Tree(title)
    for origin in trace.origins:
        mark = "[red]security origin[/]" if origin.tracked else "origin"
        sub = root.add(
            f"{mark} [bold]{origin.origin.purpose}[/] collected into "
            f"[cyan]{origin.root.dataset}[/] at {_when(origin.root)}"
        )
        _branch(sub, origin.root)
    console.print(root)
    console.print(f"{trace.violations} violating use(s) downstream.")


def print_alerts(console: Console, alerts: list[Alert], limit: int | None = None) -> None:
    listed = alerts if limit is None else alerts[:limit]
    for alert in listed:
        who = shown(alert.display, alert.identifier)
        console.print(
            f"[bold red]{alert.rule}[/] {escape(who)} ({alert.category}) "
            f"at {alert.occurred_at:%Y-%m-%d %H:%M} id {alert.alert_id}"
        )
        for step in alert.evidence:
            detail = {
                "collected": f"collected into {step.dataset} for {step.purpose}",
                "flowed": f"copied {step.source} -> {step.dataset} by {step.job}",
                "used": f"used in {step.dataset} by {step.job} for {step.purpose}",
            }[step.kind]
            console.print(
                f"    {step.at:%Y-%m-%d %H:%M}  {detail}  [dim](event {step.event_id})[/]"
            )
    if limit is not None and len(alerts) > limit:
        console.print(f"showing {limit} of {len(alerts)}, use --all (or --limit N)")


def print_report(console: Console, report: ViolationReport) -> None:
    table = Table(title="Purpose-limitation violations", show_header=False)
    first = report.first_violation.date() if report.first_violation else "-"
    last = report.last_violation.date() if report.last_violation else "-"
    rows = [
        ("alerts", str(report.alerts)),
        ("affected people (subjects)", str(report.affected_subjects)),
        ("affected identifiers", str(report.affected_identifiers)),
        ("by identifier kind", ", ".join(f"{k}: {v}" for k, v in report.by_category.items())),
        ("violations between", f"{first} and {last}"),
        ("systems on evidence paths", ", ".join(report.systems)),
        (
            "violating (use) jobs",
            ", ".join(f"{job}: {n} people" for job, n in report.people_by_job.items()),
        ),
        (
            "flow jobs on evidence paths",
            ", ".join(job for job in report.jobs if job not in report.people_by_job),
        ),
        ("by year", ", ".join(f"{k}: {v}" for k, v in report.by_year.items())),
    ]
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)
