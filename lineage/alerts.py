"""Alerts: a policy violation with the evidence path from collection to use.

This model is the documented wire format of the alerts topic and every other sink.
"""

from __future__ import annotations

import hashlib
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

ALERT_SCHEMA_VERSION = 1


class EvidenceStep(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["collected", "flowed", "used"]
    event_id: str
    at: AwareDatetime = Field(description="event time of the step")
    dataset: str = Field(description="dataset the step ends in (or is used in)")
    source: str | None = Field(default=None, description="dataset a flow came from")
    job: str | None = None
    purpose: str | None = Field(default=None, description="collection or use purpose")


class Alert(BaseModel):
    """One per (rule, identifier, origin, use); revised, never duplicated.

    ``revision`` grows when the alert's content changes: a strictly earlier violation, a new
    evidence path, or a withdrawal (an erasure that arrived late makes the violation
    impossible). Consumers keyed on ``alert_id`` keep the highest revision. Everything but
    ``revision`` is a function of the set of events (docs/semantics.md).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal[1] = 1
    alert_id: str
    revision: int = Field(default=0, ge=0, description="0 when first raised, +1 per revision")
    status: Literal["active", "withdrawn"] = "active"
    rule: str
    severity: str
    identifier: str = Field(description="pseudonymized identifier (HMAC-SHA256)")
    category: Literal["phone", "email"]
    display: str | None = Field(default=None, description="masked form for humans")
    subjects: list[str] = Field(default_factory=list, description="pseudonymized accounts")
    origin_dataset: str
    origin_purpose: str
    use_dataset: str
    use_job: str
    use_purpose: str
    occurred_at: AwareDatetime = Field(description="event time of the first violating use")
    evidence: list[EvidenceStep]


    def content(self) -> dict[str, object]:
        """What order-independence compares: everything except the revision counter."""
        return self.model_dump(exclude={"revision"})

    def same_content(self, other: Alert) -> bool:
        return self.content() == other.content()


def alert_id(rule: str, identifier: str, origin_key: str, dataset: str, job: str, use: str) -> str:
    material = "\x1f".join((rule, identifier, origin_key, dataset, job, use))
    return hashlib.sha256(material.encode()).hexdigest()[:32]
