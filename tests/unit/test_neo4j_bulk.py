"""The bulk rebuild's pure parts: the alerts' outbox plan across a rebuild, and the import CSVs
(headers the importer understands, every kind of the graph model, no raw identifier)."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from graph.neo4j_bulk import (
    LiveAlert,
    RebuildState,
    import_command,
    plan_alerts,
    write_csvs,
)
from lineage.identifiers import Pseudonymizer
from lineage.inbound import InboundParser
from lineage.policy import Policy
from lineage.reference_case import generate
from lineage.tracker import Tracker
from tests.conftest import TEST_KEY, without_lineage_settings

NOW = datetime(2026, 12, 7, tzinfo=UTC)


def _replayed(pseudonymizer: Pseudonymizer, policy: Policy) -> tuple[RebuildState, list[Any]]:
    case = generate(users=40)
    parser = InboundParser(pseudonymizer)
    events = [parser.parse_record(r, NOW) for r in case.records]
    state = RebuildState()
    Tracker(state, policy).apply(events)
    return state, case.records


def test_alert_plan_keeps_what_sinks_saw(pseudonymizer: Pseudonymizer, policy: Policy) -> None:
    state, _ = _replayed(pseudonymizer, policy)
    rebuilt = state.alert_bodies()
    assert len(rebuilt) >= 4
    same, sent_queued, changed, new, *_ = sorted(rebuilt)
    gone = rebuilt[same].model_copy(update={"alert_id": "gone-alert", "revision": 2})
    live = {
        same: LiveAlert(rebuilt[same], queued=False),
        sent_queued: LiveAlert(rebuilt[sent_queued], queued=True),
        changed: LiveAlert(
            rebuilt[changed].model_copy(update={"revision": 3, "rule": "older-rule"}), False
        ),
        "gone-alert": LiveAlert(gone, queued=False),
    }
    plan = {p.alert.alert_id: p for p in plan_alerts(rebuilt, live)}
    assert not plan[same].queued and plan[same].alert == rebuilt[same]
    assert plan[sent_queued].queued  # never confirmed sent: still to send
    assert plan[changed].queued and plan[changed].alert.revision == 4
    assert plan[new].queued and plan[new].alert.revision == rebuilt[new].revision
    assert plan["gone-alert"].queued
    assert (plan["gone-alert"].alert.status, plan["gone-alert"].alert.revision) == ("withdrawn", 3)
    assert set(plan) == set(rebuilt) | {"gone-alert"}


def test_csvs_hold_the_graph_model_and_no_raw_identifier(
    pseudonymizer: Pseudonymizer, policy: Policy, tmp_path: Path
) -> None:
    state, records = _replayed(pseudonymizer, policy)
    planned = plan_alerts(state.alert_bodies(), {})
    csvs = write_csvs(state, planned, tmp_path, NOW)
    assert set(csvs.nodes) == {
        "Identifier", "Subject", "Dataset", "Purpose", "Job", "Alert", "EventClaim"
    }  # fmt: skip
    assert set(csvs.relationships) == {
        "BELONGS_TO", "COLLECTED_INTO", "COPY_IN", "FLOWS_TO", "FLOW_RUN", "USED_FOR",
        "USE_RUN", "CARRIED_TO", "USED_IN", "ABOUT",
    }  # fmt: skip
    for kind in ("Identifier", "Dataset", "Alert", "COPY_IN", "FLOW_RUN", "ABOUT"):
        assert csvs.counts[kind] > 0, kind
    counts = state.counts()
    assert csvs.counts["COPY_IN"] == counts.copies
    assert csvs.counts["COLLECTED_INTO"] == counts.collections
    assert csvs.counts["Alert"] == csvs.counts["ABOUT"] == counts.alerts
    # every alert waits in the outbox (nothing was sent) with its position
    alerts = (tmp_path / "alert.csv").read_text().splitlines()
    assert alerts[0].endswith("queued_at:datetime,queued_index:long")
    assert all(line.endswith(f",{n}") for n, line in enumerate(alerts[1:]))

    raw: set[str] = set()
    accounts: set[str] = set()
    for record in records:
        values = [record.get("identifier"), *(record.get("identifiers") or [])]
        for value in values:
            if isinstance(value, dict):
                raw |= {str(v) for v in value.values()}
        if record.get("subject"):
            accounts.add(str(record["subject"]))
    raw |= {re.sub(r"[^+0-9]", "", v) for v in raw if v.startswith("+")}
    assert raw and accounts
    text = "\n".join(p.read_text() for p in tmp_path.glob("*.csv"))
    leaked = sorted(v for v in raw if v in text)
    assert not leaked, leaked[:5]
    # account ids are pseudonymized too (the generator's event ids spell them: not a field)
    subjects = (tmp_path / "subject.csv").read_text() + (tmp_path / "belongs_to.csv").read_text()
    subjects += "".join(line.split(",")[9] for line in alerts[1:])
    assert not sorted(v for v in accounts if v in subjects)


def test_import_command_names_every_file(tmp_path: Path) -> None:
    state = RebuildState()
    csvs = write_csvs(state, [], tmp_path / "csv", NOW)
    command = import_command(tmp_path / "libs", csvs, tmp_path / "home")
    assert command[command.index("full") + 1] == "neo4j"  # before the file lists
    assert sum(a.startswith("--nodes=") for a in command) == len(csvs.nodes)
    assert sum(a.startswith("--relationships=") for a in command) == len(csvs.relationships)
    assert "--multiline-fields=true" not in command


def test_the_swap_refuses_a_server_that_svc_does_not_run(tmp_path: Path) -> None:
    """Stopping and starting services/svc's Neo4j for another URI would restart the wrong
    server (or this one on another port): the command refuses before reading anything."""
    env = without_lineage_settings() | {
        "LINEAGE_NEO4J_URI": "bolt://127.0.0.1:9",
        "LINEAGE_NEO4J_PASSWORD": "not-a-server-password",
        "LINEAGE_KEY": TEST_KEY.decode(),
        "LINEAGE_SERVICES_DIR": str(tmp_path / "services"),
    }
    command = [sys.executable, "-m", "cli.main", "rebuild"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "--neo4j" in done.stderr
    done = subprocess.run(
        [*command, "--neo4j", "--workdir", str(tmp_path / "work")],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode != 0
    assert "--no-swap" in done.stderr and "bolt://127.0.0.1:9" in done.stderr
    assert not any((tmp_path / "work").iterdir())  # nothing was replayed or written
