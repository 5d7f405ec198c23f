"""`lineage trace` honours LINEAGE_DEFAULT_REGION, as ingest does: a number typed without a
country code is found when it was collected; region codes are case-insensitive and a mistyped
one is a configuration error rather than every national number silently failing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from lineage.errors import ConfigurationError
from lineage.identifiers import Pseudonymizer, check_region

KEY = b"k" * 32
RECORD = {
    "type": "IdentifierCollected",
    "event_time": "2015-01-01T00:00:00Z",
    "producer": "auth",
    "dataset": "auth:db",
    "purpose": "essential.service.security",
    "identifier": {"phone": "+1 415 555 0100"},
}


def cli_for(home: Path, region: str | None) -> CliRunner:
    env: dict[str, str | None] = {
        "LINEAGE_HOME": str(home),
        "LINEAGE_KEY": None,
        "LINEAGE_CONFIG": None,
        "LINEAGE_KAFKA_BOOTSTRAP": None,
        "LINEAGE_NEO4J_URI": None,
        "LINEAGE_DEFAULT_REGION": region,
    }
    return CliRunner(env=env)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "events.jsonl"
    path.write_text(json.dumps(RECORD) + "\n")
    home = tmp_path / "home"
    result = cli_for(home, None).invoke(app, ["ingest", str(path), "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout)["accepted"] == 1
    return home


@pytest.mark.parametrize("region", ["US", "us", " Us "])
@pytest.mark.parametrize("typed", [["415", "555", "0100"], ["(415) 555-0100"], ["4155550100"]])
def test_trace_reads_national_numbers_in_the_default_region(
    home: Path, region: str, typed: list[str]
) -> None:
    result = cli_for(home, region).invoke(app, ["trace", *typed, "--json"])
    assert result.exit_code == 0, result.output
    trace = json.loads(result.stdout)
    assert trace["identifier"]["display"] == "+1 ***-***-0100" and trace["origins"]


def test_trace_dash_uses_the_default_region_too(home: Path) -> None:
    result = cli_for(home, "US").invoke(app, ["trace", "-", "--json"], input=b"415 555 0100\n")
    assert result.exit_code == 0, result.output


def test_without_a_region_a_national_number_is_invalid(home: Path) -> None:
    result = cli_for(home, None).invoke(app, ["trace", "415", "555", "0100"])
    assert result.exit_code == 2 and "invalid phone" in result.output


def test_the_region_does_not_change_international_numbers(home: Path) -> None:
    result = cli_for(home, "GB").invoke(app, ["trace", "+1", "415", "555", "0100", "--json"])
    assert result.exit_code == 0, result.output


def test_an_unknown_region_is_a_configuration_error(home: Path) -> None:
    result = cli_for(home, "USA").invoke(app, ["trace", "415", "555", "0100"])
    assert result.exit_code == 2
    assert "unknown phone region 'USA'" in result.output
    with pytest.raises(ConfigurationError, match="unknown phone region"):
        Pseudonymizer(KEY, "XX")


def test_pseudonymizer_regions_are_case_insensitive() -> None:
    assert check_region(None) is None and check_region("  ") is None
    assert check_region("gb") == "GB"
    upper, lower = Pseudonymizer(KEY, "US"), Pseudonymizer(KEY, "us")
    assert lower.default_region == "US"
    national = lower.identifier("phone", "(415) 555-0100")
    assert national == upper.identifier("phone", "415 555 0100")
    assert national == Pseudonymizer(KEY).identifier("phone", "+1 415 555 0100")
