"""Purpose-limitation rules as data: which origin purposes may never reach which uses."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lineage.errors import PolicyError, UnknownPurposeError
from lineage.purposes import PurposeTaxonomy


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    origins: tuple[str, ...]
    forbidden_uses: tuple[str, ...]
    severity: str = "critical"
    description: str = ""


class Policy:
    def __init__(self, rules: Sequence[Rule], taxonomy: PurposeTaxonomy) -> None:
        ids = [rule.id for rule in rules]
        if len(set(ids)) != len(ids):
            raise PolicyError(f"duplicate rule ids in policy: {ids}")
        for rule in rules:
            if not rule.origins or not rule.forbidden_uses:
                raise PolicyError(f"rule {rule.id!r} needs origins and forbidden_uses")
            for key in (*rule.origins, *rule.forbidden_uses):
                try:
                    taxonomy.require(key)
                except UnknownPurposeError as exc:
                    raise PolicyError(f"rule {rule.id!r}: {exc}") from None
        self.rules = tuple(rules)
        self.taxonomy = taxonomy
        self._verdicts: dict[tuple[str, str], tuple[Rule, ...]] = {}
        self._violating: dict[str, tuple[str, ...]] = {}

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], taxonomy: PurposeTaxonomy) -> Policy:
        raw_rules = data.get("rule")
        if not isinstance(raw_rules, list) or not raw_rules:
            raise PolicyError("policy needs at least one [[rule]] table")
        rules = []
        for raw in raw_rules:
            try:
                rules.append(
                    Rule(
                        id=str(raw["id"]),
                        origins=tuple(raw["origins"]),
                        forbidden_uses=tuple(raw["forbidden_uses"]),
                        severity=str(raw.get("severity", "critical")),
                        description=str(raw.get("description", "")),
                    )
                )
            except (KeyError, TypeError) as exc:
                raise PolicyError(f"malformed rule {raw!r}: missing {exc}") from None
        return cls(rules, taxonomy)

    def violated(self, origin_purpose: str, use_purpose: str) -> tuple[Rule, ...]:
        """Rules broken when data collected for ``origin_purpose`` is used for ``use_purpose``."""
        pair = (origin_purpose, use_purpose)
        found = self._verdicts.get(pair)
        if found is None:
            origin_chain = self.taxonomy.ancestors(origin_purpose)
            use_chain = self.taxonomy.ancestors(use_purpose)
            found = tuple(
                rule
                for rule in self.rules
                if any(o in origin_chain for o in rule.origins)
                and any(u in use_chain for u in rule.forbidden_uses)
            )
            self._verdicts[pair] = found
        return found

    def violating_origins(self, use_purpose: str) -> tuple[str, ...]:
        """Every origin purpose a use for ``use_purpose`` violates, sorted: a whole-dataset
        use reads only copies of these origins (often none: no read at all)."""
        found = self._violating.get(use_purpose)
        if found is None:
            found = self._violating[use_purpose] = tuple(
                sorted(p.key for p in self.taxonomy if self.violated(p.key, use_purpose))
            )
        return found

    def is_tracked_origin(self, purpose: str) -> bool:
        """Whether any rule cares where data of this origin goes."""
        chain = self.taxonomy.ancestors(purpose)
        return any(o in chain for rule in self.rules for o in rule.origins)
