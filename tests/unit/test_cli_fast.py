"""``lineage --help`` and ``lineage trace`` import only what they use (issue 8, fast CLI).

Not timed: the tests look at which modules a fresh interpreter loaded, which is what makes
``--help`` slow or fast, whatever the machine's load.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import without_lineage_settings

ROOT = Path(__file__).resolve().parents[2]
DRIVERS = ("neo4j", "faust", "mode", "kafka", "aiokafka", "networkx")
#: Not needed to print help either; heavy (phonenumbers' metadata, the models, settings).
HEAVY = (
    "phonenumbers",
    "email_validator",
    "pydantic_settings",
    "fideslang",
    "lineage.events",
    "runtime.settings",
    "runtime.service",
    "cli.render",
)


def _imported(args: list[str], env: dict[str, str] | None = None) -> set[str]:
    """Modules a fresh ``python -X importtime -m cli.main ARGS`` imported, each with its
    top-level package (in the embedded mode: no ``LINEAGE_*`` variable but those given)."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "cli.main", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={
            **without_lineage_settings(),
            **(env or {}),
        },
    )
    names = set()
    for line in result.stderr.splitlines():
        if line.startswith("import time:") and line.count("|") == 2:
            name = line.rsplit("|", 1)[1].strip()
            names |= {name, name.split(".")[0]}
    assert names, result.stderr[-2000:]
    return names


def test_importing_the_cli_loads_no_driver_or_heavy_module() -> None:
    code = (
        "import sys, cli.main; "
        f"print(' '.join(m for m in {(*DRIVERS, *HEAVY, 'pydantic')!r} if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert result.stdout.split() == []


def test_help_imports_no_driver_and_no_model() -> None:
    loaded = _imported(["--help"])
    assert loaded & {*DRIVERS, *HEAVY, "pydantic"} == set()
    assert "typer" in loaded  # the parse did run


@pytest.mark.parametrize(
    "command", ["trace", "ingest", "worker", "alerts", "dead-letters", "webhook", "query"]
)
def test_command_help_imports_no_driver(command: str) -> None:
    """typer itself parses a command's parameters with pydantic; nothing more is loaded."""
    loaded = _imported([command, "--help"])
    assert loaded & {*DRIVERS, *HEAVY} == set()


def test_embedded_trace_imports_no_kafka_or_neo4j_driver(tmp_path: Path) -> None:
    """``trace`` needs phonenumbers and the models, never the Kafka or Neo4j drivers.

    (networkx still loads through ``runtime.service`` -> ``graph.dataset_graph``; only the
    ``downstream`` command uses it.)"""
    loaded = _imported(["trace", "nobody@example.com"], {"LINEAGE_HOME": str(tmp_path / "h")})
    assert "phonenumbers" in loaded or "email_validator" in loaded
    assert loaded & {"neo4j", "faust", "mode", "kafka", "aiokafka"} == set()
