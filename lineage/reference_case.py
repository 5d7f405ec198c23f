"""A synthetic, deterministic replay of the reference case (see shared README).

Users give a phone and/or email "to secure the account"; from ``start`` an identity-sync job
copies those identifiers into the ads matching table and the Tailored-Audiences matcher uses
them; at ``fix`` the sync stops carrying security-origin identifiers. Some users also give an
email, with consent, for a newsletter; that copy reaches ads too but carries no security origin.
The generator returns producer records (raw values, as a collecting system would send them)
and the ground truth the tracker must reproduce from the graph alone.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

AUTH = "auth:contact_points"
NEWSLETTER = "crm:newsletter_subscribers"
ADS = "ads:matchable_identifiers"
BACKUP = "warehouse:auth_backup"
SYNC_JOB = "ads-identity-sync"
MATCH_JOB = "tailored-audiences-matcher"
BACKUP_JOB = "nightly-auth-backup"
FRAUD_JOB = "fraud-model-training"
SECURITY_PURPOSES = (
    "essential.service.authentication",
    "essential.service.security.account_recovery",
)
AD_PURPOSE = "marketing.advertising.third_party.targeted"
NEWSLETTER_PURPOSE = "marketing.communications.email"
FRAUD_PURPOSE = "essential.fraud_detection"

START = datetime(2013, 5, 1, tzinfo=UTC)
FIX = datetime(2019, 9, 16, tzinfo=UTC)
FIRST_SIGNUP = datetime(2012, 1, 1, tzinfo=UTC)
LAST_DAY = datetime(2020, 6, 30, tzinfo=UTC)


@dataclass
class GroundTruth:
    affected_subjects: set[str] = field(default_factory=set)
    affected_identifiers: set[str] = field(default_factory=set)
    first_violation: datetime | None = None
    last_violation: datetime | None = None


@dataclass
class ReferenceCase:
    records: list[dict[str, Any]]
    truth: GroundTruth
    emails: list[str]
    phones: list[str]


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _phone(rng: random.Random) -> str:
    """A valid US number in display form, as users type them."""
    area = rng.choice(["415", "212", "312", "617", "206", "503", "702", "919"])
    exchange = rng.randint(201, 989)
    while exchange % 100 == 11 or exchange == 555:
        exchange = rng.randint(201, 989)
    return f"+1 {area} {exchange} {rng.randint(0, 9999):04d}"


#: Identifiers per listed flow or use event: a real sync of millions is sent in bounded parts,
#: and each line stays far below the ingest bound (``lineage.inbound.MAX_LINE_BYTES``).
PART = 2_000


def _parts(
    event_id: str, identifiers: list[dict[str, str]]
) -> Iterator[tuple[str, list[dict[str, str]]]]:
    """One event when it fits, else ``<id>.1``, ``<id>.2``, ... of at most ``PART`` each."""
    if len(identifiers) <= PART:
        if identifiers:
            yield event_id, identifiers
        return
    for number, start in enumerate(range(0, len(identifiers), PART), start=1):
        yield f"{event_id}.{number}", identifiers[start : start + PART]


def generate(users: int = 2_000, seed: int = 7, period_days: int = 7) -> ReferenceCase:
    rng = random.Random(seed)
    tag = f"refcase-s{seed}-u{users}"  # event ids are unique per generated history
    records: list[dict[str, Any]] = []
    truth = GroundTruth()
    pending_sync: list[tuple[dict[str, str], str, datetime]] = []  # security ids awaiting sync
    pending_consented: list[tuple[dict[str, str], datetime]] = []
    emails: list[str] = []
    phones: list[str] = []
    span = (LAST_DAY - FIRST_SIGNUP).total_seconds()

    def collect(
        when: datetime, ident: dict[str, str], purpose: str, dataset: str, acct: str, n: int
    ) -> None:
        records.append(
            {
                "type": "IdentifierCollected",
                "event_id": f"{tag}:collect-{acct}-{n}",
                "event_time": _iso(when),
                "producer": dataset.split(":")[0] + "-service",
                "dataset": dataset,
                "purpose": purpose,
                "identifier": ident,
                "subject": acct,
            }
        )

    for index in range(users):
        acct = f"acct-{index:07d}"
        signup = FIRST_SIGNUP + timedelta(seconds=rng.random() * span)
        name = f"user{index}"
        email = f"{name.capitalize()}@Example.com" if rng.random() < 0.3 else f"{name}@example.com"
        phone = _phone(rng)
        emails.append(email)
        phones.append(phone)
        n = 0
        for ident in ({"phone": phone}, {"email": email}):
            if rng.random() < 0.55:
                collect(signup, ident, rng.choice(SECURITY_PURPOSES), AUTH, acct, n)
                pending_sync.append((ident, acct, signup))
                n += 1
        if rng.random() < 0.25:
            opted_in = signup + timedelta(days=rng.randint(0, 400))
            collect(opted_in, {"email": email}, NEWSLETTER_PURPOSE, NEWSLETTER, acct, n)
            pending_consented.append(({"email": email}, opted_in))

    sync_queue = deque(sorted(pending_sync, key=lambda item: item[2]))
    consent_queue = deque(sorted(pending_consented, key=lambda item: item[1]))
    day = START
    batch = 0
    while day <= LAST_DAY:
        secured: list[dict[str, str]] = []
        while day < FIX and sync_queue and sync_queue[0][2] <= day:
            ident, acct, _ = sync_queue.popleft()
            secured.append(ident)
            truth.affected_subjects.add(acct)
            truth.affected_identifiers.add(next(iter(ident.values())))
        consented: list[dict[str, str]] = []
        while consent_queue and consent_queue[0][1] <= day:
            consented.append(consent_queue.popleft()[0])
        batch += 1
        flow_at, use_at = day + timedelta(hours=1), day + timedelta(hours=3)
        for source, carried in ((AUTH, secured), (NEWSLETTER, consented)):
            for event_id, part in _parts(f"{tag}:sync-{source}-{batch}", carried):
                records.append(
                    {
                        "type": "DataFlowed",
                        "event_id": event_id,
                        "event_time": _iso(flow_at),
                        "producer": "ads-platform",
                        "source": source,
                        "target": ADS,
                        "job": SYNC_JOB,
                        "identifiers": part,
                    }
                )
        for event_id, part in _parts(f"{tag}:match-{batch}", secured + consented):
            records.append(
                {
                    "type": "DataUsed",
                    "event_id": event_id,
                    "event_time": _iso(use_at),
                    "producer": "ads-platform",
                    "dataset": ADS,
                    "job": MATCH_JOB,
                    "purpose": AD_PURPOSE,
                    "identifiers": part,
                }
            )
        if secured:
            truth.first_violation = truth.first_violation or use_at
            truth.last_violation = use_at
        records.append(
            {
                "type": "DataFlowed",
                "event_id": f"{tag}:backup-{day.date()}",
                "event_time": _iso(day),
                "producer": "warehouse",
                "source": AUTH,
                "target": BACKUP,
                "job": BACKUP_JOB,
            }
        )
        day += timedelta(days=period_days)
    records.append(
        {
            "type": "DataUsed",
            "event_id": f"{tag}:fraud-training",
            "event_time": _iso(FIX),
            "producer": "warehouse",
            "dataset": BACKUP,
            "job": FRAUD_JOB,
            "purpose": FRAUD_PURPOSE,
        }
    )
    records.sort(key=lambda r: (r["event_time"], r["event_id"]))
    return ReferenceCase(records, truth, emails, phones)
