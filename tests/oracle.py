"""Brute-force oracle: the result docs/semantics.md defines, computed from a SET of events.

Deliberately independent of ``lineage.propagation`` and ``lineage.policy``: the rules are read
with ``tomllib`` straight from ``lineage/data/policy.toml``, "under" is a plain dotted-prefix
check, and taint is a Bellman-Ford style fixpoint (relax every copy along every flow event until
nothing changes), per identifier, origin and epoch. Only ``lineage.alerts.alert_id`` (a hash)
and ``lineage.events.micros`` / ``from_micros`` (time conversion) are shared with the engine.

Slow on purpose; meant for the small histories of ``tests.histories``.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

from lineage.alerts import alert_id
from lineage.events import (
    DataFlowed,
    DataUsed,
    Event,
    IdentifierCollected,
    IdentifierErased,
    from_micros,
    micros,
)

POLICY_FILE = Path(__file__).resolve().parents[1] / "lineage" / "data" / "policy.toml"
NO_EPOCH = -1
INFINITY = 10**30  # later than any representable event time


@dataclass(frozen=True)
class OracleRule:
    id: str
    severity: str
    origins: tuple[str, ...]
    forbidden_uses: tuple[str, ...]


def load_rules(path: Path = POLICY_FILE) -> tuple[OracleRule, ...]:
    with path.open("rb") as handle:
        data = tomllib.load(handle)
    return tuple(
        OracleRule(
            id=str(raw["id"]),
            severity=str(raw.get("severity", "critical")),
            origins=tuple(raw["origins"]),
            forbidden_uses=tuple(raw["forbidden_uses"]),
        )
        for raw in data["rule"]
    )


def under(purpose: str, key: str) -> bool:
    """``purpose`` is ``key`` or a dotted descendant of it."""
    return purpose == key or purpose.startswith(key + ".")


def violated(rules: Iterable[OracleRule], origin: str, use: str) -> list[OracleRule]:
    return [
        rule
        for rule in rules
        if any(under(origin, o) for o in rule.origins)
        and any(under(use, u) for u in rule.forbidden_uses)
    ]


class CopyRow(NamedTuple):
    """One expected copy; field order matches the brief (a plain tuple for set comparison)."""

    identifier: str
    dataset: str
    origin: str  # "<purpose>@<dataset>"
    epoch: int
    since: int
    hops: int
    event_id: str
    source: str | None
    job: str | None


# (identifier, dataset, origin dataset, origin purpose, epoch)
CopyKey = tuple[str, str, str, str, int]


@dataclass(frozen=True)
class Label:
    since: int
    hops: int
    event_id: str
    source: str | None
    job: str | None

    @property
    def rank(self) -> tuple[int, int, str]:
        return (self.since, self.hops, self.event_id)


@dataclass(frozen=True)
class Expected:
    copies: frozenset[CopyRow]
    alerts: dict[str, dict[str, Any]]  # alert_id -> Alert.model_dump() minus revision/status


def deduplicate(events: Iterable[Event]) -> list[Event]:
    """One event per event_id (a redelivered event is the same event)."""
    unique: dict[str, Event] = {}
    for event in events:
        known = unique.setdefault(event.event_id, event)
        if known != event:
            raise ValueError(f"event id {event.event_id!r} reused with other content")
    return list(unique.values())


def _carries(event: DataFlowed | DataUsed, identifier: str) -> bool:
    """Whole-dataset events concern everyone; listed ones only the listed refs."""
    return event.identifiers is None or any(r.ref == identifier for r in event.identifiers)


class _Lives:
    """An identifier's erasures: which life (epoch) a time belongs to, and when it ends."""

    def __init__(self, erasures: Iterable[int]) -> None:
        self.erasures = sorted(set(erasures))

    def epoch(self, at: int) -> int:
        before = [e for e in self.erasures if e < at]
        return max(before) if before else NO_EPOCH

    def next_erasure(self, at: int) -> int:
        after = [e for e in self.erasures if e >= at]
        return min(after) if after else INFINITY


