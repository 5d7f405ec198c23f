from __future__ import annotations

import pytest

from lineage.errors import PolicyError, UnknownPurposeError
from lineage.policy import Policy
from lineage.purposes import PurposeTaxonomy
from tests import factories as f


def test_taxonomy_is_fideslang_plus_custom_children(taxonomy: PurposeTaxonomy) -> None:
    from fideslang.default_taxonomy import DEFAULT_TAXONOMY

    assert len(taxonomy) == len(DEFAULT_TAXONOMY.data_use) + 1
    assert taxonomy.ancestors(f.RECOVERY) == (
        f.RECOVERY,
        "essential.service.security",
        "essential.service",
        "essential",
    )
    assert taxonomy.get(f.RECOVERY).custom


def test_unknown_purpose_names_the_closest_keys(taxonomy: PurposeTaxonomy) -> None:
    with pytest.raises(UnknownPurposeError) as caught:
        taxonomy.require("marketing.advertisement")
    assert "marketing.advertising" in caught.value.suggestions
    assert "closest known" in str(caught.value)


def test_custom_child_needs_an_existing_parent() -> None:
    with pytest.raises(PolicyError, match="unknown parent"):
        PurposeTaxonomy.fideslang([{"key": "nope.child"}])


@pytest.mark.parametrize(
    ("origin", "use", "violates"),
    [
        (f.SECURITY, f.ADS, True),
        (f.RECOVERY, "marketing.advertising.profiling", True),
        ("essential.fraud_detection", "marketing.advertising.first_party.targeted", True),
        (f.SECURITY, "marketing.advertising", True),
        (f.NEWSLETTER, f.ADS, False),
        (f.SECURITY, "essential.service.security", False),
        (f.SECURITY, "marketing.communications.email", False),
    ],
)
def test_default_policy(policy: Policy, origin: str, use: str, violates: bool) -> None:
    assert bool(policy.violated(origin, use)) is violates


def test_policy_with_unknown_key_is_rejected(taxonomy: PurposeTaxonomy) -> None:
    data = {"rule": [{"id": "r", "origins": ["essential.securty"], "forbidden_uses": [f.ADS]}]}
    with pytest.raises(PolicyError, match=r"closest known: essential\.service\.security"):
        Policy.from_mapping(data, taxonomy)


def test_policy_needs_rules(taxonomy: PurposeTaxonomy) -> None:
    with pytest.raises(PolicyError):
        Policy.from_mapping({}, taxonomy)
    with pytest.raises(PolicyError, match="malformed"):
        Policy.from_mapping({"rule": [{"id": "x"}]}, taxonomy)
