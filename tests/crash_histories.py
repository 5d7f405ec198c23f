"""Small, realistic producer histories as files (raw records, as ``lineage ingest`` reads them).

For the crash suite (``tests/unit/test_crash_anywhere.py``), which drives the CLI: a seeded
generator of messy histories rather than hand-written ones. Security, recovery, fraud and
newsletter collections (emails typed with odd case and spaces, some phones), whole-dataset and
listed-identifier flows (with a cycle back from ads), ad and non-ad uses, many events sharing
one timestamp, erasures and re-collections after them, late arrivals and a few re-sent
duplicates; and one violation no erasure prevents, so every history raises alerts. Every
record has an explicit ``event_id``, so re-sending it is a no-op.
(``tests/histories.py`` holds the hypothesis strategies over canonical events.)
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

T0 = datetime(2015, 3, 1, tzinfo=UTC)
SLOT = timedelta(hours=6)  # times fall on a coarse grid, so ties are common

AUTH = "auth:contact_points"
RECOVERY = "auth:recovery_contacts"
FRAUD = "risk:fraud_signals"
NEWSLETTER = "crm:newsletter_subscribers"
WAREHOUSE = "warehouse:users"
ADS = "ads:matchable_identifiers"
LOOKALIKE = "ads:lookalike_seeds"

AD_USE = "marketing.advertising.third_party.targeted"

#: (dataset, purpose, producer) of collections; the first three are security origins.
COLLECTIONS: tuple[tuple[str, str, str], ...] = (
    (AUTH, "essential.service.authentication", "auth-service"),
    (RECOVERY, "essential.service.security.account_recovery", "auth-service"),
    (FRAUD, "essential.fraud_detection", "risk-service"),
    (NEWSLETTER, "marketing.communications.email", "crm"),
)
#: (source, target, job) of flows; each run is whole-dataset or lists identifiers.
FLOWS: tuple[tuple[str, str, str], ...] = (
    (AUTH, WAREHOUSE, "nightly-etl"),
    (RECOVERY, WAREHOUSE, "nightly-etl"),
    (FRAUD, WAREHOUSE, "risk-export"),
    (NEWSLETTER, ADS, "ads-identity-sync"),
    (WAREHOUSE, ADS, "ads-identity-sync"),
    (AUTH, ADS, "ads-identity-sync"),
    (ADS, WAREHOUSE, "ads-feedback"),  # a cycle
    (ADS, LOOKALIKE, "lookalike-builder"),
)
#: (dataset, job, purpose) of uses; ad uses and harmless ones.
USES: tuple[tuple[str, str, str], ...] = (
    (ADS, "tailored-audiences-matcher", AD_USE),
    (ADS, "tailored-audiences-matcher", "marketing.advertising.profiling"),
    (LOOKALIKE, "lookalike-matcher", "marketing.advertising.first_party.targeted"),
    (WAREHOUSE, "weekly-report", "analytics.reporting"),
    (WAREHOUSE, "churn-model", "marketing.advertising.profiling"),
    (AUTH, "login", "essential.service.authentication"),
)


@dataclass(frozen=True)
class Person:
    account: str
    identifiers: tuple[dict[str, str], ...]


def _phone(rng: random.Random) -> str:
    """A valid US number as users type it (555 exchanges are not valid numbers)."""
    area = rng.choice(["415", "212", "312", "617", "206"])
    exchange = rng.choice([201, 234, 320, 456, 678, 789, 872])
    return f"+1 {area} {exchange} {rng.randint(0, 9999):04d}"


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _people(rng: random.Random, tag: str, count: int) -> list[Person]:
    people = []
    for index in range(count):
        email = f"user{index}.{tag}@example.com"
        typed = rng.choice([email, email.upper(), f"  {email.capitalize()} ", email.title()])
        identifiers: list[dict[str, str]] = [{"email": typed}]
        if rng.random() < 0.3:
            identifiers.append({"phone": _phone(rng)})
        people.append(Person(f"acct-{tag}-{index}", tuple(identifiers)))
    return people


def generate(seed: int, events: int) -> list[dict[str, Any]]:
    """About ``events`` producer records (a few more: re-sent duplicates), in arrival order."""
    rng = random.Random(seed)
    tag = f"h{seed}"
    people = _people(rng, tag, max(3, events // 8))
    slots = max(8, events // 3)
    records: list[dict[str, Any]] = []
    collected: list[tuple[dict[str, str], int]] = []  # identifier, slot of its collection
    erased: list[tuple[dict[str, str], int]] = []

    def when(slot: int) -> str:
        return _iso(T0 + slot * SLOT)

    def some_identifiers() -> list[dict[str, str]]:
        pool = [ident for ident, _ in collected]
        return rng.sample(pool, min(len(pool), rng.randint(1, 4)))

    def collect(person: Person, ident: dict[str, str], slot: int) -> dict[str, Any]:
        dataset, purpose, producer = rng.choices(COLLECTIONS, weights=(5, 2, 1, 3))[0]
        collected.append((ident, slot))
        return {
            "type": "IdentifierCollected",
            "event_time": when(slot),
            "producer": producer,
            "dataset": dataset,
            "purpose": purpose,
            "identifier": ident,
            "subject": person.account,
        }

    # Everyone signs up in the first third; the rest of the history moves the data around.
    for person in people:
        for ident in person.identifiers:
            records.append(collect(person, ident, rng.randrange(slots // 3 + 1)))
    # One violation that nothing can prevent (never erased), so every history raises alerts.
    canary = {"email": f"canary.{tag}@example.com"}
    synced = rng.randrange(slots // 2 + 1)
    records += [
        {
            "type": "IdentifierCollected",
            "event_time": when(0),
            "producer": "auth-service",
            "dataset": AUTH,
            "purpose": COLLECTIONS[0][1],
            "identifier": canary,
            "subject": f"acct-{tag}-canary",
        },
        {
            "type": "DataFlowed",
            "event_time": when(synced),
            "producer": "ads-identity-sync",
            "source": AUTH,
            "target": ADS,
            "job": "ads-identity-sync",
            "identifiers": [canary],
        },
        {
            "type": "DataUsed",
            "event_time": when(rng.randint(synced, slots)),
            "producer": "tailored-audiences-matcher",
            "dataset": ADS,
            "job": "tailored-audiences-matcher",
            "purpose": AD_USE,
            "identifiers": [canary],
        },
    ]
    while len(records) < events:
        slot = rng.randrange(slots)
        kind = rng.choices(
            ["collect", "flow", "use", "erase", "recollect"], weights=(2, 6, 4, 1, 1)
        )[0]
        if kind == "collect":
            person = rng.choice(people)
            records.append(collect(person, rng.choice(person.identifiers), slot))
        elif kind == "flow":
            source, target, job = rng.choice(FLOWS)
            record: dict[str, Any] = {
                "type": "DataFlowed",
                "event_time": when(slot),
                "producer": job,
                "source": source,
                "target": target,
                "job": job,
            }
            if rng.random() < 0.4:
                record["identifiers"] = some_identifiers()
            records.append(record)
        elif kind == "use":
            dataset, job, purpose = rng.choice(USES)
            record = {
                "type": "DataUsed",
                "event_time": when(slot),
                "producer": job,
                "dataset": dataset,
                "job": job,
                "purpose": purpose,
            }
            if rng.random() < 0.4:
                record["identifiers"] = some_identifiers()
            records.append(record)
        elif kind == "erase":
            ident, since = rng.choice(collected)
            at = rng.randint(since, max(since, slots))
            erased.append((ident, at))
            records.append(
                {
                    "type": "IdentifierErased",
                    "event_time": when(at),
                    "producer": "privacy-requests",
                    "identifier": ident,
                    "reason": "user request",
                }
            )
        elif kind == "recollect" and erased:
            ident, at = rng.choice(erased)
            owner = next(p for p in people if ident in p.identifiers)
            records.append(collect(owner, ident, rng.randint(at, slots + 2)))
    for number, record in enumerate(records):
        record["event_id"] = f"{tag}-{number:04d}-{record['type']}"
    # Arrival order: mostly by event time, with late arrivals and a few re-sent records.
    records.sort(key=lambda r: (r["event_time"], rng.random()))
    for _ in range(len(records) // 6):
        late = records.pop(rng.randrange(len(records)))
        records.insert(rng.randrange(len(records) + 1), late)
    for _ in range(rng.randint(1, 3)):
        records.insert(rng.randrange(len(records) + 1), dict(rng.choice(records)))
    return records


def write(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return path
