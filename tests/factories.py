"""Small builders for canonical events in tests (refs are fake hashes, never raw values)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

from lineage.events import (
    DataFlowed,
    DataRead,
    DatasetRef,
    DataUsed,
    IdentifierCollected,
    IdentifierErased,
)
from lineage.identifiers import Category, IdentifierRef

T0 = datetime(2015, 1, 1, tzinfo=UTC)
SECURITY = "essential.service.authentication"
RECOVERY = "essential.service.security.account_recovery"
NEWSLETTER = "marketing.communications.email"
ADS = "marketing.advertising.third_party.targeted"
ANALYTICS = "analytics.reporting"


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def ref(name: str, category: Category = "email") -> IdentifierRef:
    digest = hashlib.sha256(name.encode()).hexdigest()
    display = f"{name[:1]}***@example.com" if category == "email" else "+1 ***-***-0100"
    return IdentifierRef(category=category, ref=digest, display=display)


def ds(key: str) -> DatasetRef:
    system, _, name = key.partition(":")
    return DatasetRef(system=system, name=name or "main")


def subject(name: str) -> str:
    return hashlib.sha256(f"subject:{name}".encode()).hexdigest()


def collected(
    eid: str, who: str, dataset: str, purpose: str, hours: float, owner: str | None = None
) -> IdentifierCollected:
    return IdentifierCollected(
        event_id=eid,
        event_time=at(hours),
        observed_time=at(hours),
        producer="test",
        dataset=ds(dataset),
        purpose=purpose,
        identifier=ref(who),
        subject=subject(owner) if owner else None,
    )


def flowed(
    eid: str,
    source: str,
    target: str,
    hours: float,
    who: list[str] | None = None,
    job: str = "copy-job",
) -> DataFlowed:
    return DataFlowed(
        event_id=eid,
        event_time=at(hours),
        observed_time=at(hours),
        producer="test",
        source=ds(source),
        target=ds(target),
        job=job,
        identifiers=[ref(w) for w in who] if who is not None else None,
    )


def used(
    eid: str,
    dataset: str,
    purpose: str,
    hours: float,
    who: list[str] | None = None,
    job: str = "use-job",
) -> DataUsed:
    return DataUsed(
        event_id=eid,
        event_time=at(hours),
        observed_time=at(hours),
        producer="test",
        dataset=ds(dataset),
        job=job,
        purpose=purpose,
        identifiers=[ref(w) for w in who] if who is not None else None,
    )


def read(eid: str, dataset: str, hours: float, job: str = "report-job") -> DataRead:
    return DataRead(
        event_id=eid,
        event_time=at(hours),
        observed_time=at(hours),
        producer="test",
        dataset=ds(dataset),
        job=job,
    )


def erased(eid: str, who: str, hours: float) -> IdentifierErased:
    return IdentifierErased(
        event_id=eid,
        event_time=at(hours),
        observed_time=at(hours),
        producer="test",
        identifier=ref(who),
    )
