"""Events to graph mutations: a pure function, so replay and redelivery give the same graph.

Every mutation is a merge on a stable key (an event id, a dataset key, an identifier ref), so
applying the same event twice changes nothing the second time.
"""

from __future__ import annotations

from dataclasses import dataclass

from lineage.events import (
    DataFlowed,
    DataRead,
    DatasetRef,
    DataUsed,
    Event,
    IdentifierCollected,
    IdentifierErased,
    IncidentAcknowledged,
    IncidentResolved,
    micros,
)
from lineage.identifiers import IdentifierRef
from lineage.model import CarriedFlow, Collection, Run, SpecificUse


@dataclass(frozen=True, slots=True)
class PutIdentifier:
    ref: str
    category: str
    display: str | None
    subject: str | None = None


@dataclass(frozen=True, slots=True)
class PutDataset:
    key: str
    system: str
    name: str


@dataclass(frozen=True, slots=True)
class PutJob:
    name: str


@dataclass(frozen=True, slots=True)
class AddCollection:
    collection: Collection


@dataclass(frozen=True, slots=True)
class AddFlowRun:
    source: str
    target: str
    job: str
    run: Run


@dataclass(frozen=True, slots=True)
class AddUseRun:
    dataset: str
    job: str
    purpose: str
    run: Run


@dataclass(frozen=True, slots=True)
class AddReadRun:
    """A run of a job reading a whole dataset (``DataRead``): an edge to the job alone."""

    dataset: str
    job: str
    run: Run


@dataclass(frozen=True, slots=True)
class AddCarriedFlow:
    flow: CarriedFlow


@dataclass(frozen=True, slots=True)
class AddSpecificUse:
    use: SpecificUse


@dataclass(frozen=True, slots=True)
class MarkErased:
    identifier: str
    at: int
    event_id: str


Mutation = (
    PutIdentifier
    | PutDataset
    | PutJob
    | AddCollection
    | AddFlowRun
    | AddUseRun
    | AddReadRun
    | AddCarriedFlow
    | AddSpecificUse
    | MarkErased
)


@dataclass(frozen=True, slots=True)
class Change:
    """A mutation that changed the graph; ``previous_run`` is the latest earlier run, if any;
    ``created``: the node did not exist before (nothing was derived from it yet)."""

    mutation: Mutation
    previous_run: int | None = None
    created: bool = False


def _identifier(ref: IdentifierRef, subject: str | None = None) -> PutIdentifier:
    return PutIdentifier(ref.ref, ref.category, ref.display, subject)


def _dataset(ref: DatasetRef) -> PutDataset:
    return PutDataset(ref.key, ref.system, ref.name)


def project(event: Event) -> list[Mutation]:
    at = micros(event.event_time)
    eid = event.event_id
    match event:
        case IdentifierCollected():
            collection = Collection(event.identifier.ref, event.dataset.key, event.purpose, at, eid)
            return [
                _dataset(event.dataset),
                _identifier(event.identifier, event.subject),
                AddCollection(collection),
            ]
        case DataFlowed():
            head: list[Mutation] = [
                _dataset(event.source),
                _dataset(event.target),
                PutJob(event.job),
            ]
            if event.identifiers is None:
                run = Run(at, eid)
                return [*head, AddFlowRun(event.source.key, event.target.key, event.job, run)]
            carried: list[Mutation] = []
            for ref in event.identifiers:
                flow = CarriedFlow(ref.ref, event.source.key, event.target.key, event.job, at, eid)
                carried += [_identifier(ref), AddCarriedFlow(flow)]
            return head + carried
        case DataUsed():
            head = [_dataset(event.dataset), PutJob(event.job)]
            if event.identifiers is None:
                run = Run(at, eid)
                return [*head, AddUseRun(event.dataset.key, event.job, event.purpose, run)]
            used: list[Mutation] = []
            for ref in event.identifiers:
                use = SpecificUse(ref.ref, event.dataset.key, event.job, event.purpose, at, eid)
                used += [_identifier(ref), AddSpecificUse(use)]
            return head + used
        case DataRead():
            run = Run(at, eid)
            read = AddReadRun(event.dataset.key, event.job, run)
            return [_dataset(event.dataset), PutJob(event.job), read]
        case IdentifierErased():
            return [_identifier(event.identifier), MarkErased(event.identifier.ref, at, eid)]
        case IncidentAcknowledged() | IncidentResolved():
            return []  # an officer's action is no graph fact: the tracker records it
    raise AssertionError(f"unhandled event type {type(event).__name__}")  # pragma: no cover
