"""The raw boundary: producer records (with raw phones/emails) become canonical events.

This is the only code that sees raw identifier values. It normalizes and pseudonymizes them,
fills ``observed_time`` and, when a producer sent none, a content-derived ``event_id`` (so
re-sending the same record is idempotent). Error messages never echo input values.

Raw lines are bounded before they are parsed: at most ``MAX_LINE_BYTES`` of UTF-8 and
``MAX_DEPTH`` levels of nested objects/arrays, so a hostile line is one clean rejection, never
a ``RecursionError`` or a parser chewing on megabytes.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import datetime
from itertools import accumulate
from typing import Any

from pydantic import ValidationError

from lineage.errors import InvalidEventError, InvalidIdentifierError
from lineage.events import (
    INCIDENT_EVENT_TYPES,
    DataFlowed,
    DataRead,
    DatasetRef,
    DataUsed,
    Event,
    IdentifierCollected,
    IdentifierErased,
    parse_produced,
)
from lineage.identifiers import MASKED_DISPLAY, Category, IdentifierRef, Pseudonymizer

EVENT_ID_NAMESPACE = uuid.UUID("6f1c4a52-8d4e-4d7c-9a65-2f0a9b7e3c11")
CATEGORIES: tuple[Category, ...] = ("phone", "email")

#: The largest producer record accepted, in UTF-8 bytes (without the line ending).
MAX_LINE_BYTES = 1 << 20
#: The deepest nesting of JSON objects and arrays accepted (a valid event needs 3).
MAX_DEPTH = 32

#: A JSON string literal; an unterminated one runs to the end of the text (JSON rejects it
#: later). So every ``"`` starts a match that succeeds and the scan is linear: a pattern that
#: can fail would be retried from each of many quotes, quadratic (a 160 kB line of ``"\\``
#: took 52 s to check; 1 MiB would take most of an hour).
_STRING_LITERAL = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\\?\Z)', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_DEPTH_STEP = {"{": 1, "[": 1, "}": -1, "]": -1}
_TOO_DEEP = f"not valid JSON: nested deeper than {MAX_DEPTH} levels"
#: The longest rejection reason: reasons are one line, and never grow with the input.
MAX_REASON_CHARS = 400
#: Line breaks, other control characters and Unicode line/paragraph separators: a reason is
#: one line of text whatever a library put in it.
_NOT_ONE_LINE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
_EVENT_MODELS = (IdentifierCollected, DataFlowed, DataUsed, DataRead, IdentifierErased)
#: The only location names a reason may spell out: the models' own field names and type tags.
#: Anything else in a location is a key the producer made up (``{"john@example.com": 1}`` is
#: an extra field named by its raw value), so it is not echoed.
_KNOWN_NAMES = frozenset(
    name
    for model in (*_EVENT_MODELS, *INCIDENT_EVENT_TYPES, DatasetRef, IdentifierRef)
    for name in (model.__name__, *model.model_fields)
)

_DISPLAY_HINT = (
    "identifier.display: not a masked form (like '+1 ***-***-0100' or 'j***@example.com'); "
    'send the raw value as {"phone": ...} or {"email": ...}, or omit display'
)


def check_line_bounds(line: str | bytes) -> str:
    """The line as text, or :class:`InvalidEventError` when it is not UTF-8, is larger than
    ``MAX_LINE_BYTES`` or nests deeper than ``MAX_DEPTH``: checked before JSON parsing."""
    if isinstance(line, bytes):
        _check_size(len(line.rstrip(b"\r\n")))
        try:
            text = line.decode("utf-8-sig")  # a leading byte-order mark is tolerated
        except UnicodeDecodeError:
            raise InvalidEventError("not valid JSON: not UTF-8") from None
    else:
        text = line
        if len(text) > MAX_LINE_BYTES // 4:  # a shorter str cannot exceed the limit in UTF-8
            try:
                _check_size(len(text.rstrip("\r\n").encode("utf-8")))
            except UnicodeEncodeError:
                raise InvalidEventError("not valid JSON: not UTF-8") from None
    _check_depth(text)
    return text


def _check_size(size: int) -> None:
    if size > MAX_LINE_BYTES:
        raise InvalidEventError(
            f"record too large: {size:,} bytes, the limit is {MAX_LINE_BYTES:,} (1 MiB)"
        )


def _check_depth(text: str) -> None:
    if text.count("{") + text.count("[") <= MAX_DEPTH:  # the common case: nothing to scan
        return
    brackets = _NOT_BRACKET.sub("", _STRING_LITERAL.sub("", text))
    if brackets and max(accumulate(map(_DEPTH_STEP.__getitem__, brackets))) > MAX_DEPTH:
        raise InvalidEventError(_TOO_DEEP)


def describe_validation_error(exc: ValidationError) -> str:
    """Field paths and reasons only: pydantic's default text would echo raw input values (an
    unknown ``type``'s tag, an unknown field's name), so neither is ever spelled out; one line,
    at most ``MAX_REASON_CHARS``."""
    parts = []
    for error in exc.errors(include_input=False, include_url=False):
        names = [p for p in error["loc"] if not isinstance(p, int)]
        location = ".".join(p if p in _KNOWN_NAMES else "<unknown field>" for p in names)
        if error["type"] == "union_tag_invalid":  # its message quotes the tag it was given
            expected = error.get("ctx", {}).get("expected_tags", "")
            parts.append(f"type: does not match any of the expected tags: {expected}")
            continue
        message = error["msg"].removeprefix("Value error, ")
        parts.append(f"{location or 'event'}: {message}")
    return one_line("; ".join(dict.fromkeys(parts)))


def one_line(reason: str, limit: int = MAX_REASON_CHARS) -> str:
    """A rejection reason as one line of valid UTF-8 text of at most ``limit`` characters:
    control characters and line separators become spaces, runs of spaces one, lone surrogates
    ``?``, and a longer text is cut with an ellipsis."""
    text = " ".join(_NOT_ONE_LINE.sub(" ", reason).split())
    text = text.encode("utf-8", "replace").decode("utf-8")
    return text if len(text) <= limit else text[: limit - 1] + "…"


class InboundParser:
    def __init__(self, pseudonymizer: Pseudonymizer) -> None:
        self._pseudonymizer = pseudonymizer

    def parse_line(self, line: str | bytes, observed: datetime) -> Event:
        text = check_line_bounds(line)
        try:
            record = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidEventError(f"not valid JSON: {exc.msg} at column {exc.colno}") from None
        except ValueError:  # an integer of more digits than Python converts (4,300 by default)
            raise InvalidEventError("not valid JSON: a number with too many digits") from None
        except RecursionError:  # unreachable after the depth check; never let it escape
            raise InvalidEventError(_TOO_DEEP) from None
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
            data["subject"] = self._pseudonymizer.subject(_unicode(data["subject"], "subject"))
        for field in ("dataset", "source", "target"):
            if isinstance(data.get(field), str):
                system, sep, name = data[field].partition(":")
                if not sep:
                    raise InvalidEventError(f"{field}: expected 'system:name'")
                data[field] = {"system": system, "name": name}
        data.setdefault("observed_time", observed.isoformat())
        if "event_id" not in data:
            canonical = json.dumps(
                {k: v for k, v in data.items() if k != "observed_time"},
                sort_keys=True,
                default=_plain,
            )
            data["event_id"] = str(uuid.uuid5(EVENT_ID_NAMESPACE, canonical))
        try:
            return parse_produced(data)
        except ValidationError as exc:
            raise InvalidEventError(describe_validation_error(exc)) from None

    def _identifier(self, value: Any) -> Any:
        """``{"phone": raw}`` / ``{"email": raw}`` become refs; ref-shaped input passes through."""
        if not isinstance(value, dict):
            raise InvalidEventError('identifier: expected an object like {"phone": "+1 ..."}')
        raw_keys = [c for c in CATEGORIES if c in value]
        if not raw_keys:
            return _pseudonymized(value)
        if len(value) != 1:
            raise InvalidEventError("identifier: give exactly one of phone, email")
        category = raw_keys[0]
        raw = value[category]
        if not isinstance(raw, str):
            raise InvalidEventError(f"identifier: {category} must be a string")
        try:
            ref = self._pseudonymizer.identifier(category, _unicode(raw, f"identifier.{category}"))
        except InvalidIdentifierError as exc:  # the libraries' reasons: one line, no value
            raise InvalidIdentifierError(_without(exc.reason, raw)) from None
        except ValidationError as exc:  # e.g. a valid email whose masked form is over 80 chars
            raise InvalidEventError(
                f"identifier.{category}: {describe_validation_error(exc)}"
            ) from None
        return ref  # the model itself: the event model takes it without validating it again


def raw_identifiers(line: str | bytes) -> list[tuple[Category, str]]:
    """The raw (category, value) pairs ``parse_line`` would pseudonymize, best effort: a line
    it would reject gives what could be found or nothing (the parse itself says why). Lets
    another process normalize a block of lines ahead of the parse (runtime/parse_ahead.py)."""
    try:
        record = json.loads(check_line_bounds(line))
    except (InvalidEventError, ValueError, RecursionError):
        return []
    if not isinstance(record, dict):
        return []
    values = [record.get("identifier")]
    if isinstance(record.get("identifiers"), list):
        values += record["identifiers"]
    found: list[tuple[Category, str]] = []
    for value in values:
        if isinstance(value, dict) and len(value) == 1:
            for category in CATEGORIES:
                raw = value.get(category)
                if isinstance(raw, str):
                    found.append((category, raw))
    return found


def _plain(value: Any) -> Any:
    """Refs as the JSON they were before models were passed along (event ids stay stable)."""
    if isinstance(value, IdentifierRef):
        return value.model_dump()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def _pseudonymized(value: dict[str, Any]) -> dict[str, Any]:
    """An identifier sent already pseudonymized (``category``, ``ref``, ``display``) passes
    through, its other fields checked by the event model; but its ``display`` is free text
    from the producer, so it must be one of the masked forms, or absent. It is rejected, not
    repaired: a mask cannot be derived from a ref, and the reason never echoes the value."""
    display = value.get("display")
    if display is None:
        return value
    category = value.get("category")
    pattern = MASKED_DISPLAY.get(category) if isinstance(category, str) else None
    if pattern is None:
        return value  # the model rejects the category with its own reason
    if not isinstance(display, str) or not pattern.fullmatch(display):
        raise InvalidEventError(_DISPLAY_HINT)
    return value


def _without(reason: str, raw: str) -> str:
    """``reason`` as one line that does not quote ``raw`` (nor its stripped form)."""
    for value in {raw, raw.strip()}:
        if len(value) > 3:
            reason = reason.replace(value, "<the value>")
    return one_line(reason)


def _unicode(value: str, field: str) -> str:
    """Values about to be hashed must encode as UTF-8 (JSON can spell lone surrogates)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidEventError(f"{field}: not valid Unicode text") from None
    return value
