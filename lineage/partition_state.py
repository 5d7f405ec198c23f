"""The working state of one partition, held in memory: what propagation reads, answered
without a round trip.

Everything the core decides from (per identifier: its node, collections, copies, carried
flows, specific uses and alert ids; per dataset: its flow and use runs and the arrival order
of its copies) lives here in a compact form. A store that persists it (the embedded
journal, ``graph.sqlite_store``; a production worker's partition) writes what changed beside
it and loads it back in bulk on open, so the state is always a function of what was
committed. Alert bodies are the one thing left out: they are large, written once and rarely
read again (a revision or a withdrawal), so an :class:`AlertBodies` holds them.

Pure: no I/O here. Not transactional by itself: a unit that fails half-way leaves the state
``broken`` and the owner reloads it from its journal (``PartitionState`` refuses use until
then), which is what makes crash atomicity the journal's.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any, Protocol, TypeVar, cast

from lineage.alerts import Alert
from lineage.errors import StoreError
from lineage.event_identity import Claim
from lineage.events import IncidentEvent
from lineage.identifiers import Category
from lineage.model import CarriedFlow, Collection, Copy, IdentifierNode, Run, SpecificUse
from lineage.planner import EdgeKey, FactRows, NodeState, RunKey, State, StateKeys
from lineage.ports import Facts, FirstRun, History, Request, Window, Writes

T = TypeVar("T")
H = TypeVar("H", Copy, CarriedFlow, SpecificUse)

_since = attrgetter("since")


class AlertBodies(Protocol):
    """Where full alerts live (the journal's table, or a dict in memory)."""

    def get(self, alert_ids: Iterable[str]) -> dict[str, Alert]:
        """The stored alerts among ``alert_ids`` (all of them exist: the state says so)."""

    def put(self, alerts: Sequence[Alert]) -> None:
        """Upsert keeping the higher revision."""


class MemoryAlertBodies:
    """Alert bodies in a dict: tests, benchmarks, and stores small enough to hold them."""

    def __init__(self) -> None:
        self.alerts: dict[str, Alert] = {}

    def get(self, alert_ids: Iterable[str]) -> dict[str, Alert]:
        return {aid: self.alerts[aid] for aid in alert_ids if aid in self.alerts}

    def put(self, alerts: Sequence[Alert]) -> None:
        for alert in alerts:
            known = self.alerts.get(alert.alert_id)
            if known is None or alert.revision > known.revision:
                self.alerts[alert.alert_id] = alert


class _Identifier:
    """One identifier's state. Tuples, not lists: most hold one or two items, and an empty
    tuple is shared (a million identifiers with no carried flow cost nothing for it)."""

    __slots__ = ("alerts", "carried", "category", "collections", "copies", "display",
                 "erasures", "id", "ref", "specific", "subjects")  # fmt: skip

    def __init__(self, ident: int, ref: str, category: str, display: str | None) -> None:
        self.id = ident
        self.ref = ref  # the one string of this ref that every row of it shares
        self.category = category
        self.display = display
        self.subjects: tuple[str, ...] = ()
        self.erasures: tuple[int, ...] = ()
        self.collections: tuple[Collection, ...] = ()
        self.copies: tuple[Copy, ...] = ()
        self.carried: tuple[CarriedFlow, ...] = ()
        self.specific: tuple[SpecificUse, ...] = ()
        self.alerts: tuple[str, ...] = ()


class _Arrivals:
    """The copies of one dataset in arrival (``since``) order, for whole-dataset runs.

    Copies mostly arrive in time order, so they are appended and the list is re-sorted only
    when one arrived out of order (Timsort on a nearly sorted list is linear). A replaced or
    dropped copy stays behind as a stale entry, skipped on read and compacted away once stale
    entries are as many as live ones.
    """

    __slots__ = ("items", "sorted", "stale")

    def __init__(self) -> None:
        self.items: list[Copy] = []
        self.sorted = True
        self.stale = 0

    def add(self, copy: Copy) -> None:
        items = self.items
        if items and copy.since < items[-1].since:
            self.sorted = False
        items.append(copy)

    def window(self, after: int | None, upto: int) -> list[Copy]:
        if not self.sorted:
            self.items.sort(key=_since)
            self.sorted = True
        items = self.items
        start = 0 if after is None else bisect.bisect_right(items, after, key=_since)
        end = bisect.bisect_right(items, upto, key=_since)
        return items[start:end]

    def compact(self, live: Callable[[Copy], bool]) -> None:
        self.items = [c for c in self.items if live(c)]
        self.stale = 0


@dataclass
class StateCounts:
    identifiers: int = 0
    copies: int = 0
    collections: int = 0
    carried: int = 0
    specific: int = 0
    runs: int = 0
    alerts: int = 0


class PartitionState:
    """One partition's state (see the module docstring); a ``LineageStore`` on its own
    (``atomically`` only marks a failed unit), and the memory of the journaled stores."""

    def __init__(self, bodies: AlertBodies | None = None) -> None:
        self.bodies: AlertBodies = bodies if bodies is not None else MemoryAlertBodies()
        self._identifiers: dict[str, _Identifier] = {}
        self._loading: dict[int, _Identifier] | None = None  # by row id, while loading
        self._next_id = 1
        self._datasets: set[str] = set()
        self._jobs: set[str] = set()
        self._runs: dict[EdgeKey, list[Run]] = {}
        self._edges_from: dict[tuple[str, str], list[EdgeKey]] = {}  # (kind, a) -> edges
        self._arrivals: dict[str, _Arrivals] = {}
        self._alerts: set[str] = set()
        self._claims: dict[str, str] = {}
        #: Officers' actions applied to this state alone (a store keeps them in its tables).
        self.incident_actions: dict[str, IncidentEvent] = {}
        self._erasure_events: dict[tuple[int, int], str] = {}  # (row id, at) -> event id
        self._strings: dict[str, str] = {}
        self.broken = False

    # -- a LineageStore of its own ----------------------------------------------------------
    def atomically(self, work: Callable[[], T]) -> T:
        self._usable()
        try:
            return work()
        except BaseException:
            self.broken = True
            raise

    def read_claims(self, keys: Sequence[str]) -> dict[str, str]:
        return {k: self._claims[k] for k in keys if k in self._claims}

    def write_claims(self, fresh: Sequence[Claim], absent: Sequence[str]) -> None:
        for claim in fresh:
            self._claims[claim.key] = claim.digest

    def record_incident_actions(self, events: Sequence[IncidentEvent]) -> None:
        for event in events:
            self.incident_actions.setdefault(event.event_id, event)

    def _usable(self) -> None:
        if self.broken:
            raise StoreError("the partition state is broken by a failed unit: reload it")

    def _intern(self, text: str) -> str:
        """Datasets, jobs, purposes, and the event ids of runs recur in millions of rows."""
        return self._strings.setdefault(text, text)

    # -- identity ---------------------------------------------------------------------------
    def ident_id(self, ref: str) -> int | None:
        """The identifier's row id in the journal (ids grow with arrival)."""
        node = self._identifiers.get(ref)
        return node.id if node is not None else None

    def ids(self, refs: Iterable[str]) -> dict[str, int]:
        found = self._identifiers
        return {r: found[r].id for r in refs if r in found}

    def has_alert(self, alert_id: str) -> bool:
        return alert_id in self._alerts

    # -- reads --------------------------------------------------------------------------------
    def fetch(self, request: Request) -> Facts:
        self._usable()
        facts = Facts()
        nodes = self._identifiers
        for ref in request.identifiers:
            node = nodes.get(ref)
            if node is not None:
                facts.identifiers[ref] = IdentifierNode(
                    ref, cast(Category, node.category), node.display, frozenset(node.subjects),
                    node.erasures)  # fmt: skip
        facts.copies = self._matching(request.copies, lambda n: n.copies, lambda c: c.dataset)
        facts.carried = self._matching(request.carried, lambda n: n.carried, lambda f: f.source)
        facts.specific = self._matching(
            request.specific, lambda n: n.specific, lambda u: u.dataset
        )
        facts.flows = self._first_runs("flow", request.flows)
        facts.uses = self._first_runs("use", request.uses)
        for window in request.arrivals:
            facts.arrivals[window] = self._window(window)
        for ref in request.histories:
            node = nodes.get(ref)
            facts.histories[ref] = (
                History(node.collections, node.copies, node.alerts) if node else History()
            )
        known = [aid for aid in request.alerts if aid in self._alerts]
        if known:
            facts.alerts = self.bodies.get(known)
        if request.state is not None:
            facts.state = self._state(request.state)
        return facts

    def _matching(
        self,
        pairs: Iterable[tuple[str, str]],
        held: Callable[[_Identifier], tuple[H, ...]],
        where: Callable[[H], str],
    ) -> dict[tuple[str, str], list[H]]:
        """Per (identifier, dataset) pair: what the identifier holds in that dataset."""
        found: dict[tuple[str, str], list[H]] = {}
        nodes = self._identifiers
        for pair in pairs:
            node = nodes.get(pair[0])
            if node is not None:
                items = [item for item in held(node) if where(item) == pair[1]]
                if items:
                    found[pair] = items
        return found

    def _first_runs(
        self, kind: str, keys: Iterable[tuple[str, int]]
    ) -> dict[tuple[str, int], list[FirstRun]]:
        found: dict[tuple[str, int], list[FirstRun]] = {}
        for dataset, since in keys:
            for edge in self._edges_from.get((kind, dataset), ()):
                runs = self._runs[edge]
                index = bisect.bisect_left(runs, Run(since, ""))
                if index < len(runs):
                    found.setdefault((dataset, since), []).append(
                        FirstRun(edge[2], edge[3], runs[index])
                    )
        return found

    def _window(self, window: Window) -> list[Copy]:
        dataset, after, upto, purposes = window
        arrivals = self._arrivals.get(dataset)
        if arrivals is None or (purposes is not None and not purposes):
            return []
        wanted = None if purposes is None else set(purposes)
        return [
            c for c in arrivals.window(after, upto)
            if (wanted is None or c.origin.purpose in wanted) and self._live(c)
        ]  # fmt: skip

    def _live(self, copy: Copy) -> bool:
        node = self._identifiers.get(copy.identifier)
        return node is not None and any(c is copy for c in node.copies)

    def _state(self, keys: StateKeys) -> State:
        state = State()
        nodes = self._identifiers
        for ref in keys.identifiers:
            node = nodes.get(ref)
            if node is not None:
                state.identifiers[ref] = NodeState(set(node.erasures), set(node.subjects))
        state.datasets = {d for d in keys.datasets if d in self._datasets}
        state.jobs = {j for j in keys.jobs if j in self._jobs}
        for ckey in keys.collections:
            node = nodes.get(ckey[0])
            if node is not None and any(
                (c.dataset, c.purpose, c.at, c.event_id) == ckey[1:] for c in node.collections
            ):
                state.collections.add(ckey)
        for fkey in keys.carried:
            node = nodes.get(fkey[0])
            if node is not None and any(
                (f.source, f.target, f.job, f.at, f.event_id) == fkey[1:] for f in node.carried
            ):
                state.carried.add(fkey)
        for ukey in keys.specific:
            node = nodes.get(ukey[0])
            if node is not None and any(
                (u.dataset, u.purpose, u.job, u.at, u.event_id) == ukey[1:]
                for u in node.specific
            ):
                state.specific.add(ukey)
        for rkey in keys.runs:
            edge = rkey[:4]
            runs = self._runs.get(edge)
            if runs is None:
                state.previous[rkey] = None
                continue
            state.edges.add(edge)
            run = Run(rkey[4], rkey[5])
            index = bisect.bisect_left(runs, run)
            if index < len(runs) and runs[index] == run:
                state.runs.add(rkey)
                continue
            before = bisect.bisect_left(runs, Run(run.at, ""))
            state.previous[rkey] = runs[before - 1].at if before > 0 else None
        return state

    # -- writes ---------------------------------------------------------------------------------
    def write(self, writes: Writes) -> None:
        """Apply what the core decided, by the rules of ``lineage.ports``."""
        self._usable()
        if writes.facts:
            self.write_facts(writes.facts)
        for ref in writes.dropped:
            node = self._identifiers.get(ref)
            if node is not None and node.copies:
                for copy in node.copies:
                    self._arrivals_of(copy.dataset).stale += 1
                node.copies = ()
        for copy in writes.copies:
            self.put_copy(copy)
        if writes.alerts:
            self.put_alerts(writes.alerts)

    def write_facts(self, rows: FactRows) -> None:
        intern = self._intern
        for r in rows.identifiers:
            self.add_identifier(self._next_id, r["ref"], r["category"], r["display"])
        nodes = self._identifiers
        for r in rows.subjects:
            node = nodes[r["ref"]]
            if r["subject"] not in node.subjects:
                node.subjects = (*node.subjects, r["subject"])
        for r in rows.erasures:
            node = nodes[r["ref"]]
            node.erasures = tuple(sorted({*node.erasures, r["at"]}))
            self._erasure_events.setdefault((node.id, r["at"]), r["event_id"])
        self._datasets.update(intern(r["key"]) for r in rows.datasets)
        self._jobs.update(intern(r["name"]) for r in rows.jobs)
        for r in rows.collections:
            node = nodes[r["ref"]]
            node.collections = (*node.collections, Collection(
                node.ref, intern(r["dataset"]), intern(r["purpose"]), r["at"],
                r["event_id"]))  # fmt: skip
        for r in rows.edges:
            self._edge((r["kind"], r["a"], r["b"], r["job"]))
        for r in rows.runs:
            self.add_run((r["kind"], r["a"], r["b"], r["job"], r["at"], r["event_id"]))
        for r in rows.carried:
            node = nodes[r["ref"]]
            node.carried = (*node.carried, CarriedFlow(
                node.ref, intern(r["source"]), intern(r["target"]),
                intern(r["job"]), r["at"], intern(r["event_id"])))  # fmt: skip
        for r in rows.specific:
            node = nodes[r["ref"]]
            node.specific = (*node.specific, SpecificUse(
                node.ref, intern(r["dataset"]), intern(r["job"]),
                intern(r["purpose"]), r["at"], intern(r["event_id"])))  # fmt: skip

    def add_identifier(self, ident: int, ref: str, category: str, display: str | None) -> None:
        if ref in self._identifiers:
            return
        node = _Identifier(ident, ref, self._intern(category), display)
        self._identifiers[ref] = node
        if self._loading is not None:
            self._loading[ident] = node
        self._next_id = max(self._next_id, ident + 1)

    def _edge(self, edge: EdgeKey) -> list[Run]:
        runs = self._runs.get(edge)
        if runs is None:
            kind, a, b, job = (self._intern(part) for part in edge)
            edge = (kind, a, b, job)
            runs = self._runs[edge] = []
            self._edges_from.setdefault((kind, a), []).append(edge)
        return runs

    def add_run(self, key: RunKey) -> None:
        runs = self._edge(key[:4])
        run = Run(key[4], self._intern(key[5]))
        index = bisect.bisect_left(runs, run)
        if index == len(runs) or runs[index] != run:
            runs.insert(index, run)

    def _arrivals_of(self, dataset: str) -> _Arrivals:
        arrivals = self._arrivals.get(dataset)
        if arrivals is None:
            arrivals = self._arrivals[dataset] = _Arrivals()
        return arrivals

    def put_copy(self, copy: Copy) -> None:
        node = self._identifiers.get(copy.identifier)
        if node is None:
            raise StoreError(f"a copy of unknown identifier {copy.identifier}")
        slot = (copy.dataset, copy.origin.key, copy.epoch)
        kept: list[Copy] = []
        for held in node.copies:
            if (held.dataset, held.origin.key, held.epoch) == slot:
                if copy.rank > held.rank:
                    return  # the stored copy ranks lower: it stays
                self._arrivals_of(held.dataset).stale += 1
            else:
                kept.append(held)
        if copy.source is not None:
            copy = self._compact(copy, node.ref, copy.event_id, copy.since)
        kept.append(copy)
        node.copies = tuple(kept)
        arrivals = self._arrivals_of(copy.dataset)
        arrivals.add(copy)
        if arrivals.stale > 1024 and arrivals.stale * 2 > len(arrivals.items):
            arrivals.compact(self._live)

    def _compact(self, copy: Copy, ref: str, event_id: str, since: int) -> Copy:
        """The copy on strings the state already holds: its identifier's ref, and one string
        per dataset, job and run or flow event id (shared by every copy that run made)."""
        flowed = copy.source is not None
        return Copy(ref, self._intern(copy.dataset), copy.origin, since,
                    self._intern(event_id) if flowed else event_id,
                    self._intern(copy.source) if copy.source is not None else None,
                    self._intern(copy.job) if copy.job is not None else None,
                    copy.hops, copy.epoch)  # fmt: skip

    def put_alerts(self, alerts: Sequence[Alert]) -> None:
        nodes = self._identifiers
        for alert in alerts:
            if alert.alert_id in self._alerts:
                continue
            self._alerts.add(alert.alert_id)
            node = nodes.get(alert.identifier)
            if node is not None:
                node.alerts = (*node.alerts, alert.alert_id)
        self.bodies.put(alerts)

    # -- bulk load (what a journal holds, by identifier row id) ------------------------------
    def _by_row(self) -> dict[int, _Identifier]:
        """Rows name identifiers by row id; the index exists only while loading."""
        if self._loading is None:
            self._loading = {n.id: n for n in self._identifiers.values()}
        return self._loading

    def loaded(self) -> None:
        """The load is over: drop the row-id index (a dict entry per identifier)."""
        self._loading = None

    def load_subjects(self, rows: Iterable[tuple[int, str]]) -> None:
        by_id = self._by_row()
        for ident, subject in rows:
            node = by_id[ident]
            node.subjects = (*node.subjects, subject)

    def load_erasures(self, rows: Iterable[tuple[int, int, str]]) -> None:
        by_id = self._by_row()
        for ident, at, event_id in rows:
            node = by_id[ident]
            node.erasures = tuple(sorted({*node.erasures, at}))
            self._erasure_events[(ident, at)] = event_id

    def load_collections(self, rows: Iterable[tuple[int, str, str, int, str]]) -> None:
        by_id, intern = self._by_row(), self._intern
        for ident, dataset, purpose, at, event_id in rows:
            node = by_id[ident]
            node.collections = (*node.collections, Collection(
                node.ref, intern(dataset), intern(purpose), at, event_id))  # fmt: skip

    def load_copies(self, copies: Iterable[tuple[int, Copy]]) -> None:
        """Copies as the journal stores them (one per slot, already the lowest rank)."""
        by_id = self._by_row()
        for ident, copy in copies:
            node = by_id[ident]
            event_id, since = copy.event_id, copy.since
            if copy.source is None:  # a collection's own copy: its id and time are the collection's
                for c in node.collections:
                    if c.event_id == event_id and c.at == since:
                        event_id, since = c.event_id, c.at
                        break
            copy = self._compact(copy, node.ref, event_id, since)
            node.copies = (*node.copies, copy)
            self._arrivals_of(copy.dataset).add(copy)

    def load_carried(self, rows: Iterable[tuple[int, str, str, str, int, str]]) -> None:
        by_id, intern = self._by_row(), self._intern
        for ident, source, target, job, at, event_id in rows:
            node = by_id[ident]
            node.carried = (*node.carried, CarriedFlow(
                node.ref, intern(source), intern(target), intern(job), at,
                intern(event_id)))  # fmt: skip

    def load_specific(self, rows: Iterable[tuple[int, str, str, str, int, str]]) -> None:
        by_id, intern = self._by_row(), self._intern
        for ident, dataset, purpose, job, at, event_id in rows:
            node = by_id[ident]
            node.specific = (*node.specific, SpecificUse(
                node.ref, intern(dataset), intern(job), intern(purpose), at,
                intern(event_id)))  # fmt: skip

    def load_alerts(self, rows: Iterable[tuple[str, int | None]]) -> None:
        by_id = self._by_row()
        for alert_id, ident in rows:
            self._alerts.add(alert_id)
            node = by_id.get(ident) if ident is not None else None
            if node is not None:
                node.alerts = (*node.alerts, alert_id)

    def load_names(self, datasets: Iterable[str], jobs: Iterable[str]) -> None:
        self._datasets.update(self._intern(d) for d in datasets)
        self._jobs.update(self._intern(j) for j in jobs)

    def load_edges(self, edges: Iterable[EdgeKey]) -> None:
        for edge in edges:
            self._edge(edge)

    def load_runs(self, runs: Iterable[RunKey]) -> None:
        """Runs in (edge, at, event_id) order append; any order is accepted."""
        for key in runs:
            self.add_run(key)

    def load_claims(self, rows: Iterable[tuple[str, str]]) -> None:
        self._claims.update(rows)

    # -- what it holds ------------------------------------------------------------------------
    def journal_rows(self) -> JournalRows:
        return JournalRows(((n.id, n) for n in self._identifiers.values()), self._erasure_events)

    def counts(self) -> StateCounts:
        nodes = self._identifiers.values()
        return StateCounts(
            identifiers=len(self._identifiers),
            copies=sum(len(n.copies) for n in nodes),
            collections=sum(len(n.collections) for n in nodes),
            carried=sum(len(n.carried) for n in nodes),
            specific=sum(len(n.specific) for n in nodes),
            runs=sum(len(r) for r in self._runs.values()),
            alerts=len(self._alerts),
        )

    def snapshot(self) -> StateSnapshot:
        """Everything the state holds, independent of insertion order and object identity."""
        nodes = {
            ref: (n.id, n.category, n.display, frozenset(n.subjects), n.erasures,
                  frozenset(n.collections), frozenset(n.copies), frozenset(n.carried),
                  frozenset(n.specific), frozenset(n.alerts))
            for ref, n in self._identifiers.items()
        }  # fmt: skip
        arrivals = {
            dataset: frozenset(c.key for c in a.items if self._live(c))
            for dataset, a in self._arrivals.items()
        }
        return StateSnapshot(
            nodes=nodes,
            datasets=frozenset(self._datasets),
            jobs=frozenset(self._jobs),
            runs={edge: tuple(runs) for edge, runs in self._runs.items()},
            arrivals={d: keys for d, keys in arrivals.items() if keys},
            alerts=frozenset(self._alerts),
            claims=dict(self._claims),
            erasure_events=dict(self._erasure_events),
        )


@dataclass(frozen=True)
class StateSnapshot:
    nodes: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)
    datasets: frozenset[str] = frozenset()
    jobs: frozenset[str] = frozenset()
    runs: Mapping[EdgeKey, tuple[Run, ...]] = field(default_factory=dict)
    arrivals: Mapping[str, frozenset[tuple[str, str, str, int]]] = field(default_factory=dict)
    alerts: frozenset[str] = frozenset()
    claims: Mapping[str, str] = field(default_factory=dict)
    erasure_events: Mapping[tuple[int, int], str] = field(default_factory=dict)


