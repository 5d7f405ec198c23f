"""Normalize, pseudonymize and mask phone numbers and emails.

Raw values exist only inside this module's functions: callers get back an ``IdentifierRef``
(category, keyed hash, masked display form), which is all that may travel further.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Literal

import phonenumbers
from email_validator import EmailNotValidError, validate_email
from pydantic import BaseModel, ConfigDict, Field, model_validator

from lineage.errors import ConfigurationError, InvalidIdentifierError

Category = Literal["phone", "email"]

#: Fideslang data category of each identifier category.
DATA_CATEGORIES: dict[str, str] = {
    "phone": "user.contact.phone_number",
    "email": "user.contact.email",
}

MIN_KEY_BYTES = 16

#: The owner of a dataset-level pseudo-identifier (``lineage.openlineage``): "the phone
#: numbers in dataset X" belong to no one person, so reports leave it out of people and
#: identifier counts. Not an HMAC output: no account can hash to it.
DATASET_LEVEL_SUBJECT = hashlib.sha256(b"lineage:dataset-level subject").hexdigest()


#: The masked display forms this module makes (``+1 ***-***-0100``,
#: ``j***@example.com``): the only ``display`` an already pseudonymized identifier may carry.
#: Anything else could be the raw value itself, and would reach the log and the graph.
MASKED_DISPLAY: dict[str, re.Pattern[str]] = {
    "phone": re.compile(r"\+[1-9][0-9]{0,2} \*\*\*-\*\*\*-[0-9]{1,4}"),
    # one character of the local part, then a domain: dot-separated labels of ASCII letters,
    # digits, hyphens or any non-ASCII character (IDNA), the last one not all digits
    "email": re.compile(
        r"[^@\s]?\*\*\*@(?:[A-Za-z0-9\-\u00a1-\U0010ffff]+\.)+"
        r"(?![0-9]+$)[A-Za-z0-9\-\u00a1-\U0010ffff]+"
    ),
}

#: The display of a dataset-level pseudo-identifier (``lineage.openlineage``): "the phone
#: numbers of crm:contacts" names a dataset, not a person (dataset keys hold no ``@``, ``+``
#: or spaces). Producers sending refs may not use it (``lineage.inbound`` checks the masks).
DATASET_LEVEL_DISPLAY = re.compile(
    r"dataset-level: the (?:phone numbers|emails) of "
    r"(?:[A-Za-z0-9_.\-/]+:[A-Za-z0-9_.\-/]+|its origin)"
)


class IdentifierRef(BaseModel):
    """A pseudonymized identifier: what events, the graph and alerts carry instead of the value."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    category: Category
    ref: str = Field(pattern=r"^[0-9a-f]{64}$", description="HMAC-SHA256 of the normalized value")
    display: str | None = Field(
        default=None, max_length=80, description="masked form for humans, e.g. +1 ***-***-0100"
    )

    @model_validator(mode="after")
    def _display_is_a_mask(self) -> IdentifierRef:
        """Wherever a ref comes from (a producer, the topic, the log), its ``display`` is one
        of the masked forms: free text there could be the raw value itself."""
        display = self.display
        if (
            display is not None
            and not MASKED_DISPLAY[self.category].fullmatch(display)
            and not DATASET_LEVEL_DISPLAY.fullmatch(display)
        ):
            raise ValueError("display: not a masked form (like '+1 ***-***-0100' or 'j***@x.org')")
        return self


def shown(display: str | None, ref: str) -> str:
    """What a human sees of an identifier: its mask and the first 8 hex of its keyed hash."""
    return f"{display or 'identifier'} #{ref[:8]}"


def normalize_phone(raw: str, default_region: str | None = None) -> str:
    """E.164 form; numbers without a country code need ``default_region`` (e.g. ``"US"``,
    any case: ``phonenumbers`` itself only knows upper-case region codes)."""
    return _parse_phone(raw, default_region)[0]


