from __future__ import annotations

import phonenumbers
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lineage.errors import ConfigurationError, InvalidIdentifierError
from lineage.identifiers import (
    Pseudonymizer,
    mask_email,
    mask_phone,
    normalize_email,
    normalize_phone,
)

REGIONS = sorted(phonenumbers.SUPPORTED_REGIONS)


def test_phone_forms_normalize_to_e164() -> None:
    for typed in ["+1 415 555 0100", "+1 (415) 555-0100", "+14155550100", "tel:+1-415-555-0100"]:
        assert normalize_phone(typed) == "+14155550100"
    assert normalize_phone("(415) 555-0100", default_region="US") == "+14155550100"


def test_phone_without_country_code_needs_a_region() -> None:
    with pytest.raises(InvalidIdentifierError, match="invalid phone"):
        normalize_phone("415 555 0100")


def test_invalid_phone_is_rejected() -> None:
    with pytest.raises(InvalidIdentifierError):
        normalize_phone("+1 999")


def test_email_is_trimmed_and_lower_cased() -> None:
    assert normalize_email("  John.Doe@Example.COM ") == "john.doe@example.com"
    with pytest.raises(InvalidIdentifierError, match="invalid email"):
        normalize_email("not-an-email")


def test_masks_show_only_a_hint() -> None:
    assert mask_phone("+14155550100") == "+1 ***-***-0100"
    assert mask_email("john@example.com") == "j***@example.com"


def test_refs_depend_on_the_key_and_not_on_formatting() -> None:
    one = Pseudonymizer(b"k" * 32)
    other = Pseudonymizer(b"q" * 32)
    a = one.identifier("email", "John@Example.com")
    assert a == one.identifier("email", " john@example.COM")
    assert a.ref != other.identifier("email", "john@example.com").ref
    assert a.display == "j***@example.com"
    assert one.identifier("phone", "+14155550100").ref != one.identifier("email", "a@b.co").ref


def test_short_key_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError):
        Pseudonymizer(b"short")


@given(st.sampled_from(REGIONS))
def test_any_valid_number_in_any_format_gives_one_e164(region: str) -> None:
    example = phonenumbers.example_number(region)
    if example is None:
        return
    e164 = phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164)
    international = phonenumbers.format_number(
        example, phonenumbers.PhoneNumberFormat.INTERNATIONAL
    )
    national = phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.NATIONAL)
    assert normalize_phone(international) == e164
    assert normalize_phone(national, default_region=region) == e164
    assert normalize_phone(e164) == e164


@given(st.text(max_size=40))
def test_phone_parser_only_ever_raises_its_own_error(text: str) -> None:
    try:
        result = normalize_phone(text)
    except InvalidIdentifierError:
        return
    assert result.startswith("+") and result[1:].isdigit()


@given(st.text(max_size=60))
def test_email_parser_only_ever_raises_its_own_error(text: str) -> None:
    try:
        result = normalize_email(text)
    except InvalidIdentifierError:
        return
    assert result == result.lower() and "@" in result and result == result.strip()