class JournalRows:
    """The identifier-keyed rows a state holds, in each journal table's key order (a bulk
    load appends to every B-tree instead of seeking): what a rebuild writes at its end."""

    def __init__(
        self, nodes: Iterable[tuple[int, _Identifier]], erasures: Mapping[tuple[int, int], str]
    ) -> None:
        self._nodes = sorted(nodes, key=lambda item: item[0])
        self._erasures = erasures

    def identifiers(self) -> Iterable[tuple[int, str, str, str | None]]:
        return ((i, n.ref, n.category, n.display) for i, n in self._nodes)

    def subjects(self) -> Iterable[tuple[int, str]]:
        return ((i, s) for i, n in self._nodes for s in sorted(n.subjects))

    def erasures(self) -> Iterable[tuple[int, int, str]]:
        return ((i, at, self._erasures[(i, at)]) for i, n in self._nodes for at in n.erasures)

    def collections(self) -> Iterable[tuple[int, str, str, int, str]]:
        return (
            (i, c.dataset, c.purpose, c.at, c.event_id)
            for i, n in self._nodes
            for c in sorted(n.collections, key=attrgetter("dataset", "purpose", "at", "event_id"))
        )

    def copies(self) -> Iterable[tuple[int, Copy]]:
        return (
            (i, c)
            for i, n in self._nodes
            for c in sorted(n.copies, key=lambda c: (c.dataset, c.origin.key, c.epoch))
        )

    def carried(self) -> Iterable[tuple[int, str, str, str, int, str]]:
        return (
            (i, f.source, f.target, f.job, f.at, f.event_id)
            for i, n in self._nodes
            for f in sorted(n.carried, key=attrgetter("source", "target", "job", "at",
                                                      "event_id"))
        )  # fmt: skip

    def specific(self) -> Iterable[tuple[int, str, str, str, int, str]]:
        return (
            (i, u.dataset, u.purpose, u.job, u.at, u.event_id)
            for i, n in self._nodes
            for u in sorted(n.specific, key=attrgetter("dataset", "purpose", "job", "at",
                                                       "event_id"))
        )  # fmt: skip
