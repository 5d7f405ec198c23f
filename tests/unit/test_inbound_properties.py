"""Property tests for the raw boundary: any input either becomes a valid event or is rejected
with InvalidEventError, and a rejection never echoes an identifier value."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from lineage.errors import InvalidEventError
from lineage.events import parse_event
from lineage.inbound import InboundParser

NOW = datetime(2026, 1, 1, tzinfo=UTC)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
TEMPLATE: dict[str, Any] = {
    "type": "IdentifierCollected",
    "event_time": "2015-01-01T00:00:00Z",
    "producer": "p",
    "dataset": "auth:db",
    "purpose": "essential.service.security",
    "identifier": {"email": "x@example.com"},
}
SECRET = "Sentinel.Person@example.com"


@settings(max_examples=300)
@given(line=st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_arbitrary_bytes_never_crash_the_parser(line: bytes, parser: InboundParser) -> None:
    try:
        parser.parse_line(line, NOW)
    except InvalidEventError as exc:
        assert exc.reason


@settings(max_examples=300)
@given(field=st.sampled_from(sorted(TEMPLATE)), value=json_values)
def test_corrupting_one_field_is_accepted_or_cleanly_rejected(
    field: str, value: Any, parser: InboundParser
) -> None:
    record = {**TEMPLATE, field: value, "subject": SECRET}
    try:
        event = parser.parse_line(json.dumps(record), NOW)
    except InvalidEventError as exc:
        assert SECRET.lower() not in exc.reason.lower()
    else:
        assert parse_event(event.model_dump_json()) == event  # round-trips canonically
        assert SECRET.lower() not in event.model_dump_json().lower()


@given(
    raw=st.from_regex(r"\+?[0-9]{7,14}", fullmatch=True)
    | st.emails().map(lambda e: e.replace("@", "@@"))
)
def test_rejected_identifier_values_are_not_echoed(raw: str, parser: InboundParser) -> None:
    category = "email" if "@" in raw else "phone"
    record = {**TEMPLATE, "identifier": {category: raw}}
    try:
        event = parser.parse_line(json.dumps(record), NOW)
    except InvalidEventError as exc:
        assert raw not in exc.reason
    else:
        assert raw not in event.model_dump_json()
