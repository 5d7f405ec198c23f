"""Every Cypher statement ``Neo4jStore`` runs, in one place so the schema can be read at a glance.

Graph shape (labels and types as in :mod:`graph.store`; times are epoch microseconds):

- ``(:Identifier {ref, category, display, erased_at})-[:BELONGS_TO]->(:Subject {ref})``
- ``(:Identifier)-[:COLLECTED_INTO {purpose, at, event_id}]->(:Dataset {key, system, name})``
- ``(:Identifier)-[:COPY_IN {origin, dataset, since, event_id, source, job}]->(:Dataset)``
- ``(:Dataset)-[:FLOWS_TO {job, run_at, run_event_ids}]->(:Dataset)``
- ``(:Dataset)-[:USED_FOR {job, run_at, run_event_ids}]->(:Purpose {key})``
- ``(:Identifier)-[:CARRIED_TO {source, job, at, event_id}]->(:Dataset)``
- ``(:Identifier)-[:USED_IN {dataset, job, at, event_id}]->(:Purpose)``
- ``(:Job {name})-[:RUNS {mode: 'reads'|'writes'}]->(:Dataset)``
- ``(:Alert {alert_id, ..., occurred_at, published, raised_at, raised_index, json})``
  ``-[:ABOUT]->(:Identifier)``

Runs are two parallel lists sorted by (at, event_id). Lookups that name both ends of an edge
seek both nodes, then match the edge in a ``CALL (a, b)`` subquery: with both ends bound the
only plan is Expand(Into), which walks the smaller side. A plain pattern lets the planner walk
a dataset's (possibly millions of) relationships whenever its statistics are stale, e.g.
right after ``clear`` for a replay.
"""

from __future__ import annotations

from typing import Final

#: Idempotent schema; unique constraints double as the indexes every MERGE and read seeks on.
SCHEMA: Final = (
    "CREATE CONSTRAINT identifier_ref IF NOT EXISTS FOR (n:Identifier) REQUIRE n.ref IS UNIQUE",
    "CREATE CONSTRAINT subject_ref IF NOT EXISTS FOR (n:Subject) REQUIRE n.ref IS UNIQUE",
    "CREATE CONSTRAINT dataset_key IF NOT EXISTS FOR (n:Dataset) REQUIRE n.key IS UNIQUE",
    "CREATE CONSTRAINT job_name IF NOT EXISTS FOR (n:Job) REQUIRE n.name IS UNIQUE",
    "CREATE CONSTRAINT purpose_key IF NOT EXISTS FOR (n:Purpose) REQUIRE n.key IS UNIQUE",
    "CREATE CONSTRAINT alert_id IF NOT EXISTS FOR (n:Alert) REQUIRE n.alert_id IS UNIQUE",
    # copies_in: equality on the dataset then a range on since, one index seek
    "CREATE INDEX copy_in_dataset_since IF NOT EXISTS "
    "FOR ()-[r:COPY_IN]-() ON (r.dataset, r.since)",
    # the outbox: the oldest-raised unpublished alerts straight from the index, in order
    "CREATE INDEX alert_outbox IF NOT EXISTS "
    "FOR (n:Alert) ON (n.published, n.raised_at, n.raised_index)",
)
AWAIT_INDEXES: Final = "CALL db.awaitIndexes($seconds)"

# -- apply: one write transaction, PREPARE then (if anything changed) WRITE -----------------

#: Both statements take one map parameter ``$batch`` (a list per kind): Neo4j keys its plan
#: cache by parameter types, and separate lists would compile a new plan (~0.5 s) for every
#: combination of empty and non-empty kinds.