def _parse_phone(raw: str, default_region: str | None) -> tuple[str, str]:
    """E.164 and masked form from one parse (parsing dominates the cost of ingest)."""
    try:
        number = phonenumbers.parse(raw, default_region.strip().upper() if default_region else None)
    except phonenumbers.NumberParseException as exc:
        raise InvalidIdentifierError(f"invalid phone number: {exc}") from None
    if not phonenumbers.is_valid_number(number):
        raise InvalidIdentifierError("invalid phone number: not a valid number for its region")
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return e164, _masked(number)


def check_region(region: str | None) -> str | None:
    """A phone region code (``LINEAGE_DEFAULT_REGION``) in upper case, or a configuration error:
    a mistyped region would otherwise reject every number typed without a country code."""
    if region is None or not region.strip():
        return None
    code = region.strip().upper()
    if code not in phonenumbers.SUPPORTED_REGIONS:
        raise ConfigurationError(
            f"unknown phone region {region!r}: use an ISO 3166 code such as US, GB or DE"
        )
    return code


def normalize_email(raw: str) -> str:
    """Validated, whitespace-stripped and lower-cased as the project convention asks."""
    try:
        result = validate_email(raw.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidIdentifierError(f"invalid email: {exc}") from None
    return result.normalized.lower()


def normalize(category: Category, raw: str, default_region: str | None = None) -> str:
    if category == "phone":
        return normalize_phone(raw, default_region)
    return normalize_email(raw)


def guess_category(raw: str) -> Category:
    """For the CLI, where a human types either kind: an ``@`` means email."""
    return "email" if "@" in raw else "phone"


def mask_phone(e164: str) -> str:
    return _masked(phonenumbers.parse(e164, None))


def _masked(number: phonenumbers.PhoneNumber) -> str:
    national = phonenumbers.national_significant_number(number)
    return f"+{number.country_code} ***-***-{national[-4:]}"


def mask_email(email: str) -> str:
    local, _, domain = email.partition("@")
    return f"{local[:1]}***@{domain}"


def mask(category: Category, normalized: str) -> str:
    return mask_phone(normalized) if category == "phone" else mask_email(normalized)


#: Distinct raw identifiers remembered per process (about 0.5 KB each).
MEMO_ENTRIES = 200_000


class Pseudonymizer:
    """Keyed hash (HMAC-SHA256) so refs are stable for joins but not reversible by dictionary."""

    def __init__(self, key: bytes, default_region: str | None = None) -> None:
        if len(key) < MIN_KEY_BYTES:
            raise ConfigurationError(
                f"pseudonymization key must be at least {MIN_KEY_BYTES} bytes, got {len(key)}"
            )
        self._key = key
        self.default_region = check_region(default_region)
        self._seen: dict[tuple[Category, str], IdentifierRef] = {}

    def _digest(self, namespace: str, value: str) -> str:
        message = f"{namespace}:{value}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def identifier(self, category: Category, raw: str) -> IdentifierRef:
        """Each distinct raw value is normalized and hashed once per process: an identifier
        appears in several events (collection, flows, uses) and parsing dominates ingest. The
        memo is in memory only and bounded."""
        key = (category, raw)
        found = self._seen.get(key)
        if found is not None:
            return found
        if category == "phone":
            normalized, display = _parse_phone(raw, self.default_region)
        else:
            normalized = normalize_email(raw)
            display = mask_email(normalized)
        found = IdentifierRef(
            category=category, ref=self._digest(category, normalized), display=display
        )
        self._remember(key, found)
        return found

    def _remember(self, key: tuple[Category, str], found: IdentifierRef) -> None:
        if len(self._seen) >= MEMO_ENTRIES:
            self._seen.clear()
        self._seen[key] = found

    def learn(self, category: Category, raw: str, ref: str, display: str | None) -> None:
        """Remember what another process computed for a raw value with this same key and
        region (:meth:`fresh`), so :meth:`identifier` finds it without parsing again."""
        key = (category, raw)
        if key not in self._seen:
            found = IdentifierRef.model_construct(category=category, ref=ref, display=display)
            self._remember(key, found)

    def fresh(self) -> Pseudonymizer:
        """The same key and region with an empty memo: what a helper process starts from."""
        return Pseudonymizer(self._key, self.default_region)

    def subject(self, raw: str) -> str:
        """Account ids are personal data too; they are hashed in their own namespace."""
        return self._digest("subject", raw.strip())
