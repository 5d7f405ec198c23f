"""OpenLineage RunEvents become this tracker's events: a pure mapping, no I/O.

OpenLineage describes datasets and jobs, never identifiers, so its lineage is dataset-level:

* every (input, output) pair of a RunEvent is a whole-dataset ``DataFlowed`` through its job;
* a dataset declared (facet ``personalData``) to hold phone numbers or emails collected for a
  purpose gets an ``IdentifierCollected`` of a **dataset-level pseudo-identifier**, one per
  (dataset, category): it stands for "the phone numbers collected in dataset X", travels along
  flows like any identifier, and is owned by :data:`DATASET_LEVEL_SUBJECT` (not a person), so
  reports do not count it among people or identifiers;
* a job (or run) declaring a use purpose (facet ``personalDataUse``) uses each of its inputs:
  a whole-dataset ``DataUsed``. The policy then raises the ordinary alert, whose evidence is the
  dataset-level path: collected in the origin dataset, flowed through jobs, used.
* an input that a job neither copies to an output nor uses for a declared purpose is still
  read by it: a ``DataRead`` (no purpose, so never an alert), so that a job reading datasets
  and writing none is part of the lineage.

Event ids are derived from (run id, event time, job, the fact), so re-delivering a RunEvent is a
no-op; the START and COMPLETE of one run give the same edges, and the alert dated by the
earliest of them (docs/openlineage.md).
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any, Literal, TypeVar, cast

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, model_validator

from lineage.errors import InvalidEventError
from lineage.events import (
    PURPOSE_PATTERN,
    DataFlowed,
    DataRead,
    DatasetRef,
    DataUsed,
    Event,
    IdentifierCollected,
    micros,
)
from lineage.identifiers import DATA_CATEGORIES, DATASET_LEVEL_SUBJECT, Category, IdentifierRef
from lineage.inbound import check_line_bounds, describe_validation_error, one_line
from lineage.purposes import PurposeTaxonomy

#: Dataset facet: which categories a dataset holds and what they were collected for.
DATASET_FACET = "personalData"
#: Job or run facet: what the job uses its inputs for.
USE_FACET = "personalDataUse"
#: Names the shipped schema (``lineage/schema/openlineage-facets.schema.json``); ``.invalid``
#: is a reserved domain: the URL identifies the schema, nothing fetches it.
SCHEMA_ID = "https://lineage.invalid/schema/openlineage-facets.schema.json"
DATASET_FACET_SCHEMA_URL = f"{SCHEMA_ID}#/$defs/PersonalDataDatasetFacet"
USE_FACET_SCHEMA_URL = f"{SCHEMA_ID}#/$defs/PersonalDataUseFacet"
OPENLINEAGE_SPEC = "https://openlineage.io/spec/2-0-2/OpenLineage.json"

EVENT_ID_NAMESPACE = uuid.UUID("0b8f6c1e-4f0e-4c55-bb6d-3a1d7f2e9c40")
CATEGORY_OF: dict[str, Category] = {
    fides: cast(Category, category) for category, fides in DATA_CATEGORIES.items()
}
FidesCategory = Literal["user.contact.phone_number", "user.contact.email"]

#: What a tracker name may hold (``lineage.events.NAME_PATTERN``): anything else becomes ``_``.
_NOT_NAME = re.compile(r"[^A-Za-z0-9_.\-/]+")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")
MAX_NAME = 200
F = TypeVar("F", bound=BaseModel)


# -- the facets ----------------------------------------------------------------------------
class _Facet(BaseModel):
    """OpenLineage's facet envelope; unknown keys are errors (a typo must not hide a purpose)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    producer: str | None = Field(default=None, alias="_producer")
    schema_url: str | None = Field(default=None, alias="_schemaURL")
    deleted: bool | None = Field(default=None, alias="_deleted")