#: Merge and lock every node the batch touches (in sorted order), then read the state of every
#: edge key it touches. The exclusive locks (a scratch property set and removed: the documented
#: Cypher idiom) serialise concurrent batches on the same keys, so no read-modify-write is lost.
PREPARE: Final = """
CALL () {
  UNWIND $batch.identifiers AS ref
  MERGE (i:Identifier {ref: ref})
  SET i.lock_ = true
  REMOVE i.lock_
  RETURN collect({
    ref: ref, initialised: i.category IS NOT NULL, erased_at: i.erased_at,
    subjects: COLLECT { MATCH (i)-[:BELONGS_TO]->(s:Subject) RETURN s.ref }
  }) AS identifiers
}
CALL () {
  UNWIND $batch.datasets AS key
  MERGE (d:Dataset {key: key})
  SET d.lock_ = true
  REMOVE d.lock_
  RETURN collect({key: key, initialised: d.system IS NOT NULL}) AS datasets
}
CALL () {
  UNWIND $batch.jobs AS name
  MERGE (j:Job {name: name})
  ON CREATE SET j.created_ = true
  WITH j, name, j.created_ IS NOT NULL AS created
  SET j.lock_ = true
  REMOVE j.lock_, j.created_
  RETURN collect({name: name, created: created}) AS jobs
}
CALL () {
  UNWIND $batch.collections AS k
  MATCH (i:Identifier {ref: k[0]}), (d:Dataset {key: k[1]})
  CALL (i, d, k) {
    MATCH (i)-[c:COLLECTED_INTO {purpose: k[2]}]->(d)
    RETURN c
  }
  RETURN collect([k, c.at, c.event_id]) AS collections
}
CALL () {
  UNWIND $batch.flows AS k
  MATCH (s:Dataset {key: k[0]}), (t:Dataset {key: k[1]})
  CALL (s, t, k) {
    MATCH (s)-[r:FLOWS_TO {job: k[2]}]->(t)
    RETURN r
  }
  RETURN collect([k, r.run_at, r.run_event_ids]) AS flows
}
CALL () {
  UNWIND $batch.uses AS k
  MATCH (d:Dataset {key: k[0]}), (p:Purpose {key: k[1]})
  CALL (d, p, k) {
    MATCH (d)-[r:USED_FOR {job: k[2]}]->(p)
    RETURN r
  }
  RETURN collect([k, r.run_at, r.run_event_ids]) AS uses
}
CALL () {
  UNWIND $batch.carried AS k
  MATCH (i:Identifier {ref: k[0]}), (d:Dataset {key: k[1]})
  WHERE EXISTS {
    MATCH (i)-[:CARRIED_TO {source: k[2], job: k[3], at: k[4], event_id: k[5]}]->(d)
  }
  RETURN collect(k) AS carried
}
CALL () {
  UNWIND $batch.specific AS k
  MATCH (i:Identifier {ref: k[0]}), (p:Purpose {key: k[1]})
  WHERE EXISTS {
    MATCH (i)-[:USED_IN {dataset: k[2], job: k[3], at: k[4], event_id: k[5]}]->(p)
  }
  RETURN collect(k) AS specific
}
RETURN identifiers, datasets, jobs, collections, flows, uses, carried, specific
"""

#: The final value of every changed key, one UNWIND per kind; nodes exist (PREPARE merged them).
WRITE: Final = """
CALL () {
  UNWIND $batch.identifier_init AS row
  MATCH (i:Identifier {ref: row.ref})
  SET i.category = row.category, i.display = row.display
}
CALL () {
  UNWIND $batch.subjects AS row
  MATCH (i:Identifier {ref: row.ref})
  MERGE (s:Subject {ref: row.subject})
  MERGE (i)-[:BELONGS_TO]->(s)
}
CALL () {
  UNWIND $batch.erased AS row
  MATCH (i:Identifier {ref: row.ref})
  SET i.erased_at = row.at
}
CALL () {
  UNWIND $batch.dataset_init AS row
  MATCH (d:Dataset {key: row.key})
  SET d.system = row.system, d.name = row.name
}
CALL () {
  UNWIND $batch.collections AS row
  MATCH (i:Identifier {ref: row.ref}), (d:Dataset {key: row.dataset})
  MERGE (i)-[c:COLLECTED_INTO {purpose: row.purpose}]->(d)
  SET c.at = row.at, c.event_id = row.event_id
}
CALL () {
  UNWIND $batch.flows AS row
  MATCH (s:Dataset {key: row.source}), (t:Dataset {key: row.target})
  MERGE (s)-[r:FLOWS_TO {job: row.job}]->(t)
  SET r.run_at = row.run_at, r.run_event_ids = row.run_event_ids
}
CALL () {
  UNWIND $batch.uses AS row
  MATCH (d:Dataset {key: row.dataset})
  MERGE (p:Purpose {key: row.purpose})
  MERGE (d)-[r:USED_FOR {job: row.job}]->(p)
  SET r.run_at = row.run_at, r.run_event_ids = row.run_event_ids
}
CALL () {
  UNWIND $batch.runs AS row
  MATCH (j:Job {name: row.job}), (d:Dataset {key: row.dataset})
  MERGE (j)-[:RUNS {mode: row.mode}]->(d)
}
CALL () {
  UNWIND $batch.carried AS row
  MATCH (i:Identifier {ref: row.ref}), (d:Dataset {key: row.target})
  MERGE (i)-[:CARRIED_TO {source: row.source, job: row.job, at: row.at, event_id: row.event_id}]
        ->(d)
}
CALL () {
  UNWIND $batch.specific AS row
  MATCH (i:Identifier {ref: row.ref})
  MERGE (p:Purpose {key: row.purpose})
  MERGE (i)-[:USED_IN {dataset: row.dataset, job: row.job, at: row.at, event_id: row.event_id}]
        ->(p)
}
"""

