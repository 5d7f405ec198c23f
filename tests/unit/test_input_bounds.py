"""Bounds at the boundary: event ids have one documented shape, times lie in 1970..2100 (UTC),
and raw lines are bounded in size and nesting before JSON parsing. Every rejection is one
clean line (InvalidEventError), never a RecursionError or a traceback."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from lineage.errors import InvalidEventError
from lineage.events import EARLIEST, EVENT_ID_PATTERN, LATEST, parse_event
from lineage.inbound import MAX_DEPTH, MAX_LINE_BYTES, InboundParser
from lineage.reference_case import generate
from tests import factories as f

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 1, 1, tzinfo=UTC)
RECORD: dict[str, Any] = {
    "type": "IdentifierCollected",
    "event_time": "2015-01-01T00:00:00Z",
    "producer": "auth",
    "dataset": "auth:db",
    "purpose": "essential.service.security",
    "identifier": {"email": "someone@example.com"},
}


def rejection(parser: InboundParser, line: str | bytes) -> str:
    with pytest.raises(InvalidEventError) as caught:
        parser.parse_line(line, NOW)
    reason = caught.value.reason
    assert reason and "\n" not in reason
    return reason


# -- event ids ---------------------------------------------------------------------------------


def test_content_hash_ids_match_the_event_id_pattern(parser: InboundParser) -> None:
    for variant in range(20):
        event = parser.parse_line(json.dumps({**RECORD, "producer": f"p{variant}"}), NOW)
        assert re.fullmatch(EVENT_ID_PATTERN, event.event_id), event.event_id


def test_reference_case_ids_match_the_event_id_pattern(parser: InboundParser) -> None:
    case = generate(users=40, seed=7)
    for record in case.records:
        assert re.fullmatch(EVENT_ID_PATTERN, record["event_id"]), record["event_id"]
        assert parser.parse_record(record, NOW).event_id == record["event_id"]
    # the longest the generator makes for big runs: seed and user count in the tag
    longest = f"refcase-s{2**63}-u{10**12}:collect-acct-{10**12:07d}-1"
    assert re.fullmatch(EVENT_ID_PATTERN, longest)


@pytest.mark.parametrize(
    "event_id",
    ["c-1", "0", "refcase-s7-u2000:collect-acct-0000001-0", "a.b_c:d-e", "x" * 128],
)
def test_well_formed_event_ids_are_accepted(parser: InboundParser, event_id: str) -> None:
    assert parser.parse_line(json.dumps({**RECORD, "event_id": event_id}), NOW).event_id == (
        event_id
    )


@pytest.mark.parametrize(
    "event_id",
    ["", " c-1", "c 1", "-c1", ".c1", "a/b", "a\nb", "é", "c1\u202e", "x" * 129, "a;DROP"],
)
def test_malformed_event_ids_are_rejected(parser: InboundParser, event_id: str) -> None:
    reason = rejection(parser, json.dumps({**RECORD, "event_id": event_id}))
    assert reason.startswith("IdentifierCollected.event_id:")


def test_shipped_schema_documents_the_event_id_pattern() -> None:
    schema = json.loads((ROOT / "lineage/schema/events.schema.json").read_text())
    for name in ("IdentifierCollected", "DataFlowed", "DataUsed", "DataRead", "IdentifierErased"):
        event_id = schema["$defs"][name]["properties"]["event_id"]
        assert event_id["pattern"] == EVENT_ID_PATTERN
        assert event_id["maxLength"] == 128


def test_a_read_carries_no_purpose_and_no_identifiers(parser: InboundParser) -> None:
    """``DataRead`` is a job reading a whole dataset: a purpose (it could never alert) or a list
    of identifiers is refused at the boundary, the raw value never echoed."""
    read = {"type": "DataRead", "event_time": "2015-01-01T00:00:00Z", "producer": "bi",
            "dataset": "ads:t", "job": "weekly-report"}  # fmt: skip
    assert parser.parse_line(json.dumps(read), NOW).type == "DataRead"
    reason = rejection(parser, json.dumps({**read, "purpose": "analytics.reporting"}))
    assert reason == "DataRead.purpose: Extra inputs are not permitted"
    listed = {**read, "identifiers": [{"phone": "+1 650 253 0000"}]}
    reason = rejection(parser, json.dumps(listed))
    assert reason == "DataRead.identifiers: Extra inputs are not permitted"
    assert "650" not in reason


# -- times -------------------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["event_time", "observed_time"])
@pytest.mark.parametrize(
    "moment",
    [
        "9999-12-31T23:59:59-23:59",
        "0001-01-01T00:00:00+23:59",
        "1969-12-31T23:59:59.999999Z",
        "2100-01-01T00:00:00Z",
        "2100-01-01T01:00:00+01:00",  # the same instant
        "2500-06-01T00:00:00Z",
    ],
)
def test_times_outside_1970_to_2100_are_rejected(
    parser: InboundParser, field: str, moment: str
) -> None:
    reason = rejection(parser, json.dumps({**RECORD, field: moment}))
    assert reason == (
        f"IdentifierCollected.{field}: must be from 1970-01-01T00:00:00Z "
        "and before 2100-01-01T00:00:00Z"
    )


@pytest.mark.parametrize("field", ["event_time", "observed_time"])
@pytest.mark.parametrize(
    "moment",
    [
        "1970-01-01T00:00:00Z",
        "1970-01-01T01:00:00+01:00",
        "2099-12-31T23:59:59.999999Z",
        "2100-01-01T00:30:00+01:00",  # 2099-12-31T23:30Z
    ],
)
def test_times_at_the_bounds_are_accepted(parser: InboundParser, field: str, moment: str) -> None:
    event = parser.parse_line(json.dumps({**RECORD, field: moment}), NOW)
    assert EARLIEST <= getattr(event, field) < LATEST


def test_canonical_events_are_bounded_too() -> None:
    event = f.collected("c1", "a", "auth:db", f.SECURITY, 1)
    body = json.loads(event.model_dump_json())
    with pytest.raises(ValidationError):
        parse_event({**body, "event_time": "9999-12-31T23:59:59-23:59"})
    with pytest.raises(ValidationError):
        parse_event(json.dumps({**body, "observed_time": "1960-01-01T00:00:00Z"}))
    far = datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone(-timedelta(hours=23, minutes=59)))
    with pytest.raises(ValidationError, match="before 2100-01-01"):
        event.model_validate({**event.model_dump(), "event_time": far})


# -- raw line size and nesting -----------------------------------------------------------------


def nested(levels: int, inner: str = "1") -> str:
    return "[" * levels + inner + "]" * levels


@pytest.mark.parametrize("as_bytes", [False, True])
def test_a_1100_level_nested_line_is_rejected_cleanly(
    parser: InboundParser, as_bytes: bool
) -> None:
    line = nested(1_100)
    reason = rejection(parser, line.encode() if as_bytes else line)
    assert reason == f"not valid JSON: nested deeper than {MAX_DEPTH} levels"


def test_deep_nesting_inside_a_field_is_rejected_before_parsing(parser: InboundParser) -> None:
    deep = '{"a":' * 100_000 + "1" + "}" * 100_000  # far beyond Python's recursion limit
    line = json.dumps(RECORD)[:-1] + ', "reason": ' + deep + "}"
    assert "nested deeper" in rejection(parser, line)


def test_the_depth_limit_is_exact(parser: InboundParser) -> None:
    # At the limit: not a depth rejection (it fails later, as any array does).
    assert "nested" not in rejection(parser, nested(MAX_DEPTH))
    assert "nested deeper" in rejection(parser, nested(MAX_DEPTH + 1))
    assert "nested deeper" in rejection(parser, '{"a": ' + nested(MAX_DEPTH) + "}")


def test_brackets_inside_string_values_do_not_count(parser: InboundParser) -> None:
    record = {**RECORD, "type": "IdentifierErased", "reason": '[{"\\' * 120}
    del record["dataset"], record["purpose"]
    event = parser.parse_line(json.dumps(record), NOW)
    assert event.type == "IdentifierErased"


@pytest.mark.parametrize("as_bytes", [False, True])
def test_a_2_mb_line_is_rejected_cleanly(parser: InboundParser, as_bytes: bool) -> None:
    line = json.dumps({**RECORD, "reason": "x" * 2_000_000})
    reason = rejection(parser, line.encode() if as_bytes else line)
    assert reason.startswith("record too large:")
    assert f"the limit is {MAX_LINE_BYTES:,} (1 MiB)" in reason


def test_size_counts_utf8_bytes_without_the_line_ending(parser: InboundParser) -> None:
    template = json.dumps({**RECORD, "type": "IdentifierErased", "reason": ""})
    record = json.loads(template)
    del record["dataset"], record["purpose"]
    base = json.dumps(record)
    padding = MAX_LINE_BYTES - len(base.encode())
    exact = base.replace('"reason": ""', '"reason": "' + " " * padding + '"')
    assert len(exact.encode()) == MAX_LINE_BYTES
    # exactly at the limit, with a line ending: not a size rejection (the reason is too long)
    assert "too large" not in rejection(parser, exact.encode() + b"\r\n")
    assert "too large" not in rejection(parser, exact + "\n")
    over = exact.replace(" ", "é", 1)  # one character, two bytes: one byte over
    assert "too large" in rejection(parser, over)
    assert "too large" in rejection(parser, over.encode())


# -- text that cannot be hashed ----------------------------------------------------------------


def test_non_utf8_bytes_are_rejected(parser: InboundParser) -> None:
    assert rejection(parser, b'{"type": "\xff"}') == "not valid JSON: not UTF-8"


@pytest.mark.parametrize(
    "record",
    [
        {**RECORD, "subject": "\ud800acct"},
        {**RECORD, "identifier": {"email": "a\udc80@example.com"}},
        {**RECORD, "identifier": {"phone": "+1 415 555 0100\ud800"}},
    ],
)
def test_lone_surrogates_in_hashed_values_are_rejected(
    parser: InboundParser, record: dict[str, Any]
) -> None:
    line = json.dumps(record)  # ensure_ascii: the surrogate is spelled as a \\u escape
    assert "\\ud" in line
    rejection(parser, line)
    with pytest.raises(InvalidEventError):
        parser.parse_record(record, NOW)
