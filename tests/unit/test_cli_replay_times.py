"""`lineage replay --since/--until`: naive and aware ISO 8601 dates, naive meaning UTC; the
service always gets timezone-aware UTC datetimes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from cli.main import app, utc_datetime
from runtime.service import LineageService

RECORD: dict[str, Any] = {
    "type": "IdentifierCollected",
    "event_time": "2015-01-01T00:00:00Z",
    "producer": "auth",
    "dataset": "auth:db",
    "purpose": "essential.service.security",
    "identifier": {"email": "someone@example.com"},
}


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("2020-01-31", datetime(2020, 1, 31, tzinfo=UTC)),
        ("2020-01-31T12:30:00", datetime(2020, 1, 31, 12, 30, tzinfo=UTC)),
        ("2020-01-31 12:30", datetime(2020, 1, 31, 12, 30, tzinfo=UTC)),
        ("2020-01-31T12:30:00Z", datetime(2020, 1, 31, 12, 30, tzinfo=UTC)),
        ("2020-01-31T12:30:00+02:00", datetime(2020, 1, 31, 10, 30, tzinfo=UTC)),
        ("2020-01-31T00:30:00-05:00", datetime(2020, 1, 31, 5, 30, tzinfo=UTC)),
        (" 2020-01-31T12:30:00.250000+00:00 ", datetime(2020, 1, 31, 12, 30, 0, 250_000, UTC)),
    ],
)
def test_naive_is_utc_and_aware_is_converted(typed: str, expected: datetime) -> None:
    parsed = utc_datetime(typed)
    assert parsed == expected
    assert parsed.tzinfo is UTC and parsed.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    "typed", ["yesterday", "2020-13-01", "31/01/2020", "", "9999-12-31T23:59:59-23:59"]
)
def test_unparseable_or_out_of_range_is_a_bad_parameter(typed: str) -> None:
    with pytest.raises(typer.BadParameter):
        utc_datetime(typed, "--since")


@pytest.fixture
def cli(tmp_path: Path) -> CliRunner:
    unset = dict.fromkeys(
        ["LINEAGE_KEY", "LINEAGE_CONFIG", "LINEAGE_KAFKA_BOOTSTRAP", "LINEAGE_NEO4J_URI"]
    )
    return CliRunner(env={"LINEAGE_HOME": str(tmp_path / "home"), **unset})


def replayed(cli: CliRunner, *args: str) -> int:
    result = cli.invoke(app, ["replay", *args, "--json"])
    assert result.exit_code == 0, result.output
    return int(json.loads(result.stdout)["events"])


def test_replay_accepts_naive_and_aware_bounds(cli: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text(json.dumps(RECORD) + "\n")
    assert cli.invoke(app, ["ingest", str(path), "--json"]).exit_code == 0
    # observed_time is "now": every bound below falls before or after it
    assert replayed(cli, "--since", "2000-01-01") == 1
    assert replayed(cli, "--since", "2000-01-01T00:00:00+05:00") == 1
    assert replayed(cli, "--since", "2000-01-01T00:00:00Z", "--until", "2999-01-01") == 1
    assert replayed(cli, "--since", "2999-01-01T00:00:00-08:00") == 0
    assert replayed(cli, "--until", "2000-01-01") == 0
    assert replayed(cli) == 1


def test_the_service_gets_aware_utc_datetimes(
    cli: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[datetime | None, datetime | None]] = []
    original = LineageService.replay

    def spy(
        self: LineageService,
        observed_since: datetime | None = None,
        observed_until: datetime | None = None,
        progress: Any = None,
    ) -> Any:
        seen.append((observed_since, observed_until))
        return original(self, observed_since, observed_until, progress)

    monkeypatch.setattr(LineageService, "replay", spy)
    args = ["--since", "2020-01-01T02:00:00+02:00", "--until", "2020-06-01 12:00"]
    result = cli.invoke(app, ["replay", *args, "--json"])
    assert result.exit_code == 0, result.output
    assert seen == [(datetime(2020, 1, 1, tzinfo=UTC), datetime(2020, 6, 1, 12, tzinfo=UTC))]
    since, until = seen[0]
    assert since is not None and since.tzinfo is UTC
    assert until is not None and until.tzinfo is UTC


def test_a_bad_bound_is_a_usage_error_naming_the_option(cli: CliRunner) -> None:
    result = cli.invoke(app, ["replay", "--since", "last tuesday"])
    assert result.exit_code == 2
    assert "--since" in result.output and "ISO 8601" in result.output
    assert not isinstance(result.exception, TypeError)