# -- copies and alerts -----------------------------------------------------------------------

PUT_COPIES: Final = """
UNWIND $rows AS row
MERGE (i:Identifier {ref: row.identifier})
MERGE (d:Dataset {key: row.dataset})
MERGE (i)-[c:COPY_IN {origin: row.origin}]->(d)
WITH c, row
WHERE c.since IS NULL OR row.since < c.since
   OR (row.since = c.since AND row.event_id < c.event_id)
SET c.dataset = row.dataset, c.since = row.since, c.event_id = row.event_id,
    c.source = row.source, c.job = row.job
"""

#: ``fresh`` is true only for the rows this statement created (the marker never outlives it),
#: which stays exact when another transaction stores the same alert concurrently.
ADD_ALERTS: Final = """
UNWIND $rows AS row
MERGE (a:Alert {alert_id: row.alert_id})
ON CREATE SET a += row.props, a.published = false, a.created_ = true,
              a.raised_at = datetime.transaction().epochMillis, a.raised_index = row.index
WITH a, row, a.created_ IS NOT NULL AS fresh
REMOVE a.created_
MERGE (i:Identifier {ref: row.props.identifier})
MERGE (a)-[:ABOUT]->(i)
RETURN row.alert_id AS alert_id, fresh
"""

# -- reads -----------------------------------------------------------------------------------

IDENTIFIER: Final = """
MATCH (i:Identifier {ref: $ref})
RETURN i.category AS category, i.display AS display, i.erased_at AS erased_at,
       COLLECT { MATCH (i)-[:BELONGS_TO]->(s:Subject) RETURN s.ref } AS subjects
"""

#: One round trip for a whole batch of identifiers: what propagation reads about each.
IDENTIFIER_FACTS: Final = """
UNWIND $refs AS ref
MATCH (i:Identifier {ref: ref})
RETURN i.ref AS ref, i.category AS category, i.display AS display, i.erased_at AS erased_at,
       COLLECT { MATCH (i)-[:BELONGS_TO]->(s:Subject) RETURN s.ref } AS subjects,
       COLLECT {
         MATCH (i)-[c:COPY_IN]->(d:Dataset)
         RETURN [d.key, c.origin, c.since, c.event_id, c.source, c.job]
       } AS copies,
       COLLECT {
         MATCH (i)-[c:CARRIED_TO]->(t:Dataset)
         RETURN [c.source, t.key, c.job, c.at, c.event_id]
       } AS carried,
       COLLECT {
         MATCH (i)-[u:USED_IN]->(p:Purpose)
         RETURN [u.dataset, u.job, p.key, u.at, u.event_id]
       } AS specific
"""

_COPY_FIELDS = (
    "c.origin AS origin, c.since AS since, c.event_id AS event_id, c.source AS source, c.job AS job"
)

COPIES_OF: Final = f"""
MATCH (i:Identifier {{ref: $identifier}}), (d:Dataset {{key: $dataset}})
CALL (i, d) {{
  MATCH (i)-[c:COPY_IN]->(d)
  RETURN c
}}
RETURN i.ref AS identifier, d.key AS dataset, {_COPY_FIELDS}
"""

COPIES_OF_IDENTIFIER: Final = f"""
MATCH (i:Identifier {{ref: $identifier}})-[c:COPY_IN]->(d:Dataset)
USING INDEX i:Identifier(ref)
RETURN i.ref AS identifier, d.key AS dataset, {_COPY_FIELDS}
"""

#: Two texts rather than ``$after IS NULL OR ...``: each keeps a pure range the index can seek.
#: Ordered like the networkx store, so propagation visits copies in the same order.
COPIES_IN_UPTO: Final = f"""
MATCH (i:Identifier)-[c:COPY_IN]->(d:Dataset)
USING INDEX c:COPY_IN(dataset, since)
WHERE c.dataset = $dataset AND c.since <= $upto
RETURN i.ref AS identifier, d.key AS dataset, {_COPY_FIELDS}
ORDER BY since, identifier, origin
"""

COPIES_IN_BETWEEN: Final = f"""
MATCH (i:Identifier)-[c:COPY_IN]->(d:Dataset)
USING INDEX c:COPY_IN(dataset, since)
WHERE c.dataset = $dataset AND c.since > $after AND c.since <= $upto
RETURN i.ref AS identifier, d.key AS dataset, {_COPY_FIELDS}
ORDER BY since, identifier, origin
"""

COLLECTIONS_OF: Final = """
MATCH (i:Identifier {ref: $identifier})-[c:COLLECTED_INTO]->(d:Dataset)
USING INDEX i:Identifier(ref)
RETURN d.key AS dataset, c.purpose AS purpose, c.at AS at, c.event_id AS event_id
"""

