"""The HTML report and graph, from the real CLI on the demo, rendered in headless Chromium.

Embedded mode (a fresh ``LINEAGE_HOME``, no service variable), a few hundred users. Each page
is screenshotted and its rendered DOM read back: the PNG must be a real picture (not blank, in
colour where the lineage edges are) and the DOM must show the datasets, jobs and uses of the
reference case with the violating use marked.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from html import unescape
from pathlib import Path

import pytest

from lineage.reference_case import (
    AD_PURPOSE,
    ADS,
    AUTH,
    BACKUP,
    FRAUD_JOB,
    FRAUD_PURPOSE,
    MATCH_JOB,
    NEWSLETTER,
    SYNC_JOB,
    generate,
)
from tests.browser import read_png, render
from tests.conftest import without_lineage_settings

ROOT = Path(__file__).resolve().parents[2]
USERS = 300
RULE = "security-origin-to-advertising"
WIDTH, HEIGHT = 1600, 2400


def lineage(home: Path, *args: str) -> str:
    """The CLI as a user runs it, in embedded mode whatever the shell has set."""
    env = without_lineage_settings()
    env["LINEAGE_HOME"] = str(home)
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("browser")
    home = base / "home"
    lineage(home, "demo", "--users", str(USERS), "--json")
    report = base / "report.html"
    report.write_text(lineage(home, "report", "--format", "html"), encoding="utf-8")
    graph = base / "graph.html"
    lineage(home, "graph", ADS, "--format", "html", "-o", str(graph))
    summary = base / "summary.json"
    summary.write_text(lineage(home, "report", "--json"))
    return {"report": report, "graph": graph, "summary": summary}


def labels(dom: str, css_class: str) -> list[str]:
    """Texts of the rendered ``<text class="css_class">`` elements."""
    pattern = rf'<text class="{css_class}"[^>]*>(.*?)</text>'
    return [unescape(text) for text in re.findall(pattern, dom)]


def test_the_report_renders_with_its_picture(pages: dict[str, Path]) -> None:
    shown = render(pages["report"], WIDTH, HEIGHT)
    png = read_png(shown.screenshot)
    assert (png.width, png.height) == (WIDTH, HEIGHT)
    assert png.colours > 50  # text, tables and a drawing, not a flat page
    assert 0.01 < png.non_white < 0.6
    assert png.saturated > 0.0005  # the picture's coloured edges are on screen
    dom = shown.dom
    nodes = set(labels(dom, "label"))
    assert {AUTH, NEWSLETTER, ADS, BACKUP, SYNC_JOB, MATCH_JOB, AD_PURPOSE} <= nodes
    assert labels(dom, "violation-marker") == [f"\u2716 violates {RULE}"]
    violating = re.findall(r'<g class="edge use violating" data-source="([^"]+)" '
                           r'data-target="([^"]+)"', dom)  # fmt: skip
    assert sorted(violating) == [
        (f"dataset:{ADS}", f"job:{MATCH_JOB}"),
        (f"job:{MATCH_JOB}", f"use:{AD_PURPOSE}"),
    ]
    summary = json.loads(pages["summary"].read_text())
    truth = generate(users=USERS).truth
    assert summary["affected_subjects"] == len(truth.affected_subjects)
    cells = re.findall(r"<td>([^<]*)</td><td>([^<]*)</td>", dom)
    assert ("distinct people affected", f"{len(truth.affected_subjects):,}") in cells
    first, last = truth.first_violation, truth.last_violation
    assert first is not None and last is not None
    assert ("violation window", f"{first:%Y-%m-%d} to {last:%Y-%m-%d}") in cells


def test_the_graph_of_a_dataset_renders(pages: dict[str, Path]) -> None:
    shown = render(pages["graph"], 1400, 600)
    png = read_png(shown.screenshot)
    assert (png.width, png.height) == (1400, 600)
    assert png.colours > 30 and png.saturated > 0.0005 and 0.01 < png.non_white < 0.6
    nodes = set(labels(shown.dom, "label"))
    # Within two steps of the ads table, either way: its sources, its uses, and what the
    # auth table feeds besides (the backup), but not the backup's own use (three steps).
    assert {ADS, AUTH, NEWSLETTER, SYNC_JOB, MATCH_JOB, AD_PURPOSE, BACKUP} <= nodes
    assert FRAUD_JOB not in nodes and FRAUD_PURPOSE not in nodes
    assert labels(shown.dom, "violation-marker") == [f"\u2716 violates {RULE}"]
    assert 'class="node dataset focus"' in shown.dom


def test_no_raw_identifier_in_the_pages(pages: dict[str, Path]) -> None:
    case = generate(users=USERS)
    text = "\n".join(p.read_text().lower() for p in (pages["report"], pages["graph"]))
    assert not [e for e in case.emails if e.lower() in text]
    e164 = ["+" + re.sub(r"\D", "", p) for p in case.phones]
    assert not [p for p in [*case.phones, *e164] if p in text]
    assert re.search(r"\*\*\*@example\.com|\+1 \*\*\*-\*\*\*-\d{4}", text)  # masked forms
