"""A deterministic corpus of hostile input lines, and the property every rejection must have.

``good_records(tag)`` are valid producer records (fresh event ids per tag); ``corpus()`` is
the same records mutated the ways a hostile or broken producer would: wrong types, huge and
deep values, odd Unicode (lone surrogates, NUL, bidi controls, separators), out-of-range
dates, 1,100-level nesting, 2 MB lines, non-UTF-8 bytes, numbers where strings go, empty and
whitespace lines, duplicate keys, and seeded byte flips and truncations. Every raw email and
phone number the corpus uses is in ``RAW_IDENTIFIERS``: no reason may ever quote one.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterator
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from lineage.events import Event, dump_event
from lineage.inbound import MAX_REASON_CHARS

PHONE = "+1 415 555 0100"
EMAIL = "john.doe@example.com"
#: Raw values used by the corpus (and forms of them a library might quote back).
RAW_IDENTIFIERS = (PHONE, "+14155550100", "4155550100", EMAIL, "John.Doe@Example.com")
SECURITY = "essential.service.security"
ADS = "marketing.advertising.third_party.targeted"

#: A reason is one line: no line breaks, no control characters, no Unicode separators.
_NOT_ONE_LINE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
#: Identifier-shaped text: an email address (a masked one, ``j***@…``, is fine); a ``+`` and
#: seven digits or more (spaces, dashes and brackets between them allowed), or eight digits.
_EMAIL_SHAPED = re.compile(r"[^\s'\"@*]+@[^\s'\"@]+\.[a-z]{2,}", re.IGNORECASE)
_PHONE_SHAPED = re.compile(r"\+\d(?:[ \-().]?\d){6,}|\d{8,}")


def good_records(tag: str) -> list[dict[str, Any]]:
    """A collection, a flow, a use and an erasure with event ids unique to ``tag``."""
    return [
        {
            "type": "IdentifierCollected",
            "event_id": f"{tag}-c",
            "event_time": "2015-01-01T00:00:00Z",
            "producer": "auth",
            "dataset": "auth:contact_points",
            "purpose": SECURITY,
            "identifier": {"phone": PHONE},
            "subject": "account-1",
        },
        {
            "type": "DataFlowed",
            "event_id": f"{tag}-f",
            "event_time": "2015-01-02T00:00:00Z",
            "producer": "ads",
            "source": "auth:contact_points",
            "target": "ads:matchable",
            "job": "sync",
            "identifiers": [{"phone": PHONE}, {"email": EMAIL}],
        },
        {
            "type": "DataUsed",
            "event_id": f"{tag}-u",
            "event_time": "2015-01-03T00:00:00Z",
            "producer": "ads",
            "dataset": "ads:matchable",
            "job": "matcher",
            "purpose": ADS,
        },
        {
            "type": "IdentifierErased",
            "event_id": f"{tag}-e",
            "event_time": "2016-01-01T00:00:00Z",
            "producer": "privacy",
            "identifier": {"email": EMAIL},
            "reason": "user request",
        },
    ]


def line(value: Any) -> bytes:
    return json.dumps(value).encode()


# -- values that go where they should not ------------------------------------------------------

WRONG_TYPES: tuple[Any, ...] = (
    None,
    True,
    0,
    -1,
    1.5,
    1e308,
    10**30,
    [],
    {},
    [1, "a"],
    {"a": {"b": [None]}},
    "",
    " ",
    "x" * 5_000,
    EMAIL,
    PHONE,
)
ODD_TEXT: tuple[str, ...] = (
    "\ud800",  # lone surrogates (json.dumps spells them as \u escapes)
    "a\udfffb",
    "\x00",
    "a\x00b",
    "\u202e" + EMAIL,  # right-to-left override
    "\u200b",  # zero-width space
    "e\u0301" * 50,  # combining marks
    "\U0001f642" * 20,
    "line\nbreak",
    "sep\u2028arator",
    "\ufeffbom",
    "\uffff",
    "%s%n{0}",
    "auth:con\u0430ct",  # a Cyrillic a
)
ODD_TIMES: tuple[Any, ...] = (
    "9999-12-31T23:59:59-23:59",
    "0001-01-01T00:00:00+23:59",
    "1969-12-31T23:59:59.999999Z",
    "2100-01-01T00:00:00Z",
    "2015-01-01T00:00:00",  # no offset
    "2015-02-30T00:00:00Z",
    "2015-01-01T24:00:00Z",
    "2015-12-31T23:59:60Z",
    "2015-01-01T00:00:00.1234567890123Z",
    "2015-01-01T00:00:00+99:99",
    "2015-01-01",
    "Z",
    "",
    0,
    -1,
    253402300800,
    1e300,
    10**30,
)


def _with(record: dict[str, Any], field: str, value: Any) -> dict[str, Any]:
    return {**record, field: value}


def _nested(levels: int) -> str:
    return "[" * levels + "1" + "]" * levels


def corpus(seed: int = 20260101) -> Iterator[tuple[str, bytes]]:
    """(name, line) pairs; deterministic for a seed. Nearly all are invalid (a few odd ones,
    such as an email with an emoji local part, are valid): each must end accepted or rejected
    with a reason; the names in ``MUST_REJECT`` must be rejected."""
    base = good_records("fuzz")
    collected, flowed, used, erased = base
    for record in base:
        kind = record["type"]
        for field in record:
            for n, value in enumerate(WRONG_TYPES):
                if field == "event_id" and isinstance(value, str) and value.strip():
                    continue  # a plain string may be a valid id
                if field in ("reason", "subject") and (value is None or isinstance(value, str)):
                    continue  # optional free-text fields: None and strings may be valid
                yield f"{kind}.{field}=wrong{n}", line(_with(record, field, value))
        for field in ("event_time",):
            for n, value in enumerate(ODD_TIMES):
                yield f"{kind}.{field}=time{n}", line(_with(record, field, value))
        yield f"{kind}.observed_time=9999", line(_with(record, "observed_time", ODD_TIMES[0]))
        yield f"{kind}.missing-type", line({k: v for k, v in record.items() if k != "type"})
        yield f"{kind}.extra-email-key", line(_with(record, EMAIL, 1))
        yield f"{kind}.extra-newline-key", line(_with(record, "a\nb\u2028" + PHONE, 1))
        yield f"{kind}.extra-huge-key", line(_with(record, "k" * 100_000, 1))
        yield f"{kind}.type-is-email", line(_with(record, "type", EMAIL))
        yield f"{kind}.type-has-newline", line(_with(record, "type", kind + "\n" + PHONE))
    for n, text in enumerate(ODD_TEXT):
        for record, field in (
            (collected, "producer"),
            (collected, "purpose"),
            (collected, "dataset"),
            (flowed, "job"),
            (used, "dataset"),
        ):
            yield f"odd{n}.{record['type']}.{field}", line(_with(record, field, text))
        yield f"odd{n}.phone", line(_with(collected, "identifier", {"phone": PHONE + text}))
        yield f"odd{n}.email", line(_with(collected, "identifier", {"email": text + EMAIL}))
        yield f"odd{n}.event_id", line(_with(collected, "event_id", "c" + text))
    for n, value in enumerate(("\ud800", "a\udc80")):  # lone surrogates in hashed values
        yield f"surrogate{n}.subject", line(_with(collected, "subject", value))
        yield f"surrogate{n}.reason", line(_with(erased, "reason", value))
    # identifiers: wrong shapes, both kinds, pre-pseudonymized with a raw display
    for n, value in enumerate(
        (
            {"phone": PHONE, "email": EMAIL},
            {"phone": 4155550100},
            {"email": ["a"]},
            {"fax": PHONE},
            {"category": "email", "ref": "0" * 64, "display": EMAIL},
            {"category": "phone", "ref": "0" * 64, "display": PHONE},
            {"category": "ssn", "ref": "0" * 64},
            {"phone": "not a phone " + PHONE[:6]},
            {"email": "john.doe@@example.com"},
            {"email": "john doe@example.com"},
            {"email": "x" * 300 + "@example.com"},
            {"phone": "9" * 5_000},
            [PHONE],
            PHONE,
        )
    ):
        yield f"identifier{n}", line(_with(collected, "identifier", value))
        yield f"identifiers{n}", line(_with(flowed, "identifiers", [value]))
    yield "identifiers-empty", line(_with(flowed, "identifiers", []))
    yield "flow-to-itself", line(_with(flowed, "target", flowed["source"]))
    yield "unknown-purpose", line(_with(used, "purpose", "marketing.advertizing"))
    # numbers, huge and deep
    yield "bigint-5000-digits", line(collected)[:-1] + b', "x": ' + b"9" * 5_000 + b"}"
    yield "bigint-in-time", line(collected).replace(b'"2015-01-01T00:00:00Z"', b"9" * 5_000)
    yield "nan", line(collected)[:-1] + b', "reason": NaN}'
    yield "infinity-time", line(collected).replace(b'"2015-01-01T00:00:00Z"', b"-Infinity")
    yield "nested-1100-arrays", _nested(1_100).encode()
    yield "nested-1100-objects", ('{"a":' * 1_100 + "1" + "}" * 1_100).encode()
    yield "nested-1100-in-field", line(collected)[:-1] + b', "x": ' + _nested(1_100).encode() + b"}"
    yield "nested-33", _nested(33).encode()
    yield "two-mb-line", line(_with(erased, "reason", "x" * 2_000_000))
    yield "two-mb-of-brackets", b"[" * 2_000_000
    # under 1 MiB, unterminated strings full of quotes and backslashes: the depth check once
    # retried its string pattern from every quote (quadratic: most of an hour for these)
    yield "quadratic-escaped-quotes", b"[" * 33 + b'"' + b'\\"' * 500_000
    yield "quadratic-open-quotes", b"[" * 33 + b'"a\\' * 340_000
    yield "just-over-1-mib", line(_with(erased, "reason", "y" * (1 << 20)))
    yield "many-identifiers", line(_with(flowed, "identifiers", [{"phone": "1"}] * 20_000))
    yield "reason-too-long", line(_with(erased, "reason", "z" * 501))
    # not JSON objects, not JSON, not UTF-8
    for n, text in enumerate(("null", "1", "[]", '"str"', "true", "{", "}", "{}", "[[]]", "\x00")):
        yield f"not-an-object{n}", text.encode()
    yield "trailing-garbage", line(collected) + b" x"
    yield "two-objects", line(collected) + line(collected)
    yield "single-quotes", line(collected).replace(b'"', b"'")
    yield "non-utf8-byte", line(collected).replace(b"auth", b"au\xffth", 1)
    yield "latin1", line(_with(collected, "producer", "caf\u00e9")).replace(b"\\u00e9", b"\xe9")
    yield "overlong-utf8", line(collected).replace(b"auth", b"au\xc0\xafth", 1)
    yield "utf8-surrogate-bytes", line(collected).replace(b"auth", b"au\xed\xa0\x80th", 1)
    yield (
        "truncated-multibyte",
        line(_with(collected, "producer", "\u00e9")).replace(b"\\u00e9", b"\xc3"),
    )
    yield "utf16", json.dumps(collected).encode("utf-16")
    yield "raw-nul", line(collected).replace(b'"auth"', b'"au\x00th"', 1)
    yield "raw-newline-in-string", line(collected).replace(b'"auth"', b'"au\rth"', 1)
    # duplicate keys: the last one wins (as in every mainstream JSON parser), here a bad one
    yield "duplicate-type", line(collected)[:-1] + b', "type": "' + EMAIL.encode() + b'"}'
    yield "duplicate-time", line(collected)[:-1] + b', "event_time": "9999-12-31T23:59:59-23:59"}'
    yield "duplicate-identifier", line(collected)[:-1] + b', "identifier": {"phone": "x"}}'
    # seeded byte-level mutations of good lines: flips, truncations, insertions, splices
    rng = random.Random(seed)
    pool = [line(record) for record in base]
    for n in range(120):
        data = bytearray(rng.choice(pool))
        action = n % 4
        if action == 0:
            for _ in range(rng.randint(1, 4)):
                data[rng.randrange(len(data))] = rng.randrange(256)
        elif action == 1:
            del data[rng.randrange(1, len(data)) :]
        elif action == 2:
            at = rng.randrange(len(data))
            data[at:at] = rng.choice([b"\xff", b"\x00", b"{", b"[", b'"', b"\\", b"\\u", b","])
        else:
            other = rng.choice(pool)
            data = data[: rng.randrange(len(data))] + other[rng.randrange(len(other)) :]
        yield f"mutated{n}", bytes(data)


#: The inputs issue 8 reported, and the other plainly invalid ones: never accepted.
MUST_REJECT = (
    "IdentifierCollected.event_time=time0",  # 9999-12-31T23:59:59-23:59
    "IdentifierCollected.observed_time=9999",
    "nested-1100-arrays",
    "nested-1100-objects",
    "nested-1100-in-field",
    "two-mb-line",
    "two-mb-of-brackets",
    "quadratic-escaped-quotes",
    "quadratic-open-quotes",
    "just-over-1-mib",
    "non-utf8-byte",
    "bigint-5000-digits",
    "bigint-in-time",
    "duplicate-type",
    "duplicate-time",
    "IdentifierCollected.extra-email-key",
    "IdentifierCollected.type-is-email",
    "surrogate0.subject",
    "surrogate0.reason",
)

BLANK_LINES: tuple[bytes, ...] = (b"", b"\n", b"   \n", b"\t\r\n", b"\r\n", b" \x0b\x0c \n")


def check_reason(reason: str, raws: tuple[str, ...] = RAW_IDENTIFIERS) -> None:
    """The property of every rejection: a one-line, bounded reason that quotes no raw
    identifier (nor anything shaped like an email or phone number) and encodes as UTF-8."""
    assert reason, "an empty reason"
    assert not _NOT_ONE_LINE.search(reason), f"not one line: {reason!r}"
    assert len(reason) <= MAX_REASON_CHARS, f"{len(reason)} characters: {reason[:80]!r}…"
    reason.encode("utf-8")  # no lone surrogates: it goes into headers, tables and terminals
    for raw in raws:
        assert raw.lower() not in reason.lower(), f"echoes a raw identifier: {reason!r}"
    assert not _EMAIL_SHAPED.search(reason), f"an email-shaped value: {reason!r}"
    assert not _PHONE_SHAPED.search(reason), f"a phone-shaped value: {reason!r}"


def canonical_lines(events: list[Event]) -> list[bytes]:
    return [dump_event(event).encode() for event in events]


def canonical_corpus(events: list[Event], seed: int = 7) -> Iterator[tuple[str, bytes]]:
    """The worker's input is canonical events (JSON the producer side validated): the same
    mutations applied to canonical events, plus the raw corpus (a foreign producer)."""
    bodies = [json.loads(raw) for raw in canonical_lines(events)]
    for body in bodies:
        kind = body["type"]
        for field in body:
            for n, value in enumerate((*WRONG_TYPES[:12], EMAIL, "x" * 5_000)):
                if field in ("reason",) and (value is None or isinstance(value, str)):
                    continue
                if field == "event_id" and isinstance(value, str) and value.strip():
                    continue
                yield f"canonical.{kind}.{field}=wrong{n}", line(_with(body, field, value))
        for n, value in enumerate(ODD_TIMES):
            yield f"canonical.{kind}.event_time=time{n}", line(_with(body, "event_time", value))
            yield (
                f"canonical.{kind}.observed_time=time{n}",
                line(_with(body, "observed_time", value)),
            )
        yield f"canonical.{kind}.schema_version", line(_with(body, "schema_version", 2))
        yield f"canonical.{kind}.extra-key", line(_with(body, "a\n" + EMAIL, 1))
        yield f"canonical.{kind}.type-is-email", line(_with(body, "type", EMAIL))
    yield from corpus(seed)


# -- hypothesis --------------------------------------------------------------------------------

#: Deterministic (CI-stable) and modest: the whole fuzz suite stays well under a minute.
FUZZ = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
#: Any text: lone surrogates, NUL and other control characters included.
ANY_TEXT = st.text(st.characters(codec=None, exclude_categories=()), max_size=40)
JSON_LEAVES = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | ANY_TEXT
    | st.sampled_from([EMAIL, PHONE, "9999-12-31T23:59:59-23:59", "2015-01-01T00:00:00Z"])
)
JSON_VALUES = st.recursive(
    JSON_LEAVES,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(ANY_TEXT, inner, max_size=4),
    max_leaves=12,
)


def hostile_lines(records: list[dict[str, Any]]) -> st.SearchStrategy[bytes]:
    """Lines made from ``records``: fields replaced by arbitrary JSON, removed or added;
    bytes spliced in; or anything at all (random bytes, text, JSON values)."""
    fields = sorted({field for record in records for field in record} | {"observed_time"})

    @st.composite
    def mutated(draw: st.DrawFn) -> bytes:
        record = dict(draw(st.sampled_from(records)))
        for field in draw(st.lists(st.sampled_from(fields), max_size=3)):
            record[field] = draw(JSON_VALUES)
        for field in draw(st.lists(st.sampled_from(sorted(record)), max_size=2)):
            record.pop(field, None)
        if draw(st.booleans()):
            record[draw(ANY_TEXT)] = draw(JSON_VALUES)
        return line(record)

    @st.composite
    def spliced(draw: st.DrawFn) -> bytes:
        data = line(draw(st.sampled_from(records)))
        start = draw(st.integers(0, len(data)))
        end = draw(st.integers(start, min(len(data), start + 8)))
        return data[:start] + draw(st.binary(max_size=8)) + data[end:]

    return (
        mutated()
        | spliced()
        | st.binary(max_size=200)
        | ANY_TEXT.map(lambda text: text.encode("utf-8", "surrogatepass"))
        | JSON_VALUES.map(line)
    )