def expected(events: Iterable[Event], rules: tuple[OracleRule, ...] | None = None) -> Expected:
    rules = load_rules() if rules is None else rules
    history = deduplicate(events)
    collections = [e for e in history if isinstance(e, IdentifierCollected)]
    flows = [e for e in history if isinstance(e, DataFlowed)]
    uses = [e for e in history if isinstance(e, DataUsed)]
    lives: dict[str, _Lives] = {}
    for ref in {c.identifier.ref for c in collections}:
        lives[ref] = _Lives(
            micros(e.event_time)
            for e in history
            if isinstance(e, IdentifierErased) and e.identifier.ref == ref
        )

    # -- copies: seed with collections, then relax along flows until nothing changes ------
    labels: dict[CopyKey, Label] = {}

    def offer(key: CopyKey, label: Label) -> bool:
        current = labels.get(key)
        if current is None or label.rank < current.rank:
            labels[key] = label
            return True
        return False

    for c in collections:
        at = micros(c.event_time)
        ref = c.identifier.ref
        key = (ref, c.dataset.key, c.dataset.key, c.purpose, lives[ref].epoch(at))
        offer(key, Label(at, 0, c.event_id, None, None))

    changed = True
    while changed:
        changed = False
        for (ref, dataset, o_dataset, o_purpose, epoch), label in list(labels.items()):
            if labels[(ref, dataset, o_dataset, o_purpose, epoch)] != label:
                continue  # improved earlier in this round; the next round relaxes it
            dies = lives[ref].next_erasure(label.since)
            for flow in flows:
                a = micros(flow.event_time)
                if flow.source.key != dataset or not _carries(flow, ref):
                    continue
                if not label.since <= a <= dies:
                    continue
                hops = label.hops + 1 if a == label.since else 0
                target = (ref, flow.target.key, o_dataset, o_purpose, epoch)
                if offer(target, Label(a, hops, flow.event_id, dataset, flow.job)):
                    changed = True

    copies = frozenset(
        CopyRow(ref, dataset, f"{o_purpose}@{o_dataset}", epoch, *_label_tuple(label))
        for (ref, dataset, o_dataset, o_purpose, epoch), label in labels.items()
    )

    # -- violations: every use reaching a copy, the minimal (time, event_id) per alert id ---
    best: dict[str, tuple[tuple[int, str], CopyKey, DataUsed, OracleRule]] = {}
    for key, label in labels.items():
        ref, dataset, o_dataset, o_purpose, epoch = key
        dies = lives[ref].next_erasure(label.since)
        for use in uses:
            a = micros(use.event_time)
            if use.dataset.key != dataset or not _carries(use, ref):
                continue
            if not label.since <= a <= dies:
                continue
            for rule in violated(rules, o_purpose, use.purpose):
                origin_key = f"{o_purpose}@{o_dataset}"
                aid = alert_id(rule.id, ref, origin_key, dataset, use.job, use.purpose)
                rank = (a, use.event_id)
                known = best.get(aid)
                if known is None or rank < known[0]:
                    best[aid] = (rank, key, use, rule)

    alerts: dict[str, dict[str, Any]] = {}
    for aid, (_, key, use, rule) in best.items():
        ref, dataset, o_dataset, o_purpose, _epoch = key
        mine = [c for c in collections if c.identifier.ref == ref]
        alerts[aid] = {
            "alert_id": aid,
            "rule": rule.id,
            "severity": rule.severity,
            "identifier": ref,
            "category": mine[0].identifier.category,
            "display": mine[0].identifier.display,
            "subjects": sorted({c.subject for c in mine if c.subject is not None}),
            "origin_dataset": o_dataset,
            "origin_purpose": o_purpose,
            "use_dataset": dataset,
            "use_job": use.job,
            "use_purpose": use.purpose,
            "occurred_at": _utc(from_micros(micros(use.event_time))),
            "evidence": [
                *_chain(labels, key),
                _step(
                    "used",
                    use.event_id,
                    micros(use.event_time),
                    dataset,
                    None,
                    use.job,
                    use.purpose,
                ),
            ],
        }
    return Expected(copies=copies, alerts=alerts)


def _label_tuple(label: Label) -> tuple[int, int, str, str | None, str | None]:
    return (label.since, label.hops, label.event_id, label.source, label.job)


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC)


def _step(
    kind: str,
    event_id: str,
    at: int,
    dataset: str,
    source: str | None,
    job: str | None,
    purpose: str | None,
) -> dict[str, Any]:
    return {
        "kind": kind,
        "event_id": event_id,
        "at": _utc(from_micros(at)),
        "dataset": dataset,
        "source": source,
        "job": job,
        "purpose": purpose,
    }


def _chain(labels: dict[CopyKey, Label], key: CopyKey) -> list[dict[str, Any]]:
    """Collection -> ... -> the copy at ``key``, following sources (ranks strictly decrease)."""
    steps: list[dict[str, Any]] = []
    ref, dataset, o_dataset, o_purpose, epoch = key
    seen: set[str] = set()
    while True:
        label = labels[(ref, dataset, o_dataset, o_purpose, epoch)]
        if dataset in seen:  # impossible if the fixpoint is right; fail loudly, not forever
            raise AssertionError(f"evidence cycle through {dataset} for {key}")
        seen.add(dataset)
        if label.source is None:
            steps.append(
                _step("collected", label.event_id, label.since, dataset, None, None, o_purpose)
            )
            break
        steps.append(
            _step("flowed", label.event_id, label.since, dataset, label.source, label.job, None)
        )
        dataset = label.source
    steps.reverse()
    return steps


def normalize_alert(dump: dict[str, Any]) -> dict[str, Any]:
    """An ``Alert.model_dump()`` made comparable with the oracle: no revision/status/schema
    version, datetimes in UTC."""
    out = {k: v for k, v in dump.items() if k not in {"revision", "status", "schema_version"}}
    out["occurred_at"] = _utc(out["occurred_at"])
    out["evidence"] = [{**step, "at": _utc(step["at"])} for step in out["evidence"]]
    return out
