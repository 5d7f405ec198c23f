"""Build the core's collaborators from settings; adapters are imported only when selected."""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

from lineage.errors import ConfigurationError
from lineage.identifiers import Pseudonymizer
from lineage.policy import Policy
from lineage.purposes import PurposeTaxonomy
from runtime.settings import Settings


def _read_toml(path: Path | None, packaged: str) -> dict[str, Any]:
    try:
        if path is None:
            text = resources.files("lineage").joinpath("data", packaged).read_text()
        else:
            text = path.read_text()
        return tomllib.loads(text)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigurationError(f"cannot read {path or packaged}: {exc}") from None


def default_taxonomy(purposes_file: Path | None = None) -> PurposeTaxonomy:
    custom = _read_toml(None, "purposes.toml").get("purpose", [])
    if purposes_file is not None:
        custom += _read_toml(purposes_file, "").get("purpose", [])
    return PurposeTaxonomy.fideslang(custom)


def default_policy(taxonomy: PurposeTaxonomy, policy_file: Path | None = None) -> Policy:
    return Policy.from_mapping(_read_toml(policy_file, "policy.toml"), taxonomy)


def build_policy(settings: Settings) -> Policy:
    taxonomy = default_taxonomy(settings.purposes_file)
    return default_policy(taxonomy, settings.policy_file)


def build_pseudonymizer(settings: Settings) -> Pseudonymizer:
    return Pseudonymizer(settings.pseudonymization_key(), settings.default_region)