FLOWS_FROM: Final = """
MATCH (s:Dataset {key: $dataset})-[r:FLOWS_TO]->(t:Dataset)
USING INDEX s:Dataset(key)
RETURN t.key AS target, r.job AS job, r.run_at AS run_at, r.run_event_ids AS run_event_ids
"""

USES_OF: Final = """
MATCH (d:Dataset {key: $dataset})-[r:USED_FOR]->(p:Purpose)
USING INDEX d:Dataset(key)
RETURN p.key AS purpose, r.job AS job, r.run_at AS run_at, r.run_event_ids AS run_event_ids
"""

SPECIFIC_USES: Final = """
MATCH (i:Identifier {ref: $identifier})-[u:USED_IN]->(p:Purpose)
USING INDEX i:Identifier(ref)
WHERE u.dataset = $dataset
RETURN p.key AS purpose, u.job AS job, u.at AS at, u.event_id AS event_id
ORDER BY at, event_id
"""

ALERTS: Final = "MATCH (a:Alert) RETURN a.json AS json ORDER BY a.occurred_at, a.alert_id"
ALERT: Final = "MATCH (a:Alert {alert_id: $alert_id}) RETURN a.json AS json"

#: The ``limit`` first raised (transaction time, then position in the call), oldest first:
#: the networkx store's outbox order, read from the index without sorting the backlog.
UNPUBLISHED_ALERTS: Final = """
MATCH (a:Alert) USING INDEX a:Alert(published, raised_at, raised_index)
WHERE a.published = false AND a.raised_at IS NOT NULL AND a.raised_index IS NOT NULL
WITH a ORDER BY a.published, a.raised_at, a.raised_index LIMIT $limit
RETURN a.json AS json ORDER BY a.occurred_at, a.alert_id
"""

#: Unknown ids match nothing: marking is idempotent and never fails a sink's retry.
MARK_PUBLISHED: Final = """
UNWIND $alert_ids AS alert_id
MATCH (a:Alert {alert_id: alert_id})
SET a.published = true
"""

# -- snapshot and clear ----------------------------------------------------------------------

SNAPSHOT: Final = {
    "identifiers": """
        MATCH (i:Identifier) WHERE i.category IS NOT NULL
        RETURN i.ref AS ref, i.category AS category, i.display AS display,
               i.erased_at AS erased_at,
               COLLECT { MATCH (i)-[:BELONGS_TO]->(s:Subject) RETURN s.ref } AS subjects
    """,
    "datasets": """
        MATCH (d:Dataset) WHERE d.system IS NOT NULL
        RETURN d.key AS key, d.system AS system, d.name AS name
    """,
    "jobs": "MATCH (j:Job) RETURN j.name AS name",
    "collections": """
        MATCH (i:Identifier)-[c:COLLECTED_INTO]->(d:Dataset)
        RETURN i.ref AS identifier, d.key AS dataset, c.purpose AS purpose, c.at AS at,
               c.event_id AS event_id
    """,
    "flows": """
        MATCH (s:Dataset)-[r:FLOWS_TO]->(t:Dataset)
        RETURN s.key AS source, t.key AS target, r.job AS job, r.run_at AS run_at,
               r.run_event_ids AS run_event_ids
    """,
    "uses": """
        MATCH (d:Dataset)-[r:USED_FOR]->(p:Purpose)
        RETURN d.key AS dataset, r.job AS job, p.key AS purpose, r.run_at AS run_at,
               r.run_event_ids AS run_event_ids
    """,
    "carried": """
        MATCH (i:Identifier)-[c:CARRIED_TO]->(t:Dataset)
        RETURN i.ref AS identifier, c.source AS source, t.key AS target, c.job AS job,
               c.at AS at, c.event_id AS event_id
    """,
    "specific_uses": """
        MATCH (i:Identifier)-[u:USED_IN]->(p:Purpose)
        RETURN i.ref AS identifier, u.dataset AS dataset, u.job AS job, p.key AS purpose,
               u.at AS at, u.event_id AS event_id
    """,
    "copies": f"""
        MATCH (i:Identifier)-[c:COPY_IN]->(d:Dataset)
        RETURN i.ref AS identifier, d.key AS dataset, {_COPY_FIELDS}
    """,
    "alerts": "MATCH (a:Alert) RETURN a.alert_id AS alert_id",
}

#: Batched so a large graph never needs one huge transaction (must run outside a transaction).
CLEAR: Final = """
MATCH (n)
CALL (n) { DETACH DELETE n } IN TRANSACTIONS OF $batch ROWS
"""
