"""Immutable, versioned lineage events: the only thing the log stores and the graph is built from.

Events carry pseudonymized identifiers only (see :mod:`lineage.inbound` for the raw boundary).
Every type shares one envelope; ``type`` discriminates, ``schema_version`` lets readers upcast.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    field_validator,
    model_validator,
)

from lineage.identifiers import DATA_CATEGORIES, IdentifierRef

SCHEMA_VERSION = 1
PURPOSE_PATTERN = r"^[a-z0-9_]+(\.[a-z0-9_]+)*$"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: Event and observed times must fall in [EARLIEST, LATEST): exact integer microseconds, and
#: no sentinel dates (``9999-12-31``) or offsets that overflow when converted to UTC.
EARLIEST = EPOCH
LATEST = datetime(2100, 1, 1, tzinfo=UTC)
NAME_PATTERN = r"^[A-Za-z0-9_.\-/]+$"
#: A letter or digit, then letters, digits and ``. _ : -``; 128 characters at most. Content-hash
#: ids (UUIDs, :mod:`lineage.inbound`) and the reference case's ids (``refcase-s7-u20:match-3``)
#: match it. No spaces, slashes or control characters: ids appear in logs, keys and Cypher.
EVENT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}$"

Name = Annotated[str, Field(min_length=1, max_length=200, pattern=NAME_PATTERN)]
PurposeKey = Annotated[str, Field(min_length=1, max_length=200, pattern=PURPOSE_PATTERN)]


class DatasetRef(BaseModel):
    """A dataset is named by the system holding it and its name there (OpenLineage's namespace)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    system: Name
    name: Name

    @property
    def key(self) -> str:
        return f"{self.system}:{self.name}"


class EventEnvelope(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: str = Field(
        min_length=1,
        max_length=128,
        pattern=EVENT_ID_PATTERN,
        description="unique id: a letter or digit, then letters, digits and . _ : - "
        "(128 characters at most)",
    )
    schema_version: Literal[1] = 1
    event_time: AwareDatetime = Field(
        description="when it happened in the producing system "
        "(from 1970-01-01T00:00:00Z, before 2100-01-01T00:00:00Z)"
    )
    observed_time: AwareDatetime = Field(
        description="when the tracker first received it "
        "(from 1970-01-01T00:00:00Z, before 2100-01-01T00:00:00Z)"
    )
    producer: Name

    @field_validator("event_time", "observed_time", mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:
        # pydantic would read a number as Unix seconds or milliseconds (guessing which), in
        # UTC without saying so: a time must be spelled out, with its offset.
        if isinstance(value, bool | int | float):
            raise ValueError(
                "must be an ISO 8601 date-time string with a UTC offset, "
                "like 2020-01-31T12:00:00Z, not a number"
            )
        return value

    @field_validator("schema_version", mode="before")
    @classmethod
    def _version(cls, value: Any) -> Any:
        if type(value) is not int:  # the literal 1 would take ``true`` and ``1.0`` as well
            raise ValueError("must be the number 1")
        return value

    @field_validator("event_time", "observed_time")
    @classmethod
    def _bounded(cls, value: datetime) -> datetime:
        # Compared as aware datetimes: no conversion, so extreme offsets cannot overflow here.
        if not EARLIEST <= value < LATEST:
            raise ValueError("must be from 1970-01-01T00:00:00Z and before 2100-01-01T00:00:00Z")
        return value


class IdentifierCollected(EventEnvelope):
    """An identifier entered a dataset for a purpose: the origin every copy inherits."""

    type: Literal["IdentifierCollected"] = "IdentifierCollected"
    dataset: DatasetRef
    purpose: PurposeKey
    identifier: IdentifierRef
    subject: str | None = Field(
        default=None, pattern=r"^[0-9a-f]{64}$", description="pseudonymized account of the person"
    )

    @property
    def data_category(self) -> str:
        return DATA_CATEGORIES[self.identifier.category]


class DataFlowed(EventEnvelope):
    """A job copied data from one dataset to another: listed identifiers, or the whole dataset."""

    type: Literal["DataFlowed"] = "DataFlowed"
    source: DatasetRef
    target: DatasetRef
    job: Name
    identifiers: list[IdentifierRef] | None = Field(
        default=None, description="None means every identifier in the source at event_time"
    )

    @model_validator(mode="after")
    def _check(self) -> DataFlowed:
        if self.source == self.target:
            raise ValueError("source and target must differ")
        if self.identifiers is not None and not self.identifiers:
            raise ValueError("identifiers, when given, must not be empty (omit it for all)")
        return self


class DataUsed(EventEnvelope):
    """A job used a dataset (or listed identifiers in it) for a purpose, e.g. ad matching."""

    type: Literal["DataUsed"] = "DataUsed"
    dataset: DatasetRef
    job: Name
    purpose: PurposeKey
    identifiers: list[IdentifierRef] | None = None

    @model_validator(mode="after")
    def _check(self) -> DataUsed:
        if self.identifiers is not None and not self.identifiers:
            raise ValueError("identifiers, when given, must not be empty (omit it for all)")
        return self


class DataRead(EventEnvelope):
    """A job read a dataset, wrote no dataset from it and declared no use purpose (a report,
    an export out of the tracked systems): part of the lineage, downstream of the dataset.
    Without a purpose it can never violate one: it raises no alert."""

    type: Literal["DataRead"] = "DataRead"
    dataset: DatasetRef
    job: Name


class IdentifierErased(EventEnvelope):
    """The identifier was erased; copies made after this time are not created."""

    type: Literal["IdentifierErased"] = "IdentifierErased"
    identifier: IdentifierRef
    reason: str | None = Field(default=None, max_length=500)


class _IncidentAction(EventEnvelope):
    incident_id: str = Field(pattern=r"^[0-9a-f]{32}$", description="lineage.incidents id")
    by: str = Field(min_length=1, max_length=200, description="the officer")
    why: str = Field(min_length=1, max_length=2000, description="the officer's reason")


class IncidentAcknowledged(_IncidentAction):
    """An officer acknowledged an incident (docs/incidents.md): it covers the violations up to
    its event time."""

    type: Literal["IncidentAcknowledged"] = "IncidentAcknowledged"


class IncidentResolved(_IncidentAction):
    """An officer resolved an incident; a later violation reopens it."""

    type: Literal["IncidentResolved"] = "IncidentResolved"


#: Officers' actions on incidents: events in the log beside the lineage events (so replay and
#: a rebuild from the topic give the same incidents), recorded with the incident reads
#: (graph/*_incidents.py), not projected into the lineage graph (docs/incidents.md).
IncidentEvent = Annotated[IncidentAcknowledged | IncidentResolved, Field(discriminator="type")]
INCIDENT_EVENT_ADAPTER: TypeAdapter[IncidentEvent] = TypeAdapter(IncidentEvent)
INCIDENT_EVENT_TYPES = (IncidentAcknowledged, IncidentResolved)

#: What producers send (``lineage ingest``, ``emit``, the service's ingest, OpenLineage): the
#: published schema. An officer's action enters only through ``ack-incident`` /
#: ``resolve-incident`` or the API's incident endpoints.
ProducedEvent = Annotated[
    IdentifierCollected | DataFlowed | DataUsed | DataRead | IdentifierErased,
    Field(discriminator="type"),
]
PRODUCED_EVENT_ADAPTER: TypeAdapter[ProducedEvent] = TypeAdapter(ProducedEvent)

#: What the log holds: the produced events and the officers' actions.
Event = Annotated[
    IdentifierCollected
    | DataFlowed
    | DataUsed
    | DataRead
    | IdentifierErased
    | IncidentAcknowledged
    | IncidentResolved,
    Field(discriminator="type"),
]
EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)


def parse_event(data: dict[str, Any] | str | bytes) -> Event:
    """Validate an event of the log; raises ``pydantic.ValidationError`` with field-level
    reasons."""
    if isinstance(data, dict):
        return EVENT_ADAPTER.validate_python(data)
    return EVENT_ADAPTER.validate_json(data)


def parse_produced(data: dict[str, Any]) -> ProducedEvent:
    """Validate a producer's event: an officer's action is not one (its type is refused)."""
    return PRODUCED_EVENT_ADAPTER.validate_python(data)


def dump_event(event: Event) -> str:
    return event.model_dump_json(exclude_none=True)


def event_json_schema() -> dict[str, Any]:
    """The producers' schema (officers' actions are not produced: ``ProducedEvent``)."""
    schema = PRODUCED_EVENT_ADAPTER.json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "LineageEvent"
    schema["description"] = f"Lineage tracker event, schema version {SCHEMA_VERSION}"
    return schema


def micros(moment: datetime) -> int:
    """Event times as integer microseconds since the epoch: exact, sortable, storable anywhere."""
    delta = moment - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(value: int) -> datetime:
    return EPOCH + timedelta(microseconds=value)
