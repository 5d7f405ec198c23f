"""Identifiers sent already pseudonymized (issue 8): their ``display`` is producer text, so
only the masked forms the pseudonymizer makes may pass; a raw value there is rejected with a
reason that does not echo it, and never reaches the log or the graph. Also: the masking of
free text that ``lineage dead-letters`` shows."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console
from typer.testing import CliRunner

from cli.main import app
from cli.render import masked_text, print_alerts
from graph.sqlite_store import SqliteStore
from lineage.alerts import Alert, EvidenceStep
from lineage.errors import InvalidEventError
from lineage.events import DataFlowed, IdentifierCollected, dump_event, parse_event
from lineage.identifiers import MASKED_DISPLAY, Pseudonymizer
from lineage.inbound import InboundParser
from lineage.policy import Policy
from lineage.tracker import Tracker
from runtime.sinks import describe
from streams.projector import Inbound, triage

NOW = datetime(2026, 1, 1, tzinfo=UTC)
RAW_EMAIL = "John.Doe@Example.com"
RAW_PHONE = "+1 415 555 0100"
REF = "ab" * 32


def collected(identifier: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "IdentifierCollected",
        "event_time": "2015-01-01T00:00:00Z",
        "producer": "p",
        "dataset": "auth:db",
        "purpose": "essential.service.security",
        "identifier": identifier,
    }


def flowed(identifiers: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "type": "DataFlowed",
        "event_time": "2015-01-02T00:00:00Z",
        "producer": "p",
        "source": "auth:db",
        "target": "ads:db",
        "job": "sync",
        "identifiers": identifiers,
    }


def erased(identifier: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "IdentifierErased",
        "event_time": "2016-01-01T00:00:00Z",
        "producer": "privacy",
        "identifier": identifier,
    }


@pytest.mark.parametrize(
    ("category", "display"),
    [
        ("email", RAW_EMAIL),
        ("email", RAW_EMAIL.lower()),
        ("email", "john.doe***@example.com"),
        ("email", "j***@14155550100"),
        ("email", "+1 ***-***-0100"),  # a phone mask on an email
        ("phone", RAW_PHONE),
        ("phone", "+14155550100"),
        ("phone", "+1 ***-***-01000"),
        ("phone", "j***@example.com"),  # an email mask on a phone
        ("phone", ""),
    ],
)
@pytest.mark.parametrize("shape", [collected, erased, lambda i: flowed([i])])
def test_an_unmasked_display_is_rejected_without_echoing_it(
    parser: InboundParser, category: str, display: str, shape: Any
) -> None:
    record = shape({"category": category, "ref": REF, "display": display})
    with pytest.raises(InvalidEventError) as raised:
        parser.parse_line(json.dumps(record), NOW)
    assert "identifier.display: not a masked form" in raised.value.reason
    if display and display not in ("+1 ***-***-0100", "j***@example.com"):  # the hint's examples
        assert display not in raised.value.reason
        assert display.lower() not in raised.value.reason.lower()


@pytest.mark.parametrize("display", [17, ["j***@example.com"], {"x": 1}, True])
def test_a_display_that_is_not_text_is_rejected(parser: InboundParser, display: Any) -> None:
    record = collected({"category": "email", "ref": REF, "display": display})
    with pytest.raises(InvalidEventError, match=r"identifier\.display"):
        parser.parse_line(json.dumps(record), NOW)


@pytest.mark.parametrize(
    ("category", "display"),
    [
        ("email", "j***@example.com"),
        ("email", "***@example.com"),
        ("email", "é***@bücher.de"),
        ("phone", "+1 ***-***-0100"),
        ("phone", "+44 ***-***-7890"),
        ("phone", None),
        ("email", None),
    ],
)
def test_masked_or_absent_displays_pass_through(
    parser: InboundParser, category: str, display: str | None
) -> None:
    identifier: dict[str, Any] = {"category": category, "ref": REF}
    if display is not None:
        identifier["display"] = display
    event = parser.parse_line(json.dumps(flowed([identifier, identifier])), NOW)
    assert isinstance(event, DataFlowed)
    assert [i.display for i in event.identifiers or []] == [display, display]


def test_a_canonical_event_re_sent_as_input_passes(
    parser: InboundParser, pseudonymizer: Pseudonymizer
) -> None:
    """What the tracker writes itself (pseudonymizer masks) is accepted when sent back."""
    first = parser.parse_line(json.dumps(collected({"email": RAW_EMAIL})), NOW)
    again = parser.parse_line(dump_event(first), NOW)
    assert again == first
    canonical = parse_event(dump_event(again))
    assert isinstance(canonical, IdentifierCollected)
    assert canonical.identifier.display == "j***@example.com"


@settings(max_examples=200, deadline=None)
@given(email=st.emails())
def test_every_mask_the_pseudonymizer_makes_is_accepted(email: str) -> None:
    """Through the boundary: an email becomes an event whose display is a mask the check
    accepts, or a clean rejection (email-validator is stricter than RFC 5322, and a masked
    form over 80 characters is refused), never an exception of another kind."""
    parser = InboundParser(Pseudonymizer(b"k" * 32))
    try:
        event = parser.parse_line(json.dumps(collected({"email": email})), NOW)
    except InvalidEventError as exc:
        assert email.lower() not in exc.reason.lower()
        return
    assert isinstance(event, IdentifierCollected)
    display = event.identifier.display
    assert display is not None
    assert MASKED_DISPLAY["email"].fullmatch(display)
    assert not MASKED_DISPLAY["email"].fullmatch(email.lower())
    again = parser.parse_line(dump_event(event), NOW)  # sent back pseudonymized: accepted
    assert again == event


def test_an_email_too_long_to_mask_is_rejected_cleanly(parser: InboundParser) -> None:
    email = "x@" + "a." * 40 + "com"
    with pytest.raises(InvalidEventError) as raised:
        parser.parse_line(json.dumps(collected({"email": email})), NOW)
    assert raised.value.reason.startswith("identifier.email: display:")
    assert "a.a.a" not in raised.value.reason


@settings(max_examples=200, deadline=None)
@given(
    country=st.sampled_from(["1", "44", "49", "33", "81", "353", "91"]),
    digits=st.text("0123456789", min_size=6, max_size=12),
)
def test_phone_masks_accepted_and_raw_numbers_not(country: str, digits: str) -> None:
    raw = f"+{country}{digits}"
    assert not MASKED_DISPLAY["phone"].fullmatch(raw)
    assert not MASKED_DISPLAY["phone"].fullmatch(f"+{country} {digits}")
    try:
        made = Pseudonymizer(b"k" * 32).identifier("phone", raw)
    except InvalidEventError:
        return  # not a valid number for its region
    assert made.display is not None
    assert MASKED_DISPLAY["phone"].fullmatch(made.display)


# -- through the CLI, embedded ----------------------------------------------------------------


@pytest.fixture
def cli(tmp_path: Path) -> CliRunner:
    return CliRunner(env={"LINEAGE_HOME": str(tmp_path / "home")})


def test_ingest_dead_letters_it_and_nothing_raw_is_stored(cli: CliRunner, tmp_path: Path) -> None:
    source = tmp_path / "events.jsonl"
    lines = [
        collected({"category": "email", "ref": REF, "display": RAW_EMAIL}),
        collected({"email": "someone@example.com"}),
    ]
    source.write_text("".join(json.dumps(line) + "\n" for line in lines))
    result = cli.invoke(app, ["ingest", str(source), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["accepted"] == 1
    assert [r["line"] for r in report["rejected"]] == [1]
    assert RAW_EMAIL.lower() not in result.output.lower()

    shown = cli.invoke(app, ["dead-letters", "--json"])
    assert shown.exit_code == 0, shown.output
    letters = json.loads(shown.stdout)
    assert [d["reason"].split(" (")[0] for d in letters] == [
        "identifier.display: not a masked form"
    ]
    assert RAW_EMAIL.lower() not in shown.stdout.lower()
    # the raw value is in the dead letter's bytes only: no other table of the home holds it
    db = sqlite3.connect(tmp_path / "home" / "events.db")
    try:
        tables = [n for (n,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        assert "dead_letters" in tables
        for table in tables:
            rows = repr(db.execute(f"SELECT * FROM {table}").fetchall()).lower()
            assert (RAW_EMAIL.lower() in rows) == (table == "dead_letters"), table
    finally:
        db.close()


# -- masking free text (dead-letter reasons and origins) --------------------------------------


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("bad John.Doe@Example.com here", "bad J***@Example.com here"),
        ("call +1 415 555 0100 now", "call +***-***-0100 now"),
        ("(415) 555-0100", "***-***-0100"),
        ("+14155550100", "+***-***-0100"),
        ("j***@example.com +1 ***-***-0100", "j***@example.com +1 ***-***-0100"),
        ("not valid JSON: x at column 1048576", "not valid JSON: x at column 1048576"),
        ("record too large: 2,097,152 bytes", "record too large: 2,097,152 bytes"),
        ("event_time 2013-05-02T10:00:00Z", "event_time 2013-05-02T10:00:00Z"),
        ("id 6f1c4a52-8d4e-4d7c-9a65-2f0a9b7e3c11", "id 6f1c4a52-8d4e-4d7c-9a65-2f0a9b7e3c11"),
    ],
)
def test_masked_text(text: str, shown: str) -> None:
    assert masked_text(text) == shown


def test_masked_origin_keeps_offsets() -> None:
    assert masked_text("lineage.events:3:123456789", phones=False) == ("lineage.events:3:123456789")
    assert masked_text("/data/john.doe@example.com.jsonl:4", phones=False) == (
        "/data/j***@example.com.jsonl:4"
    )


# -- events that did not come through the parser (written to the topic or log directly) ---------
def test_the_worker_dead_letters_a_raw_display_written_straight_to_the_topic(
    policy: Policy,
) -> None:
    """The model itself refuses it, so the worker's triage does, with a reason that does not
    echo the value; a masked display passes."""
    body = {**collected({}), "event_id": "direct-1", "observed_time": "2015-01-01T00:00:00Z"}
    body["dataset"] = {"system": "auth", "name": "db"}
    raw = {**body, "identifier": {"category": "email", "ref": REF, "display": RAW_EMAIL}}
    masked = {
        **body,
        "event_id": "direct-2",
        "identifier": {"category": "email", "ref": REF, "display": "j***@example.com"},
    }
    batch = [
        Inbound(json.dumps(record).encode(), f"events:0:{n}", None)
        for n, record in enumerate((raw, masked))
    ]
    accepted, rejected = triage(Tracker(SqliteStore(":memory:"), policy), batch)
    assert [a.event.event_id for a in accepted] == ["direct-2"]
    assert [r.origin for r in rejected] == ["events:0:0"]
    assert "not a masked form" in rejected[0].reason
    assert RAW_EMAIL.lower() not in rejected[0].reason.lower()


def test_text_alerts_tell_apart_identifiers_that_mask_alike() -> None:
    """``u***@example.net`` is every userN: the text forms add a tag of the keyed hash."""
    base = Alert(
        alert_id="a1", rule="r", severity="high", identifier="1" * 64, category="email",
        display="u***@example.net", origin_dataset="auth:db", origin_purpose="p",
        use_dataset="ads:m", use_job="j", use_purpose="u", occurred_at=NOW,
        evidence=[EvidenceStep(kind="used", event_id="e", at=NOW, dataset="ads:m")],
    )  # fmt: skip
    other = base.model_copy(update={"alert_id": "a2", "identifier": "2" * 64})
    lines = [describe(alert) for alert in (base, other)]
    assert "u***@example.net #11111111" in lines[0]
    assert "u***@example.net #22222222" in lines[1]
    console = Console(record=True, width=200)
    print_alerts(console, [base, other])
    text = console.export_text()
    assert "u***@example.net #11111111" in text and "u***@example.net #22222222" in text
