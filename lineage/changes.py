"""What one unit of a partition changed, as the served view (Neo4j) receives it.

A partition's worker computes every unit from its own state and hands the rows it wrote (the
port's :class:`Writes`, in order, and the event claims it made) to the changes topic; a sink
applies them to the view with the same no-read writes a store makes. Each change carries its
partition and a sequence number that only grows, so a sink that stores the last sequence it
applied per partition (in the view's own transaction) applies each change exactly once, even
when the worker sends one twice after a crash.

The wire form is versioned JSON: a sink of another version, or a person reading the topic,
can tell what it holds. Rows are the planner's; alerts are their public JSON.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

from lineage.alerts import Alert
from lineage.errors import InvalidEventError
from lineage.event_identity import Claim
from lineage.events import INCIDENT_EVENT_ADAPTER, IncidentEvent
from lineage.model import Copy, Origin
from lineage.planner import FactRows, Row
from lineage.ports import Writes

VERSION = 1
_FACTS = tuple(f.name for f in fields(FactRows))


@dataclass(frozen=True)
class UnitChange:
    partition: int
    seq: int
    writes: tuple[Writes, ...]
    claims: tuple[Claim, ...] = ()
    #: officers' actions recorded in the unit (the view's incidents fold them with the alerts)
    actions: tuple[IncidentEvent, ...] = ()

    @property
    def key(self) -> bytes:
        """Unique per change: the topic keeps every change (see docs/scale.md)."""
        return f"{self.partition}:{self.seq}".encode()

    @property
    def alerts(self) -> list[Alert]:
        return [a for w in self.writes for a in w.alerts]


def encode(change: UnitChange) -> bytes:
    return json.dumps(
        {
            "v": VERSION,
            "partition": change.partition,
            "seq": change.seq,
            "claims": [[c.key, c.digest] for c in change.claims],
            "writes": [_writes(w) for w in change.writes],
            "actions": [INCIDENT_EVENT_ADAPTER.dump_python(a, mode="json") for a in change.actions],
        },
        separators=(",", ":"),
    ).encode()


def encode_body(
    writes: list[Writes], claims: list[Claim], actions: Sequence[IncidentEvent] = ()
) -> bytes:
    """The unit's rows without its numbering (what the worker's outbox stores)."""
    return encode(UnitChange(0, 0, tuple(writes), tuple(claims), tuple(actions)))


def encode_pieces(
    writes: list[Writes],
    claims: list[Claim],
    limit: int,
    actions: Sequence[IncidentEvent] = (),
) -> list[bytes]:
    """The unit's rows as outbox bodies of at most ``limit`` bytes each, in the order a sink
    must apply them. A store applies one ``Writes`` as facts (kind by kind, in ``FactRows``
    order: identifiers before their erasures, datasets before their runs), then drops, then
    copies, then alerts; cutting that sequence anywhere and applying the pieces in order gives
    the same result, so a unit too big for one Kafka message travels as several changes,
    each with its own seq. Claims and officers' actions, which no row depends on, travel
    apart when they must (an action is at most a few KB: one per piece at worst)."""
    body = encode_body(writes, claims, actions)
    if len(body) <= limit:
        return [body]
    if actions:
        rest = encode_pieces(writes, claims, limit) if writes or claims else []
        return rest + _action_pieces(list(actions), limit)
    if claims:
        rest = encode_pieces(writes, [], limit) if writes else []
        return rest + _claim_pieces(claims, limit)
    if len(writes) > 1:
        half = len(writes) // 2
        return encode_pieces(writes[:half], [], limit) + encode_pieces(writes[half:], [], limit)
    first, second = _halves(writes[0])
    return encode_pieces([first], [], limit) + encode_pieces([second], [], limit)


def _claim_pieces(claims: list[Claim], limit: int) -> list[bytes]:
    body = encode_body([], claims)
    if len(body) <= limit or len(claims) < 2:
        return [body]
    half = len(claims) // 2
    return _claim_pieces(claims[:half], limit) + _claim_pieces(claims[half:], limit)


def _action_pieces(actions: list[IncidentEvent], limit: int) -> list[bytes]:
    body = encode_body([], [], actions)
    if len(body) <= limit or len(actions) < 2:
        return [body]
    half = len(actions) // 2
    return _action_pieces(actions[:half], limit) + _action_pieces(actions[half:], limit)


def _halves(w: Writes) -> tuple[Writes, Writes]:
    """Two writes that, applied in order, do what ``w`` does (see ``encode_pieces``)."""
    has_rest = bool(w.dropped or w.copies or w.alerts)
    if w.facts and has_rest:
        return Writes(facts=w.facts), Writes(None, w.dropped, w.copies, w.alerts)
    if w.facts:
        atoms = [(n, r) for n in _FACTS for r in getattr(w.facts, n)]
        if len(atoms) < 2:
            raise InvalidEventError("one fact row is over the changes topic's message limit")
        half = len(atoms) // 2
        return Writes(facts=_rows(atoms[:half])), Writes(facts=_rows(atoms[half:]))
    if (w.dropped or w.copies) and w.alerts:
        return Writes(None, w.dropped, w.copies), Writes(alerts=w.alerts)
    if len(w.copies) > 1:
        half = len(w.copies) // 2
        return Writes(None, w.dropped, w.copies[:half]), Writes(copies=w.copies[half:])
    if len(w.alerts) > 1:
        half = len(w.alerts) // 2
        return Writes(alerts=w.alerts[:half]), Writes(alerts=w.alerts[half:])
    if len(w.dropped) > 1 and not w.copies:
        drops = sorted(w.dropped)
        return Writes(dropped=set(drops[: len(drops) // 2])), Writes(
            dropped=set(drops[len(drops) // 2 :])
        )
    raise InvalidEventError("one row of a unit is over the changes topic's message limit")


def _rows(atoms: list[tuple[str, Row]]) -> FactRows:
    rows = FactRows()
    for name, row in atoms:
        getattr(rows, name).append(row)
    return rows


def decode(raw: bytes, partition: int | None = None, seq: int | None = None) -> UnitChange:
    """A change read back; ``partition``/``seq`` override the body's (the outbox's numbering)."""
    try:
        doc = json.loads(raw)
        if doc.get("v") != VERSION:
            raise InvalidEventError(f"change of version {doc.get('v')!r}, expected {VERSION}")
        return UnitChange(
            partition=int(doc["partition"]) if partition is None else partition,
            seq=int(doc["seq"]) if seq is None else seq,
            writes=tuple(_read_writes(w) for w in doc["writes"]),
            claims=tuple(Claim(k, d) for k, d in doc["claims"]),
            actions=tuple(
                INCIDENT_EVENT_ADAPTER.validate_python(a) for a in doc.get("actions", ())
            ),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidEventError(f"malformed change: {type(exc).__name__}") from exc


def _writes(w: Writes) -> dict[str, Any]:
    facts = w.facts
    return {
        "facts": {n: getattr(facts, n) for n in _FACTS if getattr(facts, n)} if facts else {},
        "dropped": sorted(w.dropped),
        "copies": [_copy(c) for c in w.copies],
        "alerts": [a.model_dump(mode="json") for a in w.alerts],
    }


def _copy(c: Copy) -> list[Any]:
    return [c.identifier, c.dataset, c.origin.key, c.since, c.event_id, c.source, c.job,
            c.hops, c.epoch]  # fmt: skip


def _read_writes(doc: dict[str, Any]) -> Writes:
    facts = doc["facts"]
    rows = FactRows(**{n: list(facts.get(n, ())) for n in _FACTS})
    return Writes(
        facts=rows if rows else None,
        dropped=set(doc["dropped"]),
        copies=[
            Copy(i, d, Origin.parse(o), since, eid, src, job, hops, epoch)
            for i, d, o, since, eid, src, job, hops, epoch in doc["copies"]
        ],
        alerts=[Alert.model_validate(a) for a in doc["alerts"]],
    )


def coalesce(writes: Sequence[Writes]) -> list[Writes]:
    """Consecutive units' rows joined into as few writes as give the same result, so a sink
    writes a batch of changes in few statements. A store applies one ``Writes`` as: facts,
    then drop the ``dropped`` identifiers' copies, then put copies, then alerts. Joining A and
    then B keeps that result unless B drops an identifier A put copies for (B recomputed it:
    A's copies must go); there a new group starts."""
    groups: list[Writes] = []
    put: set[str] = set()
    for w in writes:
        if groups and not (w.dropped & put):
            last = groups[-1]
            last.facts = _joined(last.facts, w.facts)
            last.dropped |= w.dropped
            last.copies += w.copies
            last.alerts += w.alerts
        else:
            groups.append(Writes(w.facts, set(w.dropped), list(w.copies), list(w.alerts)))
            put = set()
        put.update(c.identifier for c in w.copies)
    return groups


def _joined(a: FactRows | None, b: FactRows | None) -> FactRows | None:
    """Both units' rows; the dataset-level ones (edges, runs) once: every partition that
    applied a whole-dataset event reports its run, and a store creates a row's relationship
    for each row it is given."""
    if a is None or b is None:
        return a or b
    joined = FactRows(**{n: getattr(a, n) + getattr(b, n) for n in _FACTS})
    joined.edges = _distinct(joined.edges)
    joined.runs = _distinct(joined.runs)
    return joined


def _distinct(rows: list[Row]) -> list[Row]:
    return list({tuple(r.values()): r for r in rows}.values())
