"""The read API answers the same from both stores: the demo recorded once into a home with the
embedded SQLite store and once into a home whose graph is in Neo4j (``LINEAGE_STORE=neo4j``),
each served by ``lineage serve``, every read compared document for document."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests

from bench.serve_ingest import environment, serving
from lineage.reference_case import ADS, AUTH, MATCH_JOB, generate
from tests.conftest import neo4j_store, require_service

pytestmark = pytest.mark.neo4j

ROOT = Path(__file__).resolve().parents[2]
USERS = 200
AS_OF = "2015-06-01"
#: Neo4j is production mode, which needs a key: both homes get it, so refs are the same.
KEY = {"LINEAGE_KEY": "both-stores-test-key-0123456789abcdef"}


def _neo4j_env() -> dict[str, str]:
    return {
        **KEY,
        "LINEAGE_STORE": "neo4j",
        "LINEAGE_NEO4J_URI": require_service("LINEAGE_NEO4J_URI"),
        "LINEAGE_NEO4J_USER": os.environ.get("LINEAGE_NEO4J_USER", "neo4j"),
        "LINEAGE_NEO4J_PASSWORD": require_service("LINEAGE_NEO4J_PASSWORD"),
    }


def _demo(home: Path, env: dict[str, str]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", "demo", "--users", str(USERS), "--json"],
        env=environment(home, **env), cwd=ROOT, capture_output=True, text=True, timeout=300,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


def _reads(url: str) -> dict[str, Any]:
    """Every read the API offers, as of now and as of a date (report: less its timestamp)."""
    raw = sorted(i for i in generate(users=USERS).truth.affected_identifiers if "@" not in i)[0]
    found: dict[str, Any] = {}
    for when in ({}, {"as_of": AS_OF}):
        tag = when.get("as_of", "now")
        report = requests.get(f"{url}/api/v1/report", params=when, timeout=60).json()
        report.pop("generated_at")
        found[f"report {tag}"] = report
        for name in ("paths", "affected", "collections", "erasure-gaps"):
            found[f"{name} {tag}"] = requests.get(
                f"{url}/api/v1/queries/{name}", params=when, timeout=60
            ).json()
        found[f"blast {tag}"] = requests.get(
            f"{url}/api/v1/queries/blast-radius", params={**when, "target": AUTH}, timeout=60
        ).json()
        found[f"lineage {tag}"] = requests.get(
            f"{url}/api/v1/lineage", params={**when, "nodeId": f"dataset:{ADS}"}, timeout=60
        ).json()
        found[f"alerts {tag}"] = requests.get(
            f"{url}/api/v1/alerts", params=when, timeout=60
        ).json()
        found[f"trace {tag}"] = requests.post(
            f"{url}/api/v1/trace", json={"identifier": raw, **when}, timeout=60
        ).json()
    return found


def test_both_stores_answer_every_read_the_same(tmp_path: Path) -> None:
    env: dict[str, str] = _neo4j_env()
    graph = neo4j_store()
    try:
        graph.clear()
    finally:
        graph.close()
    answers = []
    homes: list[tuple[str, dict[str, str]]] = [("sqlite", KEY), ("neo4j", env)]
    for name, extra in homes:
        home = tmp_path / name
        _demo(home, extra)
        with serving(home, env=extra) as served:
            answers.append(_reads(served.url))
            assert served.stop() == 0
    sqlite, neo4j = answers
    assert sqlite["report now"]["summary"]["alerts"] > 0
    assert sqlite["trace now"]["found"] and MATCH_JOB in json.dumps(sqlite["trace now"])
    for key in sqlite:
        assert neo4j[key] == sqlite[key], key
