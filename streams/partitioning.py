"""Which partition of the events topic each event (or share of one) goes to.

Origins never interact: an identifier's copies and alerts depend only on its own events and
on the dataset-level ones (whole-dataset flows and uses, and their runs). So the state splits
exactly by identifier:

- an event about one identifier (collected, erased) goes to that identifier's partition;
- a flow or use that lists identifiers is split: each partition gets the share naming its
  identifiers, as parts of one event (same ``event_id``, ``lineage-part: i/n`` numbered over
  the whole event, see :mod:`lineage.event_identity`), each share cut again when it is over
  Kafka's message limit;
- a whole-dataset flow or use is copied to every partition (the broadcast): each partition
  applies it to the identifiers it holds. A copy per partition, rather than a second topic
  read whole by every worker, keeps one offset of record per partition: a partition's state
  is a function of its own log prefix, so its recovery is a replay of that partition alone,
  and its position is one number committed with its state;
- anything else (an officer's action on an incident) goes to the partition of its key.

The identifier's partition is Kafka's default partitioner on its ref (murmur2, as the Java
client), so a producer that keys by ref without this module lands on the same partition.
The number of partitions is fixed for a topic's life: the split of a listed event depends on
it, and so do its claims.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from kafka.partitioner.default import murmur2

from lineage.event_identity import Part
from lineage.events import DataFlowed, DataUsed, Event, IdentifierCollected, IdentifierErased
from lineage.identifiers import IdentifierRef


@dataclass(frozen=True)
class Routed:
    """One message of the events topic: the event (or its share), its partition and part."""

    partition: int
    event: Event
    part: Part | None = None
    body: bytes | None = None  # the serialized event, when the split made it


#: Cuts one share further (Kafka's message limit), each piece with its body if it made one.
Split = Callable[[Event], list[tuple[Event, bytes | None]]]


def _whole(event: Event) -> list[tuple[Event, bytes | None]]:
    return [(event, None)]


def partition_of(key: str, partitions: int) -> int:
    """Kafka's default partitioner for the key's UTF-8 bytes."""
    hashed: int = murmur2(key.encode())
    return (hashed & 0x7FFFFFFF) % partitions


def route(event: Event, partitions: int, split: Split = _whole) -> list[Routed]:
    """The messages ``event`` becomes on a topic of ``partitions`` partitions. A listed event
    comes back in parts when it spans partitions or ``split`` cuts a share, numbered over the
    whole event in partition order; the copies of a whole-dataset event are identical."""
    if isinstance(event, IdentifierCollected | IdentifierErased):
        return _numbered(partition_of(event.identifier.ref, partitions), split(event))
    if isinstance(event, DataFlowed | DataUsed):
        if event.identifiers is None:
            pieces = split(event)
            return [r for p in range(partitions) for r in _numbered(p, pieces)]
        shares = _shares(event.identifiers, partitions)
        if len(shares) == 1:
            ((partition, _),) = shares.items()
            return _numbered(partition, split(event))
        cut = [
            Routed(p, piece, None, body)
            for p, refs in sorted(shares.items())
            for piece, body in split(event.model_copy(update={"identifiers": refs}))
        ]
        return [replace(r, part=Part(n, len(cut))) for n, r in enumerate(cut, start=1)]
    return _numbered(partition_of(_key_of(event), partitions), split(event))


def _numbered(partition: int, pieces: list[tuple[Event, bytes | None]]) -> list[Routed]:
    if len(pieces) == 1:
        ((event, body),) = pieces
        return [Routed(partition, event, None, body)]
    count = len(pieces)
    return [
        Routed(partition, event, Part(n, count), body)
        for n, (event, body) in enumerate(pieces, start=1)
    ]


def _shares(refs: Sequence[IdentifierRef], partitions: int) -> dict[int, list[IdentifierRef]]:
    shares: dict[int, list[IdentifierRef]] = {}
    for ref in refs:
        shares.setdefault(partition_of(ref.ref, partitions), []).append(ref)
    return shares


def _key_of(event: Event) -> str:
    incident = getattr(event, "incident_id", None)
    return incident if isinstance(incident, str) else event.event_id


def dataset_level(event: Event) -> bool:
    """A whole-dataset flow or use: the events every partition receives."""
    return isinstance(event, DataFlowed | DataUsed) and event.identifiers is None