class ColumnPersonalData(BaseModel):
    """One column: its Fideslang data category and, when it is an origin, its purpose."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    category: FidesCategory
    collection_purpose: str | None = Field(
        default=None, alias="collectionPurpose", max_length=200, pattern=PURPOSE_PATTERN
    )


class PersonalDataDatasetFacet(_Facet):
    """``personalData`` on an input or output dataset: the categories it holds (per dataset or
    per column) and the purpose they were collected for there. A purpose makes the dataset an
    origin; categories without one only describe what flowed in."""

    categories: list[FidesCategory] = Field(
        default_factory=list, description="Fideslang data categories held by the whole dataset"
    )
    collection_purpose: str | None = Field(
        default=None,
        alias="collectionPurpose",
        max_length=200,
        pattern=PURPOSE_PATTERN,
        description="purpose the data was collected for in this dataset (a data use key)",
    )
    columns: dict[str, ColumnPersonalData] = Field(
        default_factory=dict,
        description="per column: category, and a collection purpose overriding the dataset's",
    )

    @model_validator(mode="after")
    def _declares_something(self) -> PersonalDataDatasetFacet:
        if not self.categories and not self.columns:
            raise ValueError("declare categories or columns")
        return self

    def origins(self) -> set[tuple[Category, str]]:
        """(category, collection purpose) pairs this dataset is an origin of."""
        found = {(CATEGORY_OF[c], self.collection_purpose) for c in self.categories}
        for column in self.columns.values():
            found.add((CATEGORY_OF[column.category],
                       column.collection_purpose or self.collection_purpose))  # fmt: skip
        return {(c, p) for c, p in found if p is not None}


class PersonalDataUseFacet(_Facet):
    """``personalDataUse`` on the job (or the run): the purpose it uses its inputs for."""

    purpose: str = Field(
        min_length=1,
        max_length=200,
        pattern=PURPOSE_PATTERN,
        description="data use key, e.g. marketing.advertising.third_party.targeted",
    )


# -- the parts of a RunEvent the mapping reads (everything else is ignored) -------------------
class _Open(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class _Dataset(_Open):
    namespace: str = Field(min_length=1)
    name: str = Field(min_length=1)
    facets: dict[str, Any] = Field(default_factory=dict)


class _Job(_Open):
    namespace: str = Field(min_length=1)
    name: str = Field(min_length=1)
    facets: dict[str, Any] = Field(default_factory=dict)


class _Run(_Open):
    run_id: uuid.UUID = Field(alias="runId")
    facets: dict[str, Any] = Field(default_factory=dict)


class RunEvent(_Open):
    event_type: Literal["START", "RUNNING", "COMPLETE", "ABORT", "FAIL", "OTHER"] | None = Field(
        default=None, alias="eventType"
    )
    event_time: AwareDatetime = Field(alias="eventTime")
    run: _Run
    job: _Job
    inputs: list[_Dataset] = Field(default_factory=list)
    outputs: list[_Dataset] = Field(default_factory=list)


# -- the mapping ---------------------------------------------------------------------------
def tracker_name(value: str, what: str) -> str:
    """An OpenLineage namespace or name as a tracker name: ``scheme://`` becomes ``scheme/``,
    every run of characters outside ``[A-Za-z0-9_.-/]`` becomes ``_`` (``postgres://db:5432``
    -> ``postgres/db_5432``)."""
    name = _NOT_NAME.sub("_", _SCHEME.sub(r"\1/", value.strip()))
    if not name.strip("_"):
        raise InvalidEventError(f"{what}: no letter or digit to name it by")
    if len(name) > MAX_NAME:
        raise InvalidEventError(f"{what}: longer than {MAX_NAME} characters")
    return name


def dataset_ref(namespace: str, name: str) -> DatasetRef:
    """OpenLineage's (namespace, name) is the tracker's (system, name): key ``system:name``."""
    return DatasetRef(
        system=tracker_name(namespace, "dataset namespace"),
        name=tracker_name(name, "dataset name"),
    )


def dataset_level_identifier(dataset: DatasetRef, category: Category) -> IdentifierRef:
    """The pseudo-identifier standing for every ``category`` value collected in ``dataset``.
    Its ref hashes public names (no key): it is not personal data, and is the same in every
    deployment."""
    material = f"lineage:dataset-level\x1f{category}\x1f{dataset.key}"
    plural = "phone numbers" if category == "phone" else "emails"
    display = f"dataset-level: the {plural} of {dataset.key}"
    return IdentifierRef(
        category=category,
        ref=hashlib.sha256(material.encode()).hexdigest(),
        display=display if len(display) <= 80 else f"dataset-level: the {plural} of its origin",
    )


class OpenLineageMapper:
    """RunEvent JSON -> tracker events; purposes are checked against ``taxonomy``."""

    def __init__(self, taxonomy: PurposeTaxonomy) -> None:
        self._taxonomy = taxonomy

    def parse_line(self, line: str | bytes, observed: datetime) -> list[Event]:
        text = check_line_bounds(line)
        try:
            record = json.loads(text)
        except ValueError as exc:  # JSONDecodeError, or an over-long integer
            raise InvalidEventError(f"not valid JSON: {one_line(str(exc), 120)}") from None
        return self.map(record, observed)

    def map(self, record: Any, observed: datetime) -> list[Event]:
        if not isinstance(record, dict):
            raise InvalidEventError("an OpenLineage event must be a JSON object")
        if "run" not in record:
            raise InvalidEventError(
                "not a RunEvent (no run): DatasetEvent and JobEvent carry no run to date a flow"
            )
        try:
            event = RunEvent.model_validate(record)
        except ValidationError as exc:
            raise InvalidEventError(_describe(exc, "RunEvent")) from None
        try:
            return list(self._events(event, observed))
        except ValidationError as exc:  # the events' own bounds, e.g. an eventTime before 1970
            raise InvalidEventError(describe_validation_error(exc)) from None

    def _events(self, event: RunEvent, observed: datetime) -> Iterator[Event]:
        job = tracker_name(f"{event.job.namespace}/{event.job.name}", "job")
        producer = tracker_name(event.job.namespace, "job namespace")
        envelope = {"event_time": event.event_time, "observed_time": observed, "producer": producer}
        run = (str(event.run.run_id), str(micros(event.event_time)), job)

        def event_id(*fact: str) -> str:
            return "ol-" + str(uuid.uuid5(EVENT_ID_NAMESPACE, "\x1f".join((*run, *fact))))

        inputs = [(dataset_ref(d.namespace, d.name), d) for d in event.inputs]
        outputs = [(dataset_ref(d.namespace, d.name), d) for d in event.outputs]
        seen: set[str] = set()
        for ref, dataset in [*inputs, *outputs]:
            facet = _dataset_facet(dataset, ref)
            if facet is None:
                continue
            for category, purpose in sorted(facet.origins()):
                self._purpose(purpose, f"{ref.key}: {DATASET_FACET}.collectionPurpose")
                eid = event_id("collected", ref.key, category, purpose)
                if eid in seen:
                    continue
                seen.add(eid)
                yield IdentifierCollected(
                    event_id=eid,
                    dataset=ref,
                    purpose=purpose,
                    identifier=dataset_level_identifier(ref, category),
                    subject=DATASET_LEVEL_SUBJECT,
                    **envelope,
                )
        for source, _ in inputs:
            for target, _ in outputs:
                eid = event_id("flowed", source.key, target.key, job)
                if source == target or eid in seen:
                    continue
                seen.add(eid)
                yield DataFlowed(event_id=eid, source=source, target=target, job=job, **envelope)
        purposes = sorted(self._use_purposes(event))
        for purpose in purposes:
            for used, _ in inputs:
                eid = event_id("used", used.key, job, purpose)
                if eid in seen:
                    continue
                seen.add(eid)
                yield DataUsed(event_id=eid, dataset=used, job=job, purpose=purpose, **envelope)
        if purposes:
            return
        # An input that flowed nowhere (no output other than itself) and was used for no
        # purpose was still read by the job: without this the job is absent from the lineage.
        for read, _ in inputs:
            eid = event_id("read", read.key, job)
            if eid in seen or any(target != read for target, _ in outputs):
                continue
            seen.add(eid)
            yield DataRead(event_id=eid, dataset=read, job=job, **envelope)

    def _use_purposes(self, event: RunEvent) -> set[str]:
        found = set()
        for where, facets in (("job", event.job.facets), ("run", event.run.facets)):
            if USE_FACET not in facets:
                continue
            facet = _validated(PersonalDataUseFacet, facets[USE_FACET], f"{where}.{USE_FACET}")
            if not facet.deleted:
                found.add(self._purpose(facet.purpose, f"{where}.{USE_FACET}.purpose"))
        return found

    def _purpose(self, key: str, where: str) -> str:
        try:
            return self._taxonomy.require(key)
        except InvalidEventError as exc:
            raise InvalidEventError(f"{where}: {exc.reason}") from None


def _dataset_facet(dataset: _Dataset, ref: DatasetRef) -> PersonalDataDatasetFacet | None:
    if DATASET_FACET not in dataset.facets:
        return None
    facet = _validated(PersonalDataDatasetFacet, dataset.facets[DATASET_FACET],
                       f"{ref.key}: {DATASET_FACET}")  # fmt: skip
    return None if facet.deleted else facet


def _validated(model: type[F], value: Any, where: str) -> F:
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        raise InvalidEventError(_describe(exc, where)) from None


def _describe(exc: ValidationError, where: str) -> str:
    """Field paths and messages, never input values: a key the producer made up (a misspelt
    field, a column name) is not spelled out either, as in :mod:`lineage.inbound`."""
    parts = []
    for error in exc.errors(include_input=False, include_url=False):
        location = ".".join(
            str(p) if isinstance(p, int) or p in _KNOWN_NAMES else "<unknown field>"
            for p in error["loc"]
        )
        parts.append(f"{location or 'value'}: {error['msg'].removeprefix('Value error, ')}")
    return one_line(f"{where}: " + "; ".join(dict.fromkeys(parts)))


_MODELS: tuple[type[BaseModel], ...] = (
    PersonalDataDatasetFacet, ColumnPersonalData, PersonalDataUseFacet, RunEvent, _Run, _Job,
    _Dataset,
)  # fmt: skip
#: The names a rejection reason may spell out: the models' own fields and their aliases.
_KNOWN_NAMES = frozenset(
    name
    for model in _MODELS
    for field, info in model.model_fields.items()
    for name in (field, info.alias)
    if name
)


def facet_json_schema() -> dict[str, Any]:
    """The shipped schema of both facets, in OpenLineage's custom-facet form (``allOf`` the
    spec's base facet, then the fields)."""
    defs: dict[str, Any] = {}
    facets: Sequence[tuple[type[BaseModel], str]] = (
        (PersonalDataDatasetFacet, "DatasetFacet"),
        (PersonalDataUseFacet, "JobFacet"),
    )
    for model, base in facets:
        schema = model.model_json_schema(by_alias=True, ref_template="#/$defs/{model}")
        defs.update(schema.pop("$defs", {}))
        for envelope in ("_producer", "_schemaURL", "_deleted"):
            schema["properties"].pop(envelope, None)
        schema.pop("additionalProperties", None)  # allOf: the base facet's keys are allowed
        defs[model.__name__] = {
            "description": schema.pop("description", ""),
            "allOf": [{"$ref": f"{OPENLINEAGE_SPEC}#/$defs/{base}"}, schema],
            "unevaluatedProperties": False,  # a misspelt key must not hide a purpose
        }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "lineage tracker OpenLineage facets",
        "description": (
            f"'{DATASET_FACET}' (dataset facet) and '{USE_FACET}' (job or run facet): "
            "docs/openlineage.md"
        ),
        "$defs": defs,
        "properties": {
            DATASET_FACET: {"$ref": "#/$defs/PersonalDataDatasetFacet"},
            USE_FACET: {"$ref": "#/$defs/PersonalDataUseFacet"},
        },
    }
