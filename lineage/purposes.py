"""The purpose tree: Fideslang's data uses plus user-defined children.

A rule on a parent covers its children, so every check is an ancestor test on this tree.
The tree is taken from ``fideslang.DEFAULT_TAXONOMY``, never hand-copied.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from lineage.errors import PolicyError, UnknownPurposeError


@dataclass(frozen=True, slots=True)
class Purpose:
    key: str
    name: str
    parent: str | None
    description: str = ""
    custom: bool = False


class PurposeTaxonomy:
    def __init__(self, purposes: Iterable[Purpose]) -> None:
        self._by_key: dict[str, Purpose] = {}
        self._ancestors: dict[str, tuple[str, ...]] = {}
        for purpose in purposes:
            if purpose.parent is not None and purpose.parent not in self._by_key:
                raise PolicyError(
                    f"purpose {purpose.key!r} names unknown parent {purpose.parent!r}"
                )
            self._by_key[purpose.key] = purpose

    @classmethod
    def fideslang(cls, custom: Iterable[Mapping[str, Any]] = ()) -> PurposeTaxonomy:
        """Fideslang's data uses (parents first) followed by ``custom`` children."""
        from fideslang.default_taxonomy import DEFAULT_TAXONOMY

        uses = sorted(DEFAULT_TAXONOMY.data_use, key=lambda u: u.fides_key.count("."))
        base = [
            Purpose(u.fides_key, u.name or u.fides_key, u.parent_key, u.description or "")
            for u in uses
        ]
        extra = [
            Purpose(
                key=str(item["key"]),
                name=str(item.get("name", item["key"])),
                parent=str(item["key"]).rpartition(".")[0] or None,
                description=str(item.get("description", "")),
                custom=True,
            )
            for item in sorted(custom, key=lambda i: str(i["key"]).count("."))
        ]
        return cls([*base, *extra])

    def __contains__(self, key: object) -> bool:
        return key in self._by_key

    def __len__(self) -> int:
        return len(self._by_key)

    def __iter__(self) -> Iterator[Purpose]:
        return iter(self._by_key.values())

    def get(self, key: str) -> Purpose:
        try:
            return self._by_key[key]
        except KeyError:
            raise UnknownPurposeError(key, self.closest(key)) from None

    def require(self, key: str) -> str:
        self.get(key)
        return key

    def closest(self, key: str, n: int = 3) -> list[str]:
        return difflib.get_close_matches(key, self._by_key, n=n, cutoff=0.5)

    def ancestors(self, key: str) -> tuple[str, ...]:
        """The key itself and every parent up to the root."""
        found = self._ancestors.get(key)
        if found is None:
            chain: list[str] = []
            current: str | None = key
            while current is not None:
                chain.append(current)
                current = self.get(current).parent
            found = self._ancestors[key] = tuple(chain)
        return found

    def is_under(self, key: str, ancestor: str) -> bool:
        return ancestor in self.ancestors(key)
