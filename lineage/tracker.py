"""The one place events become graph state and alerts; every adapter (CLI, worker) calls this."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from lineage.alerts import Alert
from lineage.event_identity import Claim, decide
from lineage.events import INCIDENT_EVENT_TYPES, DataUsed, Event, IdentifierCollected, IncidentEvent
from lineage.planner import keys_of, plan
from lineage.policy import Policy
from lineage.ports import LineageStore, Request, Writes
from lineage.projection import Change, Mutation, project
from lineage.propagation import PropagationPass
from lineage.purposes import PurposeTaxonomy


def check_purposes(event: Event, taxonomy: PurposeTaxonomy) -> None:
    """Semantic validation the schema cannot do: purposes must exist in the taxonomy."""
    if isinstance(event, IdentifierCollected | DataUsed):
        taxonomy.require(event.purpose)


def merge_facts(store: LineageStore, mutations: Sequence[Mutation]) -> list[Change]:
    """Read the stored state of the keys the mutations touch, plan, write the fact rows;
    return what changed (call inside ``store.atomically``)."""
    state = store.fetch(Request(state=keys_of(mutations))).state
    if state is None:  # pragma: no cover - a store contract violation
        raise AssertionError("store answered a state request without state")
    planned = plan(mutations, state)
    if planned.rows:
        store.write(Writes(facts=planned.rows))
    return planned.changes


@dataclass(frozen=True)
class Claimed:
    alerts: list[Alert]
    reused: list[int]  # positions of the messages refused: their id is owned by other content


class Tracker:
    def __init__(self, store: LineageStore, policy: Policy) -> None:
        self.store = store
        self.policy = policy

    def check(self, event: Event) -> None:
        check_purposes(event, self.policy.taxonomy)

    def apply(self, events: Sequence[Event]) -> list[Alert]:
        """Project, propagate; return the alerts raised or revised (idempotent: a batch
        already applied changes nothing and returns nothing)."""
        for event in events:
            self.check(event)
        mutations: list[Mutation] = [m for event in events for m in project(event)]
        actions = _actions(events)
        return self.store.atomically(lambda: self._apply(mutations, actions))

    def apply_claimed(self, messages: Sequence[tuple[Event, Sequence[Claim]]]) -> Claimed:
        """``apply`` for a log that cannot refuse a reused id (Kafka): in the same unit,
        decide who owns each id (:func:`lineage.event_identity.decide`), apply the messages
        that agree with what is owned, record their claims, and return the others."""
        for event, _ in messages:
            self.check(event)

        def unit() -> Claimed:
            keys = list(dict.fromkeys(c.key for _, claims in messages for c in claims))
            stored = self.store.read_claims(keys)
            decision = decide([claims for _, claims in messages], stored)
            kept = [event for (event, _), ok in zip(messages, decision.accepted, strict=True) if ok]
            alerts = self._apply([m for event in kept for m in project(event)], _actions(kept))
            self.store.write_claims(decision.fresh, [k for k in keys if k not in stored])
            reused = [i for i, ok in enumerate(decision.accepted) if not ok]
            return Claimed(alerts, reused)

        return self.store.atomically(unit)

    def _apply(self, mutations: list[Mutation], actions: list[IncidentEvent]) -> list[Alert]:
        # One unit: if we die half-way, nothing of it is stored and redelivery redoes it all.
        if actions:  # keyed by event id: a redelivered action is a no-op
            self.store.record_incident_actions(actions)
        if not mutations:  # officers' actions only: no state to read (a CLI ack stays fast)
            return []
        changes = merge_facts(self.store, mutations)
        if not changes:
            return []
        derived = PropagationPass(self.store, self.policy).run(changes)
        self.store.write(derived)
        return derived.alerts


def _actions(events: Sequence[Event]) -> list[IncidentEvent]:
    """The officers' actions among ``events``: no graph facts, recorded beside the incident
    reads; incidents fold them with the alerts, so their order against the alerts is free."""
    return [e for e in events if isinstance(e, INCIDENT_EVENT_TYPES)]
