"""The raw boundary: producer records (with raw phones/emails) become canonical events.

This is the only code that sees raw identifier values. It normalizes and pseudonymizes them,
fills ``observed_time`` and, when a producer sent none, a content-derived ``event_id`` (so
re-sending the same record is idempotent). Error messages never echo input values.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from lineage.errors import InvalidEventError
from lineage.events import Event, parse_event
from lineage.identifiers import Category, Pseudonymizer

EVENT_ID_NAMESPACE = uuid.UUID("6f1c4a52-8d4e-4d7c-9a65-2f0a9b7e3c11")
CATEGORIES: tuple[Category, ...] = ("phone", "email")


def describe_validation_error(exc: ValidationError) -> str:
    """Field paths and reasons only: pydantic's default text would echo raw input values."""
    parts = []
    for error in exc.errors(include_input=False, include_url=False):
        location = ".".join(str(p) for p in error["loc"] if not isinstance(p, int)) or "event"
        parts.append(f"{location}: {error['msg']}")
    return "; ".join(dict.fromkeys(parts))


class InboundParser:
    def __init__(self, pseudonymizer: Pseudonymizer) -> None:
        self._pseudonymizer = pseudonymizer

    def parse_line(self, line: str | bytes, observed: datetime) -> Event:
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidEventError(f"not valid JSON: {exc.msg} at column {exc.colno}") from None
        except UnicodeDecodeError:
            raise InvalidEventError("not valid JSON: not UTF-8") from None
        return self.parse_record(record, observed)

    def parse_record(self, record: Any, observed: datetime) -> Event:
        if not isinstance(record, dict):
            raise InvalidEventError("an event must be a JSON object")
        data = dict(record)
        for field in ("identifier",):
            if field in data:
                data[field] = self._identifier(data[field])
        if isinstance(data.get("identifiers"), list):
            data["identifiers"] = [self._identifier(item) for item in data["identifiers"]]
        if isinstance(data.get("subject"), str):
            data["subject"] = self._pseudonymizer.subject(data["subject"])
        for field in ("dataset", "source", "target"):
            if isinstance(data.get(field), str):
                system, sep, name = data[field].partition(":")
                if not sep:
                    raise InvalidEventError(f"{field}: expected 'system:name'")
                data[field] = {"system": system, "name": name}
        data.setdefault("observed_time", observed.isoformat())
        if "event_id" not in data:
            canonical = json.dumps(
                {k: v for k, v in data.items() if k != "observed_time"}, sort_keys=True
            )
            data["event_id"] = str(uuid.uuid5(EVENT_ID_NAMESPACE, canonical))
        try:
            return parse_event(data)
        except ValidationError as exc:
            raise InvalidEventError(describe_validation_error(exc)) from None

    def _identifier(self, value: Any) -> Any:
        """``{"phone": raw}`` / ``{"email": raw}`` become refs; ref-shaped input passes through."""
        if not isinstance(value, dict):
            raise InvalidEventError('identifier: expected an object like {"phone": "+1 ..."}')
        raw_keys = [c for c in CATEGORIES if c in value]
        if not raw_keys:
            return value
        if len(value) != 1:
            raise InvalidEventError("identifier: give exactly one of phone, email")
        category = raw_keys[0]
        raw = value[category]
        if not isinstance(raw, str):
            raise InvalidEventError(f"identifier: {category} must be a string")
        ref = self._pseudonymizer.identifier(category, raw)
        return ref.model_dump()
